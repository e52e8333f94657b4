import TributaryTensor

/// What a streamed step needs from whoever holds the parameter shards (a worker's local,
/// content-addressed shard cache) and whoever takes the finished gradients (its codec and
/// upload queue). Shard names are `ModelShardGroup` names.
public protocol ShardStreamingDelegate: AnyObject, Sendable {
    /// Writes the shard's parameter values (the shard body's element order) into `values`.
    func loadShard(_ name: String, into values: UnsafeMutableBufferPointer<Float>) throws
    /// Identifies the shard's current content (a content hash): a shard kept resident
    /// between steps is loaded again only when its key changed.
    func contentKey(ofShard name: String) -> String
    /// The shard's gradient is final for this step; it can be read until the call returns.
    /// This is where the worker encodes it and queues the upload, overlapping the network
    /// with the backward of the shards still to come.
    func shardGradientReady(_ name: String, gradient: UnsafeBufferPointer<Float>) async throws
    /// Bytes the delegate holds (outside the step's tensors) while loading a shard of
    /// `elements` values, and while taking its gradient; the planner counts them.
    func transientBytes(loading elements: Int) -> Int
    func transientBytes(takingGradientOf elements: Int) -> Int
    /// `done` of the step's `total` passes are finished (a pass is named by `step`: a
    /// block's forward or backward over the unit, or a micro-batch). For progress, and a
    /// place to stop: a delegate whose unit was cancelled throws here.
    func stepProgress(_ done: Int, of total: Int, step: String) throws
}

extension ShardStreamingDelegate {
    public func stepProgress(_ done: Int, of total: Int, step: String) throws {}
}

/// FSDP-style execution of a GPT training step under a memory budget: parameter shards are
/// made resident one transformer block at a time (and released again unless the plan keeps
/// them), activations are kept or recomputed from each block's saved input, micro-batches
/// accumulate gradients inside each block (layer-outer order, so each block is loaded once
/// per pass, not once per micro-batch), and each shard's gradient is handed on as soon as
/// it is final. Every tensor comes from the device's allocator, so the step's peak is what
/// the budget sees; `peakBytes` predicts it from the same schedule.
///
/// The gradient equals `GPT.forwardBackward`'s for the same batch up to the order of fp32
/// sums (tested).
public final class StreamedGPT: @unchecked Sendable {
    // Unchecked: driven by one task at a time (a worker's compute loop).
    public let config: GPTConfig
    public let plan: GPTExecutionPlan
    let allocator: TensorAllocator
    let device: any ComputeDevice
    let groups: [String: ModelShardGroup]

    /// Shards kept resident between steps (with every block resident), by name.
    private var resident: [String: (values: TensorStorage, key: String)] = [:]

    public init(config: GPTConfig, plan: GPTExecutionPlan, device: any ComputeDevice) throws {
        try config.validate()
        guard plan.microBatch >= 1 else { throw ModelError.invalidConfiguration("micro-batch must be at least 1") }
        guard (0...config.nLayer).contains(plan.residentBlocks) else {
            throw ModelError.invalidConfiguration("resident blocks must be 0…\(config.nLayer) (got \(plan.residentBlocks))")
        }
        self.config = config
        self.plan = plan
        allocator = device.allocator
        self.device = device
        var g: [String: ModelShardGroup] = [:]
        for group in GPT.shardGroups(config) { g[group.name] = group }
        groups = g
    }

    /// A residual-stream buffer (block inputs, ∂L/∂x, a recomputed block output).
    static func residualShape(rows: Int, channels c: Int) -> [Int] { [rows, c] }

    var keepsShardsBetweenSteps: Bool { plan.residentBlocks == config.nLayer }

    /// Drops shards kept between steps (their memory returns to the allocator).
    public func releaseResidentShards() { resident = [:] }

    /// A gradient block to read (the codec only reads it): on a GPU only it comes down,
    /// and the device's copy stays the one the next micro-batch accumulates into.
    static func readable(_ storage: TensorStorage) -> UnsafeBufferPointer<Float> {
        UnsafeBufferPointer(start: Tensor(flat: storage).readableData, count: storage.count)
    }

    /// A shard's gradient goes out only from a healthy device: after a failed kernel the
    /// values are garbage, and the unit must fail rather than upload them.
    private func gradientReady(_ delegate: any ShardStreamingDelegate, _ name: String,
                               gradient: UnsafeBufferPointer<Float>) async throws {
        try device.checkHealthy()
        try await delegate.shardGradientReady(name, gradient: gradient)
    }

