import TributaryCompression
import TributaryModels
import TributaryTensor

/// How a worker computes its units within its memory budget.
public struct MemoryPlan: Sendable, Equatable, CustomStringConvertible {
    public enum Execution: Sendable, Equatable {
        /// A GPT, FSDP-style: shards streamed through a `StreamedGPT` step.
        case streamedGPT(GPTExecutionPlan)
        /// A model held whole (the MLP), with this many samples per micro-batch.
        case residentModel(microBatch: Int)
    }

    public let execution: Execution
    /// Encoded updates that may wait for upload at once (what lets uploads overlap the
    /// backward of the next shards); at least the largest shard's worst-case body.
    public let uploadQueueBytes: Int
    /// The allocator's predicted peak, upload queue included: what the budget must cover.
    public let predictedPeakBytes: Int

    public var description: String {
        let how: String
        switch execution {
        case let .streamedGPT(p): how = p.description
        case let .residentModel(m): how = "whole model resident, micro-batch \(m)"
        }
        return "\(how), upload queue \(ByteCount.format(uploadQueueBytes)), expected peak \(ByteCount.format(predictedPeakBytes))"
    }
}

public enum MemoryPlanError: Error, CustomStringConvertible, Equatable {
    case doesNotFit(neededBytes: Int, budgetBytes: Int, smallestPlan: String)

    public var description: String {
        switch self {
        case let .doesNotFit(needed, budget, plan):
            return "the memory budget is too small for this job: its smallest plan (\(plan)) needs \(ByteCount.format(needed)), the budget is \(ByteCount.format(budget)); give --memory-budget at least \(ByteCount.format(needed))"
        }
    }
}

/// Chooses, from the job's model and unit size and the device's budget, the cheapest plan
/// whose predicted peak fits: the micro-batch size, the schedule (blocks or micro-batches
/// outer), how many block shards stay resident, whether activations are kept or
/// recomputed, and how much encoded upload may queue.
/// Every byte the worker's compute holds is in the prediction: resident parameters,
/// gradients, activations and checkpoints, scratch, a shard body being decoded, the
/// error-feedback residual and codec buffers while a shard is encoded, queued uploads.
public struct MemoryPlanner: Sendable {
    public let model: ModelSpec
    /// Samples per unit and the tokens per sample (a GPT's context; 1 for an MLP).
    public let unitSamples: Int
    public let sequence: Int
    /// The coordinator's micro-batch size: the largest the planner uses.
    public let suggestedMicroBatch: Int
    public let codec: UpdateCodecSpec

    public init(model: ModelSpec, unitSamples: Int, sequence: Int, suggestedMicroBatch: Int, codec: UpdateCodecSpec) {
        self.model = model
        self.unitSamples = max(1, unitSamples)
        self.sequence = max(1, sequence)
        self.suggestedMicroBatch = max(1, min(suggestedMicroBatch, unitSamples))
        self.codec = codec
    }

    // MARK: Bytes outside the step's tensors

    /// A shard body read from the local cache while it is decoded (shards are fp32 frames).
    public func loadTransient(_ elements: Int) -> Int {
        TensorFrame.maximumBodySize(elementCount: elements, codec: .fp32)
    }

    /// While a shard's gradient is taken: its residual (lossy codecs), the gradient
    /// gathered flat (whole-model plans), and the codec's buffers: the payload before zstd
    /// and the body after it (each at most the worst-case body), top-k's selected indices,
    /// values and sent values (12 bytes each) and its 64 KiB histogram.
    /// Low-rank: the residual, the warm start (loaded, and the new one), the payload, every
    /// segment's decoded values, one segment's factors, and the body.
    public func gradientTransient(_ elements: Int, gathers: Bool) -> Int {
        let f = MemoryLayout<Float>.stride
        let residual = codec.codec == .fp32 ? 0 : f * elements
        if let shapes = largestShapes(elements), let working = codec.lowRankWorkingBytes(shapes: shapes) {
            let raw = working - f * (codec.warmStartCount(shapes: shapes))  // an upper bound on the payload
            let body = TensorFrameHeader.size + Zstd.maximumCompressedSize(raw)
            return residual + (gathers ? f * elements : 0) + f * codec.warmStartCount(shapes: shapes) + working + body
        }
        var selection = 0
        if case let .topK(fraction, _) = codec.kind {
            selection = 12 * Int((fraction * Double(elements)).rounded(.up)) + 64 * 1024
        }
        return residual + (gathers ? f * elements : 0) + selection + 2 * codec.maximumBodySize(elementCount: elements)
    }

    var largestShard: Int { model.shardGroups.map(\.elementCount).max() ?? 0 }

    /// The tensor shapes of shard `name`, as the low-rank codec sees them.
    public func shapes(ofShard name: String) -> [MatrixShape]? {
        model.shardGroups.first { $0.name == name }.map { $0.parameters.map { MatrixShape(shape: $0.shape) } }
    }

