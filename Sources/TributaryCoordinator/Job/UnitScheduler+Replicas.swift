import Foundation

/// Validation replicas (BOINC's adaptive replication): a counted unit of the open sync round
/// leased once more, to a worker not yet involved in it. The round waits for its replicas
/// while a worker that could compute them is around; the round deadline bounds the wait.
/// Who may compute a unit's next replica: none of the workers already involved in it and,
/// to decide a dispute, only a trusted worker (else colluders could outvote an honest one).
public struct ReplicaWant: Sendable, Equatable {
    public var excluded: Set<String>
    /// A dispute's decider: only a worker trusted at the time it asks.
    public var decider: Bool

    func allows(_ worker: String, trusted: Set<String>) -> Bool {
        !excluded.contains(worker) && (!decider || trusted.contains(worker))
    }
}

extension UnitScheduler {
    /// Asks for one more replica of `unit`, from none of `excluded`; a `decider` only from a
    /// worker in `trustedWorkers`.
    public mutating func wantReplica(unit: Int, excluding excluded: Set<String>, decider: Bool = false) {
        guard mode.hasRoundBarrier else { return }
        replicaWants[unit] = ReplicaWant(excluded: excluded, decider: decider)
    }

    /// The unit needs no (further) replica: verified, or given up.
    public mutating func dropReplicaWant(unit: Int) {
        replicaWants[unit] = nil
    }

    /// The replica lease `id` ended with a result; its unit's want is settled by the caller.
    public mutating func finishReplica(_ id: String) {
        guard leases[id]?.isReplica == true else { return }
        leases[id] = nil
    }

    /// A counted unit went back to the round's queue (its update was voided).
    public mutating func reopen(unit: Int) {
        guard done.remove(unit) != nil else { return }
        roundAccepted = max(0, roundAccepted - 1)
        replicaWants[unit] = nil
    }

    /// The smallest wanted replica `worker` may compute and nobody is computing, unless the
    /// worker already has its share of the round's replicas while another asker has fewer:
    /// one eager worker must not check everybody's units (a hostile one would dispute them
    /// all, and colluders would check each other).
    func replicaUnit(for worker: String) -> Int? {
        let leased = Set(leases.values.filter(\.isReplica).map(\.unit))
        let open = replicaWants.filter { $0.value.allows(worker, trusted: trustedWorkers) && !leased.contains($0.key) }
        // Not the smallest unit: an order of its own per worker, so who checks whom varies
        // and a trusted worker has agreed with several others, not always the same one.
        let key = Self.workerKey(worker)
        guard let unit = open.keys.min(by: {
            ReplicationPolicy.fraction(key, epoch, $0) < ReplicationPolicy.fraction(key, epoch, $1)
        }) else { return nil }
        let askers = recentAskers.keys
        let total = replicasGrantedThisRound.values.reduce(0, +) + replicaWants.count
        let share = max(1, (total + askers.count - 1) / max(1, askers.count))
        let mine = replicasGrantedThisRound[worker, default: 0]
        let otherCouldTakeOne = askers.contains { other in
            other != worker && replicasGrantedThisRound[other, default: 0] < mine
                && replicaWants.contains { $0.value.allows(other, trusted: trustedWorkers) && !leased.contains($0.key) }
        }
        if mine >= share, otherCouldTakeOne { return nil }
        return unit
    }

    /// FNV-1a of a worker id: the seed of its replica order.
    static func workerKey(_ worker: String) -> UInt64 {
        worker.utf8.reduce(0xCBF2_9CE4_8422_2325 as UInt64) { ($0 ^ UInt64($1)) &* 0x0000_0100_0000_01B3 }
    }

    /// Whether a replica is being computed, or is wanted and a recent asker could compute it.
    func replicasOutstanding(now: Date) -> Bool {
        if leases.values.contains(where: \.isReplica) { return true }
        let askers = recentAskers.filter { now.timeIntervalSince($0.value) < Self.fairnessWindow }.keys
        return replicaWants.values.contains { want in askers.contains { want.allows($0, trusted: trustedWorkers) } }
    }

    /// Sync: every unit counted and no replica outstanding. Async: the unit is counted.
    public func roundIsReadyToClose(now: Date) -> Bool {
        roundAccepted >= unitsPerRound && !(mode.hasRoundBarrier && replicasOutstanding(now: now))
    }

    /// Workers holding a replica lease of `unit`, and the lease ids.
    public func replicaLeases(unit: Int) -> [ScheduledLease] {
        leases.values.filter { $0.isReplica && $0.unit == unit }.sorted { $0.id < $1.id }
    }
}
