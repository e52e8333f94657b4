import CCLBlast
import COpenCL
import Foundation

/// The operations of `ComputeKernels` on an OpenCL device, over `DeviceTensor`s, with the
/// same argument names and the same semantics as `CPUKernels` (the tests compare them).
///
/// Differences from the protocol, for the device integration to bridge: operands are
/// whole `DeviceTensor`s (no views into a larger buffer yet), and every call throws
/// `OpenCLError` (a device can fail where the CPU cannot). Work is enqueued on the
/// context's in-order compute queue; a host read (`download`, `sumOfSquares`,
/// `allFinite`) waits for everything before it.
public final class OpenCLKernels: @unchecked Sendable {
    // Unchecked: cl_kernel objects are shared, and OpenCL 1.2 lets one thread at a time set
    // a kernel's arguments and enqueue it; `launchLock` serialises exactly that.
    public let context: OpenCLContext
    /// The programs built at start-up (tests check where they came from).
    public let programs: [OpenCLProgram]
    private let kernels: [String: cl_kernel]
    private let launchLock = NSLock()

    static let sources: [(name: String, text: String, kernels: [String])] = [
        (ElementwiseSource.name, ElementwiseSource.text, ElementwiseSource.kernels),
        (ActivationSource.name, ActivationSource.text, ActivationSource.kernels),
        (LayerNormSource.name, LayerNormSource.text, LayerNormSource.kernels),
        (SoftmaxCrossEntropySource.name, SoftmaxCrossEntropySource.text, SoftmaxCrossEntropySource.kernels),
        (EmbeddingSource.name, EmbeddingSource.text, EmbeddingSource.kernels),
        (AttentionSource.name, AttentionSource.text, AttentionSource.kernels),
    ]
    /// Work-group size of the row kernels (`GROUP` in the prelude).
    static let group = 64

    /// Builds every program (from `cache` when it holds them) and creates the kernels.
    public init(context: OpenCLContext, cache: OpenCLProgramCache) throws(OpenCLError) {
        self.context = context
        var programs: [OpenCLProgram] = []
        var kernels: [String: cl_kernel] = [:]
        do throws(OpenCLError) {
            for source in Self.sources {
                let program = try cache.build(name: source.name, source: source.text, context: context)
                programs.append(program)
                for name in source.kernels {
                    var code: cl_int = CL_SUCCESS
                    guard let kernel = clCreateKernel(program.program, name, &code), code == CL_SUCCESS else {
                        throw .call("clCreateKernel(\(name))", code: code)
                    }
                    kernels[name] = kernel
                }
            }
        } catch {
            for kernel in kernels.values { clReleaseKernel(kernel) }
            throw error
        }
        self.programs = programs
        self.kernels = kernels
    }

    deinit {
        for kernel in kernels.values { clReleaseKernel(kernel) }
    }

    // MARK: Matrix products (CLBlast)

    /// out[rows, outF] = input[rows, inF] · weight[outF, inF]ᵀ (+ bias[outF]).
    public func linearForward(out: DeviceTensor, input: DeviceTensor, weight: DeviceTensor, bias: DeviceTensor?,
                              rows: Int, inFeatures: Int, outFeatures: Int) throws(OpenCLError) {
        try require(out, rows * outFeatures, "out")
        try require(input, rows * inFeatures, "input")
        try require(weight, outFeatures * inFeatures, "weight")
        if let bias { try require(bias, outFeatures, "bias") }
        try sgemm(transA: false, transB: true, m: rows, n: outFeatures, k: inFeatures,
                  a: input, lda: inFeatures, b: weight, ldb: inFeatures, beta: 0, c: out, ldc: outFeatures)
        if let bias, rows * outFeatures > 0 {
            try launch("tb_add_bias", global: rows * outFeatures, [.buffer(out), .buffer(bias), .int(outFeatures)])
        }
    }

