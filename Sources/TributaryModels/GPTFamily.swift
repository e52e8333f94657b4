import TributaryTensor

/// Hyper-parameters of a GPT (names as nanoGPT's `GPTConfig`).
public struct GPTConfig: Codable, Sendable, Equatable {
    public var vocabSize: Int
    public var blockSize: Int
    public var nLayer: Int
    public var nHead: Int
    public var nEmbd: Int
    public var bias: Bool

    public init(vocabSize: Int, blockSize: Int, nLayer: Int, nHead: Int, nEmbd: Int, bias: Bool = true) {
        self.vocabSize = vocabSize
        self.blockSize = blockSize
        self.nLayer = nLayer
        self.nHead = nHead
        self.nEmbd = nEmbd
        self.bias = bias
    }

    enum CodingKeys: String, CodingKey {
        case vocabSize = "vocab_size", blockSize = "block_size", nLayer = "n_layer", nHead = "n_head", nEmbd = "n_embd", bias
    }

    public func validate() throws(ModelError) {
        if vocabSize < 2 || vocabSize > Int(Int32.max) { throw .invalidConfiguration("vocab_size must be at least 2 (got \(vocabSize))") }
        if blockSize < 1 { throw .invalidConfiguration("block_size must be positive (got \(blockSize))") }
        if nLayer < 1 { throw .invalidConfiguration("n_layer must be positive (got \(nLayer))") }
        if nLayer > CheckedSize.maximumLayers {
            throw .invalidConfiguration("n_layer \(nLayer) is more than \(CheckedSize.maximumLayers) blocks")
        }
        if nHead < 1 { throw .invalidConfiguration("n_head must be positive (got \(nHead))") }
        if nEmbd < 1 { throw .invalidConfiguration("n_embd must be positive (got \(nEmbd))") }
        if nEmbd % nHead != 0 { throw .invalidConfiguration("n_embd (\(nEmbd)) must be divisible by n_head (\(nHead))") }
        _ = try checkedParameterCount()
        _ = try activationElementsPerSample()
    }

    /// Parameters, counting the tied embedding once (`Int.max` for a configuration whose
    /// count overflows, which `validate` refuses).
    public var parameterCount: Int { (try? checkedParameterCount()) ?? .max }

    func checkedParameterCount() throws(ModelError) -> Int {
        let c = nEmbd, b = bias ? 1 : 0, what = "the parameter count"
        // Per block: two LayerNorms, c_attn (3c×c), c_proj (c×c), c_fc (4c×c), mlp c_proj (c×4c).
        let perBlock = try CheckedSize.sum([try CheckedSize.product(12, c, c, what: what), (2 + 11 * b) * c], what: what)
        return try CheckedSize.sum([try CheckedSize.product(vocabSize, c, what: what), try CheckedSize.product(blockSize, c, what: what),
                                    try CheckedSize.product(nLayer, perBlock, what: what), c + b * c], what: what)
    }

    /// fp32 elements one sequence keeps through a whole-model step (every block's
    /// activations, the logits): bounded so a unit of them can be planned without overflow.
    func activationElementsPerSample() throws(ModelError) -> Int {
        let t = blockSize, c = nEmbd, what = "one sequence's activations"
        let block = try CheckedSize.sum([try CheckedSize.product(16, t, c, what: what), 4 * t,
                                         try CheckedSize.product(nHead, t, t, what: what)], what: what)
        return try CheckedSize.sum([try CheckedSize.product(nLayer, block, what: what),
                                    try CheckedSize.product(t, vocabSize, what: what)], what: what)
    }

    /// Weights that take part in matrix products (peers.md's N_mm).
    public var matrixParameterCount: Int { nLayer * 12 * nEmbd * nEmbd + vocabSize * nEmbd }
}

/// The GPT family: nanoGPT's decoder-only transformer, streamed shard by shard on workers.
extension GPTConfig: ModelFamily {
    public static let modelType = "gpt"

    public var summary: String {
        "GPT \(nLayer) layers × \(nHead) heads × \(nEmbd) wide, context \(blockSize), vocabulary \(vocabSize), \(parameterCount.formatted()) parameters"
    }

    public func build(seed: UInt64, device: any ComputeDevice) throws -> any TrainableModel {
        try GPT(config: self, seed: seed, device: device)
    }

    /// `embeddings` (wte, wpe), `block.N` for each block, `head` (ln_f), from the
    /// declarations the layers make their parameters from.
    public var shardGroups: [ModelShardGroup] {
        let e = GPT.embeddingSpecs(self)
        let blocks = (0..<nLayer).map { i in
            ModelShardGroup(name: GPT.blockShardName(i),
                            parameters: TransformerBlock.parameterSpecs(index: i, channels: nEmbd, bias: bias))
        }
        return [ModelShardGroup(name: GPT.embeddingsShardName, parameters: [e.wte, e.wpe])] + blocks
            + [ModelShardGroup(name: GPT.headShardName,
                               parameters: LayerNorm.parameterSpecs(name: GPT.finalNormName, features: nEmbd, bias: bias).all)]
    }

    /// The head is tied to the token embedding; PyTorch's state_dict lists it as
    /// `lm_head.weight` too.
    public var tiedAliases: [(alias: String, of: String)] { [("lm_head.weight", GPT.embeddingSpecs(self).wte.name)] }

