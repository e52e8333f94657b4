import Foundation

/// Validation replicas (BOINC's adaptive replication): a counted unit of the open sync round
/// leased once more, to a worker not yet involved in it. The round waits for its replicas
/// while a worker that could compute them is around; the round deadline bounds the wait.
/// Who may compute a unit's next replica: none of the workers already involved in it and,
/// to decide a dispute, only a trusted worker (else colluders could outvote an honest one).
public struct ReplicaWant: Sendable, Equatable {
    public var excluded: Set<String>
    /// nil: anyone not excluded.
    public var onlyFrom: Set<String>?

    func allows(_ worker: String) -> Bool {
        !excluded.contains(worker) && (onlyFrom?.contains(worker) ?? true)
    }
}

extension UnitScheduler {
    /// Asks for one more replica of `unit`, from none of `excluded` and, when given, only
    /// from `onlyFrom`.
    public mutating func wantReplica(unit: Int, excluding excluded: Set<String>, onlyFrom: Set<String>? = nil) {
        guard mode == .sync else { return }
        replicaWants[unit] = ReplicaWant(excluded: excluded, onlyFrom: onlyFrom)
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

    /// The smallest wanted replica `worker` may compute and nobody is computing.
    func replicaUnit(for worker: String) -> Int? {
        let leased = Set(leases.values.filter(\.isReplica).map(\.unit))
        return replicaWants.filter { $0.value.allows(worker) && !leased.contains($0.key) }.keys.min()
    }

    /// Whether a replica is being computed, or is wanted and a recent asker could compute it.
    func replicasOutstanding(now: Date) -> Bool {
        if leases.values.contains(where: \.isReplica) { return true }
        let askers = recentAskers.filter { now.timeIntervalSince($0.value) < Self.fairnessWindow }.keys
        return replicaWants.values.contains { want in askers.contains { want.allows($0) } }
    }

    /// Sync: every unit counted and no replica outstanding. Async: the unit is counted.
    public func roundIsReadyToClose(now: Date) -> Bool {
        roundAccepted >= unitsPerRound && !(mode == .sync && replicasOutstanding(now: now))
    }

    /// Workers holding a replica lease of `unit`, and the lease ids.
    public func replicaLeases(unit: Int) -> [ScheduledLease] {
        leases.values.filter { $0.isReplica && $0.unit == unit }.sorted { $0.id < $1.id }
    }
}
