import TributaryTensor

/// A kind of model a job can train (a GPT, an MLP, …): everything the rest of Tributary
/// asks of a model without knowing which one it is. A family is its configuration type
/// (the job's `model_args`); adding one is its own files plus one line in
/// `ModelFamilies.registered`.
public protocol ModelFamily: Codable, Sendable, Equatable {
    /// The job JSON's `model_type` ("gpt", "mlp").
    static var modelType: String { get }

    /// Refuses absurd or inconsistent sizes with a `ModelError` (a hostile coordinator may
    /// send any numbers: sizes derived from them are computed with overflow checks here, so
    /// everything after validation can multiply them freely).
    func validate() throws(ModelError)
    /// Parameters, counting tied ones once.
    var parameterCount: Int { get }
    /// One line for logs and the CLI.
    var summary: String { get }
    /// The model with deterministic initialisation from `seed`, computing on `device` (its
    /// kernels, and tensors from its allocator).
    func build(seed: UInt64, device: any ComputeDevice) throws -> any TrainableModel

    /// The FSDP units, each listing its parameters in the model's `parameters` order (the
    /// order of a shard body), derived from the layers' own parameter declarations.
    var shardGroups: [ModelShardGroup] { get }
    /// Parameters stored under a second name in checkpoints (alias, stored name).
    var tiedAliases: [(alias: String, of: String)] { get }
    /// What one sample of the batches this model consumes looks like.
    var sampleShape: ModelSampleShape { get }

    /// Every way the family can run a unit on a worker, each with the allocator's predicted
    /// peak (the worker's codec and upload bytes come in through `inputs`; the planner adds
    /// its upload queue). Empty when the unit cannot be planned at all.
    func executionCandidates(_ inputs: ExecutionPlanningInputs) -> [ExecutionCandidate]
    /// The candidates that hold the whole model (`.residentModel`), largest micro-batch first:
    /// what local steps need, as the parameters change between a unit's inner steps.
    func residentExecutionCandidates(_ inputs: ExecutionPlanningInputs) -> [ExecutionCandidate]
    /// A candidate's cost in FLOP-equivalents, to rank them (`.infinity`: not this family's).
    func estimatedCost(of execution: ModelExecution, _ inputs: ExecutionPlanningInputs) -> Double
    /// The step that runs a streamed execution (nil for a model held whole).
    func makeStreamedStep(_ execution: ModelExecution, device: any ComputeDevice) throws -> (any StreamedTrainingStep)?
}

extension ModelFamily {
    public var tiedAliases: [(alias: String, of: String)] { [] }

    public func makeStreamedStep(_ execution: ModelExecution, device: any ComputeDevice) throws -> (any StreamedTrainingStep)? { nil }

    /// A family that only holds models whole lists them among its execution candidates.
    public func residentExecutionCandidates(_ inputs: ExecutionPlanningInputs) -> [ExecutionCandidate] {
        executionCandidates(inputs).filter { if case .residentModel = $0.execution { return true } else { return false } }
    }

    /// Equality across families (different families are never equal).
    public func isEqual(to other: any ModelFamily) -> Bool { (other as? Self) == self }

    /// `model_args` with this family's own Codable conformance (so the JSON is unchanged).
    static func decodeArguments<Key: CodingKey>(_ c: KeyedDecodingContainer<Key>, forKey key: Key) throws -> any ModelFamily {
        try c.decode(Self.self, forKey: key)
    }

    func encodeArguments<Key: CodingKey>(_ c: inout KeyedEncodingContainer<Key>, forKey key: Key) throws {
        try c.encode(self, forKey: key)
    }
}

/// The batch format a family consumes: enough for data preparation, batch bodies and the
/// planners to stop asking which model this is.
public enum ModelSampleShape: Sendable, Equatable {
    /// Token ids: `sequence` inputs (and as many next-token targets) below `vocabulary`.
    case tokens(sequence: Int, vocabulary: Int)
    /// Feature rows of `count` values, with one class label below `classes`.
    case features(count: Int, classes: Int)

    /// Values per sample in a batch body (`BatchBody`'s width).
    public var width: Int {
        switch self {
        case let .tokens(t, _): return t
        case let .features(f, _): return f
        }
    }

    /// The window length a token dataset is cut into (nil for feature rows).
    public var sequenceLength: Int? {
        if case let .tokens(t, _) = self { return t }
        return nil
    }

    /// Tokens per sample for throughput figures (0 for feature rows).
    public var tokensPerSample: Int { sequenceLength ?? 0 }

    /// Predictions per sample (a memory plan's rows per sample): the sequence, or 1.
    public var positionsPerSample: Int { sequenceLength ?? 1 }