    public var sampleShape: ModelSampleShape { .tokens(sequence: blockSize, vocabulary: vocabSize) }

    /// Every schedule × activation policy × micro-batch × resident-block count (from
    /// `residentBlockChoices`), each with `StreamedGPT.peakBytes` (the step's own allocation walk).
    public func executionCandidates(_ inputs: ExecutionPlanningInputs) -> [ExecutionCandidate] {
        // A unit too large to count in Int cannot be planned (validate bounds one sample).
        guard let perSample = try? activationElementsPerSample(), CheckedSize.fits(inputs.unitSamples, of: perSample) else {
            return []
        }
        var plans: [GPTExecutionPlan] = []
        for schedule in [GPTExecutionPlan.Schedule.blocksOuter, .microBatchesOuter] {
            for policy in [GPTExecutionPlan.ActivationPolicy.kept, .recomputed] {
                for m in inputs.microBatches {
                    // With one micro-batch both schedules are the same step.
                    if schedule == .microBatchesOuter && m >= inputs.unitSamples { continue }
                    for r in residentBlockChoices {
                        plans.append(GPTExecutionPlan(microBatch: m, activations: policy, residentBlocks: r, schedule: schedule))
                    }
                }
            }
        }
        return plans.map { p in
            let peak = StreamedGPT.peakBytes(config: self, batch: inputs.unitSamples, sequence: inputs.sequence, plan: p,
                                             device: inputs.device, loadTransient: inputs.loadTransient,
                                             gradientTransient: { inputs.gradientTransient($0, false) })
            return ExecutionCandidate(execution: .streamedGPT(p), peakBytes: peak)
        }
    }

    /// The whole GPT held (local steps): parameters and gradients, every block's activations
    /// and the logits for a micro-batch (`activationElementsPerSample`), one shard passing.
    public func residentExecutionCandidates(_ inputs: ExecutionPlanningInputs) -> [ExecutionCandidate] {
        guard let perSample = try? activationElementsPerSample(), CheckedSize.fits(inputs.unitSamples, of: perSample) else {
            return []
        }
        return ModelExecution.residentCandidates(parameterCount: parameterCount, shardGroups: shardGroups, inputs: inputs) {
            TensorShapes.byteCount(elements: $0 * perSample)
        }
    }

    /// At most this many resident-block counts besides zero are planned, whatever n_layer.
    public static let residentBlockChoiceLimit = 64

    /// Resident-block counts the planner considers, most first: every count up to
    /// `residentBlockChoiceLimit` blocks, else that many steps evenly spaced from n_layer
    /// down to 0. The coordinator chooses n_layer, so the candidate list must not grow with
    /// it (issue 12, finding 5: one candidate per count made planning quadratic in n_layer);
    /// the cost is a plan up to 1/64 of the streamed blocks short of the best fit.
    public var residentBlockChoices: [Int] {
        let limit = Self.residentBlockChoiceLimit
        guard nLayer > limit else { return Array((0...max(0, nLayer)).reversed()) }
        return (0...limit).reversed().map { nLayer * $0 / limit }
    }

    /// Elements of the `embeddings` shard, of one `block.N` shard and of the `head`, from
    /// the layers' declarations without listing every block (planning stays O(1) in n_layer).
    public var shardElementCounts: (embeddings: Int, block: Int, head: Int) {
        func count(_ specs: [ParameterSpec]) -> Int { specs.reduce(0) { $0 + $1.count } }
        let e = GPT.embeddingSpecs(self)
        return (count([e.wte, e.wpe]),
                nLayer > 0 ? count(TransformerBlock.parameterSpecs(index: 0, channels: nEmbd, bias: bias)) : 0,
                count(LayerNorm.parameterSpecs(name: GPT.finalNormName, features: nEmbd, bias: bias).all))
    }

    /// The step's compute (forward again when activations are recomputed), less efficient
    /// on small micro-batches (matrix products with few rows), plus decoding shards made
    /// resident more than once (about 100 FLOPs per byte: ~1 GB/s against ~100 GFLOP/s).
    public func estimatedCost(of execution: ModelExecution, _ inputs: ExecutionPlanningInputs) -> Double {
        guard case let .streamedGPT(p) = execution else { return .infinity }
        let samples = inputs.unitSamples, sequence = Double(inputs.sequence)
        let tokens = Double(samples) * sequence
        let forward = (6 * Double(matrixParameterCount) * tokens + 12 * (Double(nLayer) * Double(nEmbd) * sequence) * tokens) / 3
        let rows = Double(min(p.microBatch, samples)) * sequence
        let compute = (p.activations == .recomputed ? 4 : 3) * forward * (1 + 64 / rows)
        let passes = p.schedule == .blocksOuter ? 1 : (samples + p.microBatch - 1) / p.microBatch
        let streamed = p.residentBlocks == nLayer ? 0 : 2 * passes * (nLayer - p.residentBlocks)
        let blockBytes = Double(4 * shardElementCounts.block)
        return compute + 100 * Double(streamed) * blockBytes
    }

    public func makeStreamedStep(_ execution: ModelExecution, device: any ComputeDevice) throws -> (any StreamedTrainingStep)? {
        guard case let .streamedGPT(p) = execution else { return nil }
        return try StreamedGPT(config: self, plan: p, device: device)
    }
}

extension StreamedGPT: StreamedTrainingStep {}