    /// dInput = dOut · weight (overwritten, or added when `accumulateInput`; skipped when
    /// nil); dWeight += dOutᵀ · input; dBias += Σ_rows dOut.
    public func linearBackward(dInput: DeviceTensor?, dWeight: DeviceTensor, dBias: DeviceTensor?, dOut: DeviceTensor,
                               input: DeviceTensor, weight: DeviceTensor, rows: Int, inFeatures: Int, outFeatures: Int,
                               accumulateInput: Bool) throws(OpenCLError) {
        try require(dOut, rows * outFeatures, "dOut")
        try require(input, rows * inFeatures, "input")
        try require(weight, outFeatures * inFeatures, "weight")
        try require(dWeight, outFeatures * inFeatures, "dWeight")
        if let dInput {
            try require(dInput, rows * inFeatures, "dInput")
            try sgemm(transA: false, transB: false, m: rows, n: inFeatures, k: outFeatures,
                      a: dOut, lda: outFeatures, b: weight, ldb: inFeatures, beta: accumulateInput ? 1 : 0,
                      c: dInput, ldc: inFeatures)
        }
        try sgemm(transA: true, transB: false, m: outFeatures, n: inFeatures, k: rows,
                  a: dOut, lda: outFeatures, b: input, ldb: inFeatures, beta: 1, c: dWeight, ldc: inFeatures)
        if let dBias {
            try require(dBias, outFeatures, "dBias")
            try launch("tb_accumulate_column_sums", global: outFeatures,
                       [.buffer(dBias), .buffer(dOut), .int(rows), .int(outFeatures)])
        }
    }

