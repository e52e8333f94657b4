import CKernels

/// The optimizers' per-element updates (TributaryOptim owns the state and the formulas'
/// documentation), in C (`CKernels`, dispatched by CPU; see `VectorKernels`).
public enum OptimizerKernels {
    /// AdamW over `count` values: m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²;
    /// w ← w·decay − stepSize · clamp(m / (√v / biasCorrection2Sqrt + ε), ±bound).
    /// Parallel over the compute threads for large tensors.
    public static func adamW(weight w: UnsafeMutablePointer<Float>, gradient g: UnsafePointer<Float>,
                             m: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>, count: Int,
                             beta1: Float, beta2: Float, epsilon: Float, biasCorrection2Sqrt: Float,
                             stepSize: Float, decay: Float, bound: Float) {
        Parallel.forRanges(count, minPerThread: 32_768) { range in
            let i = range.lowerBound
            ck_adamw(w + i, g + i, m + i, v + i, range.count, beta1, beta2, epsilon, biasCorrection2Sqrt,
                     stepSize, decay, bound)
        }
    }
}
