/// The job's `validation.replication`.
public enum ReplicationMode: String, Codable, Sendable, CaseIterable {
    /// New and distrusted workers' units are all replicated, trusted workers' a few percent.
    case adaptive
    /// Every unit is computed twice (audits, tests).
    case all
    /// Nothing is replicated (a trusted cluster).
    case off
}

/// Which counted units get a validation replica, when a worker is trusted and when it is
/// banned: BOINC's adaptive replication. A worker is trusted after `trustedAfter` agreements
/// in a row with at least `trustedPartners` distinct workers; until then (and after any disagreement) every unit it computes is replicated,
/// so a swarm of new identities is checked, not believed. A trusted worker's units are
/// replicated at `trustedRate`, chosen by a hash of the job's seed and the unit, which
/// the worker cannot predict from what it is sent.
struct ReplicationPolicy: Sendable {
    let mode: ReplicationMode
    let trustedAfter: Int
    /// Distinct workers a trusted worker must have agreed with (colluders have each other only).
    let trustedPartners: Int
    let trustedRate: Double
    let banAfter: Int
    let seed: UInt64

    func isTrusted(_ r: WorkerReputation) -> Bool {
        r.consecutiveAgreements >= trustedAfter && r.partners.count >= trustedPartners
    }

    func shouldReplicate(_ r: WorkerReputation, epoch: Int, unit: Int) -> Bool {
        switch mode {
        case .off: return false
        case .all: return true
        case .adaptive: return !isTrusted(r) || Self.fraction(seed, epoch, unit) < trustedRate
        }
    }

    func shouldBan(_ r: WorkerReputation) -> Bool { r.disagreements >= banAfter }

    /// A uniform number in [0, 1) from (seed, epoch, unit): SplitMix64's finalizer.
    static func fraction(_ seed: UInt64, _ epoch: Int, _ unit: Int) -> Double {
        var z = seed &+ UInt64(truncatingIfNeeded: epoch) &* 0x9E37_79B9_7F4A_7C15
            &+ UInt64(truncatingIfNeeded: unit) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return Double(z >> 11) / Double(1 << 53)
    }
}