    private func elements(_ name: String) -> Int { groups[name]?.elementCount ?? 0 }

    /// A shard's values, loaded through the delegate or reused when kept resident.
    private func values(_ name: String, delegate: any ShardStreamingDelegate, keep: Bool) throws -> TensorStorage {
        let key = delegate.contentKey(ofShard: name)
        if let r = resident[name], r.key == key { return r.values }
        resident[name] = nil
        let storage = try TensorStorage(count: elements(name), allocator: allocator)
        try delegate.loadShard(name, into: UnsafeMutableBufferPointer(start: storage.base, count: storage.count))
        if keep { resident[name] = (storage, key) }
        return storage
    }

    private func block(_ i: Int, values: TensorStorage, gradients: TensorStorage?) throws -> TransformerBlock {
        // Forward never writes gradients, so a forward-only block views its values twice.
        try TransformerBlock(index: i, channels: config.nEmbd, heads: config.nHead, bias: config.bias,
                             parameters: .views(values: values, gradients: gradients ?? values), device: device)
    }

    /// Loss and gradients of the mean loss over `batch` (token sequences), each shard's
    /// gradient delivered to the delegate as soon as it is final: `head` first, then the
    /// blocks from last to first, then `embeddings`.
    public func step(_ batch: ModelBatch, delegate: any ShardStreamingDelegate) async throws -> Double {
        guard case let .tokens(inputs, targets, b, t) = batch else {
            throw ModelError.batchShape("a GPT takes token batches, not feature rows")
        }
        guard b > 0, t > 0 else { throw ModelError.batchShape("batch and sequence must be positive (got \(b)×\(t))") }
        guard t <= config.blockSize else { throw ModelError.batchShape("sequence length \(t) exceeds block_size \(config.blockSize)") }
        guard inputs.count == b * t, targets.count == b * t else {
            throw ModelError.batchShape("expected \(b * t) input tokens and targets, got \(inputs.count) and \(targets.count)")
        }
        try validateIDs(inputs, below: config.vocabSize, isTarget: false)
        try validateIDs(targets, below: config.vocabSize, isTarget: true)
        if plan.schedule == .microBatchesOuter {
            return try await microBatchesOuterStep(inputs, targets, batch: b, sequence: t, delegate: delegate)
        }

        let c = config.nEmbd, v = config.vocabSize, layers = config.nLayer, h = config.nHead
        let m = min(plan.microBatch, b)
        let micro = stride(from: 0, to: b, by: m).map { ($0, min(b, $0 + m)) }
        let keepBetween = keepsShardsBetweenSteps
        let firstResident = layers - plan.residentBlocks
        let a = allocator
        let emb = GPT.embeddingsShardName, headName = GPT.headShardName
        // Each block forward, the head, each block backward.
        let passes = 2 * layers + 1

        // Embeddings (wte is also the tied output head) and ln_f stay resident all step.
        let ends = try residentEnds(delegate: delegate, keep: keepBetween)
        let wte = ends.wte, wpe = ends.wpe

        // Block inputs for the whole unit: the activation checkpoints (also what backward
        // needs as each block's input when activations are kept).
        var checkpoints: [Tensor?] = try (0...layers).map { _ in try Tensor(shape: Self.residualShape(rows: b * t, channels: c), allocator: a) }
        var keptActivations: [[TransformerBlock.Activations]] = []
        let recompute = plan.activations == .recomputed
        let work: TransformerBlock.Activations? = recompute
            ? try TransformerBlock.Activations(batch: m, sequence: t, channels: c, heads: h, allocator: a) : nil

        if let x0 = checkpoints[0] {
            device.kernels.embeddingForward(out: x0, tokens: inputs[...], wte: wte, wpe: wpe, batch: b, sequence: t, channels: c)
        }

        // Forward, block by block; each block runs every micro-batch while it is resident.
        var residentBlockValues: [Int: TensorStorage] = [:]
        for l in 0..<layers {
            let keep = l >= firstResident
            let bv = try values(GPT.blockShardName(l), delegate: delegate, keep: keepBetween)
            let blk = try block(l, values: bv, gradients: nil)
            guard let x = checkpoints[l], let y = checkpoints[l + 1] else { continue }
            var saved: [TransformerBlock.Activations] = []
            for (lo, hi) in micro {
                try Task.checkCancellation()  // the unit was given up: stop between micro-batches
                let acts: TransformerBlock.Activations
                if let work, recompute { acts = work } else {
                    acts = try TransformerBlock.Activations(batch: hi - lo, sequence: t, channels: c, heads: h, allocator: a)
                    saved.append(acts)
                }
                blk.forward(x.rows(lo * t, (hi - lo) * t), into: y.rows(lo * t, (hi - lo) * t), saving: acts,
                            batch: hi - lo, sequence: t)
            }
            if !recompute { keptActivations.append(saved) }
            if keep { residentBlockValues[l] = bv }
            try delegate.stepProgress(l + 1, of: passes, step: "block pass")
        }

        // Head, loss and the head's backward, one micro-batch at a time.
        let dX = try Tensor(shape: Self.residualShape(rows: b * t, channels: c), allocator: a)
        let scratch = try TransformerBlock.Scratch(batch: m, sequence: t, channels: c, device: device)
        var loss = 0.0
        do {
            let head = try HeadPass(rows: m * t, channels: c, vocabulary: v, device: device)
            guard let xL = checkpoints[layers] else { throw ModelError.batchShape("internal: missing final residual") }
            for (lo, hi) in micro {
                try Task.checkCancellation()
                let base = lo * t
                loss += head.run(xL.rows(base, (hi - lo) * t), targets: targets, from: base, rows: (hi - lo) * t, of: b * t,
                                 ends: ends, scratch: scratch, dInput: dX.rows(base, (hi - lo) * t))
            }
        }
        checkpoints[layers] = nil
        try delegate.stepProgress(layers + 1, of: passes, step: "block pass")
        try await gradientReady(delegate, headName, gradient: ends.headGradients)

        // Backward, block by block from the last; each block's gradient is final once
        // every micro-batch went through it. On a device that overlaps downloads, a block's
        // gradient starts down as soon as its kernels are queued and goes to the delegate
        // after the next block's are: the host encodes it while the device computes.
        let recomputed: Tensor? = recompute ? try Tensor(shape: Self.residualShape(rows: m * t, channels: c), allocator: a) : nil
        let overlap = device.overlapsDownloads
        var finished: (name: String, gradients: TensorStorage)?
        for l in stride(from: layers - 1, through: 0, by: -1) {
            let bv = try residentBlockValues[l] ?? values(GPT.blockShardName(l), delegate: delegate, keep: keepBetween)
            residentBlockValues[l] = nil
            let grads = try TensorStorage(count: bv.count, allocator: a)
            let blk = try block(l, values: bv, gradients: grads)
            guard let x = checkpoints[l] else { continue }
            for (i, (lo, hi)) in micro.enumerated() {
                try Task.checkCancellation()
                let acts: TransformerBlock.Activations
                if let work, let y = recomputed {
                    blk.forward(x.rows(lo * t, (hi - lo) * t), into: y, saving: work, batch: hi - lo, sequence: t)
                    acts = work
                } else {
                    acts = keptActivations[l][i]
                }
                blk.backward(dResidual: dX.rows(lo * t, (hi - lo) * t), input: x.rows(lo * t, (hi - lo) * t), saved: acts,
                             scratch: scratch, batch: hi - lo, sequence: t)
            }
            if !recompute { keptActivations[l] = [] }
            checkpoints[l + 1] = nil
            try delegate.stepProgress(2 * layers + 1 - l, of: passes, step: "block pass")
            guard overlap else {
                try await gradientReady(delegate, GPT.blockShardName(l), gradient: Self.readable(grads))
                continue
            }
            grads.beginDownload()
            if let previous = finished { try await gradientReady(delegate, previous.name, gradient: Self.readable(previous.gradients)) }
            finished = (GPT.blockShardName(l), grads)
        }

        device.kernels.embeddingBackward(dWTE: ends.dWTE, dWPE: ends.dWPE, dOut: dX, tokens: inputs[...],
                                         batch: b, sequence: t, channels: c)
        if let last = finished { try await gradientReady(delegate, last.name, gradient: Self.readable(last.gradients)) }
        finished = nil
        try await gradientReady(delegate, emb, gradient: ends.embeddingGradients)
        return loss
    }

