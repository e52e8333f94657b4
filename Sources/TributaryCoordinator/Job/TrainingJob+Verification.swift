import Foundation
import TributaryLedger
import TributaryProtocol

/// Validation by replication (BOINC's adaptive replication) in sync rounds: a counted unit
/// of a worker the policy does not trust goes to a second worker; the round waits for the
/// replica; a disagreement goes to a third worker. Only the counted update enters the round;
/// an update found wrong leaves it (voided in the ledger, its credit taken back) before the
/// round closes. Replica leases live in memory only: after a restart the open round's
/// verifications start again (`restoreOpenRound`), and replicas in flight are computed again.
extension TrainingJob {
    static let refutedReason = "refuted_by_replication"

    func reputation(of worker: String) -> WorkerReputation { reputations[worker] ?? WorkerReputation() }

    /// A reputation as the worker list shows it.
    func reputationSummary(of worker: String) -> WorkerReputationSummary {
        let r = reputation(of: worker)
        return WorkerReputationSummary(agreements: r.agreements, disagreements: r.disagreements,
                                       consecutiveAgreements: r.consecutiveAgreements, trusted: replication.isTrusted(r))
    }

    /// After `counted` was counted for `lease`'s unit: a replica is asked for when the policy says so.
    func openVerificationIfDue(worker: String, epoch: Int, unit: Int, counted: ReplicaResult) {
        guard replication.shouldReplicate(reputation(of: worker), epoch: epoch, unit: unit) else { return }
        verifications.open(epoch: epoch, unit: unit, counted: counted)
        scheduler.wantReplica(unit: unit, excluding: [worker])
    }

    /// A replica lease's commit: compared, never counted itself unless it wins a dispute.
    func commitReplica(_ lease: ScheduledLease, bodies: [String: [UInt8]], request: CommitRequest) async throws -> CommitReceipt {
        let replica = ReplicaResult(leaseID: lease.id, workerID: lease.workerID, bodies: bodies, loss: request.loss,
                                    samples: request.samples, weight: Double(request.samples), baseVersion: lease.baseVersion)
        let receipt = CommitReceipt(accepted: true, round: version + 1, weight: replica.weight,
                                    baseVersion: lease.baseVersion, currentVersion: version)
        guard let verdict = verifications.judge(replica, unit: lease.unit, agree: { a, b in
            replicaComparison.compare(a, b, layout: layout).agree(within: replicaTolerance)
        }) else {
            // The unit's verification ended meanwhile (its update voided): nothing to compare.
            scheduler.finishReplica(lease.id)
            dropPending(lease.id)
            throw await reject(.unitAlreadyDone(unit: lease.unit, epoch: lease.epoch), worker: lease.workerID)
        }
        try await record(verdict, unit: lease.unit)
        scheduler.finishReplica(lease.id)
        dropPending(lease.id)
        verifications.settle(verdict, replica: replica, unit: lease.unit)
        replicationFigures.replicas += 1
        replicationFigures.replicaSamples += request.samples
        if case .disputed = verdict, let v = verifications.verification(unit: lease.unit) {
            // Only a trusted worker decides: two colluders must not outvote an honest one. With
            // none around, the dispute is held back (`closeRoundIfReady`) and nobody judged.
            scheduler.wantReplica(unit: lease.unit, excluding: v.involved, decider: true)
        } else {
            scheduler.dropReplicaWant(unit: lease.unit)
        }
        keepReplicaReceipt(lease, receipt)
        publishValidation()
        await closeRoundIfReady()
        return receipt
    }

    private func keepReplicaReceipt(_ lease: ScheduledLease, _ receipt: CommitReceipt) {
        replicaReceipts[lease.id] = (lease.workerID, receipt)
        replicaReceiptOrder.append(lease.id)
        if replicaReceiptOrder.count > 1024 { replicaReceipts[replicaReceiptOrder.removeFirst()] = nil }
    }

    /// Writes what `verdict` decides (one ledger transaction, then the winner's update if
    /// one replaces the counted update) and applies it to the round and the reputations.
    private func record(_ verdict: UnitVerifications.Verdict, unit: Int) async throws {
        var agreeing: [ReplicaResult] = [], refuted: [ReplicaResult] = [], credited: [ReplicaResult] = []
        var voided: ReplicaResult?, winner: ReplicaResult?
        switch verdict {
        case .disputed:
            replicationFigures.disputes += 1
            return
        case let .confirmed(counted, agree, lied):
            agreeing = [counted] + agree
            credited = agree
            refuted = lied
            replicationFigures.confirmed += 1
        case let .replaced(lied, won, agree):
            agreeing = [won] + agree
            credited = agree
            refuted = [lied]
            voided = lied
            winner = won
            replicationFigures.replaced += 1
        case let .unresolved(counted):
            voided = counted
            replicationFigures.unresolved += 1
        }
        var undecided: [String] = []
        if case .unresolved = verdict, let v = verifications.verification(unit: unit) {
            undecided = [v.counted.workerID] + v.replicas.map(\.workerID)
        }
        replicationFigures.refutedReplicas += refuted.filter { $0.leaseID != voided?.leaseID }.count
        var updated = reputations
        let agreeingIDs = agreeing.map(\.workerID)
        for id in agreeingIDs {
            updated[id, default: WorkerReputation()].noteAgreement(with: agreeingIDs.filter { $0 != id })
        }
        for r in refuted { updated[r.workerID, default: WorkerReputation()].noteDisagreement() }
        for id in undecided { updated[id, default: WorkerReputation()].noteUndecided() }
        let touched = Set(agreeingIDs + refuted.map(\.workerID) + undecided)
        let banned = Set(refuted.map(\.workerID)).filter {
            replication.shouldBan(updated[$0] ?? WorkerReputation()) && !registry.bannedIDs.contains($0)
        }
        // A banned worker's counted updates still in the open round are voided with it.
        let bannedCounted = countedRound.entries.filter { banned.contains($0.update.workerID) && $0.leaseID != voided?.leaseID }
        var entry = VerificationRecord(at: now())
        entry.voidedLeaseIds = (voided.map { [$0.leaseID] } ?? []) + bannedCounted.map(\.leaseID)
        entry.credits = credited.map { .init(workerId: $0.workerID, samples: $0.samples, flops: flopsPerSample * Double($0.samples)) }
        entry.rejections = refuted.map { ($0.workerID, Self.refutedReason) }
        entry.revokedCreditWorkerIds = banned.sorted()
        entry.meta = touched.sorted().compactMap { id in updated[id].map { (WorkerReputation.metaPrefix + id, $0.metaValue) } }
            + banned.sorted().map { (Self.bannedMetaPrefix + $0, ISO8601DateFormatter().string(from: now())) }
        try await ledger.recordVerification(entry)
        storageRecovered()
        reputations = updated
        noteTrustedWorkers()
        for _ in refuted { stats.noteRejection(Self.refutedReason) }
        if let voided {
            countedRound.remove(leaseID: voided.leaseID)
            if winner == nil { scheduler.reopen(unit: unit) }
        }
        if let winner { await promote(winner, unit: unit) }
        for e in bannedCounted { voidBannedUpdate(e) }
        for id in banned.sorted() { banForDisagreement(id) }
    }

