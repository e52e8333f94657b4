/// The fixed 32-byte, little-endian header of a tensor frame (Protocol/frames.md).
public struct TensorFrameHeader: Sendable, Equatable {
    public static let size = 32
    /// `TRBF` as bytes 0...3.
    public static let magic: [UInt8] = [0x54, 0x52, 0x42, 0x46]
    public static let version: UInt8 = 1

    public struct Flags: OptionSet, Sendable, Hashable {
        public let rawValue: UInt16
        public init(rawValue: UInt16) { self.rawValue = rawValue }
        /// Bit 0: the payload is one zstd frame.
        public static let zstd = Flags(rawValue: 1)
        /// Every other bit is reserved and must be 0.
        public static let defined: Flags = [.zstd]
    }

    public var codec: TensorCodec
    public var flags: Flags
    /// fp32 values the frame decodes to.
    public var elementCount: UInt64
    /// Bytes after the header.
    public var payloadLength: UInt64
    /// CRC-32 of the codec payload before zstd.
    public var checksum: UInt32
    public var codecParameter: UInt32

    public init(codec: TensorCodec, flags: Flags, elementCount: UInt64, payloadLength: UInt64,
                checksum: UInt32, codecParameter: UInt32) {
        self.codec = codec
        self.flags = flags
        self.elementCount = elementCount
        self.payloadLength = payloadLength
        self.checksum = checksum
        self.codecParameter = codecParameter
    }

    /// Reads and checks the fields that need no context, in this order: length, magic,
    /// version, codec, flags, codec parameter. Element count and payload length are checked
    /// against the caller's expectations by `TensorFrame.decode`.
    public static func parse(_ bytes: UnsafeRawBufferPointer) throws(FrameError) -> TensorFrameHeader {
        guard bytes.count >= size else { throw .truncated(bytes.count) }
        guard bytes[0] == magic[0], bytes[1] == magic[1], bytes[2] == magic[2], bytes[3] == magic[3] else {
            throw .badMagic
        }
        guard bytes[4] == version else { throw .unsupportedVersion(bytes[4]) }
        guard let codec = TensorCodec(rawValue: bytes[5]) else { throw .unknownCodec(bytes[5]) }
        let flags = Flags(rawValue: UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 6, as: UInt16.self)))
        guard Flags.defined.isSuperset(of: flags) else { throw .badFlags(flags.rawValue) }
        let parameter = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 28, as: UInt32.self))
        guard codec.isValid(parameter: parameter) else { throw .badCodecParameter(parameter) }
        return TensorFrameHeader(
            codec: codec, flags: flags,
            elementCount: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self)),
            payloadLength: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 16, as: UInt64.self)),
            checksum: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 24, as: UInt32.self)),
            codecParameter: parameter)
    }

    /// Writes the 32 header bytes at the start of `bytes`.
    public func write(to bytes: UnsafeMutableRawBufferPointer) {
        precondition(bytes.count >= Self.size, "tensor frame header needs 32 bytes")
        for (offset, byte) in Self.magic.enumerated() { bytes[offset] = byte }
        bytes[4] = Self.version
        bytes[5] = codec.rawValue
        bytes.storeBytes(of: flags.rawValue.littleEndian, toByteOffset: 6, as: UInt16.self)
        bytes.storeBytes(of: elementCount.littleEndian, toByteOffset: 8, as: UInt64.self)
        bytes.storeBytes(of: payloadLength.littleEndian, toByteOffset: 16, as: UInt64.self)
        bytes.storeBytes(of: checksum.littleEndian, toByteOffset: 24, as: UInt32.self)
        bytes.storeBytes(of: codecParameter.littleEndian, toByteOffset: 28, as: UInt32.self)
    }
}

/// One binary body format for parameter shards (coordinator → worker) and gradient updates
/// (worker → coordinator): a `TensorFrameHeader` and a codec payload, optionally zstd-compressed.
public enum TensorFrame {
    /// Largest element count the size arithmetic accepts (every size stays far below Int.max).
    public static let maximumElementCount = Int.max / 16

