import TributaryTensor

/// PowerSGD-style encoding (Vogels et al., 2019) of one shard: each matrix M (gradient plus
/// residual) is sent as rank-r factors from one step of power iteration, warm-started from
/// the previous step's Q:  P = M·Q, orthonormalised;  Q = Mᵀ·P̂ (with P̂ the P the receiver
/// will decode, so Q absorbs its rounding);  the receiver rebuilds P̂·Q̂ᵀ. With error feedback
/// the residual keeps M − P̂·Q̂ᵀ, so what one step leaves out is sent later. Vectors, and
/// matrices too small for their factors to be fewer values, go dense in the same value codec.
enum LowRankEncoder {
    /// Warm-start values for `shapes` at `rank`: Σ r·cols over the tensors sent as factors.
    static func warmStartCount(shapes: [MatrixShape], rank: Int) -> Int {
        shapes.reduce(0) { $0 + $1.effectiveRank(rank) * $1.cols }
    }

    /// Bytes of the low-rank payload for `shapes` at `rank` (before zstd).
    static func payloadBytes(shapes: [MatrixShape], rank: Int, codec: FactorValueCodec) -> Int {
        shapes.reduce(LowRankPayload.tableBytes(shapes.count)) {
            $0 + LowRankSegment(rows: $1.rows, cols: $1.cols, rank: $1.effectiveRank(rank)).payloadBytes(codec)
        }
    }

    /// Whether a low-rank frame for `shapes` fits the format's 4·n bytes; shards of only tiny
    /// tensors (or none) do not, and go as fp32.
    static func fits(shapes: [MatrixShape], rank: Int, codec: FactorValueCodec) -> Bool {
        let n = shapes.reduce(0) { $0 + $1.count }
        return payloadBytes(shapes: shapes, rank: rank, codec: codec) <= LowRankPayload.limit(elementCount: n)
    }

    /// Bytes the encoder holds besides its input and the body: the payload before zstd, the
    /// decoded values of every segment (together at most about 7 bytes per element), the new
    /// warm start and one segment's P and Q.
    static func workingBytes(shapes: [MatrixShape], rank: Int, codec: FactorValueCodec) -> Int {
        let segments = shapes.map { LowRankSegment(rows: $0.rows, cols: $0.cols, rank: $0.effectiveRank(rank)) }
        let raw = segments.reduce(LowRankPayload.tableBytes(segments.count)) { $0 + $1.payloadBytes(codec) }
        let values = segments.reduce(0) { $0 + $1.valueCount }
        let factors = segments.map { $0.rank * ($0.rows + $0.cols) }.max() ?? 0
        return raw + 4 * (values + factors + warmStartCount(shapes: shapes, rank: rank))
    }

