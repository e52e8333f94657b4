import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Element types of the safetensors format, spelled as in its header.
public enum SafeTensorsDType: String, Sendable, CaseIterable {
    case F32, F16, BF16, F64, I64, I32, I16, I8, U8, U16, U32, U64, BOOL

    public var byteSize: Int {
        switch self {
        case .F64, .I64, .U64: return 8
        case .F32, .I32, .U32: return 4
        case .F16, .BF16, .I16, .U16: return 2
        case .I8, .U8, .BOOL: return 1
        }
    }
}

/// A malformed safetensors file or an entry that cannot be written; `description` is one line.
public struct SafeTensorsError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: String, Sendable {
        case fileNotFound, unreadable, truncated, headerTooLarge, invalidHeader, unknownDType,
             invalidShape, invalidOffsets, sizeMismatch, overlappingData, gapInData,
             duplicateName, wrongDType, invalidEntry
    }
    public let kind: Kind
    public var path: String?
    public let message: String

    public init(_ kind: Kind, _ message: String, path: String? = nil) {
        self.kind = kind
        self.message = message
        self.path = path
    }

    public var description: String {
        let advice: String
        switch kind {
        case .fileNotFound: advice = "; check the checkpoint path"
        case .unreadable: advice = "; check that the checkpoint is a readable file"
        case .wrongDType, .invalidEntry: advice = ""  // the message says what to change
        default: advice = "; the checkpoint is corrupt or not a safetensors file, use another checkpoint"
        }
        return "\(path ?? "safetensors data"): \(message)\(advice)"
    }
}

/// One named tensor: raw little-endian element bytes plus dtype and shape.
public struct SafeTensorsEntry: Sendable, Equatable {
    public var name: String
    public var dtype: SafeTensorsDType
    public var shape: [Int]
    public var bytes: [UInt8]

    public init(name: String, dtype: SafeTensorsDType, shape: [Int], bytes: [UInt8]) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.bytes = bytes
    }

    /// An F32 tensor from host floats (stored little-endian, as the format requires).
    public init(name: String, shape: [Int], floats: [Float]) {
        self.name = name
        self.dtype = .F32
        self.shape = shape
        self.bytes = [UInt8](unsafeUninitializedCapacity: floats.count * 4) { out, initialized in
            floats.withUnsafeBufferPointer { src in
                for i in 0..<src.count {
                    let bits = src[i].bitPattern
                    out[4 * i] = UInt8(truncatingIfNeeded: bits)
                    out[4 * i + 1] = UInt8(truncatingIfNeeded: bits >> 8)
                    out[4 * i + 2] = UInt8(truncatingIfNeeded: bits >> 16)
                    out[4 * i + 3] = UInt8(truncatingIfNeeded: bits >> 24)
                }
            }
            initialized = floats.count * 4
        }
    }

    /// Number of elements (1 for a scalar's empty shape), or nil if the shape is negative or overflows.
    public var elementCount: Int? { SafeTensorsFile.elementCount(shape) }

    /// The elements as host floats; only for F32 entries whose byte count matches the shape.
    public func floats() throws -> [Float] {
        guard dtype == .F32 else {
            throw SafeTensorsError(.wrongDType, "tensor \"\(name)\" is \(dtype.rawValue), not F32; convert it before reading it as floats")
        }
        guard let n = elementCount, n.multipliedReportingOverflow(by: 4) == (bytes.count, false) else {
            throw SafeTensorsError(.sizeMismatch, "tensor \"\(name)\" has \(bytes.count) bytes, which does not match its shape \(shape) of F32")
        }
        return [Float](unsafeUninitializedCapacity: n) { out, initialized in
            bytes.withUnsafeBufferPointer { src in
                for i in 0..<n {
                    let bits = UInt32(src[4 * i]) | UInt32(src[4 * i + 1]) << 8
                        | UInt32(src[4 * i + 2]) << 16 | UInt32(src[4 * i + 3]) << 24
                    out[i] = Float(bitPattern: bits)
                }
            }
            initialized = n
        }
    }
}

/// A safetensors file (https://github.com/huggingface/safetensors): an 8-byte little-endian header
/// length N, N bytes of JSON describing each tensor's dtype, shape and byte range, then the data.
public struct SafeTensorsFile: Sendable, Equatable {
    public var entries: [SafeTensorsEntry]
    public var metadata: [String: String]

    /// Headers beyond this are refused before parsing (the reference implementation uses the same bound).
    public static let maxHeaderBytes = 100_000_000
    /// JSON nesting beyond this is refused before parsing; a valid header nests 3 deep.
    static let maxJSONDepth = 16

    public init(entries: [SafeTensorsEntry] = [], metadata: [String: String] = [:]) {
        self.entries = entries
        self.metadata = metadata
    }

    public func entry(named name: String) -> SafeTensorsEntry? {
        entries.first { $0.name == name }
    }

    // MARK: Writing

    /// The file's bytes: tensors in name order (byte-wise UTF-8), data contiguous, the header
    /// padded with spaces so that the data starts at an 8-byte-aligned offset.
    public func serialized() throws -> [UInt8] {
        let sorted = entries.sorted { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }
        var header = "{"
        var first = true
        if !metadata.isEmpty {
            header += "\"__metadata__\":{"
            let pairs = metadata.sorted { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }
            header += pairs.map { "\(Self.jsonString($0.key)):\(Self.jsonString($0.value))" }.joined(separator: ",")
            header += "}"
            first = false
        }
        var offset = 0
        var previous: String?
        for entry in sorted {
            guard !entry.name.isEmpty, entry.name != "__metadata__" else {
                throw SafeTensorsError(.invalidEntry, "tensor name \"\(entry.name)\" is reserved or empty; rename the tensor")
            }
            if entry.name == previous {
                throw SafeTensorsError(.invalidEntry, "two tensors are named \"\(entry.name)\"; give each tensor a unique name before saving")
            }
            previous = entry.name
            guard let n = entry.elementCount,
                  case let (expected, overflow) = n.multipliedReportingOverflow(by: entry.dtype.byteSize),
                  !overflow, expected == entry.bytes.count else {
                throw SafeTensorsError(.invalidEntry,
                                       "tensor \"\(entry.name)\" has \(entry.bytes.count) bytes but shape \(entry.shape) of \(entry.dtype.rawValue) needs a different amount; fix the tensor before saving")
            }
            let end = offset + expected
            if !first { header += "," }
            first = false
            let shape = entry.shape.map(String.init).joined(separator: ",")
            header += "\(Self.jsonString(entry.name)):{\"dtype\":\"\(entry.dtype.rawValue)\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(end)]}"
            offset = end
        }
        header += "}"
        var headerBytes = Array(header.utf8)
        headerBytes.append(contentsOf: repeatElement(UInt8(ascii: " "), count: (8 - headerBytes.count % 8) % 8))

        var out: [UInt8] = []
        out.reserveCapacity(8 + headerBytes.count + offset)
        let n = UInt64(headerBytes.count)
        for shift in stride(from: 0, to: 64, by: 8) { out.append(UInt8(truncatingIfNeeded: n >> UInt64(shift))) }
        out.append(contentsOf: headerBytes)
        for entry in sorted { out.append(contentsOf: entry.bytes) }
        return out
    }

    /// Writes the file atomically: a crash leaves either the old checkpoint or the new one.
    public func write(to path: String) throws {
        let bytes: [UInt8]
        do {
            bytes = try serialized()
        } catch var error as SafeTensorsError {
            error.path = path
            throw error
        }
        try AtomicFile.write(bytes, to: path)
    }

    static func jsonString(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

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
