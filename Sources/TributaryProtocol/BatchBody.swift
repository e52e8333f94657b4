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
///
/// Kind 3 (8-bit images) is the compact form of a features batch whose every input is
/// k/255 for a whole k (pixels as image datasets load them) and every label is below 256:
/// batch·width u8 pixel values k, then batch u8 labels. A reader divides by 255 exactly as
/// the loaders do, so the floats are the same as kind 1's; an MNIST sample takes 1/4 of the bytes.
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

    /// k/255 for each byte value k: the one division the image loaders and kind 3 share.
    public static let pixelScale: [Float] = (0..<256).map { Float($0) / 255 }

    /// Kind 3 (8-bit images) when every input of a features batch is exactly k/255 and every
    /// label lies in 0..<256; nil otherwise (the batch then travels as kind 1).
    public static func encodePixels(_ batch: ModelBatch) -> [UInt8]? {
        guard case let .features(inputs, targets, b) = batch, b >= 1, targets.count == b,
              inputs.count % b == 0, !inputs.isEmpty, b <= Int(UInt32.max), inputs.count / b <= Int(UInt32.max) else { return nil }
        var out = magic + [1, 3, 0, 0]
        out.reserveCapacity(headerSize + inputs.count + b)
        append(UInt32(b), to: &out)
        append(UInt32(inputs.count / b), to: &out)
        let exact = pixelScale.withUnsafeBufferPointer { scale in
            inputs.withUnsafeBufferPointer { values in
                for v in values {
                    // NaN and out-of-range values fail the range check; others must round-trip.
                    guard v >= 0, v <= 1 else { return false }
                    let k = Int((v * 255).rounded())
                    guard scale[k].bitPattern == v.bitPattern else { return false }  // -0 is no pixel
                    out.append(UInt8(k))
                }
                return true
            }
        }
        guard exact else { return nil }
        for label in targets {
            guard label >= 0, label < 256 else { return nil }
            out.append(UInt8(label))
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
        case 3:
            guard bytes[6] == 0, bytes[7] == 0 else { throw .malformed("kind 3's reserved bytes must be 0") }
            let n = b * w
            guard bytes.count == headerSize + n + b else { throw .malformed("length \(bytes.count) does not match \(b)×\(w) 8-bit pixels") }
            let inputs = pixelScale.withUnsafeBufferPointer { scale in
                (0..<n).map { scale[Int(bytes[headerSize + $0])] }
            }
            let targets = (0..<b).map { Int32(bytes[headerSize + n + $0]) }
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
