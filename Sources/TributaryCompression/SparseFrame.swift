/// Top-k frames (codec 5): u32 k, k LEB128 index deltas, then the k values in the sub-codec the
/// parameter names. Protocol/frames.md gives the layout and the order of checks.
extension TensorFrame {
    /// Encodes the entries `values[j]` at `indices[j]` (strictly increasing, all < `count`) of a
    /// tensor of `count` elements that is zero elsewhere. Values must be finite; fp16 values
    /// saturate at ±65504, int8 values share one scale (max |value| / 127).
    public static func encodeSparse(indices: UnsafeBufferPointer<UInt32>, values: UnsafeBufferPointer<Float>, count: Int,
                                    valueCodec: TopKValueCodec = .fp16, zstdLevel: Int? = 3) throws(FrameEncodingError) -> [UInt8] {
        try writeSparse(indices: indices, values: values, count: count, valueCodec: valueCodec, zstdLevel: zstdLevel, sent: nil)
    }

    /// `encodeSparse` for arrays.
    public static func encodeSparse(indices: [UInt32], values: [Float], count: Int,
                                    valueCodec: TopKValueCodec = .fp16, zstdLevel: Int? = 3) throws(FrameEncodingError) -> [UInt8] {
        var result: Result<[UInt8], FrameEncodingError> = .success([])
        indices.withUnsafeBufferPointer { i in
            values.withUnsafeBufferPointer { v in
                do throws(FrameEncodingError) {
                    result = .success(try encodeSparse(indices: i, values: v, count: count, valueCodec: valueCodec, zstdLevel: zstdLevel))
                } catch {
                    result = .failure(error)
                }
            }
        }
        return try result.get()
    }

    /// Bytes of the LEB128 varint of `value`.
    @inline(__always)
    static func varintLength(_ value: UInt32) -> Int {
        value < 1 << 7 ? 1 : value < 1 << 14 ? 2 : value < 1 << 21 ? 3 : value < 1 << 28 ? 4 : 5
    }

    /// With `sent` (k floats), also stores the values as the receiver will decode them.
    static func writeSparse(indices: UnsafeBufferPointer<UInt32>, values: UnsafeBufferPointer<Float>, count: Int,
                            valueCodec: TopKValueCodec, zstdLevel: Int?,
                            sent: UnsafeMutablePointer<Float>?) throws(FrameEncodingError) -> [UInt8] {
        precondition(count >= 0 && count <= maximumElementCount, "count out of range")
        if let zstdLevel, !Zstd.levels.contains(zstdLevel) { throw .invalidZstdLevel(zstdLevel) }
        guard count <= Int(UInt32.max) + 1 else { throw .tooManyElementsForSparse(count) }
        let k = indices.count
        guard values.count == k else { throw .sparseLengthMismatch(indices: k, values: values.count) }
        var varintBytes = 0
        var previous = -1
        for position in 0..<k {
            let index = Int(indices[position])
            guard index < count else { throw .sparseIndexOutOfRange(position: position, index: indices[position], count: count) }
            guard index > previous else { throw .sparseIndicesNotIncreasing(position: position) }
            varintBytes &+= varintLength(UInt32(truncatingIfNeeded: index &- previous &- 1))
            previous = index
        }
        if let base = values.baseAddress, let bad = FrameKernels.firstNonFinite(base, count: k) {
            throw .nonFinite(index: Int(indices[bad]))
        }
        let rawSize = 4 &+ varintBytes &+ (valueCodec == .fp16 ? 2 &* k : 4 &+ k)
        let capacity = TensorFrameHeader.size + (zstdLevel == nil ? rawSize : try Zstd.compressionCapacity(rawSize))
        return try makeBytes(capacity: capacity) { (body) throws(FrameEncodingError) -> Int in
            let payload = UnsafeMutableRawBufferPointer(rebasing: body[TensorFrameHeader.size...])
            var header = TensorFrameHeader(codec: .topK, flags: [], elementCount: UInt64(count), payloadLength: UInt64(rawSize),
                                           checksum: 0, codecParameter: valueCodec.parameter)
            guard let zstdLevel else {
                header.checksum = fillSparse(indices: indices, values: values, valueCodec: valueCodec,
                                             into: UnsafeMutableRawBufferPointer(rebasing: payload[0..<rawSize]), sent: sent)
                header.write(to: body)
                return TensorFrameHeader.size + rawSize
            }
            let raw = UnsafeMutableRawBufferPointer.allocate(byteCount: rawSize, alignment: 16)
            defer { raw.deallocate() }
            header.checksum = fillSparse(indices: indices, values: values, valueCodec: valueCodec, into: raw, sent: sent)
            let written = try Zstd.compress(UnsafeRawBufferPointer(raw), level: zstdLevel, into: payload)
            header.flags = .zstd
            header.payloadLength = UInt64(written)
            header.write(to: body)
            return TensorFrameHeader.size + written
        }
    }

