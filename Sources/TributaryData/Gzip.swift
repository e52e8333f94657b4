import CZlib

/// gzip (and zlib) decompression through the system zlib.
public enum Gzip {
    /// True when `bytes` start with the gzip magic number 1f 8b.
    public static func isGzip(_ bytes: [UInt8]) -> Bool {
        bytes.count >= 2 && bytes[0] == 0x1F && bytes[1] == 0x8B
    }

    /// Inflates a gzip (or zlib) stream, including concatenated gzip members as `gzip -d` does.
    /// Refuses to produce more than `maxOutputBytes` (a small file can expand enormously)
    /// and rejects truncated, corrupt or trailing-garbage input.
    public static func decompress(_ bytes: [UInt8], maxOutputBytes: Int) throws -> [UInt8] {
        if bytes.isEmpty {
            throw DatasetError(.empty, "compressed data is empty; the file is truncated, download it again")
        }
        var stream = z_stream()
        // 15 + 32: the largest window, with automatic gzip/zlib header detection.
        let initStatus = inflateInit2_(&stream, 15 + 32, zlibVersion(), Int32(MemoryLayout<z_stream>.size))
        guard initStatus == Z_OK else {
            throw DatasetError(.invalidArgument, "zlib could not start inflating (status \(initStatus)); check the zlib installation")
        }
        defer { inflateEnd(&stream) }

        var output: [UInt8] = []
        // gzip's trailer records the size mod 2^32: a good capacity hint, capped by the limit.
        if isGzip(bytes), bytes.count >= 18 {
            let n = bytes.count
            let isize = Int(bytes[n - 4]) | Int(bytes[n - 3]) << 8 | Int(bytes[n - 2]) << 16 | Int(bytes[n - 1]) << 24
            output.reserveCapacity(min(isize, maxOutputBytes, 1 << 30))
        }
        let chunkSize = 1 << 18
        let chunk = UnsafeMutablePointer<UInt8>.allocate(capacity: chunkSize)
        defer { chunk.deallocate() }

        try bytes.withUnsafeBufferPointer { input in
            guard let base = input.baseAddress else { return }
            var fed = 0  // bytes of `input` handed to zlib so far
            // zlib counts input in 32-bit units, so very large inputs are fed in slices.
            func feed() {
                let n = min(input.count - fed, Int(UInt32.max >> 1))
                stream.next_in = UnsafeMutablePointer(mutating: base + fed)
                stream.avail_in = uInt(n)
                fed += n
            }
            feed()
            while true {
                if stream.avail_in == 0 && fed < input.count { feed() }
                stream.next_out = chunk
                stream.avail_out = uInt(chunkSize)
                let status = inflate(&stream, Z_NO_FLUSH)
                let produced = chunkSize - Int(stream.avail_out)
                if produced > 0 {
                    if produced > maxOutputBytes - output.count {
                        throw DatasetError(.tooLarge,
                                           "compressed data expands to more than \(maxOutputBytes) bytes, the allowed maximum (a corrupt file or decompression bomb); check the file or raise the limit")
                    }
                    output.append(contentsOf: UnsafeBufferPointer(start: chunk, count: produced))
                }
                let inputLeft = Int(stream.avail_in) + (input.count - fed)
                switch status {
                case Z_STREAM_END:
                    if inputLeft == 0 { return }
                    let next = input.count - inputLeft
                    if input[next...].allSatisfy({ $0 == 0 }) { return }  // zero padding, as gzip -d tolerates
                    if inputLeft >= 2 && input[next] == 0x1F && input[next + 1] == 0x8B {
                        inflateReset(&stream)  // another gzip member follows
                        continue
                    }
                    throw DatasetError(.invalidFormat,
                                       "compressed data has \(inputLeft) unexpected bytes after the end of the stream; the file is corrupt, download it again")
                case Z_OK, Z_BUF_ERROR:
                    // No more input while zlib still has room for output: the stream stops early.
                    if inputLeft == 0 && stream.avail_out != 0 {
                        throw DatasetError(.invalidFormat,
                                           "compressed data ends before the end of the stream (\(bytes.count) bytes read, truncated download?); download the file again")
                    }
                case Z_NEED_DICT:
                    throw DatasetError(.invalidFormat, "compressed data needs a preset dictionary, which data sets never use; the file is corrupt")
                case Z_MEM_ERROR:
                    throw DatasetError(.tooLarge, "zlib ran out of memory while decompressing")
                default:
                    let detail = stream.msg.map { String(cString: $0) } ?? "status \(status)"
                    throw DatasetError(.invalidFormat,
                                       "compressed data is corrupt (\(detail)) after \(output.count) output bytes; download the file again")
                }
            }
        }
        return output
    }
}
