import TributaryTensor

/// `ComputeKernels` on an `OpenCLDevice`: each `Tensor` operand becomes a view into its
/// storage block's device copy (uploaded when the host's values are newer), the
/// operation runs on the device, and what it writes is marked newest there.
///
/// After the device's first failure every call is skipped and host reads return stale
/// values; `OpenCLDevice.checkHealthy()` throws that failure for the caller to act on.
struct OpenCLComputeKernels: ComputeKernels {
    let device: OpenCLDevice

    private var ops: OpenCLKernels { device.operations }

    /// Runs `body` unless the device has already failed; records its failure.
    private func run(_ body: () throws(OpenCLError) -> Void) {
        guard device.record.firstFailure == nil else { return }
        do throws(OpenCLError) { try body() } catch { device.record.fail(error) }
    }

    /// `tensor` on the device. `writes`: the operation writes it (accumulating counts).
    private func view(_ tensor: Tensor, writes: Bool = false) throws(OpenCLError) -> DeviceTensor {
        guard let residency = tensor.storage.residency else {
            throw .invalidArgument("a tensor from another device's allocator was given to \(device.name)")
        }
        let context = device.context, record = device.record, count = tensor.storage.count
        let copy = try residency.deviceCopy(of: tensor.storage, willWrite: writes) { () throws(OpenCLError) in
            try OpenCLStorageCopy(count: count, context: context, record: record)
        }
        copy.orderComputeAfterTransfer()
        return try DeviceTensor(viewing: copy.tensor, offset: tensor.offset, count: tensor.count)
    }

    private func view(_ tensor: Tensor?, writes: Bool = false) throws(OpenCLError) -> DeviceTensor? {
        guard let tensor else { return nil }
        return try view(tensor, writes: writes) as DeviceTensor
    }

    // MARK: Matrix products

    func linearForward(out: Tensor, input: Tensor, weight: Tensor, bias: Tensor?,
                       rows: Int, inFeatures: Int, outFeatures: Int) {
        run { () throws(OpenCLError) in
            try ops.linearForward(out: view(out, writes: true), input: view(input), weight: view(weight),
                                  bias: view(bias), rows: rows, inFeatures: inFeatures, outFeatures: outFeatures)
        }
    }

    func linearBackward(dInput: Tensor?, dWeight: Tensor, dBias: Tensor?, dOut: Tensor,
                        input: Tensor, weight: Tensor, rows: Int, inFeatures: Int, outFeatures: Int,
                        accumulateInput: Bool) {
        run { () throws(OpenCLError) in
            try ops.linearBackward(dInput: view(dInput, writes: true), dWeight: view(dWeight, writes: true),
                                   dBias: view(dBias, writes: true), dOut: view(dOut), input: view(input),
                                   weight: view(weight), rows: rows, inFeatures: inFeatures, outFeatures: outFeatures,
                                   accumulateInput: accumulateInput)
        }
    }

    // MARK: LayerNorm

    func layerNormForward(out: Tensor, mean: Tensor, rstd: Tensor, input: Tensor, weight: Tensor, bias: Tensor?,
                          rows: Int, columns: Int) {
        run { () throws(OpenCLError) in
            try ops.layerNormForward(out: view(out, writes: true), mean: view(mean, writes: true),
                                     rstd: view(rstd, writes: true), input: view(input), weight: view(weight),
                                     bias: view(bias), rows: rows, columns: columns)
        }
    }

    func layerNormBackward(dInput: Tensor, dWeight: Tensor, dBias: Tensor?, dOut: Tensor, input: Tensor,
                           weight: Tensor, mean: Tensor, rstd: Tensor, rows: Int, columns: Int) {
        run { () throws(OpenCLError) in
            try ops.layerNormBackward(dInput: view(dInput, writes: true), dWeight: view(dWeight, writes: true),
                                      dBias: view(dBias, writes: true), dOut: view(dOut), input: view(input),
                                      weight: view(weight), mean: view(mean), rstd: view(rstd),
                                      rows: rows, columns: columns)
        }
    }

    // MARK: Activations

    func biasGELUForward(pre: Tensor, out: Tensor, bias: Tensor?, rows: Int, columns: Int) {
        run { () throws(OpenCLError) in
            try ops.biasGELUForward(pre: view(pre, writes: true), out: view(out, writes: true), bias: view(bias),
                                    rows: rows, columns: columns)
        }
    }

    func biasGELUForwardSavingDerivative(preToDerivative: Tensor, out: Tensor, bias: Tensor?, rows: Int, columns: Int) {
        run { () throws(OpenCLError) in
            try ops.biasGELUForwardSavingDerivative(preToDerivative: view(preToDerivative, writes: true),
                                                    out: view(out, writes: true), bias: view(bias),
                                                    rows: rows, columns: columns)
        }
    }