    /// Encodes `values` (all finite) with a dense codec (every codec but top-k; see
    /// `encodeSparse`). `codecParameter` nil writes the codec's `defaultParameter` (block size
    /// 256 for int8, 64 for int4); `zstdLevel` nil leaves the payload uncompressed (flag bit 0 clear).
    public static func encode(_ values: UnsafeBufferPointer<Float>, codec: TensorCodec = .fp32,
                              codecParameter: UInt32? = nil, zstdLevel: Int? = 3) throws(FrameEncodingError) -> [UInt8] {
        let parameter = try checkedParameter(codec, codecParameter)
        let capacity = try bodyCapacity(elementCount: values.count, codec: codec, parameter: parameter, zstdLevel: zstdLevel)
        return try makeBytes(capacity: capacity) { (body) throws(FrameEncodingError) -> Int in
            try write(values, codec: codec, parameter: parameter, zstdLevel: zstdLevel, into: body)
        }
    }

    /// `encode`, into `body`'s existing storage. A sender that keeps one buffer saves faulting in
    /// fresh pages for every frame, which is about half the cost of an uncompressed encode.
    /// On error `body` is left empty.
    public static func encode(_ values: UnsafeBufferPointer<Float>, codec: TensorCodec = .fp32,
                              codecParameter: UInt32? = nil, zstdLevel: Int? = 3,
                              into body: inout [UInt8]) throws(FrameEncodingError) {
        body.removeAll(keepingCapacity: true)
        let parameter = try checkedParameter(codec, codecParameter)
        let capacity = try bodyCapacity(elementCount: values.count, codec: codec, parameter: parameter, zstdLevel: zstdLevel)
        body.append(contentsOf: repeatElement(0, count: capacity))
        var result: Result<Int, FrameEncodingError> = .success(0)
        body.withUnsafeMutableBytes { raw in
            do throws(FrameEncodingError) {
                result = .success(try write(values, codec: codec, parameter: parameter, zstdLevel: zstdLevel, into: raw))
            } catch {
                result = .failure(error)
            }
        }
        switch result {
        case .success(let written):
            body.removeLast(capacity - written)
        case .failure(let error):
            body.removeAll(keepingCapacity: true)
            throw error
        }
    }

    /// Decodes a frame of exactly `expectedCount` values, any codec, into `out`
    /// (`out.count == expectedCount`); a top-k frame leaves zeros where it has no value.
    /// Everything bounded by the header is checked before any memory sized by it is touched:
    /// magic, version, codec, flags, codec parameter, element count, payload length against the
    /// body and against the codec's limit. Then the payload is decompressed within its limit, its
    /// CRC verified, and its structure and values checked (Protocol/frames.md, "Decoding").
    /// On error `out` may be partially written; use `accumulate` where that matters.
    /// `reproducible` multiplies low-rank factors out by `LowRankPayload.reproducibleProduct`
    /// (slower, the same bits on every machine) instead of BLAS; the other codecs decode
    /// identically everywhere either way.
    public static func decode(_ body: UnsafeRawBufferPointer, expectedCount: Int,
                              into out: UnsafeMutableBufferPointer<Float>, reproducible: Bool = false) throws(FrameError) {
        precondition(expectedCount >= 0 && expectedCount <= maximumElementCount, "expectedCount out of range")
        precondition(out.count == expectedCount, "output buffer must hold exactly expectedCount floats")
        let header = try validatedHeader(body, expectedCount: expectedCount)
        let payload = UnsafeRawBufferPointer(rebasing: body[TensorFrameHeader.size...])
        switch header.codec {
        case .fp32:
            try decodeFP32(payload, header: header, into: out)
        case .topK:
            try decodeSparse(payload, header: header, into: out)
        case .lowRank:
            try decodeLowRank(payload, header: header, into: out, reproducible: reproducible)
        case .fp16, .bf16, .int8Block, .int4Block:
            // The header parse has checked the parameter, so the layout exists.
            guard let layout = DenseLayout(codec: header.codec, parameter: header.codecParameter) else {
                throw .badCodecParameter(header.codecParameter)
            }
            try decodeDense(payload, header: header, layout: layout, into: out)
        }
    }

