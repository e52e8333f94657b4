import CKernels

/// Softmax cross-entropy fused with the logits: the forward pass turns the logits into
/// probabilities in place and the backward pass turns those into the logit gradient in
/// place, so the [tokens, vocab] buffer exists once instead of three times.
public enum SoftmaxCrossEntropyKernels {
    /// Replaces each row of `logits` by its softmax and writes −log p[target] to `losses`.
    /// Targets must lie in 0..<classes (validated by the caller).
    public static func forward(logits: UnsafeMutablePointer<Float>, targets: UnsafePointer<Int32>,
                               losses: UnsafeMutablePointer<Float>, rows: Int, classes v: Int) {
        Parallel.forRanges(rows, minPerThread: max(1, 4096 / max(1, v))) { range in
            for r in range {
                let row = logits + r * v
                let targetLogit = row[Int(targets[r])]
                let logNormaliser = softmaxInPlace(row, v)
                losses[r] = logNormaliser - targetLogit
            }
        }
    }

    /// dLogits = (p − onehot(target)) · scale, in place over the probabilities.
    public static func backward(probabilities: UnsafeMutablePointer<Float>, targets: UnsafePointer<Int32>,
                                rows: Int, classes v: Int, scale: Float) {
        Parallel.forRanges(rows, minPerThread: max(1, 4096 / max(1, v))) { range in
            for r in range {
                let row = probabilities + r * v
                row[Int(targets[r])] -= 1
                for i in 0..<v { row[i] *= scale }
            }
        }
    }

    /// Softmax of one row in place; returns log Σ exp(x) (= max + log Σ exp(x − max)).
    /// In C (`CKernels`): attention calls this for every row of every head.
    @inline(__always)
    public static func softmaxInPlace(_ row: UnsafeMutablePointer<Float>, _ v: Int) -> Float {
        ck_softmax_row(row, v)
    }

    /// Softmax backward of one row in place: d = p · (d − Σ p·d) · scale.
    @inline(__always)
    public static func softmaxBackwardInPlace(probabilities p: UnsafePointer<Float>, gradient d: UnsafeMutablePointer<Float>,
                                              _ n: Int, scale: Float) {
        ck_softmax_backward_row(p, d, n, scale)
    }
}
