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
    /// counts no padding, so the walk is exact for the `device` it is given (its attention
    /// scratch; whether it hands each block's gradient on one block later).
    public static func peakBytes(config: GPTConfig, batch b: Int, sequence t: Int, plan: GPTExecutionPlan,
                                 device: DevicePlanningTraits = .cpu,
                                 loadTransient: (Int) -> Int, gradientTransient: (Int) -> Int) -> Int {
        let c = config.nEmbd, v = config.vocabSize, layers = config.nLayer, h = config.nHead
        let m = max(1, min(plan.microBatch, b))
        let (embE, blockE, headE) = config.shardElementCounts
        var live = 0, peak = 0
        func alloc(_ bytes: Int) { live += bytes; peak = max(peak, live) }
        func free(_ bytes: Int) { live -= bytes }
        func transient(_ bytes: Int) { peak = max(peak, live + bytes) }
        func shard(_ elements: Int) -> Int { TensorShapes.byteCount(elements: elements) }
        // A shard's storage exists before its body is read into it.
        func load(_ elements: Int) { alloc(shard(elements)); transient(loadTransient(elements)) }
        // Every block is the same size: its transients are asked for once, not per block.
        let blockLoad = loadTransient(blockE), blockGradient = gradientTransient(blockE)
        func loadBlock() { alloc(shard(blockE)); transient(blockLoad) }
        func residual(_ rows: Int) -> Int { TensorShapes.byteCount([residualShape(rows: rows, channels: c)]) }
        func activations(_ seqs: Int) -> Int {
            TransformerBlock.Activations.byteCount(batch: seqs, sequence: t, channels: c, heads: h)
        }
        let scratch = TransformerBlock.Scratch.byteCount(batch: m, sequence: t, channels: c,
                                                         attentionScratch: device.attentionScratchShape(t))
        let overlapsDownloads = device.overlapsDownloads
        let head = HeadPass.byteCount(rows: m * t, channels: c, vocabulary: v)
        let keepBetween = plan.residentBlocks == layers
        let firstResident = layers - plan.residentBlocks
        let recompute = plan.activations == .recomputed
        // The unit's micro-batches: `full` of m sequences, then one of `rest` if b % m > 0.
        // Walked in aggregate, so the walk is O(n_layer) whatever the batch.
        let full = b / m, rest = b % m
        let microCount = full + (rest > 0 ? 1 : 0)
        let unitActivations = full * activations(m) + (rest > 0 ? activations(rest) : 0)
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
            // Blocks from `firstResident` on are loaded in the first forward and stay; the
            // others are streamed. Every block's gradient is allocated in the first backward.
            // Micro-batches 1 ... count−2 start from the same live bytes (every gradient
            // allocated, resident blocks loaded, streamed ones freed) and do the same, so
            // one of them stands for all: the walk needs the first, one middle and the last.
            let walked = microCount <= 3 ? Array(0..<microCount) : [0, 1, microCount - 1]
            for i in walked {
                let last = i == microCount - 1
                for l in 0..<layers where i == 0 || l < firstResident {
                    loadBlock()
                    if l < firstResident && !keepBetween { free(shard(blockE)) }
                }
                if last { transient(gradientTransient(headE)) }
                for l in stride(from: layers - 1, through: 0, by: -1) {
                    let streamed = l < firstResident
                    if streamed { loadBlock() }
                    if i == 0 { alloc(shard(blockE)) }                // its gradient, accumulated from here
                    if last {
                        transient(blockGradient)
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
            loadBlock()
            if !recompute { alloc(unitActivations) }                 // every micro-batch's
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
            if l < firstResident && !keepBetween { loadBlock() }
            alloc(shard(blockE))                                     // gradients
            if !recompute { free(unitActivations) }
            if l < layers - 1 { free(residual(n)) }                  // checkpoint l + 1 (the head freed L)
            if !overlapsDownloads || l < layers - 1 {
                transient(blockGradient)                             // block l's, or l + 1's one block later
                free(shard(blockE))
            }
            if !keepBetween { free(shard(blockE)) }
        }
        if overlapsDownloads {
            transient(blockGradient)                                 // block 0's, after the embeddings' backward
            free(shard(blockE))
        }
        transient(gradientTransient(embE))
        return peak
    }
}
