import TributaryTensor

/// How a low-rank codec sees one tensor of a shard: `rows × cols`, row-major. A vector is
/// 1 × n; a tensor of more dimensions is its first dimension × the product of the rest
/// (PowerSGD's convention for convolution kernels).
public struct MatrixShape: Sendable, Hashable, CustomStringConvertible {
    public let rows: Int
    public let cols: Int

    public init(rows: Int, cols: Int) {
        precondition(rows >= 1 && cols >= 1, "a matrix shape needs rows and cols >= 1")
        self.rows = rows
        self.cols = cols
    }

    /// From a tensor's shape ([] and [n] are vectors).
    public init(shape: [Int]) {
        switch shape.count {
        case 0: self.init(rows: 1, cols: 1)
        case 1: self.init(rows: 1, cols: max(1, shape[0]))
        default: self.init(rows: max(1, shape[0]), cols: max(1, shape.dropFirst().reduce(1, *)))
        }
    }

    public var count: Int { rows * cols }

    /// The rank a low-rank frame uses for this tensor when `rank` is asked for: `rank` when its
    /// factors are strictly fewer values than the tensor, else 0 (sent dense).
    public func effectiveRank(_ rank: Int) -> Int {
        rank >= 1 && rank * (rows + cols) < rows * cols ? rank : 0
    }

    public var description: String { "\(rows)×\(cols)" }
}

/// How a low-rank frame stores its values (the low byte of the codec parameter; the other
/// parameter bytes are 0).
public enum FactorValueCodec: UInt8, Sendable, CaseIterable, Codable, CustomStringConvertible, ParameterSubCodec {
    /// IEEE binary16, as codec fp16.
    case fp16 = 0
    /// Each run (one factor vector, or one dense segment) in blocks of 64 values, each an fp32
    /// scale (max |value| / 127) and then one signed byte per value, as int8-block with B = 64.
    case int8 = 1
    /// As int8, with 4-bit values (scale max |value| / 7, two values per byte, low nibble
    /// first), as int4-block with B = 64.
    case int4 = 2

    /// Values per scale in an int8 or int4 run.
    static let blockSize = 64

    public var description: String {
        switch self {
        case .fp16: return "fp16"
        case .int8: return "int8"
        case .int4: return "int4"
        }
    }

    /// A run is laid out exactly as a dense frame of that codec (blocks of 64 for int8/int4).
    private var layout: DenseLayout {
        switch self {
        case .fp16: return DenseLayout(known: .fp16, block: 1)
        case .int8: return DenseLayout(known: .int8Block, block: Self.blockSize)
        case .int4: return DenseLayout(known: .int4Block, block: Self.blockSize)
        }
    }

    /// Bytes of one run of `length` values.
    func runBytes(_ length: Int) -> Int { layout.rawSize(elementCount: length) }

    /// Encodes `count` finite values at `source` into `target`; with `decoded`, also writes what
    /// a receiver will decode. Returns the first non-finite index.
    func encodeRun(_ source: UnsafePointer<Float>, count: Int, into target: UnsafeMutableRawPointer,
                   decoded: UnsafeMutablePointer<Float>?) -> Int? {
        let layout = self.layout
        if let bad = layout.encode(source, count: count, into: target) { return bad }
        if let decoded { _ = layout.decode(target, count: count, into: decoded) }
        return nil
    }

    /// Decodes one run; returns the first non-finite output index.
    func decodeRun(_ source: UnsafeRawPointer, count: Int, into target: UnsafeMutablePointer<Float>) -> Int? {
        layout.decode(source, count: count, into: target)
    }
}

/// One entry of a low-rank payload's segment table: the next `rows · cols` elements of the
/// tensor, dense (`rank` 0) or as the product of `rank` factor pairs.
struct LowRankSegment: Equatable {
    let rows: Int
    let cols: Int
    let rank: Int

    var elementCount: Int { rows &* cols }
    /// Values it carries: rows·cols dense, rank·(rows + cols) as factors.
    var valueCount: Int { rank == 0 ? rows &* cols : rank &* (rows &+ cols) }

    func payloadBytes(_ codec: FactorValueCodec) -> Int {
        rank == 0 ? codec.runBytes(rows &* cols) : rank &* (codec.runBytes(rows) &+ codec.runBytes(cols))
    }
}

/// The low-rank codec payload (codec 6, Protocol/frames.md): u32 S, S segment entries
/// (u32 rows, u32 cols, u32 rank), then each segment's runs in order: a dense segment is one
/// run of rows·cols values (row-major); a rank-r segment is r runs p₁…p_r of `rows` values and
/// then r runs q₁…q_r of `cols` values, and decodes to M[i][j] = Σₖ pₖ[i]·qₖ[j].
struct LowRankPayload {
    static let maximumSegments = 1024

    let segments: [LowRankSegment]
    let valuesOffset: Int
    let codec: FactorValueCodec

    /// The longest payload (after zstd) for n elements: 4·n, what fp32 takes. A low-rank frame
    /// is never bigger than the dense one (an encoder whose factors and table would be sends
    /// fp32 instead), so accepting low-rank raises no receiver's size limit.
    static func limit(elementCount n: Int) -> Int {
        saturating(n, times: 4, plus: 0)
    }

