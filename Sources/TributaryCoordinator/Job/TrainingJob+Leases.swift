import Crypto
import Foundation
import TributaryLedger
import TributaryProtocol

/// Registration, authentication and the life of a lease.
extension TrainingJob {
    public func register(_ request: RegisterRequest) async throws -> RegisterResponse {
        guard SHA256.hash(data: Data(request.joinToken.utf8)) == joinTokenDigest else {
            throw await reject(.badJoinToken, worker: nil)
        }
        return try await exclusively {
            let token = WorkerToken.make()
            let id = "w-" + UUID().uuidString.lowercased().prefix(12)
            let hash = WorkerToken.hash(token)
            let at = now()
            // Control characters (NUL among them, which PostgreSQL text cannot hold) are dropped.
            let printable = String(String.UnicodeScalarView((request.name ?? id).unicodeScalars.filter {
                !CharacterSet.controlCharacters.contains($0)
            }))
            let name = String((printable.isEmpty ? id : printable).prefix(64))
            try await ledger.insertWorker(WorkerRecord(id: id, name: name, tokenHash: hash, createdAt: at, lastSeenAt: at,
                                                       samples: 0, flops: 0, acceptedUpdates: 0, rejectedUpdates: 0))
            registry.add(id: id, tokenHash: hash, seen: at)
            metrics.workersRegistered.increment()
            logger.info("worker registered", metadata: ["worker": "\(id)", "name": "\(name)"])
            return RegisterResponse(workerId: id, token: token, job: jobDescription)
        }
    }

    /// The worker a bearer token belongs to; answered by the registry, without the job.
    public nonisolated func authenticate(bearer token: String?) async throws(JobError) -> String {
        guard let token, !token.isEmpty else { throw .missingBearerToken }
        guard let id = registry.worker(token: token, at: now()) else {
            if registry.isBanned(token: token) { throw .workerBanned }
            throw await reject(.unknownBearerToken, worker: nil)
        }
        return id
    }

    public func lease(worker: String) async throws -> LeaseGrant {
        try await exclusively {
            try await expireLeasesNow()
            try checkNotFailed()
            guard !isComplete else { throw JobError.jobComplete(totalRounds: config.optimizer.totalRounds) }
            var decision = scheduler.nextUnit(for: worker, now: now())
            if decision == .epochFinished {
                try await startEpoch(scheduler.epoch + 1)
                decision = scheduler.nextUnit(for: worker, now: now())
            }
            if case let .workerAtLimit(held) = decision {
                throw JobError.tooManyLeases(held: held, limit: config.leases.maxPerWorker)
            }
            let unit: Int, replica: Bool
            switch decision {
            case let .grant(u): (unit, replica) = (u, false)
            case let .grantReplica(u): (unit, replica) = (u, true)
            default: throw JobError.noWork
            }
            let lease = scheduler.grant(id: "l-" + UUID().uuidString.lowercased(), worker: worker, unit: unit,
                                        baseVersion: version, replica: replica, now: now())
            // A replica lease lives in memory only (the ledger knows its unit as done).
            if !replica {
                do {
                    try await ledger.insertLease(LeaseRecord(id: lease.id, epoch: lease.epoch, unitIndex: unit,
                                                             workerId: worker, baseVersion: version, issuedAt: now(),
                                                             deadline: lease.deadline, state: .active))
                } catch {
                    scheduler.discard(lease.id)  // the ledger does not know it: neither does the job
                    publishUnitCounts()
                    throw error
                }
            }
            storageRecovered()
            metrics.leasesGranted.increment()
            publishUnitCounts()
            return LeaseGrant(leaseId: lease.id, epoch: lease.epoch, unitIndex: unit,
                              sampleStart: unit * config.units.samplesPerUnit, sampleCount: config.units.samplesPerUnit,
                              microBatchSize: microBatch, version: version, deadline: lease.deadline,
                              shards: layout.shards.map(\.name))
        }
    }

