import Foundation
import TributaryTensor

/// A decoder-only transformer in nanoGPT's shape: learned positional embeddings,
/// pre-LayerNorm blocks, a final LayerNorm, and the output head tied to the token
/// embedding. Forward and backward are written out by hand (as llm.c does), over
/// activation buffers allocated once per batch shape.
public final class GPT: TrainableModel, @unchecked Sendable {
    // Unchecked: the activation cache is mutated by forward/backward; a GPT instance is
    // driven by one task at a time (the trainer or a worker's compute loop).
    public let config: GPTConfig
    public let wte: Parameter
    public let wpe: Parameter
    public let blocks: [TransformerBlock]
    public let lnF: LayerNorm
    public let parameters: ParameterSet
    public let allocator: TensorAllocator
    public let device: any ComputeDevice
    private var cache: ActivationCache?

    /// On the CPU, computing into `allocator`.
    public convenience init(config: GPTConfig, seed: UInt64 = 1337, allocator: TensorAllocator = .shared) throws {
        try self.init(config: config, seed: seed, device: CPUDevice(allocator: allocator))
    }

    public init(config: GPTConfig, seed: UInt64 = 1337, device: any ComputeDevice) throws {
        try config.validate()
        self.config = config
        self.device = device
        let allocator = device.allocator
        self.allocator = allocator
        let c = config.nEmbd
        let embeddings = Self.embeddingSpecs(config)
        wte = try ParameterFactory.allocating(allocator).make(embeddings.wte)
        wpe = try ParameterFactory.allocating(allocator).make(embeddings.wpe)
        blocks = try (0..<config.nLayer).map {
            try TransformerBlock(index: $0, channels: c, heads: config.nHead, bias: config.bias, device: device)
        }
        lnF = try LayerNorm(name: Self.finalNormName, features: c, bias: config.bias, device: device)
        parameters = ParameterSet([wte, wpe] + blocks.flatMap(\.parameters) + lnF.parameters)
        initialize(seed: seed)
    }

    /// The token and position embeddings `init` makes (the `embeddings` shard).
    public static func embeddingSpecs(_ config: GPTConfig) -> (wte: ParameterSpec, wpe: ParameterSpec) {
        (ParameterSpec(name: "transformer.wte.weight", shape: [config.vocabSize, config.nEmbd], decays: true),
         ParameterSpec(name: "transformer.wpe.weight", shape: [config.blockSize, config.nEmbd], decays: true))
    }

    /// The final LayerNorm's name (the `head` shard; the output head is tied to wte).
    public static let finalNormName = "transformer.ln_f"

    /// GPT-2 initialisation: N(0, 0.02) for matrices and embeddings, residual projections
    /// N(0, 0.02/√(2·n_layer)), zero biases, unit LayerNorm gains.
    public func initialize(seed: UInt64) {
        var rng = SeededRandom(seed: seed)
        let residual = Set(blocks.flatMap(\.residualProjections).map(\.name))
        let projStd = Float(0.02 / (2.0 * Double(config.nLayer)).squareRoot())
        for p in parameters.parameters {
            p.gradient.zero()
            if p.name.hasSuffix(".bias") {
                p.value.zero()
            } else if p.name.contains(".ln_") {
                p.value.fill(1)
            } else {
                let std: Float = residual.contains(p.name) ? projStd : 0.02
                let d = p.value.data
                for i in 0..<p.count { d[i] = rng.nextGaussian() * std }
            }
        }
    }

    // MARK: Activations

    /// Forward state for one (batch, sequence) shape, reused across steps.
    final class ActivationCache: @unchecked Sendable {
        let batch: Int, sequence: Int
        let residuals: [Tensor]       // [L+1] × [N, C]; residuals[l] is block l's input
        let blocks: [TransformerBlock.Activations]
        let lnF: Tensor, lnFMean: Tensor, lnFRstd: Tensor
        let logits: Tensor            // [N, V]; probabilities after a loss forward
        let losses: Tensor            // [N]
        let scratch: TransformerBlock.Scratch
        let dResidual: Tensor
        var tokenBuffer: [Int32]
        var targetBuffer: [Int32]