    /// Validates the whole frame, then adds `scale` · value into `accumulator`; on error the
    /// accumulator is untouched. `scratch` (at least `expectedCount` floats) is working memory:
    /// fp32 frames decode into it; other codecs keep their decompressed payload there and add
    /// chunk by chunk (top-k adds only its k entries). Sums are not checked: a huge `scale` can
    /// still overflow to ±Inf.
    public static func accumulate(_ body: UnsafeRawBufferPointer, expectedCount: Int, scale: Float,
                                  into accumulator: UnsafeMutableBufferPointer<Float>,
                                  scratch: UnsafeMutableBufferPointer<Float>) throws(FrameError) {
        precondition(expectedCount >= 0 && expectedCount <= maximumElementCount, "expectedCount out of range")
        precondition(accumulator.count == expectedCount, "accumulator must hold exactly expectedCount floats")
        precondition(scratch.count >= expectedCount, "scratch must hold at least expectedCount floats")
        let header = try validatedHeader(body, expectedCount: expectedCount)
        let payload = UnsafeRawBufferPointer(rebasing: body[TensorFrameHeader.size...])
        let work = UnsafeMutableRawBufferPointer(UnsafeMutableBufferPointer(rebasing: scratch[0..<expectedCount]))
        switch header.codec {
        case .fp32:
            let decoded = UnsafeMutableBufferPointer(rebasing: scratch[0..<expectedCount])
            try decodeFP32(payload, header: header, into: decoded)
            guard let source = decoded.baseAddress, let target = accumulator.baseAddress else { return }
            FrameKernels.accumulate(source, scale: scale, into: target, count: expectedCount)
        case .topK:
            try accumulateSparse(payload, header: header, scale: scale, into: accumulator, work: work)
        case .lowRank:
            try accumulateLowRank(payload, header: header, scale: scale, into: accumulator,
                                  scratch: UnsafeMutableBufferPointer(rebasing: scratch[0..<expectedCount]))
        case .fp16, .bf16, .int8Block, .int4Block:
            guard let layout = DenseLayout(codec: header.codec, parameter: header.codecParameter) else {
                throw .badCodecParameter(header.codecParameter)
            }
            try accumulateDense(payload, header: header, layout: layout, scale: scale, into: accumulator, work: work)
        }
    }

    /// The largest valid body for `elementCount` values of `codec` with `codecParameter` (the
    /// HTTP layer answers 413 above it): the header plus the compressed-payload limit, which
    /// exceeds the raw size. A nil parameter gives the largest over the codec's valid parameters.
    public static func maximumBodySize(elementCount: Int, codec: TensorCodec, codecParameter: UInt32? = nil) -> Int {
        let (size, overflow) = maximumPayloadSize(elementCount: elementCount, codec: codec, codecParameter: codecParameter,
                                                  compressed: true)
            .addingReportingOverflow(TensorFrameHeader.size)
        return overflow ? Int.max : size
    }

    /// The largest valid body for `elementCount` values in any codec, for a receiver that
    /// accepts whatever codec the sender chose.
    public static func maximumBodySize(elementCount: Int) -> Int {
        TensorCodec.allCases.map { maximumBodySize(elementCount: elementCount, codec: $0) }.max() ?? Int.max
    }

    /// Payload limit: the raw size (for top-k its upper bound) when uncompressed,
    /// `Zstd.maximumCompressedSize` of it when zstd. A nil parameter means the codec's worst case.
    public static func maximumPayloadSize(elementCount: Int, codec: TensorCodec, codecParameter: UInt32? = nil,
                                          compressed: Bool) -> Int {
        let raw = codecParameter.map { codec.payloadSize(elementCount: elementCount, parameter: $0) }
            ?? codec.payloadSize(elementCount: elementCount)
        return compressed ? Zstd.maximumCompressedSize(raw) : raw
    }