    /// The embeddings and head shards, resident for a whole step, with their gradients.
    struct ResidentEnds {
        let embeddings: TensorStorage, embeddingGradientStorage: TensorStorage
        let head: TensorStorage, headGradientStorage: TensorStorage
        let lnF: LayerNorm
        let vocabularyEntries: Int

        var wte: Tensor { Tensor(flat: embeddings) }
        var wpe: Tensor { Tensor(flat: embeddings).rows(vocabularyEntries, embeddings.count - vocabularyEntries) }
        var dWTE: Tensor { Tensor(flat: embeddingGradientStorage) }
        var dWPE: Tensor {
            Tensor(flat: embeddingGradientStorage).rows(vocabularyEntries, embeddingGradientStorage.count - vocabularyEntries)
        }
        var embeddingGradients: UnsafeBufferPointer<Float> {
            StreamedGPT.readable(embeddingGradientStorage)
        }
        var headGradients: UnsafeBufferPointer<Float> {
            StreamedGPT.readable(headGradientStorage)
        }
    }

    /// Loads (or reuses) the embeddings and head shards, in the order `peakBytes` assumes:
    /// embeddings, their gradient, head, its gradient.
    private func residentEnds(delegate: any ShardStreamingDelegate, keep: Bool) throws -> ResidentEnds {
        let embeddings = try values(GPT.embeddingsShardName, delegate: delegate, keep: keep)
        let embeddingGradients = try TensorStorage(count: embeddings.count, allocator: allocator)
        let head = try values(GPT.headShardName, delegate: delegate, keep: keep)
        let headGradients = try TensorStorage(count: head.count, allocator: allocator)
        let lnF = try LayerNorm(name: GPT.finalNormName, features: config.nEmbd, bias: config.bias,
                                parameters: .views(values: head, gradients: headGradients), device: device)
        return ResidentEnds(embeddings: embeddings, embeddingGradientStorage: embeddingGradients, head: head,
                            headGradientStorage: headGradients, lnF: lnF, vocabularyEntries: config.vocabSize * config.nEmbd)
    }