    /// C[m, n] = op(A) · op(B) + beta · C, row-major, on the compute queue.
    func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, a: DeviceTensor, lda: Int,
               b: DeviceTensor, ldb: Int, beta: Float, c: DeviceTensor, ldc: Int) throws(OpenCLError) {
        guard m > 0, n > 0 else { return }
        guard k > 0 else {
            // An empty sum: C = beta · C, which CLBlast refuses to be asked for.
            if beta == 0 { try fill(c, count: m * n, value: 0) }
            return
        }
        var queue: cl_command_queue? = context.computeQueue
        let status = CLBlastSgemm(CLBlastLayoutRowMajor, transA ? CLBlastTransposeYes : CLBlastTransposeNo,
                                  transB ? CLBlastTransposeYes : CLBlastTransposeNo, m, n, k, 1,
                                  a.buffer, a.offset, lda, b.buffer, b.offset, ldb, beta, c.buffer, c.offset, ldc,
                                  &queue, nil)
        guard status == CLBlastSuccess else { throw .clblast("CLBlastSgemm", status: status.rawValue) }
    }

    // MARK: LayerNorm (ε = 1e-5, over the last dimension)

    public func layerNormForward(out: DeviceTensor, mean: DeviceTensor, rstd: DeviceTensor, input: DeviceTensor,
                                 weight: DeviceTensor, bias: DeviceTensor?, rows: Int, columns: Int) throws(OpenCLError) {
        try require(out, rows * columns, "out")
        try require(input, rows * columns, "input")
        try require(mean, rows, "mean")
        try require(rstd, rows, "rstd")
        try require(weight, columns, "weight")
        if let bias { try require(bias, columns, "bias") }
        guard rows > 0, columns > 0 else { return }
        try launch("tb_layer_norm_forward", global: rows * Self.group, local: Self.group,
                   [.buffer(out), .buffer(mean), .buffer(rstd), .buffer(input), .buffer(weight),
                    .buffer(bias ?? weight), .int(bias == nil ? 0 : 1), .int(columns)])
    }

    /// dInput += ∂L/∂x; dWeight += Σ dOut·x̂; dBias += Σ dOut.
    public func layerNormBackward(dInput: DeviceTensor, dWeight: DeviceTensor, dBias: DeviceTensor?, dOut: DeviceTensor,
                                  input: DeviceTensor, weight: DeviceTensor, mean: DeviceTensor, rstd: DeviceTensor,
                                  rows: Int, columns: Int) throws(OpenCLError) {
        for (tensor, name) in [(dInput, "dInput"), (dOut, "dOut"), (input, "input")] {
            try require(tensor, rows * columns, name)
        }
        try require(dWeight, columns, "dWeight")
        try require(weight, columns, "weight")
        try require(mean, rows, "mean")
        try require(rstd, rows, "rstd")
        if let dBias { try require(dBias, columns, "dBias") }
        guard rows > 0, columns > 0 else { return }
        try launch("tb_layer_norm_backward_input", global: rows * Self.group, local: Self.group,
                   [.buffer(dInput), .buffer(dOut), .buffer(input), .buffer(weight), .buffer(mean), .buffer(rstd),
                    .int(columns)])
        try launch("tb_layer_norm_backward_parameters", global: columns,
                   [.buffer(dWeight), .buffer(dBias ?? dWeight), .int(dBias == nil ? 0 : 1), .buffer(dOut),
                    .buffer(input), .buffer(mean), .buffer(rstd), .int(rows), .int(columns)])
    }

    // MARK: Activations (GELU is GPT-2's tanh approximation)

    /// pre[r, c] += bias[c] (kept for backward); out = gelu(pre).
    public func biasGELUForward(pre: DeviceTensor, out: DeviceTensor, bias: DeviceTensor?,
                                rows: Int, columns: Int) throws(OpenCLError) {
        try biasActivation("tb_bias_gelu_forward", pre: pre, out: out, bias: bias, rows: rows, columns: columns)
    }

    /// out = gelu(pre + bias), and `preToDerivative` is replaced by gelu′(pre + bias).
    public func biasGELUForwardSavingDerivative(preToDerivative: DeviceTensor, out: DeviceTensor, bias: DeviceTensor?,
                                                rows: Int, columns: Int) throws(OpenCLError) {
        try biasActivation("tb_bias_gelu_forward_saving_derivative", pre: preToDerivative, out: out, bias: bias,
                           rows: rows, columns: columns)
    }

    /// dPre = dOut · gelu′(pre) over `count` elements; `dPre` may be `dOut`.
    public func geluBackward(dPre: DeviceTensor, dOut: DeviceTensor, pre: DeviceTensor, count: Int) throws(OpenCLError) {
        try elementwise("tb_gelu_backward", [dPre, dOut, pre], count: count)
    }

    /// pre += bias (kept for backward); out = max(pre, 0).
    public func biasReLUForward(pre: DeviceTensor, out: DeviceTensor, bias: DeviceTensor?,
                                rows: Int, columns: Int) throws(OpenCLError) {
        try biasActivation("tb_bias_relu_forward", pre: pre, out: out, bias: bias, rows: rows, columns: columns)
    }

    /// dPre = dOut where pre > 0, else 0; `dPre` may be `dOut`.
    public func reluBackward(dPre: DeviceTensor, dOut: DeviceTensor, pre: DeviceTensor, count: Int) throws(OpenCLError) {
        try elementwise("tb_relu_backward", [dPre, dOut, pre], count: count)
    }

    private func biasActivation(_ kernel: String, pre: DeviceTensor, out: DeviceTensor, bias: DeviceTensor?,
                                rows: Int, columns: Int) throws(OpenCLError) {
        try require(pre, rows * columns, "pre")
        try require(out, rows * columns, "out")
        if let bias { try require(bias, columns, "bias") }
        guard rows * columns > 0 else { return }
        try launch(kernel, global: rows * columns,
                   [.buffer(pre), .buffer(out), .buffer(bias ?? pre), .int(bias == nil ? 0 : 1), .int(columns)])
    }

    // MARK: Loss

    /// Replaces each row of logits[rows, classes] by its softmax, in place, and writes
    /// losses[r] = −log p[r, targets[r]].
    public func softmaxCrossEntropyForward(logits: DeviceTensor, targets: ArraySlice<Int32>, losses: DeviceTensor,
                                           rows: Int, classes: Int) throws(OpenCLError) {
        try require(logits, rows * classes, "logits")
        try require(losses, rows, "losses")
        try requireIndices(targets, count: rows, below: classes, "targets")
        guard rows > 0 else { return }
        let targetBuffer = try context.uploadIndices(targets.prefix(rows))
        try launch("tb_softmax_cross_entropy_forward", global: rows * Self.group, local: Self.group,
                   [.buffer(logits), .buffer(targetBuffer), .buffer(losses), .int(classes)])
    }

    /// (p − onehot(target)) · scale, in place over the probabilities `forward` left.
    public func softmaxCrossEntropyBackward(probabilities: DeviceTensor, targets: ArraySlice<Int32>, rows: Int,
                                            classes: Int, scale: Float) throws(OpenCLError) {
        try require(probabilities, rows * classes, "probabilities")
        try requireIndices(targets, count: rows, below: classes, "targets")
        guard rows * classes > 0 else { return }
        let targetBuffer = try context.uploadIndices(targets.prefix(rows))
        try launch("tb_softmax_cross_entropy_backward", global: rows * classes,
                   [.buffer(probabilities), .buffer(targetBuffer), .int(classes), .float(scale)])
    }

    // MARK: Causal self-attention over a packed QKV buffer

    /// Backward's scratch: one [T, T] block of dS, reused by each (batch, head) pair in turn.
    public func attentionScratchShape(sequence: Int) -> [Int] { [sequence, sequence] }

    /// out[B, T, C] = softmax(mask(Q·Kᵀ / √(C/H))) · V; probs[B, H, T, T] keeps the weights
    /// (zero above the diagonal).
    public func attentionForward(out: DeviceTensor, probs: DeviceTensor, qkv: DeviceTensor, batch: Int, sequence: Int,
                                 heads: Int, channels: Int) throws(OpenCLError) {
        try requireHeads(heads: heads, channels: channels)
        try require(out, batch * sequence * channels, "out")
        try require(probs, batch * heads * sequence * sequence, "probs")
        try require(qkv, batch * sequence * 3 * channels, "qkv")
        guard batch * heads * sequence > 0 else { return }
        try launch("tb_attention_forward", global: batch * heads * sequence,
                   [.buffer(out), .buffer(probs), .buffer(qkv), .int(sequence), .int(heads), .int(channels)])
    }

    /// dQKV[B, T, 3C] (overwritten) from dOut[B, T, C], the saved qkv and probs.
    public func attentionBackward(dQKV: DeviceTensor, dOut: DeviceTensor, qkv: DeviceTensor, probs: DeviceTensor,
                                  scratch: DeviceTensor, batch: Int, sequence: Int, heads: Int,
                                  channels: Int) throws(OpenCLError) {
        try requireHeads(heads: heads, channels: channels)
        try require(dQKV, batch * sequence * 3 * channels, "dQKV")
        try require(qkv, batch * sequence * 3 * channels, "qkv")
        try require(dOut, batch * sequence * channels, "dOut")
        try require(probs, batch * heads * sequence * sequence, "probs")
        try require(scratch, sequence * sequence, "scratch")
        let headSize = channels / heads
        guard sequence > 0, headSize > 0 else { return }
        let shape: [KernelArgument] = [.int(sequence), .int(heads), .int(channels)]
        // One pair at a time through the shared scratch; the queue is in order, so the
        // next pair's scores wait for this pair's readers.
        for b in 0..<batch {
            for h in 0..<heads {
                let pair: [KernelArgument] = [.int(b), .int(h)]
                try launch("tb_attention_backward_scores", global: sequence,
                           [.buffer(scratch), .buffer(dOut), .buffer(qkv), .buffer(probs)] + pair + shape)
                try launch("tb_attention_backward_query", global: sequence * headSize,
                           [.buffer(dQKV), .buffer(scratch), .buffer(qkv)] + pair + shape)
                try launch("tb_attention_backward_key_value", global: sequence * headSize,
                           [.buffer(dQKV), .buffer(scratch), .buffer(dOut), .buffer(qkv), .buffer(probs)] + pair + shape)
            }
        }
    }

    // MARK: Embeddings (GPT-2's wte and wpe)

    /// out[b, t, :] = wte[tokens[b·T + t], :] + wpe[t, :].
    public func embeddingForward(out: DeviceTensor, tokens: ArraySlice<Int32>, wte: DeviceTensor, wpe: DeviceTensor,
                                 batch: Int, sequence: Int, channels: Int) throws(OpenCLError) {
        let n = batch * sequence
        try require(out, n * channels, "out")
        try require(wpe, sequence * channels, "wpe")
        try requireIndices(tokens, count: n, below: wte.count / max(1, channels), "tokens")
        guard n * channels > 0 else { return }
        let tokenBuffer = try context.uploadIndices(tokens.prefix(n))
        try launch("tb_embedding_forward", global: n * channels,
                   [.buffer(out), .buffer(tokenBuffer), .buffer(wte), .buffer(wpe), .int(sequence), .int(channels)])
    }

    /// dWTE[tokens[n]] += dOut[n]; dWPE[n mod T] += dOut[n], deterministically.
    public func embeddingBackward(dWTE: DeviceTensor, dWPE: DeviceTensor, dOut: DeviceTensor, tokens: ArraySlice<Int32>,
                                  batch: Int, sequence: Int, channels: Int) throws(OpenCLError) {
        let n = batch * sequence
        try require(dOut, n * channels, "dOut")
        try require(dWPE, sequence * channels, "dWPE")
        try requireIndices(tokens, count: n, below: dWTE.count / max(1, channels), "tokens")
        guard n * channels > 0 else { return }
        // Each distinct token's positions, ascending (a counting sort keeps them in order).
        let used = Array(tokens.prefix(n))
        var positionsByToken: [Int32: [Int32]] = [:]
        for (position, token) in used.enumerated() { positionsByToken[token, default: []].append(Int32(position)) }
        let distinct = positionsByToken.keys.sorted()
        var starts: [Int32] = [0]
        var positions: [Int32] = []
        positions.reserveCapacity(n)
        for token in distinct {
            positions += positionsByToken[token] ?? []
            starts.append(Int32(positions.count))
        }
        let distinctBuffer = try context.uploadIndices(distinct[...])
        let startBuffer = try context.uploadIndices(starts[...])
        let positionBuffer = try context.uploadIndices(positions[...])
        try launch("tb_embedding_backward_tokens", global: distinct.count * channels,
                   [.buffer(dWTE), .buffer(dOut), .buffer(distinctBuffer), .buffer(startBuffer), .buffer(positionBuffer),
                    .int(channels)])
        try launch("tb_embedding_backward_positions", global: sequence * channels,
                   [.buffer(dWPE), .buffer(dOut), .int(batch), .int(sequence), .int(channels)])
    }

    // MARK: Elementwise, over the first `count` elements

    /// out = a + b.
    public func add(out: DeviceTensor, _ a: DeviceTensor, _ b: DeviceTensor, count: Int) throws(OpenCLError) {
        try elementwise("tb_add", [out, a, b], count: count)
    }

    /// y += x.
    public func accumulate(_ y: DeviceTensor, _ x: DeviceTensor, count: Int) throws(OpenCLError) {
        try elementwise("tb_accumulate", [y, x], count: count)
    }

    /// y *= x.
    public func multiply(_ y: DeviceTensor, by x: DeviceTensor, count: Int) throws(OpenCLError) {
        try elementwise("tb_multiply", [y, x], count: count)
    }

    /// y *= s.
    public func scale(_ y: DeviceTensor, by s: Float, count: Int) throws(OpenCLError) {
        try require(y, count, "y")
        guard count > 0 else { return }
        try launch("tb_scale", global: count, [.buffer(y), .float(s)])
    }

    /// Σ x²: float sums over the CPU's blocks of 4096 values on the device, added in
    /// double on the host (few devices have fp64; the blocks keep the float error small).
    public func sumOfSquares(_ x: DeviceTensor, count: Int) throws(OpenCLError) -> Double {
        try require(x, count, "x")
        guard count > 0 else { return 0 }
        let blocks = (count + ElementwiseSource.sumBlock - 1) / ElementwiseSource.sumBlock
        let partial = try DeviceTensor(shape: [blocks], allocator: context.allocator)
        try launch("tb_sum_of_squares_blocks", global: blocks * Self.group, local: Self.group,
                   [.buffer(x), .int(count), .buffer(partial)])
        return try context.download(partial).reduce(0.0) { $0 + Double($1) }
    }

    /// True when every value is finite.
    public func allFinite(_ x: DeviceTensor, count: Int) throws(OpenCLError) -> Bool {
        try require(x, count, "x")
        guard count > 0 else { return true }
        let flag = try context.zeros(shape: [1])
        try launch("tb_find_nonfinite", global: count, [.buffer(x), .buffer(flag)])
        // The flag is an int 0 or 1; read as a float its bits are 0 or a denormal ≠ 0.
        return try context.download(flag)[0].bitPattern == 0
    }

    // MARK: Launching

    enum KernelArgument {
        case buffer(DeviceTensor)
        case int(Int)
        case float(Float)
    }

    private func elementwise(_ kernel: String, _ tensors: [DeviceTensor], count: Int) throws(OpenCLError) {
        for (index, tensor) in tensors.enumerated() { try require(tensor, count, "operand \(index)") }
        guard count > 0 else { return }
        try launch(kernel, global: count, tensors.map { .buffer($0) })
    }

    /// Sets the arguments and enqueues a 1-D range of `global` items (in groups of
    /// `local`, which must divide it; nil lets the driver choose).
    func launch(_ name: String, global: Int, local: Int? = nil, _ arguments: [KernelArgument]) throws(OpenCLError) {
        guard let kernel = kernels[name] else { throw .invalidArgument("no kernel \(name)") }
        guard global > 0 else { return }
        launchLock.lock()
        defer { launchLock.unlock() }
        var slot = 0
        for (index, argument) in arguments.enumerated() {
            defer { slot += 1 }
            let code: cl_int
            switch argument {
            case let .buffer(tensor):
                // Two kernel arguments: the buffer and the view's offset (`VIEW` in the prelude).
                var mem: cl_mem? = tensor.buffer
                try check(clSetKernelArg(kernel, cl_uint(slot), MemoryLayout<cl_mem>.size, &mem),
                          "clSetKernelArg(\(name), \(slot))")
                slot += 1
                var offset = cl_long(tensor.offset)
                code = clSetKernelArg(kernel, cl_uint(slot), MemoryLayout<cl_long>.size, &offset)
            case let .int(value):
                guard let narrow = Int32(exactly: value) else {
                    throw .invalidArgument("\(name) argument \(index) = \(value) exceeds 32 bits")
                }
                var v = cl_int(narrow)
                code = clSetKernelArg(kernel, cl_uint(slot), MemoryLayout<cl_int>.size, &v)
            case let .float(value):
                var v = value
                code = clSetKernelArg(kernel, cl_uint(slot), MemoryLayout<Float>.size, &v)
            }
            try check(code, "clSetKernelArg(\(name), \(slot))")
        }
        var globalSize = global
        if let local {
            var localSize = local
            try check(clEnqueueNDRangeKernel(context.computeQueue, kernel, 1, nil, &globalSize, &localSize, 0, nil, nil),
                      "clEnqueueNDRangeKernel(\(name))")
        } else {
            try check(clEnqueueNDRangeKernel(context.computeQueue, kernel, 1, nil, &globalSize, nil, 0, nil, nil),
                      "clEnqueueNDRangeKernel(\(name))")
        }
    }

    func fill(_ tensor: DeviceTensor, count: Int, value: Float) throws(OpenCLError) {
        var pattern = value
        try check(clEnqueueFillBuffer(context.computeQueue, tensor.buffer, &pattern, MemoryLayout<Float>.size,
                                      tensor.offset * MemoryLayout<Float>.size, count * MemoryLayout<Float>.size,
                                      0, nil, nil), "clEnqueueFillBuffer")
    }

    // MARK: Checks (a kernel reading past a buffer would corrupt device memory, not trap)

    private func require(_ tensor: DeviceTensor, _ count: Int, _ name: String) throws(OpenCLError) {
        guard count >= 0, tensor.count >= count else {
            throw .invalidArgument("\(name) holds \(tensor.count) values, the operation needs \(count)")
        }
    }

    private func requireIndices(_ indices: ArraySlice<Int32>, count: Int, below limit: Int,
                                _ name: String) throws(OpenCLError) {
        guard indices.count >= count else { throw .invalidArgument("\(indices.count) \(name) for \(count) rows") }
        if let bad = indices.prefix(count).first(where: { $0 < 0 || Int($0) >= limit }) {
            throw .invalidArgument("\(name) value \(bad) outside 0..<\(limit)")
        }
    }

    private func requireHeads(heads: Int, channels: Int) throws(OpenCLError) {
        guard heads > 0, channels % heads == 0 else {
            throw .invalidArgument("\(channels) channels do not split into \(heads) heads")
        }
    }
}
