/// fp16, bf16, int8-block and int4-block frames: the payload is a fixed function of n, written
/// and read chunk by chunk (`DenseLayout`) so that conversion and CRC share cache.
extension TensorFrame {
    static func writeDense(_ values: UnsafeBufferPointer<Float>, layout: DenseLayout, parameter: UInt32, zstdLevel: Int?,
                           into body: UnsafeMutableRawBufferPointer,
                           residual: UnsafeMutablePointer<Float>?) throws(FrameEncodingError) -> Int {
        let count = values.count
        let rawSize = layout.rawSize(elementCount: count)
        let payload = UnsafeMutableRawBufferPointer(rebasing: body[TensorFrameHeader.size...])
        var header = TensorFrameHeader(codec: layout.codec, flags: [], elementCount: UInt64(count),
                                       payloadLength: UInt64(rawSize), checksum: 0, codecParameter: parameter)
        if let zstdLevel {
            // The codec payload goes to a temporary first: libzstd's one-shot compressor over the
            // whole payload is what makes the bytes reproducible (Protocol/frames.md).
            let raw = UnsafeMutableRawBufferPointer.allocate(byteCount: max(rawSize, 1), alignment: 16)
            defer { raw.deallocate() }
            let region = UnsafeMutableRawBufferPointer(rebasing: raw[0..<rawSize])
            header.checksum = try fillDense(values, layout: layout, into: region)
            let written = try Zstd.compress(UnsafeRawBufferPointer(region), level: zstdLevel, into: payload)
            header.flags = .zstd
            header.payloadLength = UInt64(written)
            header.write(to: body)
            // Only now, with the body complete, may the residual drop what it sends.
            if let residual { subtractDecoded(UnsafeRawBufferPointer(region), layout: layout, count: count, from: residual) }
            return TensorFrameHeader.size + written
        }
        let region = UnsafeMutableRawBufferPointer(rebasing: payload[0..<rawSize])
        header.checksum = try fillDense(values, layout: layout, into: region)
        header.write(to: body)
        if let residual { subtractDecoded(UnsafeRawBufferPointer(region), layout: layout, count: count, from: residual) }
        return TensorFrameHeader.size + rawSize
    }

    /// Converts every chunk into `raw` (exactly the payload size) and returns the payload's CRC-32.
    static func fillDense(_ values: UnsafeBufferPointer<Float>, layout: DenseLayout,
                          into raw: UnsafeMutableRawBufferPointer) throws(FrameEncodingError) -> UInt32 {
        guard let source = values.baseAddress, let target = raw.baseAddress else { return 0 }
        var crc: UInt32 = 0
        try layout.forEachChunk(count: values.count) { (start, length, offset, bytes) throws(FrameEncodingError) in
            if let bad = layout.encode(source + start, count: length, into: target + offset) {
                throw .nonFinite(index: start &+ bad)
            }
            crc = FrameKernels.checksum(crc, target + offset, count: bytes)
        }
        return crc
    }

    /// residual[i] −= decoded[i] for a payload this process wrote (so known valid), one
    /// cache-sized chunk at a time: exactly what a receiver's decode would produce.
    static func subtractDecoded(_ raw: UnsafeRawBufferPointer, layout: DenseLayout, count: Int,
                                from residual: UnsafeMutablePointer<Float>) {
        guard let source = raw.baseAddress, count > 0 else { return }
        let chunk = UnsafeMutablePointer<Float>.allocate(capacity: layout.chunkElements)
        defer { chunk.deallocate() }
        layout.forEachChunk(count: count) { start, length, offset, _ in
            _ = layout.decode(source + offset, count: length, into: chunk)
            FrameKernels.accumulate(chunk, scale: -1, into: residual + start, count: length)
        }
    }

    static func decodeDense(_ payload: UnsafeRawBufferPointer, header: TensorFrameHeader, layout: DenseLayout,
                            into out: UnsafeMutableBufferPointer<Float>) throws(FrameError) {
        let rawSize = layout.rawSize(elementCount: out.count)
        try withCodecPayload(payload, header: header, limit: rawSize, exact: true, work: nil) { (raw) throws(FrameError) in
            var crc: UInt32 = 0
            var firstBad: Int?
            if let source = raw.baseAddress, let target = out.baseAddress {
                layout.forEachChunk(count: out.count) { start, length, offset, bytes in
                    crc = FrameKernels.checksum(crc, source + offset, count: bytes)
                    if let bad = layout.decode(source + offset, count: length, into: target + start), firstBad == nil {
                        firstBad = start &+ bad
                    }
                }
            }
            try finish(header: header, result: (crc, firstBad))
        }
    }

    /// Two passes over the payload (in the body, or decompressed into `work`): the first checks
    /// CRC and values, decoding into a chunk buffer; only then the second adds, chunk by chunk.
    static func accumulateDense(_ payload: UnsafeRawBufferPointer, header: TensorFrameHeader, layout: DenseLayout,
                                scale: Float, into accumulator: UnsafeMutableBufferPointer<Float>,
                                work: UnsafeMutableRawBufferPointer) throws(FrameError) {
        let count = accumulator.count
        let rawSize = layout.rawSize(elementCount: count)
        try withCodecPayload(payload, header: header, limit: rawSize, exact: true, work: work) { (raw) throws(FrameError) in
            guard let source = raw.baseAddress, let target = accumulator.baseAddress else {
                return try finish(header: header, result: (0, nil))
            }
            let chunk = UnsafeMutablePointer<Float>.allocate(capacity: layout.chunkElements)
            defer { chunk.deallocate() }
            var crc: UInt32 = 0
            var firstBad: Int?
            layout.forEachChunk(count: count) { start, length, offset, bytes in
                crc = FrameKernels.checksum(crc, source + offset, count: bytes)
                if let bad = layout.decode(source + offset, count: length, into: chunk), firstBad == nil {
                    firstBad = start &+ bad
                }
            }
            try finish(header: header, result: (crc, firstBad))
            layout.forEachChunk(count: count) { start, length, offset, _ in
                _ = layout.decode(source + offset, count: length, into: chunk)
                FrameKernels.accumulate(chunk, scale: scale, into: target + start, count: length)
            }
        }
    }

    /// Runs `body` on the codec payload: the body's own bytes when uncompressed, else the zstd
    /// frame decompressed within `limit` bytes (exactly `limit` when `exact`), into `work` when it
    /// is large enough and a temporary otherwise. Large temporaries are only touched as far as
    /// zstd writes, so a top-k limit far above the real size costs address space, not memory.
    static func withCodecPayload(_ payload: UnsafeRawBufferPointer, header: TensorFrameHeader, limit: Int, exact: Bool,
                                 work: UnsafeMutableRawBufferPointer?,
                                 _ body: (UnsafeRawBufferPointer) throws(FrameError) -> Void) throws(FrameError) {
        guard header.flags.contains(.zstd) else { return try body(payload) }
        if let work, work.count >= limit {
            let region = UnsafeMutableRawBufferPointer(rebasing: work[0..<limit])
            let produced = try Zstd.decompress(payload, into: region, exact: exact)
            return try body(UnsafeRawBufferPointer(rebasing: region[0..<produced]))
        }
        let temporary = UnsafeMutableRawBufferPointer.allocate(byteCount: max(limit, 1), alignment: 16)
        defer { temporary.deallocate() }
        let region = UnsafeMutableRawBufferPointer(rebasing: temporary[0..<limit])
        let produced = try Zstd.decompress(payload, into: region, exact: exact)
        try body(UnsafeRawBufferPointer(rebasing: region[0..<produced]))
    }
}
