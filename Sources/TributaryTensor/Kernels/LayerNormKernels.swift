import CKernels

/// LayerNorm over the last dimension, with the row statistics saved for backward.
/// The row loops run in C (`CKernels`, dispatched by CPU; see `VectorKernels`).
public enum LayerNormKernels {
    public static let epsilon: Float = 1e-5

    /// out = (x − mean) · rstd · weight + bias, per row of `columns` values.
    public static func forward(out: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>,
                               rstd: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>,
                               weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                               rows: Int, columns c: Int) {
        Parallel.forRanges(rows, minPerThread: max(1, 4096 / max(1, c))) { range in
            let r = range.lowerBound
            ck_layer_norm_forward_rows(out + r * c, mean + r, rstd + r, input + r * c, weight, bias,
                                       range.count, c, epsilon)
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
                let r = range.lowerBound
                ck_layer_norm_backward_rows(dInput + r * c, dw, dw + c, dOut + r * c, input + r * c, weight,
                                            mean + r, rstd + r, range.count, c)
            }
            for t in 0..<threads {
                let dw = partial + t * 2 * c
                for i in 0..<c { dWeight[i] += dw[i] }
                if let dBias { for i in 0..<c { dBias[i] += dw[c + i] } }
            }
        }
    }
}
