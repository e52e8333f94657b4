import Crypto
import Foundation
import TributaryCompression
import TributaryModels
import TributaryPlanning
import TributaryProtocol
import TributaryTensor

/// A worker's unit computation with no coordinator: the same planner, shard cache,
/// streamed step, codec, error feedback and upload queue as `WorkerDaemon`, with shards
/// written to the cache from given parameters and updates kept instead of sent. It is what
/// `tributary bench memory` measures and what the budget tests check.
public final class OfflineUnitRunner: @unchecked Sendable {
    // Unchecked: driven by one task at a time.
    public let plan: MemoryPlan
    public let device: any ComputeDevice
    let compute: UnitCompute
    let cache: ShardCache
    let residuals: ResidualStore
    let job: JobDescription
    private var refs: [String: UnitShardStream.ShardDescriptorRef] = [:]

    /// `directory` holds the shard cache and residuals. Throws `WorkerError.fatal` when the
    /// budget (and a GPU `device`'s VRAM budget) cannot fit the job's smallest plan.
    public init(job: JobDescription, directory: String, budgetBytes: Int?, device: (any ComputeDevice)? = nil) throws {
        self.job = job
        let device = device ?? CPUDevice(memoryBudgetBytes: budgetBytes)
        self.device = device
        compute = try UnitCompute(job: job, device: device, budgetBytes: budgetBytes,
                                  stateDirectory: directory)
        plan = compute.plan
        cache = ShardCache(directory: "\(directory)/shards")
        residuals = ResidualStore(directory: "\(directory)/residual")
    }

    /// Publishes `parameters` (a model of the job's shape) as the shards to compute on.
    public func publish(_ parameters: ParameterSet) throws {
        for shard in compute.layout.shards {
            var flat = [Float](repeating: 0, count: shard.elementCount)
            flat.withUnsafeMutableBufferPointer { p in
                if let base = p.baseAddress { compute.layout.gather(shard, from: parameters, gradients: false, into: base) }
            }
            let body = try flat.withUnsafeBufferPointer { try TensorFrame.encode($0, codec: .fp32, zstdLevel: job.zstdLevel) }
            let hash = ShardCache.hex(SHA256.hash(data: body))
            try cache.store(body, hash: hash)
            refs[shard.name] = .init(hash: hash, elements: shard.elementCount)
        }
    }

    /// One unit: the mean loss and each shard's encoded update (residuals committed, as
    /// after an accepted commit).
    /// `version` places a local-rounds unit's inner steps on the learning-rate schedule.
    public func run(_ batch: ModelBatch, version: Int = 0) async throws -> (loss: Double, updates: [String: [UInt8]]) {
        let received = UpdateSink()
        let (loss, _) = try await compute.runUnit(batch, version: version, shards: refs, cache: cache, residuals: residuals,
                                                  zstdLevel: job.zstdLevel) { shard, body in received.put(shard, body) }
        try residuals.commitStaged()
        try compute.commitStaged()
        return (loss, received.all)
    }

    /// Shard names in body order, with their element counts.
    public var shards: [(name: String, elements: Int)] { compute.layout.shards.map { ($0.name, $0.elementCount) } }
}

private final class UpdateSink: @unchecked Sendable {
    private let lock = NSLock()
    private var bodies: [String: [UInt8]] = [:]
    func put(_ shard: String, _ body: [UInt8]) { lock.withLock { bodies[shard] = body } }
    var all: [String: [UInt8]] { lock.withLock { bodies } }
}
