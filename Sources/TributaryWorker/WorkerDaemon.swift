import Crypto
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import TributaryCheckpoint
import TributaryCompression
import TributaryModels
import TributaryProtocol
import TributaryTensor

/// The volunteer's daemon: lease a unit → fetch the parameter shards it lacks (cached by
/// content hash) → compute the unit's gradient → push it shard by shard → commit → repeat,
/// renewing the lease meanwhile (`LeaseHeartbeat`; a lost lease cancels the unit's work).
/// Any step can fail: every failure or refusal, whatever its status, is retried after an
/// exponential back-off with jitter (`RetryPolicy`); a lease that expired or a version that
/// went stale is dropped and re-leased. Every answer is bounded (`ResponseLimit`) and
/// checked (`JobDescription.checkForWorker`, `LeaseGrant.check`) before the worker acts on it.
public actor WorkerDaemon {
    public let options: WorkerOptions
    let client: CoordinatorClient
    /// For renewing a lease and giving it back after a failure: a short timeout, as the
    /// network may be what failed, and a lease lasts only seconds.
    let releaseClient: CoordinatorClient
    let logger: Logger
    private var identity: Identity?
    private var job: JobDescription?
    private var compute: UnitCompute?
    private let device: any ComputeDevice
    private let cache: ShardCache
    private let residualStore: ResidualStore
    private var stopRequested = false
    private var currentLease: String?
    /// The manifest's byte limit for the job's shard layout (`ResponseLimit.manifest`).
    private var manifestLimit = ResponseLimit.json
    public private(set) var unitsDone = 0

    struct Identity: Codable {
        var coordinator: String
        var workerId: String
        var token: String
    }

    public init(options: WorkerOptions, logger: Logger, http: WorkerHTTPClient = .shared) {
        self.options = options
        self.logger = logger
        client = CoordinatorClient(base: options.coordinator, http: http)
        releaseClient = CoordinatorClient(base: options.coordinator, http: http, timeout: .seconds(5))
        device = CPUDevice(memoryBudgetBytes: options.memoryBudgetBytes)
        cache = ShardCache(directory: "\(options.dataDirectory)/shards")
        residualStore = ResidualStore(directory: "\(options.dataDirectory)/residual")
    }

    var identityPath: String { "\(options.dataDirectory)/identity.json" }
    var cacheDirectory: String { cache.directory }

    /// The plan in use (after the first unit's job description arrived).
    public var memoryPlan: MemoryPlan? { compute?.plan }
    /// The device allocator's peak so far: what the budget was measured against.
    public var peakTensorBytes: Int { device.allocator.peakBytes }

    /// Asks the loop to stop after the current unit.
    public func requestStop() { stopRequested = true }

    /// Releases the lease in hand (after the grace period ran out, or its unit failed). Best
    /// effort: a lease the coordinator no longer holds is refused, one it cannot reach expires.
    public func releaseCurrentLease() async {
        guard let lease = currentLease, let token = identity?.token else { return }
        currentLease = nil
        do {
            _ = try await releaseClient.send(.DELETE, Routes.lease(lease), token: token, limit: ResponseLimit.json)
            logger.info("lease released", metadata: ["lease": "\(lease)"])
        } catch let ClientError.refused(problem) {
            logger.info("lease had already ended", metadata: ["lease": "\(lease)", "reason": "\(problem.code.rawValue)"])
        } catch {
            logger.info("lease not released; it expires on its own", metadata: [
                "lease": "\(lease)", "error": "\(LogSafe.escape("\(error)"))"])
        }
    }

    /// Runs until stopped or `maxUnits` units are committed.
    public func run(report: @Sendable (UnitReport) -> Void = { _ in }) async throws {
        try FileManager.default.createDirectory(atPath: cacheDirectory, withIntermediateDirectories: true)
        // One worker per data directory: two would share an identity, a cache and residuals.
        let dataLock = try DirectoryLock.acquire(options.dataDirectory, name: "worker.lock")
        defer { dataLock.release() }
        var failures = Backoff(base: options.retry.base, cap: options.retry.cap)
        var idle = Backoff(base: options.retry.idleBase, cap: options.retry.idleCap)
        while !stopRequested && !Task.isCancelled {
            if let max = options.maxUnits, unitsDone >= max { return }
            do {
                if let r = try await workOneUnit() {
                    unitsDone += 1
                    failures.reset()
                    idle.reset()
                    report(r)
                }
            } catch let ClientError.refused(problem) {
                switch problem.code {
                case .jobComplete:
                    logger.info("the job is complete")
                    return
                case .noWork:
                    currentLease = nil
                    try await sleep(idle.next())
                    continue
                case .workerBanned:
                    throw WorkerError.fatal("the coordinator's operator banned this worker; it stops")
                case .unauthorized, .forbidden:
                    if problem.detail.contains("join token") { throw WorkerError.fatal("the coordinator refused the join token: \(LogSafe.escape(problem.detail))") }
                    logger.warning("the coordinator does not know this worker's token; registering again")
                    identity = nil
                    try? FileManager.default.removeItem(atPath: identityPath)
                default:
                    // Stale version, expired lease, duplicate: drop this unit (giving the lease
                    // back, so nobody waits for it to time out) and lease another.
                    logger.info("unit dropped", metadata: ["reason": "\(problem.code.rawValue)", "detail": "\(LogSafe.escape(problem.detail))"])
                    await releaseCurrentLease()
                }
                currentLease = nil
                try await pause(&failures, after: "refused: \(problem)")
            } catch let error as ClientError {
                // The unit cannot go on: give its lease back, so nobody waits for it to expire.
                await releaseCurrentLease()
                currentLease = nil
                try await pause(&failures, after: "\(error)")
            } catch {
                await releaseCurrentLease()
                throw error
            }
        }
    }

    /// Waits the next back-off after a failure: every failed or refused request, whatever
    /// its status, so a coordinator that refuses everything is asked less and less often.
    private func pause(_ backoff: inout Backoff, after error: String) async throws {
        let delay = backoff.next()
        logger.warning("retrying", metadata: ["error": "\(LogSafe.escape(error))", "in_ms": "\(Int(Backoff.seconds(delay) * 1000))"])
        try await sleep(delay)
    }

    /// Commits, and on a network failure commits again (up to 3 times, while the lease
    /// lasts): a commit is idempotent, so a first attempt that landed but whose answer was
    /// lost is answered with its receipt, and the unit's work is not thrown away. Each
    /// attempt's timeout is the lease's time left (renewals extend it) plus a margin.
    private func commit(_ lease: HeldLease, token: String, _ request: CommitRequest) async throws -> CommitReceipt {
        var attempt = 0
        while true {
            do {
                return try await client.json(.POST, Routes.commit(lease.id), token: token, body: request,
                                             timeout: lease.requestTimeout())
            } catch ClientError.transient(let why) {
                attempt += 1
                let wait = Duration.milliseconds(250 << min(attempt, 4))
                guard attempt <= 3, lease.timeLeft() > wait else { throw ClientError.transient(why) }
                logger.info("commit failed; committing again", metadata: ["attempt": "\(attempt)", "error": "\(LogSafe.escape(why))"])
                try await sleep(wait)
            }
        }
    }

    /// Writes the identity file; the token is a secret: readable by this user only.
    private func persist(_ identity: Identity) throws {
        let data = try JSONEncoder().encode(identity)
        guard FileManager.default.createFile(atPath: identityPath, contents: data, attributes: [.posixPermissions: 0o600]) else {
            throw WorkerError.fatal("cannot write \(identityPath): check the data directory's space and permissions")
        }
    }

    private func sleep(_ d: Duration) async throws {
        try await Task.sleep(for: d)
    }

    private func register() async throws -> Identity {
        if let identity {
            // Deleted while running: written again, or the next start would register a second
            // identity and split this volunteer's credit.
            if !FileManager.default.fileExists(atPath: identityPath) {
                try persist(identity)
                logger.warning("identity file was missing; written again", metadata: ["path": "\(identityPath)"])
            }
            return identity
        }
        if let data = FileManager.default.contents(atPath: identityPath),
           let saved = try? JSONDecoder().decode(Identity.self, from: data), saved.coordinator == options.coordinator {
            identity = saved
            return saved
        }
        let request = RegisterRequest(joinToken: options.joinToken, name: options.name,
                                      threads: ComputeThreads.count, memoryBudgetBytes: options.memoryBudgetBytes)
        let response: RegisterResponse = try await client.json(.POST, Routes.register, body: request)
        let fresh = Identity(coordinator: options.coordinator, workerId: response.workerId, token: response.token)
        try persist(fresh)
        identity = fresh
        if job != response.job { compute = nil }  // another job: plan again
        job = response.job
        logger.info("registered", metadata: ["worker": "\(response.workerId)", "job": "\(response.job.name)"])
        return fresh
    }

    /// Plans the job's compute against the budget (once per job): a job this budget
    /// cannot run is refused before any unit is leased.
    private func ensureCompute(token: String) async throws -> (UnitCompute, JobDescription) {
        if let compute, let job { return (compute, job) }
        let description: JobDescription
        if let job { description = job } else { description = try await client.json(.GET, Routes.job, token: token) }
        let fresh = try UnitCompute(job: description, device: device, budgetBytes: options.memoryBudgetBytes)
        manifestLimit = ResponseLimit.manifest(fresh.layout)
        logger.info("memory plan", metadata: [
            "device": "\(device.name)",
            "budget": "\(options.memoryBudgetBytes.map(ByteCount.format) ?? "unbounded")",
            "plan": "\(fresh.plan)",
            "model": "\(description.model.summary)"])
        job = description
        compute = fresh
        return (fresh, description)
    }

    /// One unit from lease to commit; nil when there was nothing to do. The lease is kept
    /// alive by a heartbeat from the grant until the commit's answer (`LeaseHeartbeat`); when
    /// it is lost first, the unit's downloads, compute and uploads are cancelled.
    private func workOneUnit() async throws -> UnitReport? {
        let start = DispatchTime.now().uptimeNanoseconds
        let me = try await register()
        let (compute, job) = try await ensureCompute(token: me.token)
        let (grant, date): (LeaseGrant, Date?) = try await client.jsonReply(.POST, Routes.leases, token: me.token,
                                                                            body: [String: String]())
        try grant.check(for: job)
        currentLease = grant.leaseId
        let lease = HeldLease(id: grant.leaseId, deadline: grant.deadline, coordinatorDate: date)
        logger.debug("lease granted", metadata: ["lease": "\(grant.leaseId)", "unit": "\(grant.unitIndex)",
                                                 "version": "\(grant.version)",
                                                 "left_ms": "\(Int(Backoff.seconds(lease.timeLeft()) * 1000))"])
        let heartbeat = LeaseHeartbeat(lease: lease, client: releaseClient, token: me.token, logger: logger)
        let token = me.token
        let done = try await heartbeat.keepingAlive {
            try await self.runLeased(grant, lease: lease, compute: compute, job: job, token: token)
        }
        try residualStore.commitStaged()
        currentLease = nil
        return UnitReport(unit: grant.unitIndex, epoch: grant.epoch, version: grant.version, loss: done.loss,
                          samples: done.samples, computeSeconds: done.computeSeconds,
                          totalSeconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9,
                          bytesUp: done.bytesUp, bytesDown: done.bytesDown, round: done.receipt.round,
                          renewals: lease.renewals)
    }

    /// What a unit produced, from the lease's shards to the commit's receipt.
    struct CommittedUnit: Sendable {
        var loss: Double
        var samples: Int
        var computeSeconds: Double
        var bytesUp: Int
        var bytesDown: Int
        var receipt: CommitReceipt
    }

    /// The unit's work under `lease`: shards, batch, gradient, uploads, commit. Cancelled by
    /// the heartbeat when the lease is lost; every request it makes is cancelled with it.
    private func runLeased(_ grant: LeaseGrant, lease: HeldLease, compute: UnitCompute, job: JobDescription,
                           token: String) async throws -> CommittedUnit {
        var down = 0
        // The lease's version: shards whose content is not in the local cache are fetched.
        let manifest: Manifest = try await client.json(.GET, Routes.manifest(grant.version), token: token,
                                                       limit: manifestLimit)
        guard manifest.version == grant.version else {
            throw ClientError.protocolViolation("the manifest is of version \(manifest.version), the lease's is \(grant.version)")
        }
        // Looked up by name once: a listing per shard would be quadratic in the shard count.
        let described = Dictionary(manifest.shards.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        var refs: [String: UnitShardStream.ShardDescriptorRef] = [:]
        for shard in compute.layout.shards {
            guard let d = described[shard.name], d.elementCount == shard.elementCount else {
                throw WorkerError.fatal("shard \(shard.name) does not match this worker's model layout")
            }
            guard ShardCache.isContentHash(d.contentHash) else {
                throw ClientError.protocolViolation("the manifest's content hash of shard \(shard.name) is not a SHA-256")
            }
            refs[d.name] = .init(hash: d.contentHash, elements: d.elementCount)
            if !cache.contains(d.contentHash) {
                let reply = try await client.send(.GET, Routes.shard(grant.version, d.name), token: token,
                                                  limit: ResponseLimit.shard(elements: shard.elementCount,
                                                                             budget: options.memoryBudgetBytes))
                try device.allocator.withReservedBytes(reply.body.count) { try cache.store(reply.body, hash: d.contentHash) }
                down += reply.body.count
            }
        }
        cache.prune(keeping: Set(refs.values.map(\.hash)), limit: 2 * compute.layout.shards.count)

        // The unit's samples.
        let width = job.model.sampleShape.width
        let batchReply = try await client.send(.GET, Routes.batch(grant.leaseId), token: token,
                                               limit: ResponseLimit.batch(samples: grant.sampleCount, width: width,
                                                                          budget: options.memoryBudgetBytes))
        down += batchReply.body.count
        let batch: ModelBatch
        do {
            batch = try BatchBody.decode(batchReply.body, maxBatch: grant.sampleCount, width: width)
        } catch {
            throw ClientError.protocolViolation("batch: \(error)")
        }

        // Compute the gradient; each shard's update is encoded (with error feedback) and
        // uploaded as soon as it is final, while the rest of the backward goes on.
        let client = self.client, leaseId = grant.leaseId
        let computeStart = DispatchTime.now().uptimeNanoseconds
        let (loss, up) = try await compute.runUnit(batch, shards: refs, cache: cache, residuals: residualStore,
                                                   zstdLevel: job.zstdLevel) { shard, body in
            _ = try await client.send(.PUT, Routes.update(leaseId, shard: shard), token: token, body: body,
                                      contentType: Routes.tensorFrameType, limit: ResponseLimit.json)
        }
        let computeSeconds = Double(DispatchTime.now().uptimeNanoseconds - computeStart) / 1e9

        let receipt: CommitReceipt
        do {
            // From here the commit's answer decides: a renewal refused meanwhile no longer cancels the unit.
            guard lease.beginCommit() else { throw CancellationError() }
            receipt = try await commit(lease, token: token, CommitRequest(samples: batch.sampleCount, loss: loss))
        } catch {
            // The update was not applied: what it carried from the residual must not be lost.
            residualStore.discardStaged()
            throw error
        }
        return CommittedUnit(loss: loss, samples: batch.sampleCount, computeSeconds: computeSeconds,
                             bytesUp: up, bytesDown: down, receipt: receipt)
    }
}
