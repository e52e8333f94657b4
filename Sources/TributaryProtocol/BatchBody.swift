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
/// Kind 2 (token windows) is the compact form of a token batch whose targets are its inputs
/// shifted by one (every next-token batch): byte 6 is the bytes per token (1, 2 or 4,
/// unsigned little-endian), and each sample is its width + 1 tokens, inputs the first
/// `width`, targets the last `width`. A character-level sample takes 1/8 of kind 0's bytes.
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

    /// Kind 2 (token windows) when the batch's targets are its inputs shifted by one and every
    /// token is in 0..<`vocabularySize`, with the fewest bytes per token that hold them; nil otherwise.
    public static func encodeWindows(_ batch: ModelBatch, vocabularySize: Int) -> [UInt8]? {
        guard case let .tokens(inputs, targets, b, t) = batch, t >= 1, inputs.count == b * t, targets.count == b * t,
              vocabularySize >= 1 else { return nil }
        let width = vocabularySize <= 256 ? 1 : vocabularySize <= 65_536 ? 2 : 4
        var out = magic + [1, 2, UInt8(width), 0]
        out.reserveCapacity(headerSize + width * b * (t + 1))
        append(UInt32(b), to: &out)
        append(UInt32(t), to: &out)
        for s in 0..<b {
            let row = s * t
            for i in 0..<t where i + 1 < t && targets[row + i] != inputs[row + i + 1] { return nil }
            for i in 0...t {
                let token = i < t ? inputs[row + i] : targets[row + t - 1]
                guard token >= 0, Int(token) < vocabularySize else { return nil }
                let v = UInt32(token)
                for k in 0..<width { out.append(UInt8(truncatingIfNeeded: v >> (8 * k))) }
            }
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
        case 2:
            let width = Int(bytes[6])
            guard width == 1 || width == 2 || width == 4, bytes[7] == 0 else { throw .malformed("token width \(width) is not 1, 2 or 4") }
            let n = b * (w + 1)
            guard bytes.count == headerSize + width * n else { throw .malformed("length \(bytes.count) does not match \(b) windows of \(w + 1) tokens") }
            func token(_ index: Int) -> Int32 {
                var v: UInt32 = 0
                for k in 0..<width { v |= UInt32(bytes[headerSize + width * index + k]) << (8 * k) }
                return Int32(bitPattern: v)
            }
            var inputs: [Int32] = [], targets: [Int32] = []
            inputs.reserveCapacity(b * w)
            targets.reserveCapacity(b * w)
            for s in 0..<b {
                for i in 0..<w { inputs.append(token(s * (w + 1) + i)) }
                for i in 1...w { targets.append(token(s * (w + 1) + i)) }
            }
            return .tokens(inputs: inputs, targets: targets, batch: b, sequence: w)
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
