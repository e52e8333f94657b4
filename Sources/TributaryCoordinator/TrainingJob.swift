import Crypto
import Foundation
import Logging
import TributaryCheckpoint
import TributaryCompression
import TributaryData
import TributaryLedger
import TributaryModels
import TributaryOptim
import TributaryProtocol
import TributaryTensor
import TributaryTraining

/// The coordinator's training job: the global model and its optimizer, the work units
/// and their leases, the round being averaged, the published parameter versions.
///
/// All state changes go through this actor; the HTTP layer only parses and maps. Every
/// accepted update is in the ledger before the worker hears "accepted", and the model
/// and optimizer are checkpointed every few rounds: after a crash the job restarts from
/// the newest checkpoint and the ledger forgets what came after it, so the units whose
/// updates were lost are simply done again.
public actor TrainingJob {
    public let config: JobConfig
    public let spec: ModelSpec
    public let layout: ShardLayout
    let data: PreparedDataset
    let model: any TrainableModel
    let optimizer: any Optimizer
    let ledger: Ledger
    let store: CheckpointStore
    let joinTokenDigest: SHA256.Digest
    let schedule: LearningRateSchedule
    let unitOrder: EpochSchedule
    let unitsPerEpoch: Int
    let microBatch: Int
    let flopsPerSample: Double
    let logger: Logger
    public let metrics = CoordinatorMetrics()
    let started = Date()
    private let now: @Sendable () -> Date

    // Model versions.
    public private(set) var version = 0
    private var checkpointedVersion = 0
    private var published: [Int: PublishedVersion] = [:]

    // Units and leases of the current epoch.
    private var epoch = 0
    private var done: Set<Int> = []
    private var nextFresh = 0
    private var roundUnits: [Int] = []      // sync: the units of the open round
    private var requeued: [Int] = []        // async: units whose lease ran out
    private var leases: [String: ActiveLease] = [:]

    // The open round.
    private var accumulators: [String: Tensor] = [:]
    private var roundWeight = 0.0
    private var roundSamples = 0
    private var roundUpdates = 0
    private var roundLossSum = 0.0
    private var roundOpened = Date()
    private var scratch: [Float] = []

    // Watching.
    private var workerIDsByTokenHash: [String: String] = [:]
    private var lastSeen: [String: Date] = [:]
    private var trainingLoss = BoundedSeries()
    private var validationLoss = BoundedSeries()
    private var recentSamples: [(Date, Int)] = []
    private var bytesIn = 0
    private var denseBytesIn = 0
    private var bytesOut = 0
    private var accepted = 0
    private var rejected: [String: Int] = [:]
    private var expiredLeases = 0
    private var lastRoundSeconds: Double?

    struct ActiveLease {
        let id: String
        let workerID: String
        let epoch: Int
        let unit: Int
        let baseVersion: Int
        var deadline: Date
        var bodies: [String: [UInt8]] = [:]
    }

    struct PublishedVersion {
        let manifest: Manifest
        let bodies: [String: [UInt8]]
    }

    // MARK: Opening

    /// Opens (or reopens after a stop or crash) the job described by `config`.
    public static func open(config: JobConfig, logger: Logger,
                            now: @escaping @Sendable () -> Date = { Date() }) async throws -> TrainingJob {
        try config.validate()
        let raw = try DatasetSource.load(config.data.source)
        let spec: ModelSpec
        switch raw {
        case let .tokens(_, _, vocabularySize):
            spec = try config.modelSpec(vocabularySize: vocabularySize, features: nil, classes: nil)
        case let .images(set):
            spec = try config.modelSpec(vocabularySize: nil, features: set.featureCount, classes: set.classCount)
        }
        let blockSize: Int? = if case let .gpt(g) = spec { g.blockSize } else { nil }
        let data = try DatasetSource.prepare(raw, name: config.data.source, blockSize: blockSize,
                                             validationFraction: config.data.validationFraction, seed: config.data.seed)
        let dir = config.storage.dataDirectory
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let ledger = try Ledger(path: "\(dir)/ledger.sqlite")
        let job = try TrainingJob(config: config, spec: spec, data: data, ledger: ledger,
                                  store: CheckpointStore(directory: "\(dir)/checkpoints", keep: 3),
                                  joinToken: try config.joinToken(), logger: logger, now: now)
        try await job.recover()
        return job
    }

    init(config: JobConfig, spec: ModelSpec, data: PreparedDataset, ledger: Ledger, store: CheckpointStore,
         joinToken: String, logger: Logger, now: @escaping @Sendable () -> Date) throws {
        self.config = config
        self.spec = spec
        self.data = data
        self.ledger = ledger
        self.store = store
        self.logger = logger
        self.now = now
        joinTokenDigest = SHA256.hash(data: Data(joinToken.utf8))
        model = try spec.build(seed: config.data.seed)
        let o = config.optimizer
        let decay = o.weightDecay ?? (o.type == "sgd" ? 0 : 0.1)
        if o.type == "sgd" {
            optimizer = try SGD(parameters: model.parameters, momentum: o.momentum, nesterov: o.nesterov, weightDecay: decay)
        } else {
            // Top-k updates arrive as error-feedback bursts; see `JobConfig.adamBeta1`.
            // ... and with a bounded step per coordinate; see `JobConfig.adamUpdateBound`.
            optimizer = try AdamW(parameters: model.parameters, beta1: config.adamBeta1, beta2: o.beta2, weightDecay: decay,
                                  updateBound: config.adamUpdateBound)
        }
        schedule = LearningRateSchedule(peak: o.lr, minimum: o.minLr, warmupSteps: o.warmupRounds, decaySteps: o.totalRounds)
        layout = ShardLayout(spec: spec)
        flopsPerSample = data.train.sampleCount > 0 ? model.trainingFLOPs(data.train.batch([0])) : 0
        let perUnit = config.units.samplesPerUnit
        microBatch = config.units.microBatch ?? perUnit
        guard data.train.sampleCount >= perUnit else {
            throw JobConfigError.invalid("the training set has \(data.train.sampleCount) samples, fewer than one unit (\(perUnit))")
        }
        unitOrder = try EpochSchedule(sampleCount: data.train.sampleCount, batchSize: perUnit, seed: config.data.seed)
        // Sync rounds take whole groups of units, like a single process drops the last
        // incomplete batch, so that a round is exactly one large-batch step.
        let k = config.rounds.mode == "sync" ? config.rounds.unitsPerRound : 1
        unitsPerEpoch = unitOrder.batchesPerEpoch / k * k
        guard unitsPerEpoch > 0 else {
            throw JobConfigError.invalid("an epoch holds \(unitOrder.batchesPerEpoch) units, fewer than units_per_round (\(k))")
        }
        for shard in layout.shards {
            accumulators[shard.name] = try Tensor(shape: [shard.elementCount])
        }
        scratch = [Float](repeating: 0, count: layout.shards.map(\.elementCount).max() ?? 0)
    }

    /// Restores from the newest checkpoint (or starts fresh) and squares the ledger with it.
    private func recover() throws {
        if let record = try ledger.latestCheckpoint() {
            let loaded = try LoadedCheckpoint.read(record.path)
            try loaded.loadWeights(into: model.parameters)
            try loaded.loadOptimizer(into: optimizer)
            version = record.version
            checkpointedVersion = record.version
            if let bytes = loaded.trainerState,
               let state = try? JSONDecoder().decode(CoordinatorState.self, from: Data(bytes)) {
                epoch = state.epoch
            }
            let report = try ledger.recoverAfterRestart(checkpointedRound: record.round)
            logger.info("resumed from checkpoint", metadata: [
                "version": "\(version)", "epoch": "\(epoch)", "dropped_updates": "\(report.droppedUpdates)",
                "requeued_units": "\(report.requeuedUnits)", "expired_leases": "\(report.expiredLeases)"])
        } else {
            _ = try ledger.recoverAfterRestart(checkpointedRound: 0)
            try ledger.setMeta("job", config.name)
            try writeCheckpoint()
        }
        for w in try ledger.workers() { workerIDsByTokenHash[w.tokenHash] = w.id }
        try startEpoch(epoch)
        for r in try ledger.rounds(limit: 512) { trainingLoss.append(.init(round: r.version, value: r.meanLoss)) }
        try publish()
        openRound()
    }

    struct CoordinatorState: Codable {
        var version: Int
        var epoch: Int
        var seed: UInt64
    }

    // MARK: Epochs and rounds

    private func startEpoch(_ e: Int) throws {
        epoch = e
        for (id, lease) in leases where lease.epoch != e { try expire(id) }
        if try ledger.unit(epoch: e, index: 0) == nil {
            let units = (0..<unitsPerEpoch).map {
                UnitRecord(epoch: e, index: $0, sampleStart: $0 * config.units.samplesPerUnit,
                           sampleCount: config.units.samplesPerUnit, state: .pending)
            }
            try ledger.insertUnits(units)
        }
        done = Set(try ledger.units(epoch: e, state: .done).map(\.index))
        nextFresh = 0
        requeued = []
        roundUnits = []
        try ledger.setMeta("epoch", String(e))
    }

    private var isSync: Bool { config.rounds.mode == "sync" }
    public var isComplete: Bool { version >= config.optimizer.totalRounds }

    /// Takes the next unit of the epoch that is neither done nor already assigned.
    private func takeFreshUnit() -> Int? {
        while nextFresh < unitsPerEpoch {
            let u = nextFresh
            nextFresh += 1
            if !done.contains(u) { return u }
        }
        return nil
    }

    /// Starts a round: sync rounds get their units (carrying over unfinished ones).
    private func openRound() {
        roundWeight = 0
        roundSamples = 0
        roundUpdates = 0
        roundLossSum = 0
        roundOpened = now()
        for t in accumulators.values { t.zero() }
        guard isSync else { return }
        roundUnits = roundUnits.filter { !done.contains($0) }
        while roundUnits.count < config.rounds.unitsPerRound, let u = takeFreshUnit() { roundUnits.append(u) }
    }

    /// Averages the round's updates into one gradient and takes an optimizer step.
    private func closeRound() throws {
        guard roundUpdates > 0, roundWeight > 0 else { return }
        let inverse = Float(1 / roundWeight)
        for shard in layout.shards {
            guard let acc = accumulators[shard.name] else { continue }
            for slot in shard.tensors {
                guard let p = model.parameters[slot.name] else { continue }
                let src = acc.data + slot.offset, dst = p.gradient.data
                for i in 0..<slot.count { dst[i] = src[i] * inverse }
            }
        }
        let norm = GradientClipping.clipGlobalNorm(model.parameters, maxNorm: config.optimizer.gradClip)
        let lr = schedule.rate(at: version)
        if norm.isFinite {
            optimizer.step(model.parameters, learningRate: lr)
        } else {
            logger.error("round gradient is not finite; step skipped", metadata: ["version": "\(version)"])
        }
        let closed = now()
        let meanLoss = roundLossSum / Double(roundSamples)
        let record = RoundRecord(round: version + 1, version: version + 1, openedAt: roundOpened, closedAt: closed,
                                 updates: roundUpdates, samples: roundSamples, meanLoss: meanLoss)
        version += 1
        try ledger.recordRound(record)
        lastRoundSeconds = closed.timeIntervalSince(roundOpened)
        trainingLoss.append(.init(round: version, value: meanLoss))
        metrics.rounds.increment()
        metrics.roundDuration.record(.milliseconds(Int64(closed.timeIntervalSince(roundOpened) * 1000)))
        metrics.version.set(to: Double(version))
        metrics.trainingLoss.set(to: meanLoss)
        logger.info("round closed", metadata: [
            "version": "\(version)", "updates": "\(roundUpdates)", "samples": "\(roundSamples)",
            "loss": "\(String(format: "%.4f", meanLoss))", "lr": "\(lr)", "grad_norm": "\(String(format: "%.3f", norm))"])
        if version % config.storage.validationEveryRounds == 0 || isComplete { validate() }
        if version % config.storage.checkpointEveryRounds == 0 || isComplete { try writeCheckpoint() }
        if done.count >= unitsPerEpoch { try startEpoch(epoch + 1) }
        try publish()
        openRound()
    }

    private func validate() {
        guard config.storage.validationBatches > 0, data.validation.sampleCount > 0 else { return }
        let b = min(config.units.samplesPerUnit, data.validation.sampleCount)
        var sum = 0.0, n = 0
        for i in 0..<min(config.storage.validationBatches, data.validation.sampleCount / b) {
            guard let e = try? model.evaluate(data.validation.batch(Array((i * b)..<((i + 1) * b)))) else { continue }
            sum += e.loss * Double(e.predictions)
            n += e.predictions
        }
        if n > 0 {
            validationLoss.append(.init(round: version, value: sum / Double(n)))
            metrics.validationLoss.set(to: sum / Double(n))
            logger.info("validation", metadata: ["version": "\(version)", "loss": "\(String(format: "%.4f", sum / Double(n)))"])
        }
    }

    /// Writes model + optimizer state; updates up to this version survive a crash.
    public func writeCheckpoint() throws {
        if checkpointedVersion == version, (try? store.latestPath()) != nil { return }
        let state = try JSONEncoder().encode(CoordinatorState(version: version, epoch: epoch, seed: config.data.seed))
        let path = try store.save(step: version, spec: spec, model: model, vocabulary: data.vocabulary,
                                  optimizer: optimizer, trainerState: Array(state))
        try ledger.recordCheckpoint(CheckpointRecord(version: version, round: version, path: path, createdAt: now()))
        checkpointedVersion = version
        logger.info("checkpoint written", metadata: ["version": "\(version)", "path": "\(path)"])
    }

    /// Encodes the current parameters as shard bodies and keeps the newest few versions.
    private func publish() throws {
        var bodies: [String: [UInt8]] = [:]
        var descriptors: [ShardDescriptor] = []
        for shard in layout.shards {
            var flat = [Float](repeating: 0, count: shard.elementCount)
            flat.withUnsafeMutableBufferPointer { buf in
                guard let base = buf.baseAddress else { return }
                layout.gather(shard, from: model.parameters, gradients: false, into: base)
            }
            let body = try flat.withUnsafeBufferPointer {
                try TensorFrame.encode($0, codec: .fp32, zstdLevel: config.compression.zstdLevel)
            }
            let hash = SHA256.hash(data: body).map { String(format: "%02x", $0) }.joined()
            bodies[shard.name] = body
            descriptors.append(ShardDescriptor(name: shard.name, tensors: shard.tensors, elementCount: shard.elementCount,
                                               byteSize: body.count, contentHash: hash))
        }
        published[version] = PublishedVersion(manifest: Manifest(version: version, shards: descriptors), bodies: bodies)
        let oldest = version - config.rounds.maxStaleness
        published = published.filter { $0.key >= oldest }
    }

    // MARK: Workers

    public func register(_ request: RegisterRequest) throws -> RegisterResponse {
        guard SHA256.hash(data: Data(request.joinToken.utf8)) == joinTokenDigest else {
            count("bad_join_token")
            throw Problem(.forbidden, status: 403, detail: "the join token is not this job's")
        }
        var bytes = [UInt8](repeating: 0, count: 32)
        var rng = SystemRandomNumberGenerator()
        for i in bytes.indices { bytes[i] = UInt8.random(in: 0...255, using: &rng) }
        let token = "trb_" + Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        let id = "w-" + UUID().uuidString.lowercased().prefix(12)
        let hash = Self.tokenHash(token)
        let at = now()
        let name = String((request.name ?? id).prefix(64))
        try ledger.insertWorker(WorkerRecord(id: id, name: name, tokenHash: hash, createdAt: at, lastSeenAt: at,
                                             samples: 0, flops: 0, acceptedUpdates: 0, rejectedUpdates: 0))
        workerIDsByTokenHash[hash] = id
        lastSeen[id] = at
        metrics.workersRegistered.increment()
        logger.info("worker registered", metadata: ["worker": "\(id)", "name": "\(name)"])
        return RegisterResponse(workerId: id, token: token, job: jobDescription)
    }

    public var jobDescription: JobDescription {
        JobDescription(name: config.name, model: spec, samplesPerUnit: config.units.samplesPerUnit,
                       microBatchSize: microBatch, updateCodec: config.compression.codec, zstdLevel: config.compression.zstdLevel)
    }

    static func tokenHash(_ token: String) -> String { WorkerToken.hash(token) }

    /// The worker a bearer token belongs to.
    public func authenticate(bearer token: String?) throws -> String {
        guard let token, !token.isEmpty else {
            throw Problem(.unauthorized, status: 401, detail: "send the bearer token from registration in the Authorization header")
        }
        guard let id = workerIDsByTokenHash[Self.tokenHash(token)] else {
            count("bad_token")
            throw Problem(.forbidden, status: 403, detail: "unknown bearer token; register again")
        }
        lastSeen[id] = now()
        return id
    }

    // MARK: Leases

    public func lease(worker: String) throws -> LeaseGrant {
        try expireLeases()
        guard !isComplete else {
            throw Problem(.jobComplete, status: 410, detail: "the job is complete (\(config.optimizer.totalRounds) rounds)")
        }
        let busy = Set(leases.values.filter { $0.epoch == epoch }.map(\.unit))
        var unit: Int?
        if isSync {
            unit = roundUnits.first { !done.contains($0) && !busy.contains($0) }
        } else {
            while let u = requeued.first, unit == nil {
                requeued.removeFirst()
                if !done.contains(u) && !busy.contains(u) { unit = u }
            }
            if unit == nil { unit = takeFreshUnit() }
            if unit == nil, done.count >= unitsPerEpoch {
                try startEpoch(epoch + 1)
                unit = takeFreshUnit()
            }
        }
        guard let unit else {
            throw Problem(.noWork, status: 503, detail: "every unit of the round is leased; retry shortly")
        }
        let id = "l-" + UUID().uuidString.lowercased()
        let deadline = now().addingTimeInterval(config.leases.durationSeconds)
        try ledger.insertLease(LeaseRecord(id: id, epoch: epoch, unitIndex: unit, workerId: worker, baseVersion: version,
                                           issuedAt: now(), deadline: deadline, state: .active))
        leases[id] = ActiveLease(id: id, workerID: worker, epoch: epoch, unit: unit, baseVersion: version, deadline: deadline)
        metrics.leasesGranted.increment()
        return LeaseGrant(leaseId: id, epoch: epoch, unitIndex: unit, sampleStart: unit * config.units.samplesPerUnit,
                          sampleCount: config.units.samplesPerUnit, microBatchSize: microBatch, version: version,
                          deadline: deadline, shards: layout.shards.map(\.name))
    }

    private func activeLease(_ id: String, worker: String) throws -> ActiveLease {
        guard let lease = leases[id] else {
            if let record = try ledger.lease(id: id) {
                switch record.state {
                case .expired: throw Problem(.leaseExpired, status: 410, detail: "lease \(id) expired; its unit went back to the queue")
                default: throw Problem(.leaseNotActive, status: 409, detail: "lease \(id) is \(record.state.rawValue)")
                }
            }
            throw Problem(.notFound, status: 404, detail: "no lease \(id)")
        }
        guard lease.workerID == worker else {
            throw Problem(.leaseNotActive, status: 409, detail: "lease \(id) belongs to another worker")
        }
        if lease.deadline < now() {
            try expire(id)
            throw Problem(.leaseExpired, status: 410, detail: "lease \(id) expired; its unit went back to the queue")
        }
        return lease
    }

    public func renew(lease id: String, worker: String) throws -> LeaseRenewal {
        var lease = try activeLease(id, worker: worker)
        lease.deadline = now().addingTimeInterval(config.leases.durationSeconds)
        leases[id] = lease
        try ledger.setLeaseState(id: id, .active, deadline: lease.deadline)
        return LeaseRenewal(leaseId: id, deadline: lease.deadline)
    }

    public func release(lease id: String, worker: String) throws {
        let lease = try activeLease(id, worker: worker)
        leases[id] = nil
        if !isSync { requeued.append(lease.unit) }
        try ledger.setLeaseState(id: id, .released)
    }

    /// Ends leases past their deadline: their units become available again.
    public func expireLeases() throws {
        let t = now()
        for (id, lease) in leases where lease.deadline < t { try expire(id) }
    }

    private func expire(_ id: String) throws {
        guard let lease = leases.removeValue(forKey: id) else { return }
        expiredLeases += 1
        metrics.leasesExpired.increment()
        if !isSync && lease.epoch == epoch { requeued.append(lease.unit) }
        try ledger.setLeaseState(id: id, .expired)
        logger.info("lease expired", metadata: ["lease": "\(id)", "unit": "\(lease.unit)", "worker": "\(lease.workerID)"])
    }

    /// The unit's samples, laid out for the model.
    public func batch(lease id: String, worker: String) throws -> [UInt8] {
        let lease = try activeLease(id, worker: worker)
        let indices = unitOrder.batch(epoch: lease.epoch, index: lease.unit)
        let body = BatchBody.encode(data.train.batch(indices))
        noteBytesOut(body.count)
        return body
    }

    // MARK: Parameters

    public func manifest(version v: Int) throws -> Manifest {
        guard let p = published[v] else { throw versionGone(v) }
        return p.manifest
    }

    public func shard(version v: Int, name: String) throws -> (body: [UInt8], hash: String) {
        guard let p = published[v] else { throw versionGone(v) }
        guard let body = p.bodies[name], let d = p.manifest.shard(named: name) else {
            throw Problem(.unknownShard, status: 404, detail: "no shard '\(name)' (shards: \(layout.shards.map(\.name).joined(separator: ", ")))")
        }
        return (body, d.contentHash)
    }

    public func noteBytesOut(_ n: Int) {
        bytesOut += n
        metrics.bytesSent.increment(by: Int64(n))
    }

    private func versionGone(_ v: Int) -> Problem {
        v > version
            ? Problem(.notFound, status: 404, detail: "version \(v) does not exist yet (current \(version))")
            : Problem(.versionGone, status: 410, detail: "version \(v) is no longer served (current \(version)); lease again")
    }

    // MARK: Updates

    /// The largest body an update of this shard may have (413 above it).
    public func updateBodyLimit(shard name: String) -> Int? {
        guard let shard = layout.shard(named: name) else { return nil }
        // Workers may send any codec (the job's is a recommendation), so the bound is the
        // largest valid body of any codec for this shard's size.
        return TensorFrame.maximumBodySize(elementCount: shard.elementCount)
    }

    /// Checks one shard's update and keeps it with the lease until commit.
    public func receiveUpdate(lease id: String, worker: String, shard name: String, body: [UInt8]) throws -> ShardReceipt {
        var lease = try activeLease(id, worker: worker)
        guard let shard = layout.shard(named: name) else {
            count("unknown_shard", worker: worker)
            throw Problem(.unknownShard, status: 404, detail: "no shard '\(name)'")
        }
        do {
            try body.withUnsafeBytes { raw in
                try scratch.withUnsafeMutableBufferPointer { s in
                    guard let base = s.baseAddress else { return }
                    try TensorFrame.decode(raw, expectedCount: shard.elementCount,
                                           into: UnsafeMutableBufferPointer(start: base, count: shard.elementCount))
                }
            }
        } catch let error as FrameError {
            count("invalid_update", worker: worker)
            throw Problem(.invalidUpdate, status: 422, detail: "shard '\(name)': \(error)")
        }
        bytesIn += body.count
        denseBytesIn += 4 * shard.elementCount
        metrics.updateBytes.increment(by: Int64(body.count))
        metrics.updateDenseBytes.increment(by: Int64(4 * shard.elementCount))
        lease.bodies[name] = body
        leases[id] = lease
        return ShardReceipt(shard: name, bytes: body.count)
    }

    /// Accepts a unit's update into the open round (or refuses it) once every shard arrived.
    public func commit(lease id: String, worker: String, _ request: CommitRequest) throws -> CommitReceipt {
        // A second commit of a unit already accepted is answered idempotently.
        if leases[id] == nil, let record = try ledger.lease(id: id), record.state == .committed {
            count("duplicate_update", worker: worker)
            throw Problem(.duplicateUpdate, status: 409, detail: "lease \(id) was already committed; its update counts once")
        }
        let lease = try activeLease(id, worker: worker)
        guard request.samples == config.units.samplesPerUnit, request.loss.isFinite, request.loss >= 0 else {
            count("invalid_commit", worker: worker)
            throw Problem(.malformedRequest, status: 400,
                          detail: "commit must report samples = \(config.units.samplesPerUnit) and a finite, non-negative loss")
        }
        let missing = layout.shards.map(\.name).filter { lease.bodies[$0] == nil }
        guard missing.isEmpty else {
            throw Problem(.incompleteUpdate, status: 409, detail: "push every shard before commit; missing: \(missing.joined(separator: ", "))")
        }
        let staleness = version - lease.baseVersion
        guard staleness <= config.rounds.maxStaleness else {
            leases[id] = nil
            if !isSync { requeued.append(lease.unit) }
            try ledger.setLeaseState(id: id, .expired)
            count("stale_version", worker: worker)
            throw Problem(.staleVersion, status: 409,
                          detail: "computed on version \(lease.baseVersion), current is \(version), bound is \(config.rounds.maxStaleness); lease again")
        }
        guard lease.epoch == epoch, !done.contains(lease.unit) else {
            leases[id] = nil
            try ledger.setLeaseState(id: id, .released)
            count("duplicate_update", worker: worker)
            throw Problem(.duplicateUpdate, status: 409, detail: "unit \(lease.unit) of epoch \(lease.epoch) is already done")
        }
        let weight = Double(request.samples) / Double(1 + staleness)
        let flops = flopsPerSample * Double(request.samples)
        // Record first: an update the ledger refuses is never added to the round.
        let record = UpdateRecord(
            leaseId: id, epoch: lease.epoch, unitIndex: lease.unit, workerId: worker, baseVersion: lease.baseVersion,
            round: version + 1, samples: request.samples, loss: request.loss, weight: weight, flops: flops,
            bytes: lease.bodies.values.reduce(0) { $0 + $1.count }, acceptedAt: now())
        guard try recordAccepted(record) else {
            leases[id] = nil
            count("duplicate_update", worker: worker)
            throw Problem(.duplicateUpdate, status: 409, detail: "unit \(lease.unit) of epoch \(lease.epoch) is already done")
        }
        for shard in layout.shards {
            guard let body = lease.bodies[shard.name], let acc = accumulators[shard.name] else { continue }
            try body.withUnsafeBytes { raw in
                try scratch.withUnsafeMutableBufferPointer { s in
                    guard let base = s.baseAddress else { return }
                    try TensorFrame.accumulate(raw, expectedCount: shard.elementCount, scale: Float(weight),
                                               into: UnsafeMutableBufferPointer(start: acc.data, count: shard.elementCount),
                                               scratch: UnsafeMutableBufferPointer(start: base, count: shard.elementCount))
                }
            }
        }
        leases[id] = nil
        done.insert(lease.unit)
        accepted += 1
        metrics.updatesAccepted.increment()
        metrics.samplesAccepted.increment(by: Int64(request.samples))
        roundUpdates += 1
        roundWeight += weight
        roundSamples += request.samples
        roundLossSum += request.loss * Double(request.samples)
        recentSamples.append((now(), request.samples))
        let joined = version + 1
        let base = lease.baseVersion
        if !isSync || roundUpdates >= config.rounds.unitsPerRound { try closeRound() }
        return CommitReceipt(accepted: true, round: joined, weight: weight, baseVersion: base, currentVersion: version)
    }

    /// Writes an accepted update to the ledger; false when the unit was already done.
    /// Any other ledger failure propagates (the update is then not acknowledged).
    private func recordAccepted(_ record: UpdateRecord) throws -> Bool {
        do {
            try ledger.recordAcceptedUpdate(record)
            return true
        } catch {
            if case .unitAlreadyDone = error { return false }
            throw error
        }
    }

    /// Periodic work: expire leases; close a sync round whose deadline passed with enough units.
    public func tick() throws {
        try expireLeases()
        let s = status()
        metrics.workersActive.set(to: Double(s.workers.active))
        metrics.unitsPending.set(to: Double(s.units.pending))
        metrics.unitsLeased.set(to: Double(s.units.leased))
        metrics.samplesPerSecond.set(to: s.samplesPerSecond)
        if isSync, roundUpdates >= config.rounds.minUnits,
           now().timeIntervalSince(roundOpened) >= config.rounds.deadlineSeconds {
            logger.info("round deadline passed", metadata: ["updates": "\(roundUpdates)"])
            try closeRound()
        }
    }

    private func count(_ reason: String, worker: String? = nil) {
        rejected[reason, default: 0] += 1
        metrics.rejected(reason)
        try? ledger.recordRejectedUpdate(workerId: worker, reason: reason, at: now())
    }

    /// A refusal the HTTP layer saw before the job did (oversized or malformed bodies).
    public func noteRejection(_ reason: String, worker: String?) { count(reason, worker: worker) }

    // MARK: Status

    public func status() -> StatusReport {
        let t = now()
        recentSamples.removeAll { t.timeIntervalSince($0.0) > 60 }
        let window = min(60, max(1, t.timeIntervalSince(started)))
        let samplesPerSecond = Double(recentSamples.reduce(0) { $0 + $1.1 }) / window
        let tokensPerSample: Double = if case let .gpt(g) = spec { Double(g.blockSize) } else { 0 }
        let leasedUnits = leases.values.filter { $0.epoch == epoch }.count
        let active = Set(leases.values.map(\.workerID)).count
        let recent = lastSeen.values.filter { t.timeIntervalSince($0) < 300 }.count
        let remaining = config.optimizer.totalRounds - version
        var eta: Double?
        if samplesPerSecond > 0 {
            let k = Double(isSync ? config.rounds.unitsPerRound : 1) * Double(config.units.samplesPerUnit)
            eta = Double(remaining) * k / samplesPerSecond
        }
        return StatusReport(
            job: config.name, model: spec.summary, parameters: spec.parameterCount, shards: layout.shards.count,
            mode: config.rounds.mode, version: version, round: version + (isComplete ? 0 : 1), epoch: epoch,
            totalRounds: config.optimizer.totalRounds, complete: isComplete, checkpointedVersion: checkpointedVersion,
            trainingLoss: trainingLoss.points, validationLoss: validationLoss.points,
            workers: .init(active: active, seenRecently: recent, total: workerIDsByTokenHash.count),
            units: .init(done: done.count, leased: leasedUnits, pending: unitsPerEpoch - done.count - leasedUnits,
                         expired: expiredLeases, perEpoch: unitsPerEpoch),
            samplesPerSecond: samplesPerSecond, tokensPerSecond: samplesPerSecond * tokensPerSample,
            bytesIn: bytesIn, denseBytesIn: denseBytesIn, bytesOut: bytesOut, updatesAccepted: accepted, updatesRejected: rejected,
            lastRoundSeconds: lastRoundSeconds, uptimeSeconds: t.timeIntervalSince(started), etaSeconds: eta)
    }

    /// Volunteers and their contribution; tokens never leave the ledger (only hashes are there).
    public func workers() throws -> WorkerList {
        let t = now()
        let active = Set(leases.values.map(\.workerID))
        return WorkerList(workers: try ledger.workers().map { w in
            let seen = max(w.lastSeenAt, lastSeen[w.id] ?? w.lastSeenAt)
            return WorkerSummary(id: w.id, name: w.name, samples: w.samples, flops: w.flops,
                                 acceptedUpdates: w.acceptedUpdates, rejectedUpdates: w.rejectedUpdates,
                                 lastSeen: seen, active: active.contains(w.id) || t.timeIntervalSince(seen) < 60)
        })
    }

    /// The parameters, for tests comparing with single-process training.
    public func parameterValues() -> [String: [Float]] {
        var out: [String: [Float]] = [:]
        for p in model.parameters.parameters { out[p.name] = p.value.toArray() }
        return out
    }
}

/// Bearer tokens are stored only as their SHA-256 (hex): a stolen ledger cannot be used
/// to impersonate a volunteer.
public enum WorkerToken {
    public static func hash(_ token: String) -> String {
        SHA256.hash(data: Data(token.utf8)).map { String(format: "%02x", $0) }.joined()
    }
}
