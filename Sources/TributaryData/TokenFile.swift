import Foundation

/// nanoGPT's `train.bin` / `val.bin`: a headerless stream of little-endian uint16 token ids
/// (what `np.array(ids, dtype=np.uint16).tofile(path)` writes).
public enum TokenFile {
    public static func load(path: String) throws -> [UInt16] {
        let bytes = try readFileBytes(path, what: "token")
        do {
            return try decode(bytes)
        } catch let error as DatasetError {
            throw error.at(path)
        }
    }

    static func decode(_ bytes: [UInt8]) throws -> [UInt16] {
        if bytes.isEmpty {
            throw DatasetError(.empty, "token file is empty; regenerate it with the data preparation script")
        }
        if bytes.count % 2 != 0 {
            throw DatasetError(.invalidFormat,
                               "token file has \(bytes.count) bytes, an odd number, so it is not a uint16 stream (truncated copy?); regenerate it")
        }
        let count = bytes.count / 2
        return [UInt16](unsafeUninitializedCapacity: count) { out, initialized in
            bytes.withUnsafeBufferPointer { src in
                for i in 0..<count {
                    out[i] = UInt16(src[2 * i]) | (UInt16(src[2 * i + 1]) << 8)
                }
            }
            initialized = count
        }
    }

    static func encode(_ tokens: [UInt16]) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: tokens.count * 2) { out, initialized in
            tokens.withUnsafeBufferPointer { src in
                for i in 0..<src.count {
                    out[2 * i] = UInt8(truncatingIfNeeded: src[i])
                    out[2 * i + 1] = UInt8(truncatingIfNeeded: src[i] >> 8)
                }
            }
            initialized = tokens.count * 2
        }
    }

    /// Writes `tokens` in the same format, replacing `path` atomically (a reader never sees half a file).
    public static func write(_ tokens: [UInt16], to path: String) throws {
        do {
            try Data(encode(tokens)).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw DatasetError(.unwritable, path: path,
                               "cannot write token file: \(error.localizedDescription); check that the directory exists and is writable")
        }
    }
}