    // MARK: Validation

    /// Header checks plus the length checks that need the body and the expected count, in the
    /// order Protocol/frames.md lists.
    static func validatedHeader(_ body: UnsafeRawBufferPointer, expectedCount: Int) throws(FrameError) -> TensorFrameHeader {
        let header = try TensorFrameHeader.parse(body)
        guard header.elementCount == UInt64(expectedCount) else {
            throw .elementCountMismatch(claimed: header.elementCount, expected: expectedCount)
        }
        let actual = body.count - TensorFrameHeader.size
        guard header.payloadLength == UInt64(actual) else {
            throw .payloadLengthMismatch(claimed: header.payloadLength, actual: actual)
        }
        let compressed = header.flags.contains(.zstd)
        let limit = maximumPayloadSize(elementCount: expectedCount, codec: header.codec,
                                       codecParameter: header.codecParameter, compressed: compressed)
        guard actual <= limit else { throw .payloadTooLarge(claimed: header.payloadLength, limit: limit) }
        // An uncompressed dense payload has exactly the codec's size (top-k's varies with k).
        if !compressed && header.codec.isDense && actual < limit { throw .truncated(body.count) }
        return header
    }

    // MARK: Encoding

    static func checkedParameter(_ codec: TensorCodec, _ parameter: UInt32?) throws(FrameEncodingError) -> UInt32 {
        let value = parameter ?? codec.defaultParameter
        guard codec.isValid(parameter: value) else { throw .invalidCodecParameter(codec: codec, parameter: value) }
        return value
    }

    /// Bytes `write` may need: the exact body when uncompressed, zstd's worst case otherwise.
    static func bodyCapacity(elementCount: Int, codec: TensorCodec, parameter: UInt32,
                             zstdLevel: Int?) throws(FrameEncodingError) -> Int {
        precondition(elementCount <= maximumElementCount, "too many elements for one frame")
        if let zstdLevel, !Zstd.levels.contains(zstdLevel) { throw .invalidZstdLevel(zstdLevel) }
        guard codec.isDense else { throw .sparseCodecNeedsIndices }
        let raw = codec.payloadSize(elementCount: elementCount, parameter: parameter)
        return TensorFrameHeader.size + (zstdLevel == nil ? raw : try Zstd.compressionCapacity(raw))
    }

    /// Writes the whole body into `body` (at least `bodyCapacity` bytes); returns its length.
    /// With `residual` (dense codecs but fp32), once the body is complete, subtracts what the
    /// receiver will decode from `residual[0..<n]` (error feedback).
    static func write(_ values: UnsafeBufferPointer<Float>, codec: TensorCodec, parameter: UInt32, zstdLevel: Int?,
                      into body: UnsafeMutableRawBufferPointer,
                      residual: UnsafeMutablePointer<Float>? = nil) throws(FrameEncodingError) -> Int {
        if codec == .fp32 { return try writeFP32(values, zstdLevel: zstdLevel, into: body) }
        guard let layout = DenseLayout(codec: codec, parameter: parameter) else { throw .sparseCodecNeedsIndices }
        return try writeDense(values, layout: layout, parameter: parameter, zstdLevel: zstdLevel, into: body, residual: residual)
    }

    // MARK: fp32