    /// Among shards of `elements` values, the shapes whose low-rank encoding holds the most
    /// (nil when the codec does not use shapes, or no shard has that size).
    func largestShapes(_ elements: Int) -> [MatrixShape]? {
        guard codec.needsShapes else { return nil }
        return model.shardGroups.filter { $0.elementCount == elements }
            .map { $0.parameters.map { MatrixShape(shape: $0.shape) } }
            .max { (codec.lowRankWorkingBytes(shapes: $0) ?? 0) < (codec.lowRankWorkingBytes(shapes: $1) ?? 0) }
    }

    /// Micro-batch sizes from the suggested one down to 1, halving.
    var microBatches: [Int] {
        var sizes: [Int] = []
        var m = suggestedMicroBatch
        while m >= 1 {
            sizes.append(m)
            if m == 1 { break }
            m = (m + 1) / 2
        }
        return sizes
    }

    /// A step's estimated cost in FLOP-equivalents, to rank plans: the step's compute
    /// (forward again when activations are recomputed), less efficient on small
    /// micro-batches (matrix products with few rows), plus decoding shards made resident
    /// more than once (about 100 FLOPs per byte: ~1 GB/s against ~100 GFLOP/s).
    public func estimatedCost(_ execution: MemoryPlan.Execution) -> Double {
        switch (model, execution) {
        case let (.gpt(cfg), .streamedGPT(p)):
            let tokens = Double(unitSamples * sequence)
            let forward = (6 * Double(cfg.matrixParameterCount) * tokens
                + 12 * Double(cfg.nLayer * cfg.nEmbd * sequence) * tokens) / 3
            let rows = Double(min(p.microBatch, unitSamples) * sequence)
            let compute = (p.activations == .recomputed ? 4 : 3) * forward * (1 + 64 / rows)
            let passes = p.schedule == .blocksOuter ? 1 : (unitSamples + p.microBatch - 1) / p.microBatch
            let streamed = p.residentBlocks == cfg.nLayer ? 0 : 2 * passes * (cfg.nLayer - p.residentBlocks)
            let blockBytes = Double(4 * (model.shardGroups.dropFirst().first?.elementCount ?? 0))
            return compute + 100 * Double(streamed) * blockBytes
        case let (.mlp(cfg), .residentModel(m)):
            let rows = Double(min(m, unitSamples))
            return 6 * Double(cfg.parameterCount * unitSamples) * (1 + 64 / rows)
        default:
            return .infinity
        }
    }

    /// Every candidate, cheapest first (by `estimatedCost`), with its predicted peak.
    public func candidates() -> [MemoryPlan] {
        let body = codec.maximumBodySize(elementCount: largestShard)
        let queues = [2 * body, body]
        var out: [MemoryPlan] = []
        switch model {
        case let .gpt(cfg):
            var plans: [GPTExecutionPlan] = []
            for schedule in [GPTExecutionPlan.Schedule.blocksOuter, .microBatchesOuter] {
                for policy in [GPTExecutionPlan.ActivationPolicy.kept, .recomputed] {
                    for m in microBatches {
                        // With one micro-batch both schedules are the same step.
                        if schedule == .microBatchesOuter && m >= unitSamples { continue }
                        for r in stride(from: cfg.nLayer, through: 0, by: -1) {
                            plans.append(GPTExecutionPlan(microBatch: m, activations: policy, residentBlocks: r, schedule: schedule))
                        }
                    }
                }
            }
            for p in plans {
                let peak = StreamedGPT.peakBytes(config: cfg, batch: unitSamples, sequence: sequence, plan: p,
                                                 loadTransient: loadTransient,
                                                 gradientTransient: { gradientTransient($0, gathers: false) })
                for q in queues {
                    out.append(MemoryPlan(execution: .streamedGPT(p), uploadQueueBytes: q, predictedPeakBytes: peak + q))
                }
            }
        case let .mlp(cfg):
            let f = MemoryLayout<Float>.stride
            let parameters = 2 * f * cfg.parameterCount
            for m in microBatches {
                let peak = parameters + MLPClassifier.activationBytes(config: cfg, batch: m)
                    + max(loadTransient(largestShard), gradientTransient(largestShard, gathers: true))
                for q in queues {
                    out.append(MemoryPlan(execution: .residentModel(microBatch: m), uploadQueueBytes: q, predictedPeakBytes: peak + q))
                }
            }
        }
        // Stable: among equal costs the listing order (a larger upload queue first) stays.
        let costs = out.map { estimatedCost($0.execution) }
        return out.indices.sorted { costs[$0] != costs[$1] ? costs[$0] < costs[$1] : $0 < $1 }.map { out[$0] }
    }

    /// The first candidate that fits (any, fastest first, without a budget).
    public func plan(budgetBytes: Int?) throws(MemoryPlanError) -> MemoryPlan {
        let all = candidates()
        guard let budget = budgetBytes else {
            guard let first = all.first else { throw .doesNotFit(neededBytes: 0, budgetBytes: 0, smallestPlan: "none") }
            return first
        }
        if let fit = all.first(where: { $0.predictedPeakBytes <= budget }) { return fit }
        let smallest = all.min { $0.predictedPeakBytes < $1.predictedPeakBytes }
        throw .doesNotFit(neededBytes: smallest?.predictedPeakBytes ?? 0, budgetBytes: budget,
                          smallestPlan: smallest?.description ?? "none")
    }
}
