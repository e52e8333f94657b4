/// LayerNorm over the last dimension, with the row statistics saved for backward.
public enum LayerNormKernels {
    public static let epsilon: Float = 1e-5

    /// out = (x − mean) · rstd · weight + bias, per row of `columns` values.
    public static func forward(out: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>,
                               rstd: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>,
                               weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                               rows: Int, columns c: Int) {
        Parallel.forRanges(rows, minPerThread: max(1, 4096 / max(1, c))) { range in
            for r in range {
                let x = input + r * c
                let m = FastMath.sum(x, c) / Float(c)
                let v = FastMath.sumSquaredDeviations(x, c, from: m)
                let s = 1 / (v / Float(c) + epsilon).squareRoot()
                let o = out + r * c
                if let bias {
                    for i in 0..<c { o[i] = (x[i] - m) * s * weight[i] + bias[i] }
                } else {
                    for i in 0..<c { o[i] = (x[i] - m) * s * weight[i] }
                }
                mean[r] = m
                rstd[r] = s
            }
        }
    }

    /// dInput += ∂L/∂x; dWeight += Σ dOut·x̂; dBias += Σ dOut.
    /// Rows are split across threads; each thread sums its weight/bias gradients in its
    /// own stack scratch, and the partial sums are added at the end.
    public static func backward(dInput: UnsafeMutablePointer<Float>, dWeight: UnsafeMutablePointer<Float>,
                                dBias: UnsafeMutablePointer<Float>?, dOut: UnsafePointer<Float>,
                                input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>,
                                rows: Int, columns c: Int) {
        let threads = max(1, min(ComputeThreads.count, rows / max(1, 2048 / max(1, c))))
        withUnsafeTemporaryAllocation(of: Float.self, capacity: threads * 2 * c) { scratch in
            guard let partial = scratch.baseAddress else { return }
            partial.initialize(repeating: 0, count: threads * 2 * c)
            Parallel.forThreadRanges(rows, threads: threads) { t, range in
                let dw = partial + t * 2 * c
                let db = dw + c
                for r in range {
                    let x = input + r * c
                    let dy = dOut + r * c
                    let dx = dInput + r * c
                    let m = mean[r], s = rstd[r]
                    typealias V = FastMath.V
                    let mv = V(repeating: m), sv = V(repeating: s)
                    var accD = V(repeating: 0), accDN = V(repeating: 0)
                    var i = 0
                    while i + 8 <= c {
                        let xhat = (FastMath.load(x + i) - mv) * sv
                        let g = FastMath.load(dy + i)
                        let dn = g * FastMath.load(weight + i)
                        accD += dn
                        accDN += dn * xhat
                        FastMath.store(FastMath.load(dw + i) + g * xhat, dw + i)
                        FastMath.store(FastMath.load(db + i) + g, db + i)
                        i += 8
                    }
                    var sumD = accD.sum(), sumDN = accDN.sum()
                    while i < c {
                        let xhat = (x[i] - m) * s
                        let dn = dy[i] * weight[i]
                        sumD += dn
                        sumDN += dn * xhat
                        dw[i] += dy[i] * xhat
                        db[i] += dy[i]
                        i += 1
                    }
                    let meanD = sumD / Float(c), meanDN = sumDN / Float(c)
                    for i in 0..<c {
                        let xhat = (x[i] - m) * s
                        dx[i] += (dy[i] * weight[i] - meanD - xhat * meanDN) * s
                    }
                }
            }
            for t in 0..<threads {
                let dw = partial + t * 2 * c
                for i in 0..<c { dWeight[i] += dw[i] }
                if let dBias { for i in 0..<c { dBias[i] += dw[c + i] } }
            }
        }
    }
}
