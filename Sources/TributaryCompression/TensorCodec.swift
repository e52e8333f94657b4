/// How a frame's payload represents its fp32 values (header byte 5). Ids 1...15 are reserved
/// for the codecs to come (fp16, bf16, int8 blockwise, int4, top-k); until then they are refused
/// as unknown.
public enum TensorCodec: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// n little-endian IEEE-754 binary32 values.
    case fp32 = 0

    public var description: String {
        switch self {
        case .fp32: return "fp32"
        }
    }

    /// Size in bytes of the codec payload (before zstd) for `elementCount` values, saturating at
    /// `Int.max`. For fp32 this is also the only valid uncompressed payload size.
    public func payloadSize(elementCount: Int) -> Int {
        precondition(elementCount >= 0, "negative element count")
        switch self {
        case .fp32:
            let (bytes, overflow) = elementCount.multipliedReportingOverflow(by: 4)
            return overflow ? Int.max : bytes
        }
    }

    /// Whether header bytes 28...31 hold a valid parameter for this codec.
    public func isValid(parameter: UInt32) -> Bool {
        switch self {
        case .fp32: return parameter == 0
        }
    }

    /// The parameter this build writes for the codec.
    var defaultParameter: UInt32 {
        switch self {
        case .fp32: return 0
        }
    }
}