    func geluBackward(dPre: Tensor, dOut: Tensor, pre: Tensor, count: Int) {
        run { () throws(OpenCLError) in
            try ops.geluBackward(dPre: view(dPre, writes: true), dOut: view(dOut), pre: view(pre), count: count)
        }
    }

    func biasReLUForward(pre: Tensor, out: Tensor, bias: Tensor?, rows: Int, columns: Int) {
        run { () throws(OpenCLError) in
            try ops.biasReLUForward(pre: view(pre, writes: true), out: view(out, writes: true), bias: view(bias),
                                    rows: rows, columns: columns)
        }
    }

    func reluBackward(dPre: Tensor, dOut: Tensor, pre: Tensor, count: Int) {
        run { () throws(OpenCLError) in
            try ops.reluBackward(dPre: view(dPre, writes: true), dOut: view(dOut), pre: view(pre), count: count)
        }
    }

    // MARK: Loss

    func softmaxCrossEntropyForward(logits: Tensor, targets: ArraySlice<Int32>, losses: Tensor, rows: Int, classes: Int) {
        run { () throws(OpenCLError) in
            try ops.softmaxCrossEntropyForward(logits: view(logits, writes: true), targets: targets,
                                               losses: view(losses, writes: true), rows: rows, classes: classes)
        }
    }

    func softmaxCrossEntropyBackward(probabilities: Tensor, targets: ArraySlice<Int32>, rows: Int, classes: Int,
                                     scale: Float) {
        run { () throws(OpenCLError) in
            try ops.softmaxCrossEntropyBackward(probabilities: view(probabilities, writes: true), targets: targets,
                                                rows: rows, classes: classes, scale: scale)
        }
    }

    // MARK: Attention

    func attentionScratchShape(sequence: Int) -> [Int] { ops.attentionScratchShape(sequence: sequence) }

    func attentionForward(out: Tensor, probs: Tensor, qkv: Tensor, batch: Int, sequence: Int, heads: Int, channels: Int) {
        run { () throws(OpenCLError) in
            try ops.attentionForward(out: view(out, writes: true), probs: view(probs, writes: true), qkv: view(qkv),
                                     batch: batch, sequence: sequence, heads: heads, channels: channels)
        }
    }

    func attentionBackward(dQKV: Tensor, dOut: Tensor, qkv: Tensor, probs: Tensor, scratch: Tensor,
                           batch: Int, sequence: Int, heads: Int, channels: Int) {
        run { () throws(OpenCLError) in
            try ops.attentionBackward(dQKV: view(dQKV, writes: true), dOut: view(dOut), qkv: view(qkv),
                                      probs: view(probs), scratch: view(scratch, writes: true),
                                      batch: batch, sequence: sequence, heads: heads, channels: channels)
        }
    }

    // MARK: Embeddings

    func embeddingForward(out: Tensor, tokens: ArraySlice<Int32>, wte: Tensor, wpe: Tensor,
                          batch: Int, sequence: Int, channels: Int) {
        run { () throws(OpenCLError) in
            try ops.embeddingForward(out: view(out, writes: true), tokens: tokens, wte: view(wte), wpe: view(wpe),
                                     batch: batch, sequence: sequence, channels: channels)
        }
    }

    func embeddingBackward(dWTE: Tensor, dWPE: Tensor, dOut: Tensor, tokens: ArraySlice<Int32>,
                           batch: Int, sequence: Int, channels: Int) {
        run { () throws(OpenCLError) in
            try ops.embeddingBackward(dWTE: view(dWTE, writes: true), dWPE: view(dWPE, writes: true), dOut: view(dOut),
                                      tokens: tokens, batch: batch, sequence: sequence, channels: channels)
        }
    }

    // MARK: Elementwise

    func add(out: Tensor, _ a: Tensor, _ b: Tensor, count: Int) {
        run { () throws(OpenCLError) in try ops.add(out: view(out, writes: true), view(a), view(b), count: count) }
    }

    func accumulate(_ y: Tensor, _ x: Tensor, count: Int) {
        run { () throws(OpenCLError) in try ops.accumulate(view(y, writes: true), view(x), count: count) }
    }

    func multiply(_ y: Tensor, by x: Tensor, count: Int) {
        run { () throws(OpenCLError) in try ops.multiply(view(y, writes: true), by: view(x), count: count) }
    }

    func scale(_ y: Tensor, by s: Float, count: Int) {
        run { () throws(OpenCLError) in try ops.scale(view(y, writes: true), by: s, count: count) }
    }

    func sumOfSquares(_ x: Tensor, count: Int) -> Double {
        var result = 0.0
        run { () throws(OpenCLError) in result = try ops.sumOfSquares(view(x), count: count) }
        return result
    }

    func allFinite(_ x: Tensor, count: Int) -> Bool {
        // A failed device says "not finite": its values are not to be trusted.
        var result = false
        run { () throws(OpenCLError) in result = try ops.allFinite(view(x), count: count) }
        return result
    }
}