    /// Buffers for ln_f, the tied head and the loss over up to `rows` positions.
    struct HeadPass {
        let lnOut: Tensor, mean: Tensor, rstd: Tensor, logits: Tensor, losses: Tensor
        let channels: Int, vocabulary: Int
        let device: any ComputeDevice

        init(rows: Int, channels c: Int, vocabulary v: Int, device: any ComputeDevice) throws {
            let a = device.allocator
            self.device = device
            let s = Self.shapes(rows: rows, channels: c, vocabulary: v)
            lnOut = try Tensor(shape: s[0], allocator: a)
            mean = try Tensor(shape: s[1], allocator: a)
            rstd = try Tensor(shape: s[2], allocator: a)
            logits = try Tensor(shape: s[3], allocator: a)
            losses = try Tensor(shape: s[4], allocator: a)
            channels = c
            vocabulary = v
        }

        static func shapes(rows: Int, channels c: Int, vocabulary v: Int) -> [[Int]] { [[rows, c], [rows], [rows], [rows, v], [rows]] }
        static func byteCount(rows: Int, channels c: Int, vocabulary v: Int) -> Int {
            TensorShapes.byteCount(shapes(rows: rows, channels: c, vocabulary: v))
        }

        /// ln_f, logits and cross-entropy over `rows` positions whose targets start at
        /// `base` (scaled as part of a mean over `total`), then their backward: the wte and
        /// ln_f gradients accumulate and ∂L/∂x is added into `dInput`. Returns this slice's
        /// share of the mean loss.
        func run(_ x: Tensor, targets: [Int32], from base: Int, rows: Int, of total: Int,
                 ends: ResidentEnds, scratch: TransformerBlock.Scratch, dInput: Tensor) -> Double {
            let c = channels, v = vocabulary, k = device.kernels
            ends.lnF.forward(x, into: lnOut, mean: mean, rstd: rstd, rows: rows)
            k.linearForward(out: logits, input: lnOut, weight: ends.wte, bias: nil, rows: rows, inFeatures: c, outFeatures: v)
            k.softmaxCrossEntropyForward(logits: logits, targets: targets[base..<base + rows], losses: losses, rows: rows, classes: v)
            k.softmaxCrossEntropyBackward(probabilities: logits, targets: targets[base..<base + rows], rows: rows, classes: v,
                                          scale: 1 / Float(total))
            var sum = 0.0
            let values = losses.readableData  // one read: on a GPU, one transfer
            for r in 0..<rows { sum += Double(values[r]) }
            k.linearBackward(dInput: scratch.dLN, dWeight: ends.dWTE, dBias: nil, dOut: logits, input: lnOut,
                             weight: ends.wte, rows: rows, inFeatures: c, outFeatures: v, accumulateInput: false)
            ends.lnF.backward(dOut: scratch.dLN, input: x, mean: mean, rstd: rstd, dInput: dInput, rows: rows)
            return sum / Double(total)
        }
    }