    /// A random batch of `samples` samples of this shape (benchmarks): inputs first, then targets.
    public func randomBatch(samples: Int, using rng: inout SeededRandom) -> ModelBatch {
        switch self {
        case let .tokens(t, v):
            let n = samples * t
            let x = (0..<n).map { _ in Int32(rng.nextIndex(below: v)) }
            let y = (0..<n).map { _ in Int32(rng.nextIndex(below: v)) }
            return .tokens(inputs: x, targets: y, batch: samples, sequence: t)
        case let .features(f, k):
            let x = (0..<(samples * f)).map { _ in rng.nextGaussian() }
            let y = (0..<samples).map { _ in Int32(rng.nextIndex(below: k)) }
            return .features(inputs: x, targets: y, batch: samples)
        }
    }
}

/// How a worker runs one unit (chosen by its memory planner from the family's candidates).
public enum ModelExecution: Sendable, Equatable {
    /// A GPT, FSDP-style: shards streamed through a `StreamedGPT` step.
    case streamedGPT(GPTExecutionPlan)
    /// A model held whole, with this many samples per micro-batch; with `recomputesBlocks`
    /// only each block's input is kept from forward to backward, and backward recomputes
    /// the block's internals one block at a time (`BlockRecomputing`).
    case residentModel(microBatch: Int, recomputesBlocks: Bool = false)
}

/// A streamed step: parameter shards made resident as the step needs them, gradients
/// handed on shard by shard (`StreamedGPT`).
public protocol StreamedTrainingStep: AnyObject, Sendable {
    /// The mean loss over `batch`; each shard's gradient goes to `delegate` once final.
    func step(_ batch: ModelBatch, delegate: any ShardStreamingDelegate) async throws -> Double
}

/// What a family's planning needs from the worker: the unit, and the bytes the worker
/// holds outside the step's tensors while it loads a shard or takes its gradient.
public struct ExecutionPlanningInputs: Sendable {
    /// Samples per unit, and tokens per sample (a GPT's context; 1 for feature rows).
    public let unitSamples: Int
    public let sequence: Int
    /// Micro-batch sizes to consider, largest first.
    public let microBatches: [Int]
    /// Bytes beside a shard of this many elements while its body is decoded.
    public let loadTransient: @Sendable (Int) -> Int
    /// Bytes while a shard's gradient of this many elements is taken; `gathers`: the
    /// gradient is first gathered into a flat buffer (a model held whole).
    public let gradientTransient: @Sendable (_ elements: Int, _ gathers: Bool) -> Int
    /// The device the plan is for: its kernels' scratch, and whether a streamed step holds
    /// one more block gradient while it downloads.
    public let device: DevicePlanningTraits

    public init(unitSamples: Int, sequence: Int, microBatches: [Int], loadTransient: @escaping @Sendable (Int) -> Int,
                gradientTransient: @escaping @Sendable (_ elements: Int, _ gathers: Bool) -> Int,
                device: DevicePlanningTraits = .cpu) {
        self.unitSamples = unitSamples
        self.sequence = sequence
        self.microBatches = microBatches
        self.loadTransient = loadTransient
        self.gradientTransient = gradientTransient
        self.device = device
    }
}

/// One way to run a unit, with the allocator's predicted peak (upload queue not included).
public struct ExecutionCandidate: Sendable, Equatable {
    public let execution: ModelExecution
    public let peakBytes: Int

    public init(execution: ModelExecution, peakBytes: Int) {
        self.execution = execution
        self.peakBytes = peakBytes
    }
}

extension ModelExecution {
    /// Resident-model candidates for a family whose whole model (values and gradients) is
    /// held: per micro-batch size, the largest first, one keeping every activation and,
    /// when the family can recompute its blocks (`recomputedActivationBytes`), one that
    /// recomputes them. `activationBytes(m)` is what the model's forward/backward allocates
    /// for `m` samples; shards pass through one at a time (decoded in, or gathered and
    /// encoded out). Each micro-batch's pair is listed together, so the first that fits
    /// in listing order has the largest micro-batch (what local steps take).
    public static func residentCandidates(parameterCount: Int, shardGroups: [ModelShardGroup],
                                          inputs: ExecutionPlanningInputs,
                                          recomputedActivationBytes: ((Int) -> Int)? = nil,
                                          activationBytes: (Int) -> Int) -> [ExecutionCandidate] {
        let parameters = 2 * TensorShapes.byteCount(elements: parameterCount)
        let largest = shardGroups.map(\.elementCount).max() ?? 0
        let shardPass = max(inputs.loadTransient(largest), inputs.gradientTransient(largest, true))
        return inputs.microBatches.flatMap { m in
            let kept = ExecutionCandidate(execution: .residentModel(microBatch: m),
                                          peakBytes: parameters + activationBytes(m) + shardPass)
            guard let recomputedActivationBytes else { return [kept] }
            return [kept, ExecutionCandidate(execution: .residentModel(microBatch: m, recomputesBlocks: true),
                                             peakBytes: parameters + recomputedActivationBytes(m) + shardPass)]
        }
    }
}
