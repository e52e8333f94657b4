/// Fully connected layers, `y = x · Wᵀ + b`, with W stored `[out, in]` as PyTorch does.
public enum LinearKernels {
    /// out[N, M] = input[N, K] · weight[M, K]ᵀ (+ bias[M]).
    public static func forward(out: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>,
                               weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                               rows n: Int, inFeatures k: Int, outFeatures m: Int) {
        BLAS.sgemm(transB: true, m: n, n: m, k: k, a: input, lda: k, b: weight, ldb: k, c: out, ldc: m)
        if let bias { addBias(out, bias, rows: n, columns: m) }
    }

    /// Backward of `forward`: dInput = dOut · W (overwritten, or accumulated when
    /// `accumulateInput`), dWeight += dOutᵀ · input, dBias += Σ_rows dOut.
    public static func backward(dInput: UnsafeMutablePointer<Float>?, dWeight: UnsafeMutablePointer<Float>,
                                dBias: UnsafeMutablePointer<Float>?, dOut: UnsafePointer<Float>,
                                input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                rows n: Int, inFeatures k: Int, outFeatures m: Int,
                                accumulateInput: Bool = false) {
        if let dInput {
            BLAS.sgemm(m: n, n: k, k: m, a: dOut, lda: m, b: weight, ldb: k,
                       beta: accumulateInput ? 1 : 0, c: dInput, ldc: k)
        }
        BLAS.sgemm(transA: true, m: m, n: k, k: n, a: dOut, lda: m, b: input, ldb: k, beta: 1, c: dWeight, ldc: k)
        if let dBias { accumulateColumnSums(dBias, dOut, rows: n, columns: m) }
    }

    /// x[r, c] += bias[c].
    public static func addBias(_ x: UnsafeMutablePointer<Float>, _ bias: UnsafePointer<Float>, rows: Int, columns: Int) {
        Parallel.forRanges(rows, minPerThread: max(1, 16_384 / max(1, columns))) { range in
            for r in range {
                let row = x + r * columns
                for c in 0..<columns { row[c] += bias[c] }
            }
        }
    }

    /// out[c] += Σ_r x[r, c]. Columns are split across threads so each writes its own
    /// slice of `out`; within a thread the inner loop runs along a contiguous row.
    public static func accumulateColumnSums(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>,
                                            rows: Int, columns: Int) {
        let chunks = (columns + 63) / 64
        Parallel.forRanges(chunks, minPerThread: max(1, 8192 / max(1, rows))) { chunkRange in
            let lo = chunkRange.lowerBound * 64
            let hi = min(columns, chunkRange.upperBound * 64)
            for r in 0..<rows {
                let row = x + r * columns
                for c in lo..<hi { out[c] += row[c] }
            }
        }
    }
}

/// Elementwise helpers used between layers.
public enum ElementwiseKernels {
    /// out = a + b.
    public static func add(_ out: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) {
        Parallel.forRanges(count, minPerThread: 32_768) { range in
            for i in range { out[i] = a[i] + b[i] }
        }
    }

    /// y += x.
    public static func accumulate(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count: Int) {
        Parallel.forRanges(count, minPerThread: 32_768) { range in
            for i in range { y[i] += x[i] }
        }
    }

    /// y *= x (elementwise).
    public static func multiply(_ y: UnsafeMutablePointer<Float>, by x: UnsafePointer<Float>, count: Int) {
        Parallel.forRanges(count, minPerThread: 32_768) { range in
            for i in range { y[i] *= x[i] }
        }
    }

    /// y *= s.
    public static func scale(_ y: UnsafeMutablePointer<Float>, by s: Float, count: Int) {
        Parallel.forRanges(count, minPerThread: 32_768) { range in
            for i in range { y[i] *= s }
        }
    }

    /// Σ x² in double precision (for gradient norms over millions of values).
    public static func sumOfSquares(_ x: UnsafePointer<Float>, count: Int) -> Double {
        var total = 0.0
        var i = 0
        while i < count {
            let end = min(count, i + 4096)
            var block: Float = 0
            for j in i..<end { block += x[j] * x[j] }
            total += Double(block)
            i = end
        }
        return total
    }

    /// Σ (x − y)² in double precision, blocked as `sumOfSquares`.
    public static func squaredDistance(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, count: Int) -> Double {
        var total = 0.0
        var i = 0
        while i < count {
            let end = min(count, i + 4096)
            var block: Float = 0
            for j in i..<end {
                let d = x[j] - y[j]
                block += d * d
            }
            total += Double(block)
            i = end
        }
        return total
    }

    /// True when every value is finite.
    public static func allFinite(_ x: UnsafePointer<Float>, count: Int) -> Bool {
        // x − x is 0 for finite values and NaN for ±Inf and NaN.
        var acc: Float = 0
        for i in 0..<count { acc += x[i] - x[i] }
        return acc == 0
    }
}