    /// The micro-batches-outer schedule (see `GPTExecutionPlan.Schedule`).
    private func microBatchesOuterStep(_ inputs: [Int32], _ targets: [Int32], batch b: Int, sequence t: Int,
                                       delegate: any ShardStreamingDelegate) async throws -> Double {
        let c = config.nEmbd, v = config.vocabSize, layers = config.nLayer, h = config.nHead
        let m = min(plan.microBatch, b)
        let micro = stride(from: 0, to: b, by: m).map { ($0, min(b, $0 + m)) }
        let keepBetween = keepsShardsBetweenSteps
        let firstResident = layers - plan.residentBlocks
        let recompute = plan.activations == .recomputed
        let a = allocator
        let emb = GPT.embeddingsShardName, headName = GPT.headShardName

        let ends = try residentEnds(delegate: delegate, keep: keepBetween)
        let wte = ends.wte, wpe = ends.wpe

        // One micro-batch's worth of everything, reused for each micro-batch.
        let checkpoints = try (0...layers).map { _ in try Tensor(shape: Self.residualShape(rows: m * t, channels: c), allocator: a) }
        let work: TransformerBlock.Activations? = recompute
            ? try TransformerBlock.Activations(batch: m, sequence: t, channels: c, heads: h, allocator: a) : nil
        let kept: [TransformerBlock.Activations] = recompute ? [] : try (0..<layers).map { _ in
            try TransformerBlock.Activations(batch: m, sequence: t, channels: c, heads: h, allocator: a)
        }
        let dX = try Tensor(shape: Self.residualShape(rows: m * t, channels: c), allocator: a)
        let scratch = try TransformerBlock.Scratch(batch: m, sequence: t, channels: c, device: device)
        let head = try HeadPass(rows: m * t, channels: c, vocabulary: v, device: device)
        let recomputed: Tensor? = recompute ? try Tensor(shape: Self.residualShape(rows: m * t, channels: c), allocator: a) : nil

        var residentBlockValues: [Int: TensorStorage] = [:]
        var gradients: [Int: TensorStorage] = [:]
        var loss = 0.0
        for (i, (lo, hi)) in micro.enumerated() {
            try delegate.stepProgress(i, of: micro.count, step: "micro-batch")
            let last = i == micro.count - 1
            let seqs = hi - lo, rows = seqs * t, base = lo * t
            device.kernels.embeddingForward(out: checkpoints[0], tokens: inputs[base..<base + rows], wte: wte, wpe: wpe,
                                            batch: seqs, sequence: t, channels: c)
            for l in 0..<layers {
                let bv = try residentBlockValues[l] ?? values(GPT.blockShardName(l), delegate: delegate, keep: keepBetween)
                if l >= firstResident { residentBlockValues[l] = bv }
                let blk = try block(l, values: bv, gradients: nil)
                blk.forward(checkpoints[l], into: checkpoints[l + 1], saving: work ?? kept[l], batch: seqs, sequence: t)
            }
            dX.zero()
            loss += head.run(checkpoints[layers], targets: targets, from: base, rows: rows, of: b * t,
                             ends: ends, scratch: scratch, dInput: dX)
            if last {
                try await gradientReady(delegate, headName, gradient: ends.headGradients)
            }
            for l in stride(from: layers - 1, through: 0, by: -1) {
                let bv = try residentBlockValues[l] ?? values(GPT.blockShardName(l), delegate: delegate, keep: keepBetween)
                let grads = try gradients[l] ?? TensorStorage(count: bv.count, allocator: a)
                gradients[l] = grads
                let blk = try block(l, values: bv, gradients: grads)
                let acts: TransformerBlock.Activations
                if let work, let y = recomputed {
                    blk.forward(checkpoints[l], into: y, saving: work, batch: seqs, sequence: t)
                    acts = work
                } else {
                    acts = kept[l]
                }
                blk.backward(dResidual: dX, input: checkpoints[l], saved: acts, scratch: scratch, batch: seqs, sequence: t)
                if last {
                    gradients[l] = nil
                    residentBlockValues[l] = nil
                    try await gradientReady(delegate, GPT.blockShardName(l), gradient: Self.readable(grads))
                }
            }
            device.kernels.embeddingBackward(dWTE: ends.dWTE, dWPE: ends.dWPE, dOut: dX, tokens: inputs[base..<base + rows],
                                             batch: seqs, sequence: t, channels: c)
        }
        try await gradientReady(delegate, emb, gradient: ends.embeddingGradients)
        return loss
    }
}
