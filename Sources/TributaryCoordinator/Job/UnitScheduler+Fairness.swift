import Foundation

/// Fair shares and backup leases: how one worker (or a few) cannot hold a sync round
/// hostage by taking its units and sitting on them.
extension UnitScheduler {
    /// Askers older than this no longer count as waiting for a share: a little over the
    /// longest idle poll (2 s), so a worker that vanished stops holding shares back quickly.
    static let fairnessWindow: TimeInterval = 2.5
    /// Unit durations remembered for the straggler threshold.
    static let durationWindow = 32
    /// A lease older than this multiple of the median unit time gets a backup lease.
    static let stragglerFactor = 3.0
    /// Unit durations needed before any backup lease is offered (one: a squatter that
    /// takes the first round's first unit must not stall it until the deadline).
    static let durationsBeforeBackups = 1

    /// The unit `worker` should lease now. Beyond `nextUnit()`: a worker at its lease limit
    /// is refused; in sync mode a worker past its share of the round's units waits while
    /// others are asking; and when every unit of the round is taken, a unit whose lease is
    /// far older than units usually take is leased a second time (a backup, as MapReduce
    /// does for stragglers): the first accepted update counts, the other is refused.
    public mutating func nextUnit(for worker: String, now: Date) -> LeaseDecision {
        let held = leases.values.filter { $0.workerID == worker }.count
        guard held < maxLeasesPerWorker else { return .workerAtLimit(held: held) }
        recentAskers = recentAskers.filter { now.timeIntervalSince($0.value) < Self.fairnessWindow }
        recentAskers[worker] = now
        guard mode.hasRoundBarrier else { return nextUnit() }
        let pastShare = isPastShare(worker)
        if !pastShare, case let .grant(unit) = nextUnit() { return .grant(unit: unit) }
        // Replicas come after the round's own units (which they cannot hold up) and before backups.
        if let unit = replicaUnit(for: worker) { return .grantReplica(unit: unit) }
        if pastShare { return .noWork }
        guard let backup = backupUnit(for: worker, now: now) else { return .noWork }
        return .grant(unit: backup)
    }

    /// A banned worker no longer waits for a share: others must not hold back for it.
    public mutating func forgetAsker(_ worker: String) {
        recentAskers[worker] = nil
    }

    /// Whether `worker` already has its share of this round while another asker has less.
    func isPastShare(_ worker: String) -> Bool {
        let askers = recentAskers.count
        guard askers > 1 else { return false }
        let share = (unitsPerRound + askers - 1) / askers
        let mine = grantedThisRound[worker, default: 0]
        guard mine >= share else { return false }
        return recentAskers.keys.contains { $0 != worker && grantedThisRound[$0, default: 0] < share }
    }

    /// A round unit held by one other worker for much longer than units take, if any.
    func backupUnit(for worker: String, now: Date) -> Int? {
        guard let threshold = stragglerThreshold else { return nil }
        let open = leases.values.filter { $0.epoch == epoch && !done.contains($0.unit) && !$0.isReplica }
        let byUnit = Dictionary(grouping: open, by: \.unit)
        let candidates = roundUnits.compactMap { unit -> (unit: Int, since: Date)? in
            guard let held = byUnit[unit], held.count == 1, let only = held.first, only.workerID != worker,
                  now.timeIntervalSince(only.issued) > threshold else { return nil }
            return (unit, only.issued)
        }
        return candidates.min { $0.since < $1.since }?.unit
    }

    /// How long a lease may run before a backup is offered (nil: too little history).
    var stragglerThreshold: TimeInterval? {
        guard unitDurations.count >= Self.durationsBeforeBackups else { return nil }
        let sorted = unitDurations.sorted()
        return Self.stragglerFactor * sorted[sorted.count / 2]
    }

    mutating func noteUnitDuration(_ seconds: TimeInterval) {
        guard seconds.isFinite, seconds >= 0 else { return }
        unitDurations.append(seconds)
        if unitDurations.count > Self.durationWindow { unitDurations.removeFirst() }
    }

    /// Other leases on the same unit as `lease` (a backup's twin): they end when it is accepted.
    public func twins(of lease: ScheduledLease) -> [ScheduledLease] {
        leases.values.filter { $0.id != lease.id && $0.epoch == lease.epoch && $0.unit == lease.unit && !$0.isReplica }
            .sorted { $0.id < $1.id }
    }
}
