/// Why a received tensor frame (or zstd payload) was refused. Every case is reachable from
/// hostile input; none of them leaves memory allocated beyond the caller's bounds.
public enum FrameError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The body (of this many bytes) is shorter than the 32-byte header, or than the
    /// uncompressed payload its element count requires.
    case truncated(Int)
    /// The body does not start with `TRBF`.
    case badMagic
    case unsupportedVersion(UInt8)
    case unknownCodec(UInt8)
    /// Reserved flag bits are set.
    case badFlags(UInt16)
    /// The codec parameter is not valid for the frame's codec (fp32 requires 0).
    case badCodecParameter(UInt32)
    case elementCountMismatch(claimed: UInt64, expected: Int)
    /// The header's payload length disagrees with the bytes that follow the header.
    case payloadLengthMismatch(claimed: UInt64, actual: Int)
    case payloadTooLarge(claimed: UInt64, limit: Int)
    /// The zstd frame would decompress past `limit` bytes.
    case decompressionBomb(limit: Int)
    case corruptCompression(String)
    case checksumMismatch(expected: UInt32, actual: UInt32)
    case nonFinite(index: Int)

    public var description: String {
        switch self {
        case .truncated(let count):
            return "tensor frame truncated: body is \(count) bytes, shorter than its header or payload requires"
        case .badMagic:
            return "not a tensor frame: body does not start with magic \"TRBF\""
        case .unsupportedVersion(let version):
            return "unsupported tensor frame version \(version) (this build reads version \(TensorFrameHeader.version))"
        case .unknownCodec(let id):
            let known = TensorCodec.allCases.map { "\($0) = \($0.rawValue)" }.joined(separator: ", ")
            return "unknown tensor codec id \(id) (this build knows \(known))"
        case .badFlags(let flags):
            return "tensor frame flags 0x\(hex(flags, digits: 4)) set reserved bits (only bit 0, zstd, is defined)"
        case .badCodecParameter(let parameter):
            return "tensor frame codec parameter \(parameter) is not valid for its codec (fp32 requires 0)"
        case .elementCountMismatch(let claimed, let expected):
            return "tensor frame holds \(claimed) elements, expected \(expected)"
        case .payloadLengthMismatch(let claimed, let actual):
            return "tensor frame header declares a \(claimed)-byte payload but \(actual) bytes follow the header"
        case .payloadTooLarge(let claimed, let limit):
            return "tensor frame payload of \(claimed) bytes exceeds the \(limit)-byte limit for its element count"
        case .decompressionBomb(let limit):
            return "zstd payload decompresses to more than the \(limit) bytes its element count allows"
        case .corruptCompression(let reason):
            return "corrupt zstd payload: \(reason)"
        case .checksumMismatch(let expected, let actual):
            return "tensor frame checksum mismatch: header says 0x\(hex(expected, digits: 8)), payload has 0x\(hex(actual, digits: 8))"
        case .nonFinite(let index):
            return "tensor frame value at index \(index) is NaN or infinite"
        }
    }
}

/// Why a frame could not be produced. These come from the sender's own values or settings,
/// never from received bytes.
public enum FrameEncodingError: Error, CustomStringConvertible, Equatable, Sendable {
    /// zstd levels outside `Zstd.levels` (1...19) are refused rather than clamped, so that a
    /// configuration typo does not silently change the bytes on the wire.
    case invalidZstdLevel(Int)
    /// Frames carry finite values only; receivers refuse NaN and ±Inf.
    case nonFinite(index: Int)
    /// libzstd failed (in practice: out of memory).
    case zstdFailure(String)

    public var description: String {
        switch self {
        case .invalidZstdLevel(let level):
            return "zstd level \(level) is outside \(Zstd.levels.lowerBound)...\(Zstd.levels.upperBound)"
        case .nonFinite(let index):
            return "cannot encode tensor frame: value at index \(index) is NaN or infinite"
        case .zstdFailure(let reason):
            return "zstd compression failed: \(reason)"
        }
    }
}

func hex<T: BinaryInteger>(_ value: T, digits: Int) -> String {
    let text = String(value, radix: 16)
    return String(repeating: "0", count: max(0, digits - text.count)) + text
}
