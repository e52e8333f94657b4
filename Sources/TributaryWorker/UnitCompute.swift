import Logging
import TributaryCompression
import TributaryModels
import TributaryPlanning
import TributaryProtocol
import TributaryTensor

/// How a worker computes the units of one job, as its memory planner chose: through the
/// family's streamed step (a GPT's shards streamed, FSDP-style), or the model held whole.
final class UnitCompute: @unchecked Sendable {
    // Unchecked: used by one unit at a time (the daemon's loop, or an offline runner).
    let plan: MemoryPlan
    let planner: MemoryPlanner
    let layout: ShardLayout
    let device: any ComputeDevice
    private var engine: Engine
    /// Local rounds (DiLoCo): the inner optimizer and its saved state; nil otherwise.
    let local: LocalStepRunner?

    private enum Engine {
        case streamed(any StreamedTrainingStep)
        /// A model held whole, and the content hash of each shard now in it.
        case resident(any TrainableModel, loaded: [String: String])
    }

    /// A plan that does not fit, in the words of the budget that was too small: on a GPU
    /// whose VRAM budget is the smaller one, that is the one to raise.
    static func explain(_ error: MemoryPlanError, device: any ComputeDevice) -> String {
        guard case let .doesNotFit(needed, budget, smallest) = error, device.deviceMemoryBudgetBytes == budget else {
            return error.description
        }
        return "the VRAM budget is too small for this job: its smallest plan (\(smallest)) needs \(ByteCount.format(needed)), "
            + "the VRAM budget is \(ByteCount.format(budget)); give --vram-budget at least \(ByteCount.format(needed))"
    }

    /// Plans against `budgetBytes` of host memory and the device's own budget (a GPU's VRAM),
    /// each against its own prediction; throws `WorkerError.fatal` with the one-line reason
    /// when even the smallest plan does not fit, or the codec is unknown.
    /// `stateDirectory` keeps a local-rounds job's inner optimizer state.
    init(job: JobDescription, device: any ComputeDevice, budgetBytes: Int?, stateDirectory: String,
         logger: Logger = Logger(label: "tributary.worker")) throws {
        // The coordinator's sizes are refused here, before anything is planned or allocated from them.
        do { try job.model.validate() } catch {
            throw WorkerError.fatal("the coordinator's model is invalid: \(error)")
        }
        try job.checkForWorker()
        let codec: UpdateCodecSpec
        do { codec = try UpdateCodecSpec(parsing: job.updateCodec) } catch {
            throw WorkerError.fatal("the coordinator asks for update codec '\(job.updateCodec)', which this worker does not know: \(error)")
        }
        layout = ShardLayout(spec: job.model)
        self.device = device
        if let steps = job.localSteps {
            // One inner step's samples are what the model holds activations for.
            let perStep = job.samplesPerUnit / steps.steps
            planner = MemoryPlanner(model: job.model, unitSamples: perStep,
                                    suggestedMicroBatch: min(job.microBatchSize, perStep), codec: codec, device: device.planningTraits)
            do {
                // The local-steps walk has no device prediction: the VRAM budget bounds it whole.
                plan = try planner.planLocal(budgetBytes: device.planningBudget(memoryBudgetBytes: budgetBytes),
                                             stateFloatsPerParameter: LocalStepRunner.stateFloatsPerParameter(steps))
            } catch {
                throw WorkerError.fatal(Self.explain(error, device: device))
            }
            let model = try job.model.build(seed: 0, device: device)
            engine = .resident(model, loaded: [:])
            local = try LocalStepRunner(settings: steps, parameters: model.parameters, allocator: device.allocator,
                                        directory: stateDirectory, fingerprint: Self.fingerprint(job), logger: logger)
            return
        }
        local = nil
        planner = MemoryPlanner(model: job.model, unitSamples: job.samplesPerUnit,
                                suggestedMicroBatch: job.microBatchSize, codec: codec, device: device.planningTraits)
        do { plan = try planner.plan(budgetBytes: budgetBytes, deviceBudgetBytes: device.deviceMemoryBudgetBytes) } catch {
            throw WorkerError.fatal(Self.explain(error, device: device))
        }
        if let step = try job.model.family.makeStreamedStep(plan.execution, device: device) {
            engine = .streamed(step)
        } else {
            engine = .resident(try job.model.build(seed: 0, device: device), loaded: [:])
        }
    }