    static func tableBytes(_ count: Int) -> Int { 4 &+ 12 &* count }

    /// Checks 12 and 13 of Protocol/frames.md for low-rank, in order: CRC; S ≤ 1024 and the
    /// table fits; each segment (rows, cols ≥ 1, rank 0 or rank·(rows + cols) < rows·cols,
    /// covering no more than the elements left); the segments cover exactly n; the value
    /// section's length; each value finite; each factor product bounded. Reads `raw` only.
    static func validate(_ raw: UnsafeRawBufferPointer, header: TensorFrameHeader, count n: Int,
                         codec: FactorValueCodec) throws(FrameError) -> LowRankPayload {
        let crc = FrameKernels.checksum(raw)
        guard crc == header.checksum else { throw .checksumMismatch(expected: header.checksum, actual: crc) }
        guard raw.count >= 4 else { throw .truncatedPayload(expected: 4, actual: raw.count) }
        let claimed = UInt32(littleEndian: raw.loadUnaligned(as: UInt32.self))
        guard claimed <= UInt32(maximumSegments) else { throw .lowRankSegmentCount(claimed) }
        let s = Int(claimed)
        guard raw.count >= tableBytes(s) else { throw .truncatedPayload(expected: tableBytes(s), actual: raw.count) }
        var segments: [LowRankSegment] = []
        segments.reserveCapacity(s)
        var covered = 0
        var valueBytes = 0
        for index in 0..<s {
            let base = 4 &+ 12 &* index
            let rows = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: base, as: UInt32.self))
            let cols = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: base &+ 4, as: UInt32.self))
            let rank = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: base &+ 8, as: UInt32.self))
            // 32-bit fields: products and sums below fit in 64 bits.
            let elements = UInt64(rows) &* UInt64(cols)
            guard rows >= 1, cols >= 1, rank == 0 || UInt64(rank) &* (UInt64(rows) &+ UInt64(cols)) < elements else {
                throw .lowRankBadSegment(index: index, rows: rows, cols: cols, rank: rank)
            }
            guard elements <= UInt64(n &- covered) else {
                throw .lowRankCoverage(covered: UInt64(covered) &+ elements, count: n)
            }
            let segment = LowRankSegment(rows: Int(rows), cols: Int(cols), rank: Int(rank))
            covered &+= segment.elementCount
            valueBytes &+= segment.payloadBytes(codec)  // ≤ 5 per element: cannot overflow
            segments.append(segment)
        }
        guard covered == n else { throw .lowRankCoverage(covered: UInt64(covered), count: n) }
        let needed = tableBytes(s) &+ valueBytes
        if raw.count < needed { throw .truncatedPayload(expected: needed, actual: raw.count) }
        if raw.count > needed { throw .trailingBytes(raw.count &- needed) }
        let payload = LowRankPayload(segments: segments, valuesOffset: tableBytes(s), codec: codec)
        if let base = raw.baseAddress { try payload.checkValues(base) }
        return payload
    }

    /// The largest number of values one segment carries (the decoding buffer).
    private var largestSegmentValues: Int { segments.map(\.valueCount).max() ?? 0 }

    /// Every value finite; every factor product within the fp32 range (Σₖ max|pₖ|·max|qₖ| at
    /// most half the largest float, so the decoded tensor, however summed, is finite).
    private func checkValues(_ base: UnsafeRawPointer) throws(FrameError) {
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: max(1, largestSegmentValues))
        defer { buffer.deallocate() }
        var offset = valuesOffset
        var element = 0
        for (index, segment) in segments.enumerated() {
            if let bad = decodeSegment(segment, base, &offset, into: buffer) {
                throw .nonFinite(index: segment.rank == 0 ? element &+ bad : element)
            }
            if segment.rank > 0 {
                var bound = 0.0
                for k in 0..<segment.rank {
                    let p = largestMagnitude(buffer + k &* segment.rows, segment.rows)
                    let q = largestMagnitude(buffer + (segment.rank &* segment.rows &+ k &* segment.cols), segment.cols)
                    bound += Double(p) * Double(q)
                }
                guard bound <= Double(Float.greatestFiniteMagnitude) / 2 else { throw .lowRankOverflow(segment: index) }
            }
            element &+= segment.elementCount
        }
    }

    private func largestMagnitude(_ values: UnsafePointer<Float>, _ count: Int) -> Float {
        var best: Float = 0
        for i in 0..<count { best = max(best, abs(values[i])) }
        return best
    }

    /// Decodes one segment's runs (p's, then q's, or the dense run) into `buffer`, advancing
    /// `offset`; returns the first non-finite position among them.
    @inline(__always)
    private func decodeSegment(_ segment: LowRankSegment, _ base: UnsafeRawPointer, _ offset: inout Int,
                               into buffer: UnsafeMutablePointer<Float>) -> Int? {
        if segment.rank == 0 {
            let bad = codec.decodeRun(base + offset, count: segment.elementCount, into: buffer)
            offset &+= codec.runBytes(segment.elementCount)
            return bad
        }
        var first: Int?
        var position = 0
        for k in 0..<(2 &* segment.rank) {
            let length = k < segment.rank ? segment.rows : segment.cols
            if let bad = codec.decodeRun(base + offset, count: length, into: buffer + position), first == nil {
                first = position &+ bad
            }
            offset &+= codec.runBytes(length)
            position &+= length
        }
        return first
    }

    /// target = M̂, segment by segment: dense runs copied, factor pairs by one sgemm each, or
    /// with `reproducible` by `reproducibleProduct` (the same bits on every machine). The
    /// payload must have passed `validate`.
    func decode(_ raw: UnsafeRawBufferPointer, into target: UnsafeMutablePointer<Float>, reproducible: Bool = false) {
        guard let base = raw.baseAddress else { return }
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: max(1, largestSegmentValues))
        defer { buffer.deallocate() }
        var offset = valuesOffset
        var element = 0
        for segment in segments {
            let out = target + element
            if segment.rank == 0 {
                _ = decodeSegment(segment, base, &offset, into: out)
            } else {
                _ = decodeSegment(segment, base, &offset, into: buffer)
                if reproducible {
                    Self.reproducibleProduct(segment, factors: buffer, into: out)
                    element &+= segment.elementCount
                    continue
                }
                // M̂ = Pᵀ·Q with P the rank × rows factors and Q the rank × cols ones, as stored.
                BLAS.sgemmSerial(transA: true, m: segment.rows, n: segment.cols, k: segment.rank,
                                 a: buffer, lda: segment.rows, b: buffer + segment.rank &* segment.rows, ldb: segment.cols,
                                 c: out, ldc: segment.cols)
            }
            element &+= segment.elementCount
        }
    }
}