    /// Encodes `values` (finite; the gradient, or gradient + residual) laid out as `shapes`.
    /// With `residual` (the same memory as `values`), subtracts what the receiver will decode
    /// once the body is complete; with `warmStart` (`warmStartCount` floats, zeros at first),
    /// starts each power iteration from it and leaves the new Q there. On error neither is changed.
    static func encode(_ values: UnsafeBufferPointer<Float>, shapes: [MatrixShape], rank: Int, codec: FactorValueCodec,
                       zstdLevel: Int?, residual: UnsafeMutableBufferPointer<Float>?,
                       warmStart: UnsafeMutableBufferPointer<Float>?) throws(FrameEncodingError) -> [UInt8] {
        let n = values.count
        let covered = shapes.reduce(0) { $0 + $1.count }
        guard covered == n else { throw .shapesMismatch(values: n, shapes: covered) }
        guard shapes.count <= LowRankPayload.maximumSegments else { throw .tooManySegments(shapes.count) }
        if let wide = shapes.first(where: { $0.rows > Int(UInt32.max) || $0.cols > Int(UInt32.max) }) {
            throw .matrixDimensionTooLarge(rows: wide.rows, cols: wide.cols)
        }
        let stateCount = warmStartCount(shapes: shapes, rank: rank)
        if let warmStart, warmStart.count != stateCount { throw .warmStartLengthMismatch(expected: stateCount, actual: warmStart.count) }
        if let zstdLevel, !Zstd.levels.contains(zstdLevel) { throw .invalidZstdLevel(zstdLevel) }
        let segments = shapes.map { LowRankSegment(rows: $0.rows, cols: $0.cols, rank: $0.effectiveRank(rank)) }
        let rawSize = segments.reduce(LowRankPayload.tableBytes(segments.count)) { $0 + $1.payloadBytes(codec) }
        let totalValues = segments.reduce(0) { $0 + $1.valueCount }
        let largestFactors = segments.map { $0.rank * ($0.rows + $0.cols) }.max() ?? 0

        let base = UnsafeMutableRawPointer.allocate(byteCount: max(rawSize, 1), alignment: 16)
        defer { base.deallocate() }
        let raw = UnsafeMutableRawBufferPointer(start: base, count: rawSize)
        // What the receiver decodes, run by run (the error-feedback subtraction needs it), and
        // each segment's new Q before rounding (the next warm start).
        let decoded = UnsafeMutablePointer<Float>.allocate(capacity: max(1, totalValues))
        defer { decoded.deallocate() }
        let newQ = UnsafeMutablePointer<Float>.allocate(capacity: max(1, stateCount))
        defer { newQ.deallocate() }
        let work = UnsafeMutablePointer<Float>.allocate(capacity: max(1, largestFactors))
        defer { work.deallocate() }
        base.storeBytes(of: UInt32(segments.count).littleEndian, as: UInt32.self)
        for (index, segment) in segments.enumerated() {
            let entry = 4 + 12 * index
            base.storeBytes(of: UInt32(segment.rows).littleEndian, toByteOffset: entry, as: UInt32.self)
            base.storeBytes(of: UInt32(segment.cols).littleEndian, toByteOffset: entry + 4, as: UInt32.self)
            base.storeBytes(of: UInt32(segment.rank).littleEndian, toByteOffset: entry + 8, as: UInt32.self)
        }
        guard let source = values.baseAddress else {  // n = 0: no segments
            return try finish(raw: raw, rawSize: rawSize, count: n, codec: codec, zstdLevel: zstdLevel)
        }

        var offset = LowRankPayload.tableBytes(segments.count)
        var element = 0, valuePosition = 0, statePosition = 0
        for (index, segment) in segments.enumerated() {
            let m = source + element
            let out = decoded + valuePosition
            if segment.rank == 0 {
                if let bad = codec.encodeRun(m, count: segment.elementCount, into: base + offset, decoded: out) {
                    throw .nonFinite(index: element + bad)
                }
                offset += codec.runBytes(segment.elementCount)
            } else {
                let (rows, cols, r) = (segment.rows, segment.cols, segment.rank)
                let p = work, q = work + r * rows
                // Q (r × cols): the warm start, or seeded Gaussian vectors the first time.
                let warm = warmStart?.baseAddress.map { $0 + statePosition }
                if let warm, (0..<(r * cols)).contains(where: { warm[$0] != 0 }) {
                    q.update(from: warm, count: r * cols)
                } else {
                    var random = SeededRandom(seed: 0x5057_5253_4744, stream: UInt64(index))
                    for i in 0..<(r * cols) { q[i] = random.nextGaussian() }
                }
                // P (r × rows) = Q·Mᵀ: row k is M·qₖ.
                BLAS.sgemmSerial(transB: true, m: r, n: rows, k: cols, a: q, lda: cols, b: m, ldb: cols, c: p, ldc: rows)
                orthonormalizeRows(p, count: r, length: rows)
                for k in 0..<r {
                    if let bad = codec.encodeRun(p + k * rows, count: rows, into: base + offset, decoded: out + k * rows) {
                        throw .nonFinite(index: element + bad)
                    }
                    offset += codec.runBytes(rows)
                }
                // Q (r × cols) = P̂·M: row k is P̂ₖᵀ·M, with the P the receiver decodes.
                BLAS.sgemmSerial(m: r, n: cols, k: rows, a: out, lda: rows, b: m, ldb: cols, c: q, ldc: cols)
                (newQ + statePosition).update(from: q, count: r * cols)
                let outQ = out + r * rows
                for k in 0..<r {
                    if let bad = codec.encodeRun(q + k * cols, count: cols, into: base + offset, decoded: outQ + k * cols) {
                        throw .nonFinite(index: element + bad)  // Q overflowed fp32 for a huge M
                    }
                    offset += codec.runBytes(cols)
                }
                statePosition += r * cols
            }
            element += segment.elementCount
            valuePosition += segment.valueCount
        }
        let body = try finish(raw: raw, rawSize: rawSize, count: n, codec: codec, zstdLevel: zstdLevel)

        // The body exists: now, and only now, the residual and the warm start change.
        if let r = residual?.baseAddress {
            element = 0
            valuePosition = 0
            for segment in segments {
                let out = decoded + valuePosition
                if segment.rank == 0 {
                    FrameKernels.accumulate(out, scale: -1, into: r + element, count: segment.elementCount)
                } else {
                    BLAS.sgemmSerial(transA: true, m: segment.rows, n: segment.cols, k: segment.rank, alpha: -1,
                                     a: out, lda: segment.rows, b: out + segment.rank * segment.rows, ldb: segment.cols,
                                     beta: 1, c: r + element, ldc: segment.cols)
                }
                element += segment.elementCount
                valuePosition += segment.valueCount
            }
        }
        if let warm = warmStart?.baseAddress { warm.update(from: newQ, count: stateCount) }
        return body
    }