    /// What the inner optimizer state belongs to: the job's name, model and inner optimizer.
    static func fingerprint(_ job: JobDescription) -> String {
        let steps = job.localSteps.map { "\($0.optimizer) \($0.beta1) \($0.beta2) \($0.momentum) \($0.nesterov)" } ?? ""
        return "\(job.name) | \(job.model.summary) | \(steps)"
    }

    /// One unit: computes it with shards from `cache` and hands each shard's update —
    /// encoded with error feedback against `residuals` (lossy codecs), staged there — to
    /// `send` through an upload queue that overlaps the compute. Returns once every update
    /// is sent; on any failure the queue is abandoned and the staged residuals dropped.
    /// Committing the staged residuals is the caller's, once the unit is accepted.
    func runUnit(_ batch: ModelBatch, version: Int, shards: [String: UnitShardStream.ShardDescriptorRef], cache: ShardCache,
                 residuals: ResidualStore, zstdLevel: Int, progress: UnitProgress? = nil,
                 send: @escaping @Sendable (String, [UInt8]) async throws -> Void) async throws -> (loss: Double, bytesSent: Int) {
        let queue = UploadQueue(capacity: plan.uploadQueueBytes, allocator: device.allocator, send: send)
        let lossy = planner.codec.codec != .fp32
        let stream = UnitShardStream(descriptors: shards, cache: cache, allocator: device.allocator, planner: planner,
                                     zstdLevel: zstdLevel, residuals: lossy ? residuals : nil, queue: queue, progress: progress)
        do {
            let loss = try await run(batch, version: version, stream: stream, progress: progress)
            progress?.enter(.uploading)
            try await queue.finish()
            return (loss, await queue.bytesSent)
        } catch {
            await queue.cancelAll()
            residuals.discardStaged()
            try? local?.rollBack()
            throw error
        }
    }

    /// The unit's work was accepted: what it staged besides the residuals (the inner
    /// optimizer state of local rounds) is kept.
    func commitStaged() throws {
        try local?.commit()
    }

    /// The unit's work was not accepted: the inner optimizer state goes back to the last kept.
    func discardStaged() {
        try? local?.rollBack()
    }

    /// The unit's mean loss; every shard's update handed to `stream` (encoded and queued).
    private func run(_ batch: ModelBatch, version: Int, stream: UnitShardStream, progress: UnitProgress?) async throws -> Double {
        switch engine {
        case let .streamed(step):
            progress?.enter(.computing)
            return try await step.step(batch, delegate: stream)
        case let .resident(model, loaded):
            // A diffusion model's noise: new each version, the same for every replica of this unit.
            (model as? any StochasticTrainingModel)?.trainingSeed = UInt64(max(0, version))
            // Activation checkpointing as planned (the plan's peak assumes it).
            if case let .residentModel(_, recomputes) = plan.execution {
                (model as? any BlockRecomputing)?.recomputesBlocks = recomputes
            }
            if let local {
                progress?.enter(.computing, steps: local.settings.steps, named: "inner step")
                return try await localSteps(model, loaded: loaded, batch: batch, version: version, local: local,
                                            stream: stream, progress: progress)
            }
            return try await residentStep(model, loaded: loaded, batch: batch, stream: stream, progress: progress)
        }
    }

    /// Changed shards decoded into a model held whole; the shards' hashes now in it.
    private func loadChangedShards(_ model: any TrainableModel, loaded: [String: String],
                                   stream: UnitShardStream) throws -> [String: String] {
        var nowLoaded = loaded
        for shard in layout.shards {
            let hash = stream.contentKey(ofShard: shard.name)
            guard nowLoaded[shard.name] != hash else { continue }
            let flat = UnsafeMutableBufferPointer<Float>.allocate(capacity: shard.elementCount)
            defer { flat.deallocate() }
            try device.allocator.withReservedBytes(4 * shard.elementCount) {
                try stream.loadShard(shard.name, into: flat)
                if let base = flat.baseAddress { layout.scatter(shard, from: base, into: model.parameters) }
            }
            nowLoaded[shard.name] = hash
        }
        return nowLoaded
    }