extension LowRankPayload {
    /// M[i][j] = ((p₁[i]·q₁[j] + p₂[i]·q₂[j]) + …) + p_r[i]·q_r[j]: k in order, every product
    /// and every sum rounded to fp32 on its own (no fused multiply-add, which Swift never
    /// emits unasked). A BLAS kernel's order and fusing differ between CPUs; parameters a
    /// worker rebuilds from deltas must be bit for bit the coordinator's (Protocol/frames.md).
    static func reproducibleProduct(_ segment: LowRankSegment, factors: UnsafePointer<Float>,
                                    into out: UnsafeMutablePointer<Float>) {
        let rows = segment.rows, cols = segment.cols
        let q = factors + segment.rank &* rows
        for i in 0..<rows {
            let row = out + i &* cols
            let p0 = factors[i]
            for j in 0..<cols { row[j] = p0 * q[j] }
            for k in 1..<max(1, segment.rank) {
                let pk = factors[k &* rows &+ i]
                let qk = q + k &* cols
                for j in 0..<cols { row[j] = row[j] + pk * qk[j] }
            }
        }
    }
}

extension TensorFrame {
    static func decodeLowRank(_ payload: UnsafeRawBufferPointer, header: TensorFrameHeader,
                              into out: UnsafeMutableBufferPointer<Float>, reproducible: Bool = false) throws(FrameError) {
        guard let codec = FactorValueCodec(parameter: header.codecParameter) else {
            throw .badCodecParameter(header.codecParameter)  // already refused by the header parse
        }
        try withCodecPayload(payload, header: header, limit: LowRankPayload.limit(elementCount: out.count), exact: false,
                             work: nil) { (raw) throws(FrameError) in
            let layout = try LowRankPayload.validate(raw, header: header, count: out.count, codec: codec)
            guard let target = out.baseAddress else { return }
            layout.decode(raw, into: target, reproducible: reproducible)
        }
    }

    /// Validates fully (CRC, table, values, product bounds), decodes into `scratch` (n floats:
    /// a low-rank update is dense once multiplied out), then adds scale · that, so the sum is
    /// bit for bit the one a decode-then-add gives. The zstd payload is decompressed into its
    /// own buffer (at most `LowRankPayload.limit` bytes), since the scratch holds the product.
    static func accumulateLowRank(_ payload: UnsafeRawBufferPointer, header: TensorFrameHeader, scale: Float,
                                  into accumulator: UnsafeMutableBufferPointer<Float>,
                                  scratch: UnsafeMutableBufferPointer<Float>) throws(FrameError) {
        guard let codec = FactorValueCodec(parameter: header.codecParameter) else {
            throw .badCodecParameter(header.codecParameter)
        }
        try withCodecPayload(payload, header: header, limit: LowRankPayload.limit(elementCount: accumulator.count),
                             exact: false, work: nil) { (raw) throws(FrameError) in
            let layout = try LowRankPayload.validate(raw, header: header, count: accumulator.count, codec: codec)
            guard let target = accumulator.baseAddress, let decoded = scratch.baseAddress else { return }
            layout.decode(raw, into: decoded)
            FrameKernels.accumulate(decoded, scale: scale, into: target, count: accumulator.count)
        }
    }
}