    /// Writes the payload of already-validated entries into `raw` (exactly its size); returns its CRC-32.
    private static func fillSparse(indices: UnsafeBufferPointer<UInt32>, values: UnsafeBufferPointer<Float>,
                                   valueCodec: TopKValueCodec, into raw: UnsafeMutableRawBufferPointer,
                                   sent: UnsafeMutablePointer<Float>?) -> UInt32 {
        guard let base = raw.baseAddress else { return 0 }
        let k = indices.count
        base.storeBytes(of: UInt32(k).littleEndian, as: UInt32.self)
        var offset = 4
        var previous: Int64 = -1
        for index in indices {
            var delta = UInt32(truncatingIfNeeded: Int64(index) &- previous &- 1)
            while delta >= 0x80 {
                base.storeBytes(of: UInt8(truncatingIfNeeded: delta) | 0x80, toByteOffset: offset, as: UInt8.self)
                delta &>>= 7
                offset &+= 1
            }
            base.storeBytes(of: UInt8(truncatingIfNeeded: delta), toByteOffset: offset, as: UInt8.self)
            offset &+= 1
            previous = Int64(index)
        }
        let section = base + offset
        switch valueCodec {
        case .fp16:
            if let source = values.baseAddress {
                _ = CodecKernels.encodeFP16(source, count: k, into: section)
                if let sent { _ = CodecKernels.decodeFP16(section, count: k, into: sent) }
            }
        case .int8:
            if let source = values.baseAddress {
                _ = CodecKernels.encodeInt8Block(source, count: k, into: section)
                if let sent { _ = CodecKernels.decodeInt8Block(section, count: k, into: sent) }
            } else {
                CodecKernels.storeFloatLE(0, section, 0)  // k = 0: the scale of no values is 0
            }
        }
        return FrameKernels.checksum(UnsafeRawBufferPointer(raw))
    }

    static func decodeSparse(_ payload: UnsafeRawBufferPointer, header: TensorFrameHeader,
                             into out: UnsafeMutableBufferPointer<Float>) throws(FrameError) {
        guard let valueCodec = TopKValueCodec(parameter: header.codecParameter) else {
            throw .badCodecParameter(header.codecParameter)  // already refused by the header parse
        }
        let limit = TensorCodec.topK.payloadSize(elementCount: out.count, parameter: header.codecParameter)
        try withCodecPayload(payload, header: header, limit: limit, exact: false, work: nil) { (raw) throws(FrameError) in
            let layout = try SparsePayload.validate(raw, header: header, count: out.count, valueCodec: valueCodec)
            guard let target = out.baseAddress else { return }
            target.update(repeating: 0, count: out.count)
            layout.forEach(raw) { index, value in target[index] = value }
        }
    }

    /// Validates fully (CRC, structure, values) reading only the payload, then adds the k entries.
    static func accumulateSparse(_ payload: UnsafeRawBufferPointer, header: TensorFrameHeader, scale: Float,
                                 into accumulator: UnsafeMutableBufferPointer<Float>,
                                 work: UnsafeMutableRawBufferPointer) throws(FrameError) {
        guard let valueCodec = TopKValueCodec(parameter: header.codecParameter) else {
            throw .badCodecParameter(header.codecParameter)
        }
        let limit = TensorCodec.topK.payloadSize(elementCount: accumulator.count, parameter: header.codecParameter)
        try withCodecPayload(payload, header: header, limit: limit, exact: false, work: work) { (raw) throws(FrameError) in
            let layout = try SparsePayload.validate(raw, header: header, count: accumulator.count, valueCodec: valueCodec)
            guard let target = accumulator.baseAddress else { return }
            layout.forEach(raw) { index, value in target[index] = target[index] + scale * value }
        }
    }
}

/// A top-k codec payload that passed every check: where its values start.
struct SparsePayload {
    let k: Int
    let valuesOffset: Int
    let valueCodec: TopKValueCodec

    /// Values are converted in batches of this many, with the SIMD kernels.
    static let batch = 1024

