import TributaryTensor

/// How a memory-budgeted worker runs one GPT training step (chosen by the worker's
/// memory planner; see `StreamedGPT.peakBytes`).
public struct GPTExecutionPlan: Sendable, Equatable, CustomStringConvertible {
    public enum ActivationPolicy: String, Sendable {
        /// Every block's activations are kept from forward to backward.
        case kept
        /// Only each block's input is kept (activation checkpointing); backward rebuilds the
        /// block's activations from it, one micro-batch at a time.
        case recomputed
    }

    public enum Schedule: String, Sendable {
        /// Each block runs every micro-batch while it is resident: a shard is loaded once
        /// per pass and a block's gradient is final after its backward, but the inputs of
        /// every block are kept for the whole unit.
        case blocksOuter = "blocks outer"
        /// Each micro-batch runs forward and backward through all blocks: block inputs are
        /// kept for one micro-batch only, but every block's gradient accumulates until the
        /// last micro-batch, and streamed shards are loaded again for each micro-batch.
        case microBatchesOuter = "micro-batches outer"
    }

    /// Sequences per forward/backward call (gradient accumulation reaches the unit's batch).
    public var microBatch: Int
    public var schedule: Schedule
    public var activations: ActivationPolicy
    /// Transformer blocks whose parameters stay resident from forward to backward (the
    /// last ones, which backward meets first). The others are made resident twice: once
    /// in forward, once in backward. With every block resident, shards also stay resident
    /// between steps and only shards whose content changed are loaded again.
    public var residentBlocks: Int

    public init(microBatch: Int, activations: ActivationPolicy, residentBlocks: Int, schedule: Schedule = .blocksOuter) {
        self.microBatch = microBatch
        self.schedule = schedule
        self.activations = activations
        self.residentBlocks = residentBlocks
    }

    public var description: String {
        "micro-batch \(microBatch), \(schedule.rawValue), activations \(activations.rawValue), \(residentBlocks) block shard(s) resident"
    }
}

extension StreamedGPT {
    /// The step's peak tensor bytes under `plan` for `batch` sequences of `sequence`
    /// tokens, including the delegate's transient bytes, by walking the same allocation
    /// schedule as `step`. Every buffer's size comes from the type that allocates it
    /// (`TransformerBlock.Activations.byteCount`, `HeadPass.byteCount`, …); the allocator
    /// counts no padding, so the walk is exact.
    public static func peakBytes(config: GPTConfig, batch b: Int, sequence t: Int, plan: GPTExecutionPlan,
                                 loadTransient: (Int) -> Int, gradientTransient: (Int) -> Int) -> Int {
        let c = config.nEmbd, v = config.vocabSize, layers = config.nLayer, h = config.nHead
        let m = max(1, min(plan.microBatch, b))
        let groups = config.shardGroups
        let embE = groups.first?.elementCount ?? 0, headE = groups.last?.elementCount ?? 0
        let blockE = groups.count > 2 ? groups[1].elementCount : 0
        var live = 0, peak = 0
        func alloc(_ bytes: Int) { live += bytes; peak = max(peak, live) }
        func free(_ bytes: Int) { live -= bytes }
        func transient(_ bytes: Int) { peak = max(peak, live + bytes) }
        func shard(_ elements: Int) -> Int { TensorShapes.byteCount(elements: elements) }
        // A shard's storage exists before its body is read into it.
        func load(_ elements: Int) { alloc(shard(elements)); transient(loadTransient(elements)) }
        func residual(_ rows: Int) -> Int { TensorShapes.byteCount([residualShape(rows: rows, channels: c)]) }
        func activations(_ seqs: Int) -> Int {
            TransformerBlock.Activations.byteCount(batch: seqs, sequence: t, channels: c, heads: h)
        }
        let scratch = TransformerBlock.Scratch.byteCount(batch: m, sequence: t, channels: c)
        let head = HeadPass.byteCount(rows: m * t, channels: c, vocabulary: v)
        let keepBetween = plan.residentBlocks == layers
        let firstResident = layers - plan.residentBlocks
        let recompute = plan.activations == .recomputed
        let micro = stride(from: 0, to: b, by: m).map { min(b, $0 + m) - $0 }
        let n = b * t, mt = m * t

        if plan.schedule == .microBatchesOuter {
            load(embE); alloc(shard(embE))
            load(headE); alloc(shard(headE))
            alloc((layers + 1) * residual(mt))                       // checkpoints
            alloc(recompute ? activations(m) : layers * activations(m))
            alloc(residual(mt))                                      // dX
            alloc(scratch)
            alloc(head)
            if recompute { alloc(residual(mt)) }
            var loaded = Set<Int>(), accumulating = Set<Int>()
            for (i, _) in micro.enumerated() {
                let last = i == micro.count - 1
                for l in 0..<layers {
                    if loaded.contains(l) { continue }
                    load(blockE)
                    if l >= firstResident { loaded.insert(l) } else if !keepBetween { free(shard(blockE)) }
                }
                if last { transient(gradientTransient(headE)) }
                for l in stride(from: layers - 1, through: 0, by: -1) {
                    let streamed = !loaded.contains(l)
                    if streamed { load(blockE) }
                    if !accumulating.contains(l) { alloc(shard(blockE)); accumulating.insert(l) }
                    if last {
                        transient(gradientTransient(blockE))
                        free(shard(blockE))                          // gradients
                        if !keepBetween { free(shard(blockE)) }      // values, streamed or resident
                    } else if streamed && !keepBetween {
                        free(shard(blockE))
                    }
                }
            }
            transient(gradientTransient(embE))
            return peak
        }

        load(embE); alloc(shard(embE))
        load(headE); alloc(shard(headE))
        alloc((layers + 1) * residual(n))                            // checkpoints
        if recompute { alloc(activations(m)) }
        for l in 0..<layers {
            load(blockE)
            if !recompute { for s in micro { alloc(activations(s)) } }
            if l < firstResident && !keepBetween { free(shard(blockE)) }
        }
        alloc(residual(n))                                           // dX
        alloc(scratch)
        alloc(head)
        free(head)
        free(residual(n))                                            // checkpoint L
        transient(gradientTransient(headE))
        if recompute { alloc(residual(mt)) }
        for l in stride(from: layers - 1, through: 0, by: -1) {
            if l < firstResident && !keepBetween { load(blockE) }
            alloc(shard(blockE))                                     // gradients
            if !recompute { for s in micro { free(activations(s)) } }
            if l < layers - 1 { free(residual(n)) }                  // checkpoint l + 1 (the head freed L)
            transient(gradientTransient(blockE))
            free(shard(blockE))
            if !keepBetween { free(shard(blockE)) }
        }
        transient(gradientTransient(embE))
        return peak
    }
}