    public func renew(lease id: String, worker: String) async throws -> LeaseRenewal {
        try await exclusively {
            let lease = try await activeLease(id, worker: worker)
            switch scheduler.renew(id, now: now()) {
            case let .extended(deadline):
                try await setLedgerLeaseState(lease, .active, deadline: deadline)
                return LeaseRenewal(leaseId: id, deadline: deadline)
            case .unknown: throw JobError.leaseNotFound(id)
            case .atLifetime: throw JobError.leaseLifetimeExceeded(id, limit: config.leases.maxLifetimeSeconds)
            case .atRoundDeadline: throw JobError.roundDeadlineReached(id)
            }
        }
    }

    public func release(lease id: String, worker: String) async throws {
        try await exclusively {
            let lease = try await activeLease(id, worker: worker)
            scheduler.release(id)
            dropPending(id)
            try await setLedgerLeaseState(lease, .released, deadline: nil)
            publishUnitCounts()
        }
    }

    /// Whether `worker` holds the active lease `id` (before an upload's body is read).
    public func checkLease(_ id: String, worker: String) async throws {
        switch scheduler.lookup(id, worker: worker, now: now()) {
        case .active: return
        case .otherWorker: throw JobError.leaseOfAnotherWorker(id)
        case .pastDeadline: throw JobError.leaseExpired(id)
        case .unknown: throw JobError.leaseNotFound(id)
        }
    }

    /// The unit's samples, laid out for the model.
    public func batch(lease id: String, worker: String) async throws -> [UInt8] {
        try await exclusively {
            let lease = try await activeLease(id, worker: worker)
            let indices = unitOrder.batch(epoch: lease.epoch, index: lease.unit)
            let batch = data.trainingBatch(indices, epoch: lease.epoch)
            var body: [UInt8]?
            switch spec.sampleShape {
            case let .tokens(_, vocabulary): body = BatchBody.encodeWindows(batch, vocabularySize: vocabulary)
            case .features: body = BatchBody.encodePixels(batch)
            }
            let bytes = body ?? BatchBody.encode(batch)
            stats.noteBytesOut(bytes.count)
            return bytes
        }
    }

    /// Ends leases past their deadline: their units become available again.
    func expireLeasesNow() async throws {
        for lease in scheduler.expireLeases(now: now()) { try await recordExpired(lease) }
        publishUnitCounts()
    }

    func recordExpired(_ lease: ScheduledLease) async throws {
        stats.noteExpiredLeases(1)
        dropPending(lease.id)
        try await setLedgerLeaseState(lease, .expired, deadline: nil)
        logger.info("lease expired", metadata: ["lease": "\(lease.id)", "unit": "\(lease.unit)", "worker": "\(lease.workerID)"])
    }

    /// Records a lease's new state, unless it is a replica (those live in memory only).
    func setLedgerLeaseState(_ lease: ScheduledLease, _ state: LeaseState, deadline: Date?) async throws {
        guard !lease.isReplica else { return }
        try await ledger.setLeaseState(id: lease.id, state, deadline: deadline)
    }

    /// The lease `id` if `worker` holds it and it is in time; otherwise why not.
    func activeLease(_ id: String, worker: String) async throws -> ScheduledLease {
        switch scheduler.lookup(id, worker: worker, now: now()) {
        case let .active(lease):
            return lease
        case .otherWorker:
            throw JobError.leaseOfAnotherWorker(id)
        case .pastDeadline:
            if let lease = scheduler.expire(id: id) { try await recordExpired(lease) }
            publishUnitCounts()
            throw JobError.leaseExpired(id)
        case .unknown:
            guard let record = try await ledger.lease(id: id) else { throw JobError.leaseNotFound(id) }
            if record.state == .expired { throw JobError.leaseExpired(id) }
            throw JobError.leaseNotActive(id, state: record.state.rawValue)
        }
    }

    /// Counts a refusal (status, metrics, the worker's record) and returns it to throw.
    nonisolated func reject(_ error: JobError, worker: String?) async -> JobError {
        if let reason = error.rejectionReason { await noteRejection(reason, worker: worker) }
        return error
    }

    /// A refusal the HTTP layer saw before the job did (oversized or malformed bodies).
    public nonisolated func noteRejection(_ reason: String, worker: String?) async {
        stats.noteRejection(reason)
        try? await ledger.recordRejectedUpdate(workerId: worker, reason: reason, at: now())
    }
}
