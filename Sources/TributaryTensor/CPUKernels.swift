/// The host CPU's kernels: OpenBLAS products and the loops in `Kernels/`, parallel on
/// `ComputeThreads`. Each method forwards to the kernel enum that always did the work,
/// with the same arguments, so results are bit-identical to calling the enums directly.
/// Raw pointers exist only from here down.
public struct CPUKernels: ComputeKernels {
    public init() {}

    // MARK: Matrix products

    public func linearForward(out: Tensor, input: Tensor, weight: Tensor, bias: Tensor?,
                              rows: Int, inFeatures: Int, outFeatures: Int) {
        LinearKernels.forward(out: out.host(rows * outFeatures), input: input.host(rows * inFeatures),
                              weight: weight.host(outFeatures * inFeatures), bias: bias?.host(outFeatures),
                              rows: rows, inFeatures: inFeatures, outFeatures: outFeatures)
    }

    public func linearBackward(dInput: Tensor?, dWeight: Tensor, dBias: Tensor?, dOut: Tensor,
                               input: Tensor, weight: Tensor, rows: Int, inFeatures: Int, outFeatures: Int,
                               accumulateInput: Bool) {
        LinearKernels.backward(dInput: dInput?.host(rows * inFeatures), dWeight: dWeight.host(outFeatures * inFeatures),
                               dBias: dBias?.host(outFeatures), dOut: dOut.host(rows * outFeatures),
                               input: input.host(rows * inFeatures), weight: weight.host(outFeatures * inFeatures),
                               rows: rows, inFeatures: inFeatures, outFeatures: outFeatures,
                               accumulateInput: accumulateInput)
    }

    // MARK: LayerNorm

    public func layerNormForward(out: Tensor, mean: Tensor, rstd: Tensor, input: Tensor, weight: Tensor, bias: Tensor?,
                                 rows: Int, columns: Int) {
        LayerNormKernels.forward(out: out.host(rows * columns), mean: mean.host(rows), rstd: rstd.host(rows),
                                 input: input.host(rows * columns), weight: weight.host(columns),
                                 bias: bias?.host(columns), rows: rows, columns: columns)
    }

    public func layerNormBackward(dInput: Tensor, dWeight: Tensor, dBias: Tensor?, dOut: Tensor, input: Tensor,
                                  weight: Tensor, mean: Tensor, rstd: Tensor, rows: Int, columns: Int) {
        LayerNormKernels.backward(dInput: dInput.host(rows * columns), dWeight: dWeight.host(columns),
                                  dBias: dBias?.host(columns), dOut: dOut.host(rows * columns),
                                  input: input.host(rows * columns), weight: weight.host(columns),
                                  mean: mean.host(rows), rstd: rstd.host(rows), rows: rows, columns: columns)
    }

    // MARK: Activations

    public func biasGELUForward(pre: Tensor, out: Tensor, bias: Tensor?, rows: Int, columns: Int) {
        ActivationKernels.biasGELUForward(pre: pre.host(rows * columns), out: out.host(rows * columns),
                                          bias: bias?.host(columns), rows: rows, columns: columns)
    }

    public func biasGELUForwardSavingDerivative(preToDerivative: Tensor, out: Tensor, bias: Tensor?,
                                                rows: Int, columns: Int) {
        ActivationKernels.biasGELUForwardSavingDerivative(preToDerivative: preToDerivative.host(rows * columns),
                                                          out: out.host(rows * columns), bias: bias?.host(columns),
                                                          rows: rows, columns: columns)
    }

    public func geluBackward(dPre: Tensor, dOut: Tensor, pre: Tensor, count: Int) {
        ActivationKernels.geluBackward(dPre: dPre.host(count), dOut: dOut.host(count), pre: pre.host(count), count: count)
    }

    public func biasReLUForward(pre: Tensor, out: Tensor, bias: Tensor?, rows: Int, columns: Int) {
        ActivationKernels.biasReLUForward(pre: pre.host(rows * columns), out: out.host(rows * columns),
                                          bias: bias?.host(columns), rows: rows, columns: columns)
    }

    public func reluBackward(dPre: Tensor, dOut: Tensor, pre: Tensor, count: Int) {
        ActivationKernels.reluBackward(dPre: dPre.host(count), dOut: dOut.host(count), pre: pre.host(count), count: count)
    }

    // MARK: Loss

    public func softmaxCrossEntropyForward(logits: Tensor, targets: ArraySlice<Int32>, losses: Tensor,
                                           rows: Int, classes: Int) {
        targets.withUnsafeBufferPointer { tg in
            guard let tp = tg.baseAddress else { return }
            precondition(tg.count >= rows, "\(tg.count) targets for \(rows) rows")
            SoftmaxCrossEntropyKernels.forward(logits: logits.host(rows * classes), targets: tp, losses: losses.host(rows),
                                               rows: rows, classes: classes)
        }
    }

