import CKernels

/// GELU (GPT-2's tanh approximation) and ReLU, forward and backward.
///
/// The loops run in C (`CKernels`), compiled for baseline x86-64, AVX2 and AVX-512
/// and chosen once at start-up (`VectorKernels`); the Swift side splits the work across
/// threads and passes pointers.
public enum ActivationKernels {
    /// Fused bias + GELU: pre[r, c] += bias[c] (kept for backward), out = gelu(pre).
    /// One pass instead of PyTorch's separate bias add and activation.
    public static func biasGELUForward(pre: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>,
                                       bias: UnsafePointer<Float>?, rows: Int, columns: Int) {
        Parallel.forRanges(rows, minPerThread: max(1, 8192 / max(1, columns))) { range in
            let offset = range.lowerBound * columns
            ck_bias_gelu_rows(pre + offset, out + offset, bias, range.count, columns)
        }
    }

    /// Fused bias + GELU that replaces the pre-activation by gelu′(pre + bias).
    /// Backward then needs one multiply per element instead of recomputing the tanh: the
    /// pre-activation itself is needed by nothing else (c_fc's backward reads its input,
    /// c_proj's reads the GELU output).
    public static func biasGELUForwardSavingDerivative(preToDerivative pre: UnsafeMutablePointer<Float>,
                                                       out: UnsafeMutablePointer<Float>,
                                                       bias: UnsafePointer<Float>?, rows: Int, columns: Int) {
        Parallel.forRanges(rows, minPerThread: max(1, 8192 / max(1, columns))) { range in
            let offset = range.lowerBound * columns
            ck_bias_gelu_saving_derivative_rows(pre + offset, out + offset, bias, range.count, columns)
        }
    }

    /// dPre = dOut · gelu'(pre). `dPre` may alias `dOut`.
    public static func geluBackward(dPre: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>,
                                    pre: UnsafePointer<Float>, count: Int) {
        Parallel.forRanges(count, minPerThread: 16_384) { range in
            let i = range.lowerBound
            ck_gelu_backward(dPre + i, dOut + i, pre + i, range.count)
        }
    }

    /// Fused bias + ReLU: pre += bias (kept for backward), out = max(pre, 0).
    public static func biasReLUForward(pre: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>,
                                       bias: UnsafePointer<Float>?, rows: Int, columns: Int) {
        Parallel.forRanges(rows, minPerThread: max(1, 8192 / max(1, columns))) { range in
            let offset = range.lowerBound * columns
            ck_bias_relu_rows(pre + offset, out + offset, bias, range.count, columns)
        }
    }

    /// dPre = dOut where pre > 0, else 0. `dPre` may alias `dOut`.
    public static func reluBackward(dPre: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>,
                                    pre: UnsafePointer<Float>, count: Int) {
        Parallel.forRanges(count, minPerThread: 32_768) { range in
            let i = range.lowerBound
            ck_relu_backward(dPre + i, dOut + i, pre + i, range.count)
        }
    }
}
