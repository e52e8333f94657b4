import TributaryCompression
import TributaryModels
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

    private enum Engine {
        case streamed(any StreamedTrainingStep)
        /// A model held whole, and the content hash of each shard now in it.
        case resident(any TrainableModel, loaded: [String: String])
    }

    /// Plans against `budgetBytes`; throws `WorkerError.fatal` with the one-line reason
    /// when even the smallest plan does not fit, or the codec is unknown.
    init(job: JobDescription, device: any ComputeDevice, budgetBytes: Int?) throws {
        // The coordinator's sizes are refused here, before anything is planned or allocated from them.
        do { try job.model.validate() } catch {
            throw WorkerError.fatal("the coordinator's model is invalid: \(error)")
        }
        try job.checkForWorker()
        let codec: UpdateCodecSpec
        do { codec = try UpdateCodecSpec(parsing: job.updateCodec) } catch {
            throw WorkerError.fatal("the coordinator asks for update codec '\(job.updateCodec)', which this worker does not know: \(error)")
        }
        planner = MemoryPlanner(model: job.model, unitSamples: job.samplesPerUnit,
                                suggestedMicroBatch: job.microBatchSize, codec: codec)
        do { plan = try planner.plan(budgetBytes: budgetBytes) } catch {
            throw WorkerError.fatal(error.description)
        }
        if let step = try job.model.family.makeStreamedStep(plan.execution, device: device) {
            engine = .streamed(step)
        } else {
            engine = .resident(try job.model.build(seed: 0, device: device), loaded: [:])
        }
        layout = ShardLayout(spec: job.model)
        self.device = device
    }

    /// One unit: computes it with shards from `cache` and hands each shard's update —
    /// encoded with error feedback against `residuals` (lossy codecs), staged there — to
    /// `send` through an upload queue that overlaps the compute. Returns once every update
    /// is sent; on any failure the queue is abandoned and the staged residuals dropped.
    /// Committing the staged residuals is the caller's, once the unit is accepted.
    func runUnit(_ batch: ModelBatch, shards: [String: UnitShardStream.ShardDescriptorRef], cache: ShardCache,
                 residuals: ResidualStore, zstdLevel: Int,
                 send: @escaping @Sendable (String, [UInt8]) async throws -> Void) async throws -> (loss: Double, bytesSent: Int) {
        let queue = UploadQueue(capacity: plan.uploadQueueBytes, allocator: device.allocator, send: send)
        let lossy = planner.codec.codec != .fp32
        let stream = UnitShardStream(descriptors: shards, cache: cache, allocator: device.allocator, planner: planner,
                                     zstdLevel: zstdLevel, residuals: lossy ? residuals : nil, queue: queue)
        do {
            let loss = try await run(batch, stream: stream)
            try await queue.finish()
            return (loss, await queue.bytesSent)
        } catch {
            await queue.cancelAll()
            residuals.discardStaged()
            throw error
        }
    }

    /// The unit's mean loss; every shard's update handed to `stream` (encoded and queued).
    private func run(_ batch: ModelBatch, stream: UnitShardStream) async throws -> Double {
        switch engine {
        case let .streamed(step):
            return try await step.step(batch, delegate: stream)
        case let .resident(model, loaded):
            return try await residentStep(model, loaded: loaded, batch: batch, stream: stream)
        }
    }

    /// A whole-model unit: changed shards decoded into the model, micro-batches
    /// accumulated, then each shard's gradient taken from last to first.
    private func residentStep(_ model: any TrainableModel, loaded: [String: String], batch: ModelBatch,
                              stream: UnitShardStream) async throws -> Double {
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
        engine = .resident(model, loaded: nowLoaded)
        guard case let .residentModel(micro) = plan.execution else { return .nan }
        let loss = try Self.computeGradient(model: model, batch: batch, microBatch: micro)
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
    static func computeGradient(model: any TrainableModel, batch: ModelBatch, microBatch: Int) throws -> Double {
        model.parameters.zeroGradients()
        let n = batch.sampleCount
        let m = max(1, min(microBatch, n))
        var lossSum = 0.0
        var start = 0
        while start < n {
            let end = min(n, start + m)
            let share = Float(end - start) / Float(n)
            lossSum += Double(try model.forwardBackward(slice(batch, start, end), lossScale: share)) * Double(share)
            start = end
        }
        return lossSum
    }

    static func slice(_ batch: ModelBatch, _ lo: Int, _ hi: Int) -> ModelBatch {
        switch batch {
        case let .tokens(x, y, _, t):
            return .tokens(inputs: Array(x[(lo * t)..<(hi * t)]), targets: Array(y[(lo * t)..<(hi * t)]), batch: hi - lo, sequence: t)
        case let .features(x, y, b):
            let f = x.count / max(1, b)
            return .features(inputs: Array(x[(lo * f)..<(hi * f)]), targets: Array(y[lo..<hi]), batch: hi - lo)
        }
    }
}
