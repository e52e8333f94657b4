import Foundation

/// What validation by replication decided about one unit, written in ONE transaction
/// (`LedgerStore.recordVerification`): updates found wrong are voided (their row removed,
/// their credit taken back, their unit pending again), agreeing replicas are credited,
/// refusals are counted, and the workers' reputations (kept as metadata) are set.
public struct VerificationRecord: Sendable {
    /// Credit for a replica that agreed: it did the unit's work although only one update counts.
    public struct Credit: Sendable, Equatable {
        public var workerId: String
        public var samples: Int
        public var flops: Double
        public init(workerId: String, samples: Int, flops: Double) {
            self.workerId = workerId
            self.samples = samples
            self.flops = flops
        }
    }

    /// Lease ids of accepted updates to void.
    public var voidedLeaseIds: [String]
    public var credits: [Credit]
    /// (worker, reason) refusals, counted like `recordRejectedUpdate`.
    public var rejections: [(workerId: String, reason: String)]
    /// Metadata to set (reputations, bans), in order.
    public var meta: [(key: String, value: String)]
    /// Workers whose whole credit (samples, flops) is revoked, after the rest: banned for
    /// repeated disagreement, all their work is suspect.
    public var revokedCreditWorkerIds: [String] = []
    public var at: Date

    public init(voidedLeaseIds: [String] = [], credits: [Credit] = [],
                rejections: [(workerId: String, reason: String)] = [], meta: [(key: String, value: String)] = [],
                at: Date) {
        self.voidedLeaseIds = voidedLeaseIds
        self.credits = credits
        self.rejections = rejections
        self.meta = meta
        self.at = at
    }
}
