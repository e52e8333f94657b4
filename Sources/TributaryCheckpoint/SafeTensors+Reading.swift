import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reading safetensors files: bounded header parsing, every offset and shape checked.
extension SafeTensorsFile {
    // MARK: Reading

    public static func read(path: String) throws -> SafeTensorsFile {
        let bytes = try readAll(path)
        do {
            return try parse(bytes)
        } catch var error as SafeTensorsError {
            error.path = path
            throw error
        }
    }

    /// Parses and fully validates a safetensors image. Every malformation is a thrown
    /// `SafeTensorsError`; nothing in the input can make this trap.
    public static func parse(_ bytes: [UInt8]) throws -> SafeTensorsFile {
        guard bytes.count >= 8 else {
            throw SafeTensorsError(.truncated, "file is \(bytes.count) bytes, shorter than the 8-byte header length")
        }
        var n: UInt64 = 0
        for i in 0..<8 { n |= UInt64(bytes[i]) << UInt64(8 * i) }
        guard n <= UInt64(maxHeaderBytes) else {
            throw SafeTensorsError(.headerTooLarge, "header length \(n) exceeds the \(maxHeaderBytes)-byte limit")
        }
        let headerLength = Int(n)
        guard headerLength <= bytes.count - 8 else {
            throw SafeTensorsError(.truncated, "header length \(headerLength) runs past the end of the \(bytes.count)-byte file")
        }
        guard headerLength >= 2, bytes[8] == UInt8(ascii: "{") else {
            throw SafeTensorsError(.invalidHeader, "header does not start with a JSON object")
        }
        let headerBytes = bytes[8 ..< 8 + headerLength]
        let topLevelKeys = try scanTopLevelKeys(headerBytes)

        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: Data(headerBytes), options: [])
        } catch {
            throw SafeTensorsError(.invalidHeader, "header is not valid JSON (\(error.localizedDescription))")
        }
        guard let object = json as? [String: Any] else {
            throw SafeTensorsError(.invalidHeader, "header is not a JSON object")
        }
        // JSONSerialization keeps one value per key silently; the raw scan counts every key.
        if topLevelKeys.count != object.count {
            var seen = Set<String>()
            let duplicate = topLevelKeys.first { !seen.insert($0).inserted }
                .map { "\"\($0)\"" } ?? "a key (spelled with different escapes)"
            throw SafeTensorsError(.duplicateName, "header names \(duplicate) more than once")
        }

        let dataStart = 8 + headerLength
        let dataLength = bytes.count - dataStart
        var metadata: [String: String] = [:]
        var described: [(name: String, dtype: SafeTensorsDType, shape: [Int], begin: Int, end: Int)] = []
        for (name, value) in object {
            if name == "__metadata__" {
                guard let dict = value as? [String: Any] else {
                    throw SafeTensorsError(.invalidHeader, "__metadata__ is not a JSON object of strings")
                }
                for (k, v) in dict {
                    guard let s = v as? String else {
                        throw SafeTensorsError(.invalidHeader, "__metadata__ value for \"\(k)\" is not a string")
                    }
                    metadata[k] = s
                }
                continue
            }
            guard let info = value as? [String: Any] else {
                throw SafeTensorsError(.invalidHeader, "tensor \"\(name)\" is not described by a JSON object")
            }
            guard let dtypeName = info["dtype"] as? String else {
                throw SafeTensorsError(.invalidHeader, "tensor \"\(name)\" has no string \"dtype\"")
            }
            guard let dtype = SafeTensorsDType(rawValue: dtypeName) else {
                throw SafeTensorsError(.unknownDType, "tensor \"\(name)\" has unsupported dtype \"\(dtypeName)\"")
            }
            guard let shapeValues = info["shape"] as? [Any] else {
                throw SafeTensorsError(.invalidShape, "tensor \"\(name)\" has no \"shape\" array")
            }
            var shape: [Int] = []
            for dim in shapeValues {
                guard let d = integer(dim), d >= 0 else {
                    throw SafeTensorsError(.invalidShape, "tensor \"\(name)\" has shape dimension \(dim), not a non-negative integer")
                }
                shape.append(d)
            }
            guard let offsets = info["data_offsets"] as? [Any], offsets.count == 2,
                  let begin = integer(offsets[0]), let end = integer(offsets[1]) else {
                throw SafeTensorsError(.invalidOffsets, "tensor \"\(name)\" needs \"data_offsets\" of two integers")
            }
            guard begin >= 0, end >= begin, end <= dataLength else {
                throw SafeTensorsError(.invalidOffsets,
                                       "tensor \"\(name)\" has data_offsets [\(begin), \(end)] outside the \(dataLength)-byte data section or reversed")
            }
            guard let count = elementCount(shape),
                  case let (size, overflow) = count.multipliedReportingOverflow(by: dtype.byteSize), !overflow else {
                throw SafeTensorsError(.invalidShape, "tensor \"\(name)\" has shape \(shape) whose size overflows")
            }
            guard size == end - begin else {
                throw SafeTensorsError(.sizeMismatch,
                                       "tensor \"\(name)\" spans \(end - begin) bytes but shape \(shape) of \(dtype.rawValue) needs \(size)")
            }
            described.append((name, dtype, shape, begin, end))
        }

        // The tensors must tile the data section exactly: no overlaps, gaps or trailing bytes.
        described.sort { ($0.begin, $0.end) < ($1.begin, $1.end) }
        var cursor = 0
        for d in described {
            if d.begin < cursor {
                throw SafeTensorsError(.overlappingData, "tensor \"\(d.name)\" at bytes [\(d.begin), \(d.end)] overlaps the previous tensor, which ends at \(cursor)")
            }
            if d.begin > cursor {
                throw SafeTensorsError(.gapInData, "data section has unused bytes [\(cursor), \(d.begin)) before tensor \"\(d.name)\"")
            }
            cursor = d.end
        }
        if cursor != dataLength {
            throw SafeTensorsError(.gapInData, "data section is \(dataLength) bytes but its tensors cover only \(cursor)")
        }

        let entries = described.map { d in
            SafeTensorsEntry(name: d.name, dtype: d.dtype, shape: d.shape,
                             bytes: Array(bytes[dataStart + d.begin ..< dataStart + d.end]))
        }
        return SafeTensorsFile(entries: entries, metadata: metadata)
    }

    /// Product of `shape` (1 for a scalar), nil for a negative dimension or overflow.
    static func elementCount(_ shape: [Int]) -> Int? {
        var n = 1
        for d in shape {
            guard d >= 0 else { return nil }
            let (p, overflow) = n.multipliedReportingOverflow(by: d)
            if overflow { return nil }
            n = p
        }
        return n
    }

    /// The exact integer value of a JSON number (nil for a fraction, string or out-of-range value).
    static func integer(_ value: Any) -> Int? {
        if value is String { return nil }
        if let i = value as? Int { return i }
        if let d = value as? Double, let i = Int(exactly: d) { return i }
        return nil
    }

    /// Top-level object keys exactly as written (escapes resolved), in order, with duplicates;
    /// also refuses excessive nesting before JSONSerialization recurses into it.
    static func scanTopLevelKeys(_ header: ArraySlice<UInt8>) throws -> [String] {
        var keys: [String] = []
        var depth = 0
        var i = header.startIndex
        let end = header.endIndex
        while i < end {
            let c = header[i]
            switch c {
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                depth += 1
                if depth > maxJSONDepth {
                    throw SafeTensorsError(.invalidHeader, "header JSON nests deeper than \(maxJSONDepth) levels")
                }
                i += 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                depth -= 1
                i += 1
            case UInt8(ascii: "\""):
                let start = i
                i += 1
                while i < end && header[i] != UInt8(ascii: "\"") {
                    i += header[i] == UInt8(ascii: "\\") ? 2 : 1
                }
                guard i < end else {
                    throw SafeTensorsError(.invalidHeader, "header JSON has an unterminated string")
                }
                i += 1
                if depth == 1 {
                    // A string at depth 1 followed by ':' is a key of the top-level object.
                    var j = i
                    while j < end, [0x20, 0x09, 0x0A, 0x0D].contains(header[j]) { j += 1 }
                    if j < end && header[j] == UInt8(ascii: ":") {
                        let literal = Data(header[start..<i])
                        guard let key = try? JSONSerialization.jsonObject(with: literal, options: .fragmentsAllowed) as? String else {
                            throw SafeTensorsError(.invalidHeader, "header JSON has a malformed key")
                        }
                        keys.append(key)
                    }
                }
            default:
                i += 1
            }
        }
        return keys
    }

    static func readAll(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            let code = errno
            throw SafeTensorsError(code == ENOENT ? .fileNotFound : .unreadable,
                                   "cannot open checkpoint: \(String(cString: strerror(code)))", path: path)
        }
        defer { close(fd) }
        var info = stat()
        if fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR {
            throw SafeTensorsError(.unreadable, "is a directory, not a safetensors file", path: path)
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(max(0, Int(info.st_size)))
        let chunkSize = 1 << 20
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: chunkSize, alignment: 16)
        defer { chunk.deallocate() }
        while true {
            let n = posixRead(fd, chunk.baseAddress, chunkSize)
            if n < 0 {
                if errno == EINTR { continue }
                throw SafeTensorsError(.unreadable, "error reading checkpoint: \(String(cString: strerror(errno)))", path: path)
            }
            if n == 0 { break }
            bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: chunk[0..<n]))
        }
        return bytes
    }
}

// `read` is shadowed inside SafeTensorsFile by its own static method.
@inline(__always)
private func posixRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer?, _ count: Int) -> Int {
    #if canImport(Glibc)
    return Glibc.read(fd, buffer, count)
    #else
    return Darwin.read(fd, buffer, count)
    #endif
}
