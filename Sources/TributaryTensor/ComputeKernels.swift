/// The operations a `ComputeDevice` runs for the GPT and MLP, forward and backward.
///
/// Models never call a kernel themselves: each layer holds its device and calls
/// `device.kernels.…` once per layer operation, so a new device (a GPU) plugs in by
/// conforming to this protocol and to `ComputeDevice`, without touching model code.
///
/// ## Conventions
/// - Arguments are `Tensor`s, not host pointers, so a device can map each one to its own
///   buffer (a tensor's `storage` is the buffer, `offset` the start). A tensor names the
///   *start* of an operand: the kernel touches the leading elements that the size
///   arguments (`rows`, `columns`, `count`, …) describe, and a tensor may be longer
///   (buffers sized for the largest micro-batch serve smaller ones). Callers pass views
///   (`Tensor.rows`) for operands that start inside a buffer.
/// - Matrices are dense and row-major; a linear weight is `[out, in]` (PyTorch's layout).
/// - Token ids and targets are host arrays (they arrive with the batch), already
///   validated against the vocabulary or class count by the model.
/// - Calls are synchronous as seen by the caller: when one returns, its outputs may be
///   read by the next call (a GPU device may queue work, but must order it and finish
///   it before the host reads a tensor).
/// - "Accumulate" (`+=`) outputs must be added to, never overwritten: parameter
///   gradients sum over layers that share a weight and over micro-batches.
///
/// ## What a new device implements
/// Every requirement below; none has a default. The CPU's `CPUKernels` is the reference:
/// a device's results must match it to float rounding (the tests compare against it).
/// Memory comes from the device's `allocator`, including `attentionScratchShape`'s scratch.
public protocol ComputeKernels: Sendable {
    // MARK: Matrix products

    /// out[rows, outF] = input[rows, inF] · weight[outF, inF]ᵀ (+ bias[outF]).
    func linearForward(out: Tensor, input: Tensor, weight: Tensor, bias: Tensor?,
                       rows: Int, inFeatures: Int, outFeatures: Int)

    /// dInput = dOut · weight (overwritten, or added when `accumulateInput`; skipped when
    /// nil); dWeight += dOutᵀ · input; dBias += Σ_rows dOut.
    func linearBackward(dInput: Tensor?, dWeight: Tensor, dBias: Tensor?, dOut: Tensor,
                        input: Tensor, weight: Tensor, rows: Int, inFeatures: Int, outFeatures: Int,
                        accumulateInput: Bool)

    // MARK: LayerNorm (ε = 1e-5, over the last dimension)

    /// out = (x − mean) · rstd · weight (+ bias) per row; mean[rows] and rstd[rows] are
    /// saved for backward.
    func layerNormForward(out: Tensor, mean: Tensor, rstd: Tensor, input: Tensor, weight: Tensor, bias: Tensor?,
                          rows: Int, columns: Int)

    /// dInput += ∂L/∂x (residual streams accumulate); dWeight += Σ dOut·x̂; dBias += Σ dOut.
    func layerNormBackward(dInput: Tensor, dWeight: Tensor, dBias: Tensor?, dOut: Tensor, input: Tensor,
                           weight: Tensor, mean: Tensor, rstd: Tensor, rows: Int, columns: Int)

    // MARK: Activations (GELU is GPT-2's tanh approximation)

    /// pre[r, c] += bias[c] (kept for backward); out = gelu(pre).
    func biasGELUForward(pre: Tensor, out: Tensor, bias: Tensor?, rows: Int, columns: Int)

    /// out = gelu(pre + bias), and `preToDerivative` is replaced by gelu′(pre + bias), so
    /// backward is one elementwise multiply (`multiply`) instead of a GELU backward.
    func biasGELUForwardSavingDerivative(preToDerivative: Tensor, out: Tensor, bias: Tensor?, rows: Int, columns: Int)

    /// dPre = dOut · gelu′(pre) over `count` elements; `dPre` may be `dOut`.
    func geluBackward(dPre: Tensor, dOut: Tensor, pre: Tensor, count: Int)

    /// pre += bias (kept for backward); out = max(pre, 0).
    func biasReLUForward(pre: Tensor, out: Tensor, bias: Tensor?, rows: Int, columns: Int)

    /// dPre = dOut where pre > 0, else 0, over `count` elements; `dPre` may be `dOut`.
    func reluBackward(dPre: Tensor, dOut: Tensor, pre: Tensor, count: Int)

    // MARK: Loss

    /// Replaces each row of logits[rows, classes] by its softmax, in place, and writes
    /// losses[r] = −log p[r, targets[r]]. `targets.count == rows`.
    func softmaxCrossEntropyForward(logits: Tensor, targets: ArraySlice<Int32>, losses: Tensor, rows: Int, classes: Int)

    /// Turns the probabilities `forward` left into the logit gradient, in place:
    /// (p − onehot(target)) · scale.
    func softmaxCrossEntropyBackward(probabilities: Tensor, targets: ArraySlice<Int32>, rows: Int, classes: Int,
                                     scale: Float)

    // MARK: Causal self-attention over a packed QKV buffer

    /// The shape of the scratch tensor `attentionBackward` needs for `sequence` positions
    /// (allocated once per batch shape by the caller, from the device's allocator).
    func attentionScratchShape(sequence: Int) -> [Int]

    /// qkv[B, T, 3C] (q, k, v stacked, head h in columns h·C/H ..< (h+1)·C/H of each):
    /// out[B, T, C] = softmax(mask(Q·Kᵀ / √(C/H))) · V; probs[B, H, T, T] keeps the
    /// attention weights (zero above the diagonal) for backward.
    func attentionForward(out: Tensor, probs: Tensor, qkv: Tensor, batch: Int, sequence: Int, heads: Int, channels: Int)

    /// dQKV[B, T, 3C] (overwritten) from dOut[B, T, C], the saved qkv and probs.
    func attentionBackward(dQKV: Tensor, dOut: Tensor, qkv: Tensor, probs: Tensor, scratch: Tensor,
                           batch: Int, sequence: Int, heads: Int, channels: Int)

    // MARK: Embeddings (GPT-2's wte and wpe)

    /// out[b, t, :] = wte[tokens[b·T + t], :] + wpe[t, :]. `tokens.count == batch · sequence`.
    func embeddingForward(out: Tensor, tokens: ArraySlice<Int32>, wte: Tensor, wpe: Tensor,
                          batch: Int, sequence: Int, channels: Int)

    /// dWTE[tokens[n]] += dOut[n]; dWPE[n mod T] += dOut[n]. Tokens repeat: rows of dWTE
    /// receive several additions.
    func embeddingBackward(dWTE: Tensor, dWPE: Tensor, dOut: Tensor, tokens: ArraySlice<Int32>,
                           batch: Int, sequence: Int, channels: Int)

    // MARK: Elementwise, over the first `count` elements

    /// out = a + b.
    func add(out: Tensor, _ a: Tensor, _ b: Tensor, count: Int)
    /// y += x (residual connections).
    func accumulate(_ y: Tensor, _ x: Tensor, count: Int)
    /// y *= x.
    func multiply(_ y: Tensor, by x: Tensor, count: Int)
    /// y *= s.
    func scale(_ y: Tensor, by s: Float, count: Int)
    /// Σ x², summed in double precision.
    func sumOfSquares(_ x: Tensor, count: Int) -> Double
    /// True when every value is finite.
    func allFinite(_ x: Tensor, count: Int) -> Bool
}
