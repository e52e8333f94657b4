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
    /// The first element (0-based, in the dense tensor) whose decoded value is NaN or ±Inf, or
    /// to which a non-finite scale applies.
    case nonFinite(index: Int)
    /// top-k: the payload's k exceeds the element count.
    case sparseCountTooLarge(k: UInt32, count: Int)
    /// top-k: the index varint that starts at this byte of the codec payload runs past its end.
    case truncatedVarint(offset: Int)
    /// top-k: the index varint at this byte is longer than 5 bytes, exceeds 2³² − 1, or is
    /// not in its shortest form.
    case malformedVarint(offset: Int)
    /// top-k: the index at `position` (0-based among the k) is ≥ n. A delta so large that a
    /// 32-bit index would wrap around, and so go backwards, is reported this way too.
    case sparseIndexOutOfRange(position: Int, index: UInt64, count: Int)
    /// The codec payload (after zstd) ends before the contents its fields announce.
    case truncatedPayload(expected: Int, actual: Int)
    /// The codec payload (after zstd) has this many bytes after its contents.
    case trailingBytes(Int)
    /// low-rank: the segment table claims more than 1024 segments.
    case lowRankSegmentCount(UInt32)
    /// low-rank: segment `index` has a zero dimension, or a rank whose factors would not be
    /// fewer values than the segment itself.
    case lowRankBadSegment(index: Int, rows: UInt32, cols: UInt32, rank: UInt32)
    /// low-rank: the segments cover this many elements (at the first segment that overruns,
    /// or in all), not the frame's element count.
    case lowRankCoverage(covered: UInt64, count: Int)
    /// low-rank: the factors of segment `index` could multiply past the fp32 range.
    case lowRankOverflow(segment: Int)

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
            return "tensor frame codec parameter \(parameter) is not valid for its codec (fp32, fp16, bf16: 0; "
                + "int8/int4 blocks: block size \(TensorCodec.blockSizes.lowerBound)...\(TensorCodec.blockSizes.upperBound); "
                + "top-k and low-rank: 0 = fp16 values, 1 = int8 values)"
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
        case .sparseCountTooLarge(let k, let count):
            return "top-k frame claims \(k) values for a tensor of \(count) elements"
        case .truncatedVarint(let offset):
            return "top-k frame index varint at payload byte \(offset) runs past the end of the payload"
        case .malformedVarint(let offset):
            return "top-k frame index varint at payload byte \(offset) is malformed (over 5 bytes, over 2^32-1, or overlong)"
        case .sparseIndexOutOfRange(let position, let index, let count):
            return "top-k frame index #\(position) is \(index), outside 0..<\(count) (indices must increase and stay below n)"
        case .truncatedPayload(let expected, let actual):
            return "tensor frame codec payload is \(actual) bytes, shorter than the \(expected) its contents need"
        case .trailingBytes(let count):
            return "tensor frame codec payload has \(count) trailing bytes after its contents"
        case .lowRankSegmentCount(let count):
            return "low-rank frame claims \(count) segments; at most \(LowRankPayload.maximumSegments) are allowed"
        case .lowRankBadSegment(let index, let rows, let cols, let rank):
            return "low-rank frame segment #\(index) is \(rows)×\(cols) at rank \(rank): dimensions must be >= 1 and rank 0 (dense) or rank·(rows+cols) < rows·cols"
        case .lowRankCoverage(let covered, let count):
            return "low-rank frame segments cover \(covered) elements, the frame holds \(count)"
        case .lowRankOverflow(let segment):
            return "low-rank frame segment #\(segment) has factors whose product would overflow fp32"
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
    /// The parameter is not one the codec accepts (see `TensorCodec.isValid(parameter:)`).
    case invalidCodecParameter(codec: TensorCodec, parameter: UInt32)
    /// top-k frames are written by `TensorFrame.encodeSparse` (or `UpdateCodecSpec`), which take indices.
    case sparseCodecNeedsIndices
    /// `encodeSparse` got different numbers of indices and values.
    case sparseLengthMismatch(indices: Int, values: Int)
    /// `encodeSparse`: the index at `position` is not below the element count.
    case sparseIndexOutOfRange(position: Int, index: UInt32, count: Int)
    /// `encodeSparse`: the index at `position` is not greater than the one before it.
    case sparseIndicesNotIncreasing(position: Int)
    /// top-k frames index at most 2³² elements.
    case tooManyElementsForSparse(Int)
    /// The error-feedback residual is not as long as the gradient.
    case residualLengthMismatch(values: Int, residual: Int)
    /// gradient + residual is not finite at this index (the residual was left unchanged).
    case residualOverflow(index: Int)
    /// low-rank: the tensor shapes given cover this many elements, not the values' count.
    case shapesMismatch(values: Int, shapes: Int)
    /// low-rank: the shard has more tensors than a frame's 1024 segments.
    case tooManySegments(Int)
    /// low-rank: the warm-start buffer is not `UpdateCodecSpec.warmStartCount` floats long.
    case warmStartLengthMismatch(expected: Int, actual: Int)
    /// low-rank frames are encoded from a shard's tensor shapes (`UpdateCodecSpec.encode(…, shapes:)`).
    case lowRankCodecNeedsShapes
    /// low-rank: a segment's rows and cols are 32-bit fields.
    case matrixDimensionTooLarge(rows: Int, cols: Int)

    public var description: String {
        switch self {
        case .invalidZstdLevel(let level):
            return "zstd level \(level) is outside \(Zstd.levels.lowerBound)...\(Zstd.levels.upperBound)"
        case .nonFinite(let index):
            return "cannot encode tensor frame: value at index \(index) is NaN or infinite"
        case .zstdFailure(let reason):
            return "zstd compression failed: \(reason)"
        case .invalidCodecParameter(let codec, let parameter):
            return "codec parameter \(parameter) is not valid for \(codec)"
        case .sparseCodecNeedsIndices:
            return "top-k frames are encoded from indices and values (TensorFrame.encodeSparse), not from a dense tensor"
        case .sparseLengthMismatch(let indices, let values):
            return "cannot encode top-k frame: \(indices) indices but \(values) values"
        case .sparseIndexOutOfRange(let position, let index, let count):
            return "cannot encode top-k frame: index #\(position) is \(index), outside 0..<\(count)"
        case .sparseIndicesNotIncreasing(let position):
            return "cannot encode top-k frame: index #\(position) does not exceed the one before it"
        case .tooManyElementsForSparse(let count):
            return "cannot encode top-k frame of \(count) elements: indices are 32-bit (at most 2^32 elements)"
        case .residualLengthMismatch(let values, let residual):
            return "error-feedback residual holds \(residual) values for a gradient of \(values)"
        case .residualOverflow(let index):
            return "gradient plus error-feedback residual overflows at index \(index); residual left unchanged"
        case .shapesMismatch(let values, let shapes):
            return "cannot encode low-rank frame: the tensor shapes cover \(shapes) elements, the values are \(values)"
        case .tooManySegments(let count):
            return "cannot encode low-rank frame of \(count) tensors: at most \(LowRankPayload.maximumSegments)"
        case .warmStartLengthMismatch(let expected, let actual):
            return "low-rank warm start holds \(actual) values, expected \(expected)"
        case .matrixDimensionTooLarge(let rows, let cols):
            return "cannot encode low-rank frame: a \(rows)×\(cols) tensor has a dimension past 2^32-1"
        case .lowRankCodecNeedsShapes:
            return "low-rank frames are encoded from the shard's tensor shapes; pass shapes to UpdateCodecSpec.encode"
        }
    }
}

func hex<T: BinaryInteger>(_ value: T, digits: Int) -> String {
    let text = String(value, radix: 16)
    return String(repeating: "0", count: max(0, digits - text.count)) + text
}