    public func softmaxCrossEntropyBackward(probabilities: Tensor, targets: ArraySlice<Int32>, rows: Int, classes: Int,
                                            scale: Float) {
        targets.withUnsafeBufferPointer { tg in
            guard let tp = tg.baseAddress else { return }
            precondition(tg.count >= rows, "\(tg.count) targets for \(rows) rows")
            SoftmaxCrossEntropyKernels.backward(probabilities: probabilities.host(rows * classes), targets: tp,
                                                rows: rows, classes: classes, scale: scale)
        }
    }

    // MARK: Attention

    /// One [T, T] score block per compute thread: backward's (batch, head) pairs run in
    /// parallel, each thread reusing its own block. (`StreamedGPT.peakBytes` counts
    /// exactly this many floats.)
    public func attentionScratchShape(sequence: Int) -> [Int] {
        [ComputeThreads.count, AttentionKernels.scratchPerThread(sequence: sequence)]
    }

    public func attentionForward(out: Tensor, probs: Tensor, qkv: Tensor, batch: Int, sequence: Int, heads: Int,
                                 channels: Int) {
        let n = batch * sequence
        AttentionKernels.forward(out: out.host(n * channels), probs: probs.host(batch * heads * sequence * sequence),
                                 qkv: qkv.host(n * 3 * channels),
                                 batch: batch, sequence: sequence, heads: heads, channels: channels)
    }

    public func attentionBackward(dQKV: Tensor, dOut: Tensor, qkv: Tensor, probs: Tensor, scratch: Tensor,
                                  batch: Int, sequence: Int, heads: Int, channels: Int) {
        let n = batch * sequence
        // The scratch holds whole per-thread blocks; its leading dimension says how many.
        let perThread = AttentionKernels.scratchPerThread(sequence: sequence)
        let threads = scratch.count / max(1, perThread)
        precondition(threads >= 1, "attention scratch of \(scratch.count) floats is below one block of \(perThread)")
        AttentionKernels.backward(dQKV: dQKV.host(n * 3 * channels), dOut: dOut.host(n * channels),
                                  qkv: qkv.host(n * 3 * channels), probs: probs.host(batch * heads * sequence * sequence),
                                  scratch: scratch.data, scratchThreads: threads,
                                  batch: batch, sequence: sequence, heads: heads, channels: channels)
    }

    // MARK: Embeddings

    public func embeddingForward(out: Tensor, tokens: ArraySlice<Int32>, wte: Tensor, wpe: Tensor,
                                 batch: Int, sequence: Int, channels: Int) {
        tokens.withUnsafeBufferPointer { tk in
            guard let tp = tk.baseAddress else { return }
            precondition(tk.count >= batch * sequence, "\(tk.count) tokens for \(batch)×\(sequence)")
            EmbeddingKernels.forward(out: out.host(batch * sequence * channels), tokens: tp, wte: wte.data,
                                     wpe: wpe.host(sequence * channels), batch: batch, sequence: sequence, channels: channels)
        }
    }

    public func embeddingBackward(dWTE: Tensor, dWPE: Tensor, dOut: Tensor, tokens: ArraySlice<Int32>,
                                  batch: Int, sequence: Int, channels: Int) {
        tokens.withUnsafeBufferPointer { tk in
            guard let tp = tk.baseAddress else { return }
            precondition(tk.count >= batch * sequence, "\(tk.count) tokens for \(batch)×\(sequence)")
            EmbeddingKernels.backward(dWTE: dWTE.data, dWPE: dWPE.host(sequence * channels),
                                      dOut: dOut.host(batch * sequence * channels), tokens: tp,
                                      batch: batch, sequence: sequence, channels: channels)
        }
    }

    // MARK: Elementwise

    public func add(out: Tensor, _ a: Tensor, _ b: Tensor, count: Int) {
        ElementwiseKernels.add(out.host(count), a.host(count), b.host(count), count: count)
    }

    public func accumulate(_ y: Tensor, _ x: Tensor, count: Int) {
        ElementwiseKernels.accumulate(y.host(count), x.host(count), count: count)
    }

    public func multiply(_ y: Tensor, by x: Tensor, count: Int) {
        ElementwiseKernels.multiply(y.host(count), by: x.host(count), count: count)
    }

    public func scale(_ y: Tensor, by s: Float, count: Int) {
        ElementwiseKernels.scale(y.host(count), by: s, count: count)
    }

    public func sumOfSquares(_ x: Tensor, count: Int) -> Double {
        ElementwiseKernels.sumOfSquares(x.host(count), count: count)
    }

    public func allFinite(_ x: Tensor, count: Int) -> Bool {
        ElementwiseKernels.allFinite(x.host(count), count: count)
    }
}

extension Tensor {
    /// The host address of this tensor's first `elements` values. The check turns a
    /// caller's size mistake into a trap instead of a write past the tensor.
    @inline(__always)
    fileprivate func host(_ elements: Int) -> UnsafeMutablePointer<Float> {
        precondition(elements <= count, "a kernel needs \(elements) elements of a tensor of \(count)")
        return data
    }
}
