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
}