    /// A local-rounds unit: the lease's parameters, the inner steps, then each shard's
    /// pseudo-gradient (its values at the lease's version, read back from the cache, minus
    /// the values after the steps) encoded and queued, from last to first.
    private func localSteps(_ model: any TrainableModel, loaded: [String: String], batch: ModelBatch, version: Int,
                            local: LocalStepRunner, stream: UnitShardStream, progress: UnitProgress?) async throws -> Double {
        _ = try loadChangedShards(model, loaded: loaded, stream: stream)
        // The steps change every value: whatever happens next, no shard is as loaded any more.
        engine = .resident(model, loaded: [:])
        guard case let .residentModel(micro, _) = plan.execution else { return .nan }
        let loss = try local.run(model, batch: batch, version: version, microBatch: micro) { progress?.step() }
        for shard in layout.shards.reversed() {
            try Task.checkCancellation()
            let n = shard.elementCount
            let start = UnsafeMutableBufferPointer<Float>.allocate(capacity: n)
            defer { start.deallocate() }
            let pseudo = UnsafeMutableBufferPointer<Float>.allocate(capacity: n)
            defer { pseudo.deallocate() }
            try device.allocator.withReservedBytes(4 * n) { try stream.loadShard(shard.name, into: start) }
            guard let s = start.baseAddress, let p = pseudo.baseAddress else { continue }
            layout.gather(shard, from: model.parameters, gradients: false, into: p)
            for i in 0..<n { p[i] = s[i] - p[i] }
            let body = try stream.encode(shard.name, UnsafeBufferPointer(pseudo), gathers: true)
            try await stream.queue.submit(shard.name, body)
        }
        return loss
    }

    /// A whole-model unit: changed shards decoded into the model, micro-batches
    /// accumulated, then each shard's gradient taken from last to first.
    private func residentStep(_ model: any TrainableModel, loaded: [String: String], batch: ModelBatch,
                              stream: UnitShardStream, progress: UnitProgress?) async throws -> Double {
        engine = .resident(model, loaded: try loadChangedShards(model, loaded: loaded, stream: stream))
        guard case let .residentModel(micro, _) = plan.execution else { return .nan }
        let m = max(1, min(micro, batch.sampleCount))
        progress?.enter(.computing, steps: (batch.sampleCount + m - 1) / m, named: "micro-batch")
        let loss = try Self.computeGradient(model: model, batch: batch, microBatch: micro) { progress?.step() }
        for shard in layout.shards.reversed() {
            try Task.checkCancellation()  // the unit's lease was lost: no more encoding
            let flat = UnsafeMutableBufferPointer<Float>.allocate(capacity: shard.elementCount)
            defer { flat.deallocate() }
            if let base = flat.baseAddress { layout.gather(shard, from: model.parameters, gradients: true, into: base) }
            let body = try stream.encode(shard.name, UnsafeBufferPointer(flat), gathers: true)
            try await stream.queue.submit(shard.name, body)
        }
        return loss
    }

    /// Mean loss of the batch; gradients (of the mean) left in the model's parameters.
    /// `afterMicroBatch` is told of each micro-batch done; a cancelled task stops between them
    /// (its lease was lost, or the volunteer wants the machine back).
    static func computeGradient(model: any TrainableModel, batch: ModelBatch, microBatch: Int,
                                afterMicroBatch: () -> Void = {}) throws -> Double {
        model.parameters.zeroGradients()
        let n = batch.sampleCount
        let m = max(1, min(microBatch, n))
        var lossSum = 0.0
        var start = 0
        while start < n {
            if start > 0 {
                try Task.checkCancellation()
                afterMicroBatch()
            }
            let end = min(n, start + m)
            let share = Float(end - start) / Float(n)
            lossSum += Double(try model.forwardBackward(batch.samples(start, end), lossScale: share)) * Double(share)
            start = end
        }
        return lossSum
    }

}