    /// Modified Gram–Schmidt on the rows of a `count × length` matrix; a row that is (nearly)
    /// a combination of the ones before it becomes zero, and so carries nothing this step.
    static func orthonormalizeRows(_ a: UnsafeMutablePointer<Float>, count: Int, length: Int) {
        for k in 0..<count {
            let row = a + k * length
            let original = BLAS.sdot(length, row, row).squareRoot()
            for j in 0..<k {
                let previous = a + j * length
                let projection = BLAS.sdot(length, row, previous)
                BLAS.saxpy(length, alpha: -projection, x: previous, y: row)
            }
            let norm = BLAS.sdot(length, row, row).squareRoot()
            if norm.isFinite && norm > 1e-6 * original && norm > 1e-30 {
                let inverse = 1 / norm
                for i in 0..<length { row[i] *= inverse }
            } else {
                row.update(repeating: 0, count: length)
            }
        }
    }

    /// Checksum, zstd and header around a filled payload.
    private static func finish(raw: UnsafeMutableRawBufferPointer, rawSize: Int, count: Int, codec: FactorValueCodec,
                               zstdLevel: Int?) throws(FrameEncodingError) -> [UInt8] {
        let checksum = FrameKernels.checksum(UnsafeRawBufferPointer(raw))
        let capacity = TensorFrameHeader.size + (zstdLevel == nil ? rawSize : try Zstd.compressionCapacity(rawSize))
        return try makeBytes(capacity: capacity) { (body) throws(FrameEncodingError) -> Int in
            let payload = UnsafeMutableRawBufferPointer(rebasing: body[TensorFrameHeader.size...])
            var header = TensorFrameHeader(codec: .lowRank, flags: [], elementCount: UInt64(count),
                                           payloadLength: UInt64(rawSize), checksum: checksum, codecParameter: codec.parameter)
            if let zstdLevel {
                let written = try Zstd.compress(UnsafeRawBufferPointer(raw), level: zstdLevel, into: payload)
                header.flags = .zstd
                header.payloadLength = UInt64(written)
                header.write(to: body)
                return TensorFrameHeader.size + written
            }
            if let target = payload.baseAddress, let source = raw.baseAddress, rawSize > 0 {
                target.copyMemory(from: source, byteCount: rawSize)
            }
            header.write(to: body)
            return TensorFrameHeader.size + rawSize
        }
    }
}
