import Crypto
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import TributaryCheckpoint
import TributaryCompression
import TributaryModels
import TributaryPlanning
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
    private var identity: WorkerIdentity?
    private var job: JobDescription?
    private var compute: UnitCompute?
    let device: any ComputeDevice
    let cache: ShardCache
    let residualStore: ResidualStore
    /// The version of each shard in the cache, for delta downloads.
    var heldShards: HeldShards
    /// Version 0 is built from the seed at most once per run (it fails the same way again).
    var triedSeedInitialisation = false
    /// When the coordinator stopped answering (nil while it answers).
    private var unreachableSince: Date?
    private var stopRequested = false
    /// The lease in hand (the one a stop or a failed unit gives back).
    /// The lease in hand, also written to the data directory: a worker killed while holding
    /// it gives it back when it starts again, instead of waiting for it to expire (the
    /// coordinator allows one lease per worker).
    var currentLease: String? {
        didSet { Self.persistLease(currentLease, at: leaseInHandPath) }
    }
    /// The manifest's byte limit for the job's shard layout (`ResponseLimit.manifest`).
    private(set) var manifestLimit = ResponseLimit.json
    public private(set) var unitsDone = 0
    /// Closed while the volunteer paused the worker or the machine is in use: nothing is leased.
    public nonisolated let gate: ComputeGate
    /// Where the unit in hand is (nil between units).
    public nonisolated let progress = UnitProgress()

    /// `device`: where units are computed (nil: the CPU, under `options.memoryBudgetBytes`).
    public init(options: WorkerOptions, logger: Logger, http: WorkerHTTPClient = .shared, gate: ComputeGate = ComputeGate(),
                device: (any ComputeDevice)? = nil) {
        self.options = options
        self.logger = logger
        self.gate = gate
        client = CoordinatorClient(base: options.coordinator, http: http)
        releaseClient = CoordinatorClient(base: options.coordinator, http: http, timeout: .seconds(5))
        self.device = device ?? CPUDevice(memoryBudgetBytes: options.memoryBudgetBytes)
        cache = ShardCache(directory: "\(options.dataDirectory)/shards")
        residualStore = ResidualStore(directory: "\(options.dataDirectory)/residual")
        heldShards = HeldShards.load(directory: "\(options.dataDirectory)/shards")
    }

    var identityPath: String { WorkerIdentity.path(dataDirectory: options.dataDirectory) }
    nonisolated var leaseInHandPath: String { "\(options.dataDirectory)/lease-in-hand" }

    nonisolated static func persistLease(_ id: String?, at path: String) {
        if let id {
            FileManager.default.createFile(atPath: path, contents: Data(id.utf8), attributes: [.posixPermissions: 0o600])
        } else {
            try? FileManager.default.removeItem(atPath: path)
        }
    }

    /// A lease left in hand by a run that was killed: given back before leasing anew.
    func releaseLeftoverLease() async {
        guard let data = FileManager.default.contents(atPath: leaseInHandPath),
              let id = String(data: data, encoding: .utf8)?.trimmingCharacters(in: .whitespacesAndNewlines),
              !id.isEmpty, id.count <= 128 else { return }
        _ = try? await register()
        currentLease = id
        logger.info("giving back the lease an earlier run left in hand", metadata: ["lease": "\(LogSafe.escape(id))"])
        await releaseCurrentLease()
        currentLease = nil
    }
    var cacheDirectory: String { cache.directory }

    /// The plan in use (after the first unit's job description arrived).
    public var memoryPlan: MemoryPlan? { compute?.plan }
    /// The device allocator's peak so far: what the budget was measured against.
    public var peakTensorBytes: Int { device.allocator.peakBytes }

    /// Whether a unit is in hand (its lease granted and not yet committed or released).
    public var holdsLease: Bool { currentLease != nil }

    /// Asks the loop to stop after the current unit.
    public func requestStop() { stopRequested = true }

    /// Releases the lease in hand (after the grace period ran out, or its unit failed). Best
    /// effort: a lease the coordinator no longer holds is refused, one it cannot reach expires.
    public func releaseCurrentLease() async {
        guard let lease = currentLease, let token = identity?.token else { return }
        currentLease = nil
        // Two tries: after a long pause (a suspended laptop) the pooled connection may be one
        // the coordinator closed, and the first request only finds that out. A second DELETE
        // of a released lease is refused, which is harmless.
        for attempt in 1...2 {
            do {
                _ = try await releaseClient.send(.DELETE, Routes.lease(lease), token: token, limit: ResponseLimit.json)
                logger.info("lease released", metadata: ["lease": "\(lease)"])
                return
            } catch let ClientError.refused(problem) {
                logger.info("lease had already ended", metadata: ["lease": "\(lease)", "reason": "\(problem.code.rawValue)"])
                return
            } catch ClientError.transient where attempt == 1 && !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(200))
            } catch {
                logger.info("lease not released; it expires on its own", metadata: [
                    "lease": "\(lease)", "error": "\(LogSafe.escape("\(error)"))"])
                return
            }
        }
    }

    /// Runs until stopped or `maxUnits` units are committed. `started` is called once the
    /// data directory is this worker's (its lock taken), before anything is leased.
    public func run(report: @Sendable (UnitReport) -> Void = { _ in },
                    started: @Sendable () async -> Void = {}) async throws {
        try FileManager.default.createDirectory(atPath: cacheDirectory, withIntermediateDirectories: true)
        // One worker per data directory: two would share an identity, a cache and residuals.
        let dataLock = try DirectoryLock.acquire(options.dataDirectory, name: "worker.lock")
        defer { dataLock.release() }
        await started()
        await releaseLeftoverLease()
        var failures = Backoff(base: options.retry.base, cap: options.retry.cap)
        var idle = Backoff(base: options.retry.idleBase, cap: options.retry.idleCap)
        while !stopRequested && !Task.isCancelled {
            if let max = options.maxUnits, unitsDone >= max { return }
            try await waitWhileGateClosed()
            if stopRequested { return }
            do {
                if let r = try await workOneUnit() {
                    noteReachable()
                    unitsDone += 1
                    failures.reset()
                    idle.reset()
                    report(r)
                }
            } catch let ClientError.refused(problem) {
                noteReachable()
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
            } catch let interrupted as UnitInterrupted {
                // The volunteer wants the machine back: the unit goes to another worker now.
                logger.notice("unit given back", metadata: ["reason": "\(interrupted.reason)"])
                await releaseCurrentLease()
                currentLease = nil
            } catch let error as ClientError {
                if case let .transient(why) = error {
                    noteUnreachable(why)
                } else {
                    noteReachable()
                }
                // The unit cannot go on: give its lease back, so nobody waits for it to expire.
                await releaseCurrentLease()
                currentLease = nil
                try await pause(&failures, after: "\(error)", quietly: unreachableSince != nil)
            } catch {
                await releaseCurrentLease()
                throw error
            }
        }
    }

    /// While the gate is closed, waits (saying why once, and when work resumes).
    private func waitWhileGateClosed() async throws {
        guard let why = gate.closedBecause else { return }
        logger.notice("not computing", metadata: ["reason": "\(why)"])
        while !gate.isOpen && !stopRequested {
            try await sleep(ComputeGate.poll)
        }
        if !stopRequested { logger.notice("computing again") }
    }

    /// Waits the next back-off after a failure: every failed or refused request, whatever
    /// its status, so a coordinator that refuses everything is asked less and less often.
    /// `quietly`: the coordinator is already known to be unreachable (said once, at warning).
    private func pause(_ backoff: inout Backoff, after error: String, quietly: Bool = false) async throws {
        let delay = backoff.next()
        logger.log(level: quietly ? .debug : .warning, "retrying",
                   metadata: ["error": "\(LogSafe.escape(error))", "in_ms": "\(Int(Backoff.seconds(delay) * 1000))"])
        try await sleep(delay)
    }

    /// The first failure to reach the coordinator is said once, with its reason in words.
    private func noteUnreachable(_ why: String) {
        guard unreachableSince == nil else { return }
        unreachableSince = Date()
        logger.warning("cannot reach the coordinator; trying again with back-off",
                       metadata: ["coordinator": "\(options.coordinator)", "reason": "\(LogSafe.escape(why))"])
    }

    /// The coordinator answered: after an outage, say so once.
    private func noteReachable() {
        guard let since = unreachableSince else { return }
        unreachableSince = nil
        logger.notice("connected to the coordinator again",
                      metadata: ["coordinator": "\(options.coordinator)", "after_s": "\(Int(Date().timeIntervalSince(since)))"])
    }

    /// Writes the identity file; the token is a secret: readable by this user only.
    private func persist(_ identity: WorkerIdentity) throws {
        let data = try JSONEncoder().encode(identity)
        guard FileManager.default.createFile(atPath: identityPath, contents: data, attributes: [.posixPermissions: 0o600]) else {
            throw WorkerError.fatal("cannot write \(identityPath): check the data directory's space and permissions")
        }
    }

    func sleep(_ d: Duration) async throws {
        try await Task.sleep(for: d)
    }

    func register() async throws -> WorkerIdentity {
        if let identity {
            // Deleted while running: written again, or the next start would register a second
            // identity and split this volunteer's credit.
            if !FileManager.default.fileExists(atPath: identityPath) {
                try persist(identity)
                logger.warning("identity file was missing; written again", metadata: ["path": "\(identityPath)"])
            }
            return identity
        }
        if let saved = try? WorkerIdentity.load(dataDirectory: options.dataDirectory), saved.coordinator == options.coordinator {
            identity = saved
            return saved
        }
        let request = RegisterRequest(joinToken: options.joinToken, name: options.name,
                                      threads: ComputeThreads.count, memoryBudgetBytes: options.memoryBudgetBytes)
        let response: RegisterResponse = try await client.json(.POST, Routes.register, body: request)
        let fresh = WorkerIdentity(coordinator: options.coordinator, workerId: response.workerId, token: response.token)
        try persist(fresh)
        identity = fresh
        if job != response.job { compute = nil }  // another job: plan again
        job = response.job
        logger.info("registered", metadata: ["worker": "\(response.workerId)", "job": "\(response.job.name)"])
        return fresh
    }

    /// Plans the job's compute against the budget (once per job): a job this budget
    /// cannot run is refused before any unit is leased.
    func ensureCompute(token: String) async throws -> (UnitCompute, JobDescription) {
        if let compute, let job { return (compute, job) }
        let description: JobDescription
        if let job { description = job } else { description = try await client.json(.GET, Routes.job, token: token) }
        let fresh = try UnitCompute(job: description, device: device, budgetBytes: options.memoryBudgetBytes,
                                    stateDirectory: options.dataDirectory, logger: logger)
        manifestLimit = ResponseLimit.manifest(fresh.layout)
        logger.info("memory plan", metadata: [
            "device": "\(device.name)",
            "budget": "\(options.memoryBudgetBytes.map(ByteCount.format) ?? "unbounded")",
            "vram_budget": "\(device.deviceMemoryBudgetBytes.map(ByteCount.format) ?? "none")",
            "plan": "\(fresh.plan)",
            "model": "\(description.model.summary)"])
        job = description
        compute = fresh
        return (fresh, description)
    }
}
