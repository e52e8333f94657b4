/// How a frame's payload represents its fp32 values (header byte 5). Protocol/frames.md gives
/// every codec's payload byte by byte; ids 7...255 are unassigned and refused as unknown.
public enum TensorCodec: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// n little-endian IEEE-754 binary32 values. Parameter 0.
    case fp32 = 0
    /// n little-endian IEEE-754 binary16 values, rounded to nearest even, saturating at ±65504. Parameter 0.
    case fp16 = 1
    /// n little-endian bfloat16 values (the upper half of binary32, rounded to nearest even,
    /// saturating at ±(2 − 2⁻⁷)·2¹²⁷). Parameter 0.
    case bf16 = 2
    /// Blocks of B values (parameter B, 16...65536): an fp32 scale, then B signed bytes.
    case int8Block = 3
    /// Blocks of B values (parameter B, 16...65536): an fp32 scale, then ⌈B/2⌉ bytes of two
    /// signed nibbles each, low nibble first.
    case int4Block = 4
    /// Sparse: k, k delta-coded indices, k values in the sub-codec that the parameter names
    /// (`TopKValueCodec`).
    case topK = 5
    /// Low rank: a segment table (each tensor's rows, cols and rank), then per segment either
    /// its dense values or rank factor pairs, in the sub-codec the parameter names (`FactorValueCodec`).
    case lowRank = 6

    public var description: String {
        switch self {
        case .fp32: return "fp32"
        case .fp16: return "fp16"
        case .bf16: return "bf16"
        case .int8Block: return "int8-block"
        case .int4Block: return "int4-block"
        case .topK: return "top-k"
        case .lowRank: return "low-rank"
        }
    }

    /// Block sizes the blockwise codecs accept (header bytes 28...31).
    public static let blockSizes: ClosedRange<UInt32> = 16...65536

    /// Whether the codec's payload is a fixed function of n (every codec but top-k and low-rank).
    public var isDense: Bool { self != .topK && self != .lowRank }

    /// Size in bytes of the codec payload (before zstd) for `elementCount` values with the
    /// codec's largest-payload parameter (block size 16; for top-k the larger of its two value
    /// codecs), saturating at `Int.max`.
    public func payloadSize(elementCount: Int) -> Int {
        payloadSize(elementCount: elementCount, parameter: worstParameter(elementCount: elementCount))
    }

    /// Size in bytes of the codec payload (before zstd) for `elementCount` values, saturating
    /// at `Int.max`. Exact for the dense codecs; for top-k the largest payload any k ≤ n can
    /// have. A parameter the codec does not accept counts as its largest-payload one.
    public func payloadSize(elementCount n: Int, parameter: UInt32) -> Int {
        precondition(n >= 0, "negative element count")
        guard isValid(parameter: parameter) else { return payloadSize(elementCount: n) }
        switch self {
        case .fp32: return saturating(n, times: 4, plus: 0)
        case .fp16, .bf16: return saturating(n, times: 2, plus: 0)
        case .int8Block, .int4Block:
            let block = Int(parameter)
            let full = n / block, rest = n % block
            let perBlock = 4 + (self == .int8Block ? block : (block + 1) / 2)
            let tail = rest == 0 ? 0 : 4 + (self == .int8Block ? rest : (rest + 1) / 2)
            return saturating(full, times: perBlock, plus: tail)
        case .topK:
            // The k varints take at most n bytes together: the deltas sum to at most n − k, and a
            // varint's j-th extra byte needs a delta ≥ 128^j (Protocol/frames.md, top-k).
            guard let values = TopKValueCodec(parameter: parameter) else { return Int.max }
            switch values {
            case .fp16: return saturating(n, times: 3, plus: 4)
            case .int8: return saturating(n, times: 2, plus: 8)
            }
        case .lowRank:
            return LowRankPayload.limit(elementCount: n)
        }
    }

    /// Whether header bytes 28...31 hold a valid parameter for this codec.
    public func isValid(parameter: UInt32) -> Bool {
        switch self {
        case .fp32, .fp16, .bf16: return parameter == 0
        case .int8Block, .int4Block: return Self.blockSizes.contains(parameter)
        case .topK: return TopKValueCodec(parameter: parameter) != nil
        case .lowRank: return FactorValueCodec(parameter: parameter) != nil
        }
    }

    /// The parameter this build writes when the caller names none.
    public var defaultParameter: UInt32 {
        switch self {
        case .fp32, .fp16, .bf16: return 0
        case .int8Block: return 256
        case .int4Block: return 64
        case .topK: return UInt32(TopKValueCodec.fp16.rawValue)
        case .lowRank: return FactorValueCodec.fp16.parameter
        }
    }

    /// The valid parameter with the largest payload for n elements.
    func worstParameter(elementCount n: Int) -> UInt32 {
        switch self {
        case .fp32, .fp16, .bf16: return 0
        case .int8Block, .int4Block: return Self.blockSizes.lowerBound
        case .topK:
            // fp16 values: 4 + 3n; int8 values: 8 + 2n. They cross at n = 4.
            return UInt32(n >= 4 ? TopKValueCodec.fp16.rawValue : TopKValueCodec.int8.rawValue)
        case .lowRank:
            return FactorValueCodec.fp16.parameter  // the limit does not depend on it
        }
    }
}

/// How a top-k frame stores its k values (the low byte of the codec parameter; the other
/// parameter bytes are 0).
public enum TopKValueCodec: UInt8, Sendable, CaseIterable, Codable, CustomStringConvertible {
    /// k IEEE binary16 values, as codec fp16.
    case fp16 = 0
    /// One fp32 scale (max |value| / 127) for all k values, then k signed bytes, as int8-block.
    case int8 = 1

    public var description: String {
        switch self {
        case .fp16: return "fp16"
        case .int8: return "int8"
        }
    }
}

/// A sub-codec named by the low byte of a frame's codec parameter (top-k values, low-rank
/// factors) and, in configuration, by its description.
public protocol ParameterSubCodec: RawRepresentable, CaseIterable, CustomStringConvertible where RawValue == UInt8 {}

extension ParameterSubCodec {
    /// The sub-codec of a codec parameter: its low byte, the other bytes 0.
    public init?(parameter: UInt32) {
        guard parameter <= 0xFF, let codec = Self(rawValue: UInt8(parameter)) else { return nil }
        self = codec
    }

    public var parameter: UInt32 { UInt32(rawValue) }

    /// The sub-codec a configuration string names (`fp16`, `int8`, …).
    init?(name: String) {
        guard let codec = Self.allCases.first(where: { $0.description == name }) else { return nil }
        self = codec
    }
}

extension TopKValueCodec: ParameterSubCodec {}

/// a·b + c, or Int.max when that does not fit.
@inline(__always)
func saturating(_ a: Int, times b: Int, plus c: Int) -> Int {
    let (product, overflow) = a.multipliedReportingOverflow(by: b)
    if overflow { return Int.max }
    let (sum, overflow2) = product.addingReportingOverflow(c)
    return overflow2 ? Int.max : sum
}
