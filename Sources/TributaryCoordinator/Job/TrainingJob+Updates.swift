import Foundation
import TributaryCompression
import TributaryLedger
import TributaryProtocol
import TributaryTensor

/// Updates: receiving shards, accepting a unit into the round, closing rounds.
extension TrainingJob {
    /// The largest body an update of this shard may have (nil: no such shard). Workers may
    /// send any codec (the job's is a recommendation), so the bound is the largest valid
    /// body of any codec for this shard's size.
    public nonisolated func updateBodyLimit(shard name: String) -> Int? {
        layout.shard(named: name).map { TensorFrame.maximumBodySize(elementCount: $0.elementCount) }
    }

    /// Checks one shard's update and keeps it with the lease until commit.
    public func receiveUpdate(lease id: String, worker: String, shard name: String, body: [UInt8]) async throws -> ShardReceipt {
        try await exclusively {
            _ = try await activeLease(id, worker: worker)
            guard let shard = layout.shard(named: name) else {
                throw await reject(.unknownShard(name, known: []), worker: worker)
            }
            let squares: Double
            do {
                squares = try validateFrame(body, elementCount: shard.elementCount)
            } catch {
                throw await reject(.invalidUpdate(shard: name, reason: "\(error)"), worker: worker)
            }
            stats.noteUpdateBytes(received: body.count, dense: 4 * shard.elementCount)
            pendingBodies[id, default: [:]][name] = body
            pendingSquares[id, default: [:]][name] = squares
            return ShardReceipt(shard: name, bytes: body.count)
        }
    }