        init(model: GPT, batch b: Int, sequence t: Int) throws {
            let cfg = model.config, c = cfg.nEmbd, n = b * t, a = model.allocator
            batch = b
            sequence = t
            residuals = try (0...cfg.nLayer).map { _ in try Tensor(shape: [n, c], allocator: a) }
            blocks = try (0..<cfg.nLayer).map { _ in
                try TransformerBlock.Activations(batch: b, sequence: t, channels: c, heads: cfg.nHead, allocator: a)
            }
            lnF = try Tensor(shape: [n, c], allocator: a)
            lnFMean = try Tensor(shape: [n], allocator: a)
            lnFRstd = try Tensor(shape: [n], allocator: a)
            logits = try Tensor(shape: [n, cfg.vocabSize], allocator: a)
            losses = try Tensor(shape: [n], allocator: a)
            scratch = try TransformerBlock.Scratch(batch: b, sequence: t, channels: c, device: model.device)
            dResidual = try Tensor(shape: [n, c], allocator: a)
            tokenBuffer = []
            targetBuffer = []
        }
    }

    private func activations(batch b: Int, sequence t: Int) throws -> ActivationCache {
        if let cache, cache.batch == b, cache.sequence == t { return cache }
        cache = nil // give the old buffers back before asking for new ones
        let fresh = try ActivationCache(model: self, batch: b, sequence: t)
        cache = fresh
        return fresh
    }

    /// Drops the activation buffers (their memory returns to the allocator).
    public func releaseActivations() { cache = nil }

    // MARK: Forward and backward

    private func checkShape(_ inputs: [Int32], _ targets: [Int32]?, batch b: Int, sequence t: Int) throws(ModelError) {
        guard b > 0, t > 0 else { throw .batchShape("batch and sequence must be positive (got \(b)×\(t))") }
        guard t <= config.blockSize else {
            throw .batchShape("sequence length \(t) exceeds block_size \(config.blockSize)")
        }
        guard inputs.count == b * t else { throw .batchShape("expected \(b * t) input tokens, got \(inputs.count)") }
        if let targets, targets.count != b * t { throw .batchShape("expected \(b * t) targets, got \(targets.count)") }
        try validateIDs(inputs, below: config.vocabSize, isTarget: false)
        if let targets { try validateIDs(targets, below: config.vocabSize, isTarget: true) }
    }

    /// Runs the network up to the logits (raw, [N, V]).
    private func forwardLogits(_ inputs: [Int32], batch b: Int, sequence t: Int) throws -> ActivationCache {
        let a = try activations(batch: b, sequence: t)
        let c = config.nEmbd, n = b * t
        a.tokenBuffer = inputs
        device.kernels.embeddingForward(out: a.residuals[0], tokens: inputs[...], wte: wte.value, wpe: wpe.value,
                                        batch: b, sequence: t, channels: c)
        for (l, block) in blocks.enumerated() {
            block.forward(a.residuals[l], into: a.residuals[l + 1], saving: a.blocks[l], batch: b, sequence: t)
        }
        lnF.forward(a.residuals[config.nLayer], into: a.lnF, mean: a.lnFMean, rstd: a.lnFRstd, rows: n)
        // Tied head: logits = ln_f(x) · wteᵀ.
        device.kernels.linearForward(out: a.logits, input: a.lnF, weight: wte.value, bias: nil,
                                     rows: n, inFeatures: c, outFeatures: config.vocabSize)
        return a
    }

    /// Mean cross-entropy; leaves probabilities in the cache for backward.
    private func forwardLoss(_ inputs: [Int32], _ targets: [Int32], batch b: Int, sequence t: Int) throws -> ActivationCache {
        let a = try forwardLogits(inputs, batch: b, sequence: t)
        a.targetBuffer = targets
        device.kernels.softmaxCrossEntropyForward(logits: a.logits, targets: targets[...], losses: a.losses,
                                                  rows: b * t, classes: config.vocabSize)
        return a
    }