    /// Checks 12 and 13 of Protocol/frames.md for top-k, in order: CRC; k ≤ n; each varint
    /// (complete, canonical, < 2³²) and its index (< n); the value section's length; the int8
    /// scale; each value finite. Reads `raw` only.
    static func validate(_ raw: UnsafeRawBufferPointer, header: TensorFrameHeader, count n: Int,
                         valueCodec: TopKValueCodec) throws(FrameError) -> SparsePayload {
        let crc = FrameKernels.checksum(raw)
        guard crc == header.checksum else { throw .checksumMismatch(expected: header.checksum, actual: crc) }
        guard raw.count >= 4 else { throw .truncatedPayload(expected: 4, actual: raw.count) }
        let claimed = UInt32(littleEndian: raw.loadUnaligned(as: UInt32.self))
        guard UInt64(claimed) <= UInt64(n) else { throw .sparseCountTooLarge(k: claimed, count: n) }
        let k = Int(claimed)
        let end = raw.count
        var offset = 4
        var previous = -1
        for position in 0..<k {
            let start = offset
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while true {
                guard offset < end else { throw .truncatedVarint(offset: start) }
                let byte = raw[offset]
                offset &+= 1
                // The fifth byte may carry only the top 4 bits of a 32-bit value, and no continuation.
                if shift == 28 && byte > 0x0F { throw .malformedVarint(offset: start) }
                value |= UInt64(byte & 0x7F) &<< shift
                if byte & 0x80 == 0 {
                    // A final zero byte after others adds nothing: overlong, so not canonical.
                    if byte == 0 && offset &- start > 1 { throw .malformedVarint(offset: start) }
                    break
                }
                shift &+= 7
            }
            // previous < n ≤ Int.max / 16 and value < 2³², so this cannot overflow; a delta that
            // would wrap a 32-bit index lands past n instead.
            let index = previous &+ 1 &+ Int(value)
            guard index < n else { throw .sparseIndexOutOfRange(position: position, index: UInt64(index), count: n) }
            previous = index
        }
        let needed = offset &+ (valueCodec == .fp16 ? 2 &* k : 4 &+ k)
        if end < needed { throw .truncatedPayload(expected: needed, actual: end) }
        if end > needed { throw .trailingBytes(end &- needed) }
        let layout = SparsePayload(k: k, valuesOffset: offset, valueCodec: valueCodec)
        if let base = raw.baseAddress, let bad = layout.firstNonFinite(base) {
            throw .nonFinite(index: k == 0 ? 0 : layout.index(at: bad, base))
        }
        return layout
    }

    /// Position (0..<k) of the first value that decodes non-finite; a non-finite int8 scale counts
    /// as position 0.
    private func firstNonFinite(_ base: UnsafeRawPointer) -> Int? {
        if valueCodec == .int8 && !CodecKernels.loadFloatLE(base, valuesOffset).isFinite { return 0 }
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: Self.batch)
        defer { buffer.deallocate() }
        var done = 0
        while done < k {
            let length = min(Self.batch, k &- done)
            if let bad = decodeValues(base, from: done, count: length, into: buffer) { return done &+ bad }
            done &+= length
        }
        return nil
    }

    @inline(__always)
    private func decodeValues(_ base: UnsafeRawPointer, from position: Int, count: Int,
                              into buffer: UnsafeMutablePointer<Float>) -> Int? {
        switch valueCodec {
        case .fp16:
            return CodecKernels.decodeFP16(base + (valuesOffset &+ 2 &* position), count: count, into: buffer)
        case .int8:
            return CodecKernels.dequantizeInt8(base + (valuesOffset &+ 4 &+ position), count: count,
                                               scale: CodecKernels.loadFloatLE(base, valuesOffset), into: buffer)
        }
    }

    /// The index of entry `position`, walking the (validated) varints.
    private func index(at position: Int, _ base: UnsafeRawPointer) -> Int {
        var result = 0
        var j = 0
        forEachIndex(base) { index in
            if j == position { result = index }
            j &+= 1
        }
        return result
    }

    /// One index gap (LEB128) at `offset`, advancing it. The payload must have passed `validate`.
    @inline(__always)
    static func readGap(_ base: UnsafeRawPointer, _ offset: inout Int) -> Int {
        var value = 0
        var shift = 0
        while true {
            let byte = base.load(fromByteOffset: offset, as: UInt8.self)
            offset &+= 1
            value |= Int(byte & 0x7F) &<< shift
            if byte & 0x80 == 0 { return value }
            shift &+= 7
        }
    }

    @inline(__always)
    private func forEachIndex(_ base: UnsafeRawPointer, _ body: (Int) -> Void) {
        var offset = 4
        var previous = -1
        for _ in 0..<k {
            previous = previous &+ 1 &+ Self.readGap(base, &offset)
            body(previous)
        }
    }

    /// Calls `body(index, value)` for the k entries in index order. The payload must have passed `validate`.
    @inline(__always)
    func forEach(_ raw: UnsafeRawBufferPointer, _ body: (Int, Float) -> Void) {
        guard let base = raw.baseAddress, k > 0 else { return }
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: Self.batch)
        defer { buffer.deallocate() }
        var offset = 4
        var previous = -1
        var done = 0
        while done < k {
            let length = min(Self.batch, k &- done)
            _ = decodeValues(base, from: done, count: length, into: buffer)
            for j in 0..<length {
                previous = previous &+ 1 &+ Self.readGap(base, &offset)
                body(previous, buffer[j])
            }
            done &+= length
        }
    }
}