    /// The winner of a dispute becomes the unit's counted update, as any accepted update does:
    /// a ledger lease, the log, the ledger's row. Best effort after the verdict: if storage
    /// fails here the unit is simply computed again (it is pending in the ledger).
    private func promote(_ winner: ReplicaResult, unit: Int) async {
        let epoch = scheduler.epoch
        let record = UpdateRecord(leaseId: winner.leaseID, epoch: epoch, unitIndex: unit, workerId: winner.workerID,
                                  baseVersion: winner.baseVersion, round: version + 1, samples: winner.samples,
                                  loss: winner.loss, weight: winner.weight, flops: flopsPerSample * Double(winner.samples),
                                  bytes: winner.bodies.values.reduce(0) { $0 + $1.count }, acceptedAt: now())
        do {
            try await ledger.insertLease(LeaseRecord(id: winner.leaseID, epoch: epoch, unitIndex: unit, workerId: winner.workerID,
                                                     baseVersion: winner.baseVersion, issuedAt: now(), deadline: now(),
                                                     state: .active))
            try updateLog.append(LoggedUpdate(leaseID: winner.leaseID, round: version + 1, weight: winner.weight,
                                              bodies: winner.bodies))
            try await ledger.recordAcceptedUpdate(record)
            countedRound.append(leaseID: winner.leaseID, unit: unit,
                                RoundUpdate(workerID: winner.workerID, weight: winner.weight, samples: winner.samples,
                                            bodies: winner.bodies), loss: winner.loss)
        } catch {
            scheduler.reopen(unit: unit)
            _ = storageFailed("ledger (promoting a replica of unit \(unit))", error)
        }
    }

    private func voidBannedUpdate(_ e: CountedRound.Entry) {
        countedRound.remove(leaseID: e.leaseID)
        if verifications.verification(unit: e.unit)?.counted.leaseID == e.leaseID { verifications.remove(unit: e.unit) }
        scheduler.reopen(unit: e.unit)
        replicationFigures.voidedByBan += 1
    }

    /// Bans a worker whose updates disagreed `ban_after` times: as an operator's ban.
    private func banForDisagreement(_ id: String) {
        registry.ban(id: id)
        scheduler.forgetAsker(id)
        noteTrustedWorkers()
        for lease in scheduler.leases.values where lease.workerID == id { forget(lease.id, requeue: true) }
        workerListCache.invalidate()
        replicationFigures.banned += 1
        logger.warning("worker banned: its updates disagreed with other workers' computations", metadata: [
            "worker": "\(id)", "disagreements": "\(reputation(of: id).disagreements)"])
    }

    /// Disputes nobody is left to decide (no third worker, or the round's deadline) hold
    /// their counted update back: voided without a verdict on anyone, the unit pending again.
    func holdBackDisputedUpdates() async {
        let disputed = verifications.disputedUnits.compactMap { verifications.verification(unit: $0) }
        guard !disputed.isEmpty else { return }
        var updated = reputations
        let involved = Set(disputed.flatMap { [$0.counted.workerID] + $0.replicas.map(\.workerID) }).sorted()
        for id in involved { updated[id, default: WorkerReputation()].noteUndecided() }
        let meta = involved.compactMap { id in updated[id].map { (WorkerReputation.metaPrefix + id, $0.metaValue) } }
        // One transaction for all of them: they are held back together or not at all.
        do {
            try await ledger.recordVerification(VerificationRecord(voidedLeaseIds: disputed.map(\.counted.leaseID),
                                                                   meta: meta, at: now()))
        } catch {
            _ = storageFailed("ledger (holding back disputed updates)", error)
            return
        }
        reputations = updated
        noteTrustedWorkers()
        for v in disputed {
            countedRound.remove(leaseID: v.counted.leaseID)
            verifications.remove(unit: v.unit)
            scheduler.reopen(unit: v.unit)
            replicationFigures.unresolved += 1
        }
        publishValidation()
    }

    /// The scheduler lets only these decide disputes.
    func noteTrustedWorkers() {
        scheduler.trustedWorkers = Set(reputations.filter { replication.isTrusted($0.value) }.keys)
            .subtracting(registry.bannedIDs)
    }

    func publishValidation() {
        let f = replicationFigures
        stats.update { $0.replication = f }
    }
}