    private func meanLoss(_ a: ActivationCache) -> Double {
        let n = a.batch * a.sequence
        var s = 0.0
        let losses = a.losses.readableData  // one read: on a GPU, one transfer
        for i in 0..<n { s += Double(losses[i]) }
        return s / Double(n)
    }

    public func forwardBackward(_ batch: ModelBatch, lossScale: Float = 1) throws -> Float {
        guard case let .tokens(inputs, targets, b, t) = batch else {
            throw ModelError.batchShape("a GPT takes token batches, not feature rows")
        }
        try checkShape(inputs, targets, batch: b, sequence: t)
        let a = try forwardLoss(inputs, targets, batch: b, sequence: t)
        let loss = meanLoss(a)
        backward(a, lossScale: lossScale)
        try device.checkHealthy()  // a failed GPU kernel leaves garbage: never return it
        return Float(loss)
    }

    private func backward(_ a: ActivationCache, lossScale: Float) {
        let b = a.batch, t = a.sequence, n = b * t, c = config.nEmbd, v = config.vocabSize
        device.kernels.softmaxCrossEntropyBackward(probabilities: a.logits, targets: a.targetBuffer[...], rows: n, classes: v,
                                                   scale: lossScale / Float(n))
        // Head: dLnF = dLogits · wte; dwte += dLogitsᵀ · ln_f(x).
        let dLnF = a.scratch.dLN
        device.kernels.linearBackward(dInput: dLnF, dWeight: wte.gradient, dBias: nil, dOut: a.logits, input: a.lnF,
                                      weight: wte.value, rows: n, inFeatures: c, outFeatures: v, accumulateInput: false)
        a.dResidual.zero()
        lnF.backward(dOut: dLnF, input: a.residuals[config.nLayer], mean: a.lnFMean,
                     rstd: a.lnFRstd, dInput: a.dResidual, rows: n)
        for l in stride(from: config.nLayer - 1, through: 0, by: -1) {
            blocks[l].backward(dResidual: a.dResidual, input: a.residuals[l], saved: a.blocks[l],
                               scratch: a.scratch, batch: b, sequence: t)
        }
        device.kernels.embeddingBackward(dWTE: wte.gradient, dWPE: wpe.gradient, dOut: a.dResidual,
                                         tokens: a.tokenBuffer[...], batch: b, sequence: t, channels: c)
    }

    public func evaluate(_ batch: ModelBatch) throws -> Evaluation {
        guard case let .tokens(inputs, targets, b, t) = batch else {
            throw ModelError.batchShape("a GPT takes token batches, not feature rows")
        }
        try checkShape(inputs, targets, batch: b, sequence: t)
        let a = try forwardLoss(inputs, targets, batch: b, sequence: t)
        let v = config.vocabSize
        var correct = 0
        let logits = a.logits.readableData
        for r in 0..<(b * t) {
            let row = logits + r * v
            var best = 0
            for j in 1..<v where row[j] > row[best] { best = j }
            if best == Int(targets[r]) { correct += 1 }
        }
        try device.checkHealthy()
        return Evaluation(loss: meanLoss(a), correct: correct, predictions: b * t)
    }

    /// Raw logits [V] for the next token after `context` (the last block_size tokens are used).
    public func nextTokenLogits(context: [Int32]) throws -> [Float] {
        let ctx = Array(context.suffix(config.blockSize))
        guard !ctx.isEmpty else { throw ModelError.batchShape("sampling needs at least one context token") }
        try checkShape(ctx, nil, batch: 1, sequence: ctx.count)
        let a = try forwardLogits(ctx, batch: 1, sequence: ctx.count)
        let v = config.vocabSize
        try device.checkHealthy()
        return Array(UnsafeBufferPointer(start: a.logits.readableData + (ctx.count - 1) * v, count: v))
    }

    public func trainingFLOPs(_ batch: ModelBatch) -> Double {
        let tokens = Double(batch.predictionCount)
        let ctx: Double
        if case let .tokens(_, _, _, t) = batch { ctx = Double(t) } else { ctx = Double(config.blockSize) }
        return 6 * Double(config.matrixParameterCount) * tokens
            + 12 * Double(config.nLayer) * Double(config.nEmbd) * ctx * tokens
    }
}
