import Crypto
import Foundation
import Logging
import TributaryCheckpoint
import TributaryCompression
import TributaryData
import TributaryLedger
import TributaryModels
import TributaryProtocol
import TributaryTraining

/// The coordinator's training job, composed of parts that each own one concern:
/// - `UnitScheduler`: epochs, units, leases and when a round closes (a value, no I/O);
/// - `RoundAggregator`: how a round's updates become one gradient (`WeightedMeanAggregator`);
/// - `ModelState`: the model, its optimizer, schedule, clipping and skip policy (shared
///   with `tributary train`);
/// - `JobStatsBoard`, `ParameterPublisher`, `WorkerRegistry`: what status, downloads and
///   authentication read without waiting for the job;
/// - a `LedgerStore` and the `UpdateLog`, written through before any worker hears "accepted".
///
/// The actor runs one event at a time (`exclusively`), also across the ledger's
/// suspension points, so each event sees and leaves a consistent state. It throws
/// `JobError`s; the HTTP layer maps them to problems.
public actor TrainingJob {
    public nonisolated let config: JobConfig
    public nonisolated let spec: ModelSpec
    public nonisolated let layout: ShardLayout
    public nonisolated let stats: JobStatsBoard
    public nonisolated let publisher: ParameterPublisher
    public nonisolated let registry: WorkerRegistry
    public nonisolated var metrics: CoordinatorMetrics { stats.metrics }
    let data: PreparedDataset
    let model: ModelState
    let aggregator: any RoundAggregator
    /// Async mode under a robust rule: each update clipped against the recent ones.
    let asyncClip: RunningReferenceClip?
    /// Async updates clipped against the reference since this process started (replay included).
    public var asyncClippedUpdates: Int { asyncClip?.clipped ?? 0 }
    let ledger: any LedgerStore
    let checkpoints: CheckpointStore
    /// Every accepted update's bodies, synced before the worker hears "accepted"; replayed
    /// after a restart (`TrainingJob+Recovery`).
    let updateLog: UpdateLog
    let joinTokenDigest: SHA256.Digest
    /// The data directory's lock, held until `close`.
    let dataLock: DirectoryLock?
    /// SHA-256 (hex) of the viewer's and the operator's tokens, when the job has them.
    public nonisolated let viewerTokenHash: String?
    public nonisolated let operatorTokenHash: String?
    /// `/v1/workers`, served from a copy refreshed at most every few seconds.
    let workerListCache = WorkerListCache()
    let unitOrder: EpochSchedule
    let microBatch: Int
    let flopsPerSample: Double
    let logger: Logger
    let now: @Sendable () -> Date

    var scheduler: UnitScheduler
    public internal(set) var version = 0
    var checkpointedVersion = 0
    /// The open round's counted updates, in ledger order (the aggregator is fed at the close).
    var countedRound = CountedRound()
    /// Shard bodies pushed under each active lease, until its commit (or its end).
    var pendingBodies: [String: [String: [UInt8]]] = [:]
    /// Σ x² of each shard pushed under each active lease (decoded once, when checked).
    var pendingSquares: [String: [String: Double]] = [:]
    var normGuard: UpdateNormGuard
    /// Large norms refused per unit: a second worker's agreeing norm makes it acceptable.
    var largeNorms = LargeNormWitnesses()
    /// Recently accepted updates by content: the same bytes for another unit are a replay.
    var digests = UpdateDigests()
    /// Validation by replication: who is replicated, the open round's units awaiting
    /// replicas, each worker's record, and the comparison's scratch space.
    let replication: ReplicationPolicy
    let replicaTolerance: ReplicaTolerance
    var verifications = UnitVerifications()
    var reputations: [String: WorkerReputation] = [:]
    var replicaComparison = ReplicaComparison()
    /// Receipts of recently committed replica leases (the ledger does not know those leases),
    /// so a commit repeated after a lost answer gets the same receipt; the oldest go first.
    var replicaReceipts: [String: (worker: String, receipt: CommitReceipt)] = [:]
    var replicaReceiptOrder: [String] = []
    /// What replication has done (status, `bench robustness`).
    public internal(set) var replicationFigures = ReplicationStatus()
    /// Decoding space for checking a body (the largest shard).
    var scratch: [Float] = []
    /// What making accepted updates durable costs (for `bench coordinator`).
    public internal(set) var durability = DurabilityFigures()
    /// When a failed checkpoint is tried again (nil: none failing).
    var checkpointRetryAt: Date?
    /// Why the job stopped, once it failed.
    var failure: String?
    private var busy = false
    private var waiting: [CheckedContinuation<Void, Never>] = []

    // MARK: Opening

    /// Opens (or reopens after a stop or crash) the job described by `config`.
    public static func open(config: JobConfig, logger: Logger,
                            now: @escaping @Sendable () -> Date = { Date() }) async throws -> TrainingJob {
        try config.validate()
        let raw = try DatasetSource.load(config.data.source, images: config.imageLoadOptions)
        let spec: ModelSpec
        let datasetBytes: Int
        switch raw {
        case let .tokens(tokens, _, vocabularySize):
            spec = try config.modelSpec(vocabularySize: vocabularySize, features: nil, classes: nil)
            datasetBytes = 4 * tokens.count  // the stream, and its training and validation windows
        case let .images(set):
            spec = try config.modelSpec(vocabularySize: nil, features: set.featureCount, classes: set.classCount, geometry: set.geometry)
            datasetBytes = 2 * 4 * set.pixels.count
        }
        // Before anything is allocated or written: a job this machine cannot hold is refused with its numbers.
        let memory = JobMemoryEstimate.estimate(config: config, spec: spec, datasetBytes: datasetBytes)
        let machine = JobMemoryEstimate.machineBytes()
        if let refusal = memory.refusal(machineBytes: machine) { throw JobConfigError.invalid(refusal) }
        logger.info("memory estimate", metadata: memory.metadata(machineBytes: machine))
        let blockSize = spec.sampleShape.sequenceLength
        let data = try DatasetSource.prepare(raw, name: config.data.source, blockSize: blockSize,
                                             validationFraction: config.data.validationFraction, seed: config.data.seed,
                                             randomFlip: config.data.randomFlip)
        let dir = config.storage.dataDirectory
        do { try DataDirectory.create(dir) } catch { throw JobConfigError.invalid(error.description) }
        // One coordinator per data directory: two would write one ledger and one checkpoint folder.
        let lock = try DirectoryLock.acquire(dir, name: "coordinator.lock")
        let joinToken = try config.joinToken()
        if let weak = JobConfig.weakJoinTokenReason(joinToken) {
            logger.warning("weak join token: \(weak)", metadata: ["hint": "set auth.join_token_file to a long random token"])
        }
        let ledger: any LedgerStore
        do { ledger = try await config.openLedger(logger: logger) } catch { lock.release(); throw error }
        let job: TrainingJob
        do {
            job = try TrainingJob(config: config, spec: spec, data: data, ledger: ledger,
                                  checkpoints: CheckpointStore(directory: "\(dir)/checkpoints", keep: 3),
                                  updateLog: UpdateLog(directory: "\(dir)/update-log"),
                                  joinToken: joinToken, viewerToken: try config.viewerToken(),
                                  operatorToken: try config.operatorToken(), dataLock: lock, logger: logger, now: now)
            try await job.recover()
        } catch {
            await ledger.close()
            lock.release()
            throw error
        }
        return job
    }

    init(config: JobConfig, spec: ModelSpec, data: PreparedDataset, ledger: any LedgerStore,
         checkpoints: CheckpointStore, updateLog: UpdateLog, joinToken: String, viewerToken: String? = nil, operatorToken: String? = nil,
         dataLock: DirectoryLock? = nil, logger: Logger, now: @escaping @Sendable () -> Date) throws {
        self.config = config
        self.spec = spec
        self.data = data
        self.ledger = ledger
        self.checkpoints = checkpoints
        self.updateLog = updateLog
        self.logger = logger
        self.now = now
        self.dataLock = dataLock
        joinTokenDigest = SHA256.hash(data: Data(joinToken.utf8))
        viewerTokenHash = viewerToken.map(WorkerToken.hash)
        operatorTokenHash = operatorToken.map(WorkerToken.hash)
        model = try ModelState(spec: spec, seed: config.data.seed, settings: config.optimizerSettings,
                               skipPolicy: .neverStop)
        layout = ShardLayout(spec: spec)
        aggregator = try config.aggregation.rule.makeAggregator(layout: layout, settings: config.aggregation)
        normGuard = UpdateNormGuard(ratio: config.aggregation.maxNormRatio)
        // The sync radius: measured, twice it let a sign flip through almost whole (+5.2%
        // against the mean's +6.1%), and once it costs a clean run nothing.
        asyncClip = config.rounds.mode == .async && config.aggregation.rule != .mean
            ? RunningReferenceClip(layout: layout, iterations: config.aggregation.clipIterations,
                                   radiusFactor: config.aggregation.clipRadius) : nil
        let v = config.validation
        replication = ReplicationPolicy(mode: config.rounds.mode == .sync ? v.replication : .off,
                                        trustedAfter: v.trustedAfter, trustedPartners: v.trustedPartners,
                                        trustedRate: v.trustedRate, banAfter: v.banAfter,
                                        seed: config.data.seed)
        let byCodec = ReplicaTolerance.forCodec((try? UpdateCodecSpec(parsing: config.compression.codec))?.kind ?? .fp32,
                                                loss: v.lossTolerance)
        replicaTolerance = v.tolerance > 0 ? ReplicaTolerance(update: v.tolerance, loss: v.lossTolerance) : byCodec
        publisher = ParameterPublisher(layout: layout, zstdLevel: config.compression.zstdLevel,
                                       downloadCodec: try config.downloadCodec(),
                                       shapes: Dictionary(spec.shardGroups.map { ($0.name, $0.parameters.map { MatrixShape(shape: $0.shape) }) },
                                                          uniquingKeysWith: { a, _ in a }))
        registry = WorkerRegistry()
        flopsPerSample = data.train.sampleCount > 0 ? model.model.trainingFLOPs(data.train.batch([0])) : 0
        let perUnit = config.units.samplesPerUnit
        microBatch = config.units.microBatch ?? perUnit
        guard data.train.sampleCount >= perUnit else {
            throw JobConfigError.invalid("the training set has \(data.train.sampleCount) samples, fewer than one unit (\(perUnit))")
        }
        unitOrder = try EpochSchedule(sampleCount: data.train.sampleCount, batchSize: perUnit, seed: config.data.seed)
        // Sync rounds take whole groups of units, like a single process drops the last
        // incomplete batch, so that a round is exactly one large-batch step.
        let perRound = config.rounds.mode.hasRoundBarrier ? config.rounds.unitsPerRound : 1
        let unitsPerEpoch = unitOrder.batchesPerEpoch / perRound * perRound
        guard unitsPerEpoch > 0 else {
            throw JobConfigError.invalid("an epoch holds \(unitOrder.batchesPerEpoch) units, fewer than units_per_round (\(perRound))")
        }
        scheduler = UnitScheduler(mode: config.rounds.mode, unitsPerEpoch: unitsPerEpoch, unitsPerRound: perRound,
                                  minUnits: config.rounds.minUnits, roundDeadline: config.rounds.deadlineSeconds,
                                  leaseDuration: config.leases.durationSeconds,
                                  maxLeasesPerWorker: config.leases.maxPerWorker,
                                  maxLeaseLifetime: config.leases.maxLifetimeSeconds, now: now())
        let tokensPerSample = spec.sampleShape.tokensPerSample
        stats = JobStatsBoard(.init(job: config.name, model: spec.summary, parameters: spec.parameterCount,
                                    shards: layout.shards.count, mode: config.rounds.mode,
                                    totalRounds: config.optimizer.totalRounds, unitsPerEpoch: unitsPerEpoch,
                                    samplesPerRound: perRound * perUnit, tokensPerSample: tokensPerSample, started: now()),
                              metrics: CoordinatorMetrics())
    }

    /// Runs `body` when no other event is running, in arrival order: the ledger's calls
    /// suspend, and the actor alone would let another event in between.
    func exclusively<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        if busy {
            await withCheckedContinuation { waiting.append($0) }
        } else {
            busy = true
        }
        defer {
            if waiting.isEmpty { busy = false } else { waiting.removeFirst().resume() }
        }
        do {
            return try await body()
        } catch {
            // A ledger that cannot write (a full disk, a lost database) is the client's 503,
            // never a 500: nothing the request asked for happened.
            guard Self.isStorageFailure(error) else { throw error }
            throw storageFailed("ledger", error)
        }
    }

    // MARK: Reading

    public var isComplete: Bool { version >= config.optimizer.totalRounds }

    /// The status report, from the published figures: never waits for the job.
    public nonisolated func status() -> StatusReport {
        let t = now()
        let workers = registry.counts(at: t)
        return stats.snapshot.report(at: t, seenRecently: workers.seenRecently, totalWorkers: workers.total)
    }

    public nonisolated var jobDescription: JobDescription {
        JobDescription(name: config.name, model: spec, samplesPerUnit: config.units.samplesPerUnit,
                       microBatchSize: config.units.microBatch ?? config.units.samplesPerUnit,
                       updateCodec: config.compression.codec, zstdLevel: config.compression.zstdLevel,
                       localSteps: config.localStepsDescription, initSeed: config.data.seed)
    }

    /// Volunteers and their contribution; tokens never leave the ledger (only hashes are there).
    public func workers() async throws -> WorkerList {
        let t = now()
        let active = scheduler.activeWorkers
        let banned = registry.bannedIDs
        return WorkerList(workers: try await ledger.workers().map { w in
            let seen = max(w.lastSeenAt, registry.lastSeen(w.id) ?? w.lastSeenAt)
            return WorkerSummary(id: w.id, name: w.name, samples: w.samples, flops: w.flops,
                                 acceptedUpdates: w.acceptedUpdates, rejectedUpdates: w.rejectedUpdates,
                                 lastSeen: seen, active: active.contains(w.id) || t.timeIntervalSince(seen) < 60,
                                 banned: banned.contains(w.id) ? true : nil,
                                 reputation: replication.mode == .off ? nil : reputationSummary(of: w.id))
        })
    }

    /// One page of the worker list, from a copy at most `WorkerListCache.maxAge` old (or
    /// older than the last registration): polling it never reaches the ledger more often.
    public nonisolated func workerPage(offset: Int, limit: Int) async throws -> WorkerList {
        let all = try await cachedWorkers()
        let start = min(max(0, offset), all.count)
        let end = min(all.count, start + max(0, limit))
        return WorkerList(workers: Array(all[start..<end]), total: all.count,
                          nextOffset: end < all.count ? end : nil)
    }

    /// The whole worker list, from the copy `workerPage` serves.
    nonisolated func cachedWorkers() async throws -> [WorkerSummary] {
        let registered = registry.registered
        if let fresh = workerListCache.fresh(at: now(), registered: registered) { return fresh }
        let all = try await workers().workers
        workerListCache.store(all, at: now(), registered: registered)
        return all
    }

    /// The parameters, for tests comparing with single-process training.
    public func parameterValues() -> [String: [Float]] {
        var out: [String: [Float]] = [:]
        for p in model.parameters.parameters { out[p.name] = p.value.toArray() }
        return out
    }

    /// Stops the ledger's connections; the job must not be used afterwards.
    public func close() async {
        await ledger.close()
        dataLock?.release()
    }

    /// Copies the scheduler's counts into the published figures.
    func publishUnitCounts() {
        stats.noteUnits(epoch: scheduler.epoch, done: scheduler.done.count, leased: scheduler.leasedUnits,
                        workersHoldingLeases: scheduler.activeWorkers.count)
    }
}