    /// Accepts a unit's update into the open round (or refuses it) once every shard arrived.
    public func commit(lease id: String, worker: String, _ request: CommitRequest) async throws -> CommitReceipt {
        try await exclusively {
            // A commit repeated by its worker (its first answer was lost on the way) gets the
            // first one's receipt again: the update counts once, and the worker learns so.
            if scheduler.leases[id] == nil, let kept = replicaReceipts[id] {
                guard kept.worker == worker else { throw JobError.leaseOfAnotherWorker(id) }
                return kept.receipt
            }
            if scheduler.leases[id] == nil, let record = try await ledger.lease(id: id), record.state == .committed {
                guard record.workerId == worker else { throw JobError.leaseOfAnotherWorker(id) }
                if let update = try await ledger.update(epoch: record.epoch, unitIndex: record.unitIndex), update.leaseId == id {
                    return CommitReceipt(accepted: true, round: update.round, weight: update.weight,
                                         baseVersion: update.baseVersion, currentVersion: version)
                }
                throw await reject(.alreadyCommitted(lease: id), worker: worker)
            }
            try checkNotFailed()
            let lease = try await activeLease(id, worker: worker)
            guard request.samples == config.units.samplesPerUnit, request.loss.isFinite, request.loss >= 0 else {
                throw await reject(.invalidCommit(expectedSamples: config.units.samplesPerUnit), worker: worker)
            }
            let bodies = pendingBodies[id] ?? [:]
            let missing = layout.shards.map(\.name).filter { bodies[$0] == nil }
            guard missing.isEmpty else { throw JobError.incompleteUpdate(missing: missing) }
            let staleness = version - lease.baseVersion
            guard staleness <= config.rounds.maxStaleness else {
                forget(id, requeue: true)
                try await ledger.setLeaseState(id: id, .expired, deadline: nil)
                throw await reject(.staleUpdate(baseVersion: lease.baseVersion, current: version,
                                                bound: config.rounds.maxStaleness), worker: worker)
            }
            if lease.isReplica { return try await commitReplica(lease, bodies: bodies, request: request) }
            guard scheduler.unitIsOpen(lease) else {
                forget(id, requeue: false)
                try await ledger.setLeaseState(id: id, .released, deadline: nil)
                throw await reject(.unitAlreadyDone(unit: lease.unit, epoch: lease.epoch), worker: worker)
            }
            // Summed in layout order: the same bits in every process (replay notes the same norms).
            let squares = pendingSquares[id] ?? [:]
            let norm = layout.shards.reduce(0.0) { $0 + (squares[$1.name] ?? 0) }.squareRoot()
            let unitKey = "\(lease.epoch)/\(lease.unit)"
            if case let .refuse(bound, typical) = normGuard.check(norm: norm),
               !(norm.isFinite && norm <= UpdateNormGuard.absoluteBound
                 && largeNorms.corroborates(unit: unitKey, worker: worker, norm: norm)) {
                forget(id, requeue: true)
                try await ledger.setLeaseState(id: id, .released, deadline: nil)
                logger.warning("update refused: norm out of range", metadata: [
                    "worker": "\(worker)", "norm": "\(norm)", "bound": "\(bound)"])
                throw await reject(.updateNormOutOfRange(norm: norm, bound: bound, typical: typical), worker: worker)
            }
            let digest = UpdateDigests.digest(bodies, layout: layout)
            if config.aggregation.refuseReplays, let owner = digests.owner(of: digest), owner != unitKey {
                forget(id, requeue: true)
                try await ledger.setLeaseState(id: id, .released, deadline: nil)
                let parts = owner.split(separator: "/").compactMap { Int($0) }
                logger.warning("update refused: a replay of an accepted update", metadata: ["worker": "\(worker)", "of_unit": "\(owner)"])
                throw await reject(.replayedUpdate(unit: parts.last ?? -1, epoch: parts.first ?? -1), worker: worker)
            }
            let weight = Double(request.samples) / Double(1 + staleness)
            // Record first: an update the ledger refuses is never added to the round.
            let record = UpdateRecord(
                leaseId: id, epoch: lease.epoch, unitIndex: lease.unit, workerId: worker, baseVersion: lease.baseVersion,
                round: version + 1, samples: request.samples, loss: request.loss, weight: weight,
                flops: flopsPerSample * Double(request.samples), bytes: bodies.values.reduce(0) { $0 + $1.count },
                acceptedAt: now())
            // Durable before anyone hears "accepted": the bodies in the update log (synced),
            // then the ledger's row. A failure of either changes nothing the job relies on:
            // the lease and its bodies stay, and the worker may commit again.
            let logStart = DispatchTime.now().uptimeNanoseconds
            do {
                try updateLog.append(LoggedUpdate(leaseID: id, round: version + 1, weight: weight, bodies: bodies))
            } catch {
                throw storageFailed("update log", error)
            }
            let logEnd = DispatchTime.now().uptimeNanoseconds
            metrics.updateLogAppendSeconds.record(.nanoseconds(Int64(logEnd - logStart)))
            do {
                try await ledger.recordAcceptedUpdate(record)
                durability.note(logNanoseconds: logEnd - logStart, bytes: record.bytes,
                                ledgerNanoseconds: DispatchTime.now().uptimeNanoseconds - logEnd)
            } catch LedgerError.unitAlreadyDone {
                forget(id, requeue: false)
                throw await reject(.unitAlreadyDone(unit: lease.unit, epoch: lease.epoch), worker: worker)
            } catch where Self.isStorageFailure(error) {
                throw storageFailed("ledger", error)
            }
            storageRecovered()
            countedRound.append(leaseID: id, unit: lease.unit,
                                RoundUpdate(workerID: worker, weight: weight, samples: request.samples, bodies: bodies),
                                loss: request.loss)
            dropPending(id)
            normGuard.noteAccepted(norm: norm)
            digests.note(digest, unit: unitKey)
            largeNorms.noteAccepted(unit: unitKey)
            // A backup lease's twin on the same unit ends: its update could no longer count.
            // Best effort: the update is accepted already, and nothing after this point may
            // throw (a twin still active in the ledger expires at the latest on a restart).
            for twin in scheduler.twins(of: lease) {
                forget(twin.id, requeue: false)
                try? await ledger.setLeaseState(id: twin.id, .released, deadline: nil)
            }
            openVerificationIfDue(worker: worker, epoch: lease.epoch, unit: lease.unit, counted: ReplicaResult(
                leaseID: id, workerID: worker, bodies: bodies, loss: request.loss, samples: request.samples,
                weight: weight, baseVersion: lease.baseVersion))
            let decision = scheduler.accept(lease, now: now())
            stats.noteAccepted(samples: request.samples, at: now())
            let joined = version + 1
            // The update is durable and counted: whatever closing the round meets (a full disk
            // at the checkpoint) is the job's to retry, not the worker's to hear about.
            if decision == .close { await closeRoundIfReady() } else { publishUnitCounts() }
            return CommitReceipt(accepted: true, round: joined, weight: weight, baseVersion: lease.baseVersion,
                                 currentVersion: version)
        }
    }

    /// Drops a lease and the bodies pushed under it.
    func forget(_ id: String, requeue: Bool) {
        if requeue { scheduler.release(id) } else { scheduler.discard(id) }
        dropPending(id)
        publishUnitCounts()
    }

    func dropPending(_ id: String) {
        pendingBodies[id] = nil
        pendingSquares[id] = nil
    }

    /// Decodes a body into scratch memory to check it (the codec's every rule); returns
    /// the decoded values' sum of squares (infinite when a square overflows fp32).
    func validateFrame(_ body: [UInt8], elementCount: Int) throws(FrameError) -> Double {
        if scratch.count < elementCount { scratch = [Float](repeating: 0, count: elementCount) }
        var failure: FrameError?
        var squares = 0.0
        body.withUnsafeBytes { raw in
            scratch.withUnsafeMutableBufferPointer { s in
                guard let base = s.baseAddress else { return }
                do throws(FrameError) {
                    try TensorFrame.decode(raw, expectedCount: elementCount,
                                           into: UnsafeMutableBufferPointer(start: base, count: elementCount))
                    squares = ElementwiseKernels.sumOfSquares(base, count: elementCount)
                } catch { failure = error }
            }
        }
        if let failure { throw failure }
        return squares
    }
}
