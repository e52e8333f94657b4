import Foundation
import TributaryLedger

/// What the operator may do to a running job.
extension TrainingJob {
    /// Ledger meta keys `banned:<worker id>` hold the bans (the time, ISO 8601), so that
    /// they survive restarts without a schema change.
    static let bannedMetaPrefix = "banned:"

    /// Bans a worker: its token stops working at once (answered `worker_banned`), its
    /// leases end and their units go back to the queue. Its past credit stays on record.
    public func ban(worker id: String) async throws {
        try await exclusively {
            guard try await ledger.worker(id: id) != nil else { throw JobError.unknownWorker(id) }
            try await ledger.setMeta(Self.bannedMetaPrefix + id, ISO8601DateFormatter().string(from: now()))
            registry.ban(id: id)
            scheduler.forgetAsker(id)
            noteTrustedWorkers()
            for lease in scheduler.leases.values where lease.workerID == id {
                forget(lease.id, requeue: true)
                try await setLedgerLeaseState(lease, .released, deadline: nil)
            }
            workerListCache.invalidate()
            logger.notice("worker banned by the operator", metadata: ["worker": "\(id)"])
        }
    }
}