    private static func writeFP32(_ values: UnsafeBufferPointer<Float>, zstdLevel: Int?,
                                  into body: UnsafeMutableRawBufferPointer) throws(FrameEncodingError) -> Int {
        let count = values.count
        let rawSize = count &* 4
        let payload = UnsafeMutableRawBufferPointer(rebasing: body[TensorFrameHeader.size...])
        var header = TensorFrameHeader(codec: .fp32, flags: [], elementCount: UInt64(count),
                                       payloadLength: UInt64(rawSize), checksum: 0,
                                       codecParameter: TensorCodec.fp32.defaultParameter)
        if let zstdLevel {
            // Scan and checksum first (cheap next to zstd), then compress the values where they
            // lie on little-endian hosts; big-endian ones compress a little-endian copy.
            #if _endian(little)
            let scan = values.baseAddress.map { FrameKernels.copyChecksumScan(from: $0, to: nil, count: count) }
                ?? (checksum: 0, firstNonFinite: nil)
            if let bad = scan.firstNonFinite { throw .nonFinite(index: bad) }
            header.checksum = scan.checksum
            let written = try Zstd.compress(UnsafeRawBufferPointer(values), level: zstdLevel, into: payload)
            #else
            if let source = values.baseAddress, let bad = FrameKernels.firstNonFinite(source, count: count) {
                throw .nonFinite(index: bad)
            }
            let littleEndian = values.map { $0.bitPattern.littleEndian }
            header.checksum = littleEndian.withUnsafeBytes { FrameKernels.checksum($0) }
            var result: Result<Int, FrameEncodingError> = .success(0)
            littleEndian.withUnsafeBytes { raw in
                do throws(FrameEncodingError) {
                    result = .success(try Zstd.compress(raw, level: zstdLevel, into: payload))
                } catch {
                    result = .failure(error)
                }
            }
            let written = try result.get()
            #endif
            header.flags = .zstd
            header.payloadLength = UInt64(written)
            header.write(to: body)
            return TensorFrameHeader.size + written
        }

        // Uncompressed: copy, checksum and scan in one pass straight into the body.
        if let source = values.baseAddress, let target = payload.baseAddress {
            #if _endian(little)
            let result = FrameKernels.copyChecksumScan(from: source, to: target, count: count)
            #else
            target.copyMemory(from: source, byteCount: rawSize)
            FrameKernels.byteSwap32(target, count: count)
            let result = (checksum: FrameKernels.checksum(0, target, count: rawSize),
                          firstNonFinite: FrameKernels.firstNonFinite(source, count: count))
            #endif
            if let bad = result.firstNonFinite { throw .nonFinite(index: bad) }
            header.checksum = result.checksum
        }
        header.write(to: body)
        return TensorFrameHeader.size + rawSize
    }

    private static func decodeFP32(_ payload: UnsafeRawBufferPointer, header: TensorFrameHeader,
                                   into out: UnsafeMutableBufferPointer<Float>) throws(FrameError) {
        let count = out.count
        let outBytes = UnsafeMutableRawBufferPointer(out)
        let result: (checksum: UInt32, firstNonFinite: Int?)
        if header.flags.contains(.zstd) {
            // Decompress straight into the caller's floats: 4·n bytes is the hard bound.
            _ = try Zstd.decompress(payload, into: outBytes, exact: true)
            if let base = outBytes.baseAddress {
                #if _endian(little)
                result = FrameKernels.copyChecksumScan(from: base, to: nil, count: count)
                #else
                let crc = FrameKernels.checksum(0, base, count: count &* 4)
                FrameKernels.byteSwap32(base, count: count)
                result = (crc, FrameKernels.firstNonFinite(base, count: count))
                #endif
            } else {
                result = (0, nil)  // n = 0: the CRC of no bytes is 0
            }
        } else if let source = payload.baseAddress, let base = outBytes.baseAddress {
            #if _endian(little)
            result = FrameKernels.copyChecksumScan(from: source, to: base, count: count)
            #else
            base.copyMemory(from: source, byteCount: count &* 4)
            let crc = FrameKernels.checksum(0, base, count: count &* 4)
            FrameKernels.byteSwap32(base, count: count)
            result = (crc, FrameKernels.firstNonFinite(base, count: count))
            #endif
        } else {
            result = (0, nil)  // n = 0: empty payload
        }
        try finish(header: header, result: result)
    }

    /// The checksum is judged before the values: a corrupted payload reports as corrupted, not as NaN.
    static func finish(header: TensorFrameHeader, result: (checksum: UInt32, firstNonFinite: Int?)) throws(FrameError) {
        guard result.checksum == header.checksum else {
            throw .checksumMismatch(expected: header.checksum, actual: result.checksum)
        }
        if let bad = result.firstNonFinite { throw .nonFinite(index: bad) }
    }
}
