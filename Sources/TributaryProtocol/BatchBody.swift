import Foundation
import TributaryModels

/// The binary body of GET /v1/leases/{id}/batch: a unit's samples, ready to compute on,
/// so a volunteer needs no copy of the dataset. Little-endian:
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 4 | magic `TRBB` |
/// | 4 | 1 | format version = 1 |
/// | 5 | 1 | kind: 0 = tokens, 1 = features |
/// | 6 | 2 | reserved, 0 |
/// | 8 | 4 | batch (samples) |
/// | 12 | 4 | width: sequence length (tokens) or features per sample |
/// | 16 | … | inputs: batch·width int32 (tokens) or float32 (features); then targets: batch·width int32 (tokens) or batch int32 (features) |
///
/// HTTP compression is not needed: a token batch is a few KB.
public enum BatchBody {
    public static let magic: [UInt8] = Array("TRBB".utf8)
    public static let headerSize = 16

    public static func encode(_ batch: ModelBatch) -> [UInt8] {
        var out = magic
        out.append(1)
        switch batch {
        case let .tokens(inputs, targets, b, t):
            out.append(0)
            out += [0, 0]
            append(UInt32(b), to: &out)
            append(UInt32(t), to: &out)
            for v in inputs { append(UInt32(bitPattern: v), to: &out) }
            for v in targets { append(UInt32(bitPattern: v), to: &out) }
        case let .features(inputs, targets, b):
            out.append(1)
            out += [0, 0]
            append(UInt32(b), to: &out)
            append(UInt32(inputs.count / max(1, b)), to: &out)
            for v in inputs { append(v.bitPattern, to: &out) }
            for v in targets { append(UInt32(bitPattern: v), to: &out) }
        }
        return out
    }

    public enum DecodeError: Error, CustomStringConvertible, Equatable {
        case malformed(String)
        public var description: String {
            switch self { case let .malformed(why): return "malformed batch body: \(why)" }
        }
    }

    /// Decodes a body, checking its size against the model's expectations (`maxBatch`
    /// samples of `width`) before allocating.
    public static func decode(_ bytes: [UInt8], maxBatch: Int, width expectedWidth: Int) throws(DecodeError) -> ModelBatch {
        guard bytes.count >= headerSize, Array(bytes[0..<4]) == magic else { throw .malformed("bad magic or too short") }
        guard bytes[4] == 1 else { throw .malformed("unsupported version \(bytes[4])") }
        let kind = bytes[5]
        let b = Int(read32(bytes, 8)), w = Int(read32(bytes, 12))
        guard b >= 1, b <= maxBatch else { throw .malformed("batch \(b) outside 1...\(maxBatch)") }
        guard w == expectedWidth else { throw .malformed("width \(w), the model expects \(expectedWidth)") }
        switch kind {
        case 0:
            let n = b * w
            guard bytes.count == headerSize + 8 * n else { throw .malformed("length \(bytes.count) does not match \(b)×\(w) tokens") }
            let inputs = (0..<n).map { Int32(bitPattern: read32(bytes, headerSize + 4 * $0)) }
            let targets = (0..<n).map { Int32(bitPattern: read32(bytes, headerSize + 4 * (n + $0))) }
            return .tokens(inputs: inputs, targets: targets, batch: b, sequence: w)
        case 1:
            let n = b * w
            guard bytes.count == headerSize + 4 * n + 4 * b else { throw .malformed("length \(bytes.count) does not match \(b)×\(w) features") }
            let inputs = (0..<n).map { Float(bitPattern: read32(bytes, headerSize + 4 * $0)) }
            guard inputs.allSatisfy(\.isFinite) else { throw .malformed("non-finite feature values") }
            let targets = (0..<b).map { Int32(bitPattern: read32(bytes, headerSize + 4 * (n + $0))) }
            return .features(inputs: inputs, targets: targets, batch: b)
        default:
            throw .malformed("unknown kind \(kind)")
        }
    }

    static func append(_ v: UInt32, to out: inout [UInt8]) {
        out.append(UInt8(truncatingIfNeeded: v))
        out.append(UInt8(truncatingIfNeeded: v >> 8))
        out.append(UInt8(truncatingIfNeeded: v >> 16))
        out.append(UInt8(truncatingIfNeeded: v >> 24))
    }

    static func read32(_ b: [UInt8], _ o: Int) -> UInt32 {
        UInt32(b[o]) | UInt32(b[o + 1]) << 8 | UInt32(b[o + 2]) << 16 | UInt32(b[o + 3]) << 24
    }
}
