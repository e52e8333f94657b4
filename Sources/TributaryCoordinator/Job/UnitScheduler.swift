import Foundation

/// How rounds are formed.
public enum RoundMode: String, Codable, Sendable, CaseIterable {
    /// A round owns `units_per_round` units and closes when all reported (or its deadline
    /// passed with `min_units`): one large-batch step.
    case sync
    /// Every accepted update is a round of its own, applied on arrival.
    case async
    /// Sync rounds whose units are `local.steps` inner optimizer steps each on the worker
    /// (DiLoCo): workers send pseudo-gradients, the coordinator takes an outer step.
    case local

    /// Whether a round owns a fixed group of units and closes as one step (sync and local).
    public var hasRoundBarrier: Bool { self != .async }
}

/// A unit handed to a worker, as the scheduler tracks it.
public struct ScheduledLease: Sendable, Equatable {
    public let id: String
    public let workerID: String
    public let epoch: Int
    public let unit: Int
    public let baseVersion: Int
    /// When the lease was granted: renewals never carry it past `issued + maxLeaseLifetime`.
    public var issued: Date
    public var deadline: Date
    /// A validation replica of a unit already counted (`UnitScheduler+Replicas`): the
    /// worker cannot tell, and its update is compared, not counted.
    public var isReplica = false
}

/// The epoch's work units, their leases and the open round, as a value: every event
/// method changes the state and returns what the caller must do next (write the ledger,
/// start an epoch, close the round). No ledger, network or model is involved, so every
/// rule here is testable on its own (swift-nio's state machines are the model).
public struct UnitScheduler: Sendable {
    public let mode: RoundMode
    public let unitsPerEpoch: Int
    public let unitsPerRound: Int
    public let minUnits: Int
    public let roundDeadline: TimeInterval
    public let leaseDuration: TimeInterval
    /// How many leases one worker may hold at once (one squatter cannot take a round).
    public let maxLeasesPerWorker: Int
    /// No renewal carries a lease past this many seconds after it was granted.
    public let maxLeaseLifetime: TimeInterval

    public private(set) var epoch = 0
    public internal(set) var done: Set<Int> = []
    private var nextFresh = 0
    /// Sync: the units of the open round (unfinished ones carry over to the next).
    public private(set) var roundUnits: [Int] = []
    /// Sync: counted units whose update waits for a replica, and who may compute it.
    var replicaWants: [Int: ReplicaWant] = [:]
    /// Workers trusted now (the job keeps this current): only they decide disputes.
    public var trustedWorkers: Set<String> = []
    /// Sync: replica leases each worker was granted in the open round (its share of them).
    var replicasGrantedThisRound: [String: Int] = [:]
    /// Async: units whose lease ended without an accepted update, leased again first.
    private var requeued: [Int] = []
    public internal(set) var leases: [String: ScheduledLease] = [:]
    public private(set) var roundOpened: Date
    public internal(set) var roundAccepted = 0
    /// Sync: units each worker was granted in the open round (its share is checked against it).
    var grantedThisRound: [String: Int] = [:]
    /// Workers that asked for a lease lately, and when: the ones a fair share is cut for.
    var recentAskers: [String: Date] = [:]
    /// How long units took from grant to accepted update, latest last (a bounded window):
    /// a lease held far longer than usual gets a backup lease.
    var unitDurations: [TimeInterval] = []

    public init(mode: RoundMode, unitsPerEpoch: Int, unitsPerRound: Int, minUnits: Int,
                roundDeadline: TimeInterval, leaseDuration: TimeInterval,
                maxLeasesPerWorker: Int = .max, maxLeaseLifetime: TimeInterval = .infinity, now: Date) {
        self.mode = mode
        self.unitsPerEpoch = unitsPerEpoch
        self.unitsPerRound = mode.hasRoundBarrier ? unitsPerRound : 1
        self.minUnits = minUnits
        self.roundDeadline = roundDeadline
        self.leaseDuration = leaseDuration
        self.maxLeasesPerWorker = max(1, maxLeasesPerWorker)
        self.maxLeaseLifetime = maxLeaseLifetime
        roundOpened = now
    }

    // MARK: Decisions

    public enum LeaseDecision: Equatable, Sendable {
        /// Lease this unit of the current epoch.
        case grant(unit: Int)
        /// Lease this counted unit again, to another worker, as a validation replica.
        case grantReplica(unit: Int)
        /// Every unit that may be leased now is leased or done; ask again shortly.
        case noWork
        /// Async: the epoch is done; start the next one (`startEpoch`) and ask again.
        case epochFinished
        /// The worker already holds `maxLeasesPerWorker` leases.
        case workerAtLimit(held: Int)
    }

    public enum RenewDecision: Equatable, Sendable {
        case extended(Date)
        /// Not held here (the caller looked it up first, so this is a race).
        case unknown
        /// The lease reached `maxLeaseLifetime`.
        case atLifetime
        /// Sync: the lease's round reached its deadline.
        case atRoundDeadline
    }

    public enum RoundDecision: Equatable, Sendable {
        case keepOpen
        case close
    }

    /// Why a lease id does not name a usable lease.
    public enum LeaseLookup: Equatable, Sendable {
        case active(ScheduledLease)
        /// Not held here: the ledger may know what became of it.
        case unknown
        case otherWorker
        /// Past its deadline: the caller expires it (`expire(id:)`).
        case pastDeadline
    }

    // MARK: Epochs and rounds

    /// Starts epoch `e` with the units the ledger already records as done. Returns the
    /// leases of other epochs, now ended: the caller records them as expired.
    public mutating func startEpoch(_ e: Int, done alreadyDone: Set<Int>) -> [ScheduledLease] {
        let ended = leases.values.filter { $0.epoch != e }
        var expired: [ScheduledLease] = []
        for lease in ended { if let l = expire(id: lease.id) { expired.append(l) } }
        epoch = e
        done = alreadyDone
        nextFresh = 0
        requeued = []
        roundUnits = []
        return expired
    }

    public var epochComplete: Bool { done.count >= unitsPerEpoch }

    /// Opens a round: sync rounds get their units, carrying over unfinished ones.
    public mutating func openRound(now: Date) {
        roundAccepted = 0
        roundOpened = now
        grantedThisRound = [:]
        replicaWants = [:]
        replicasGrantedThisRound = [:]
        for lease in leases.values where lease.isReplica { leases[lease.id] = nil }
        guard mode.hasRoundBarrier else { return }
        roundUnits = roundUnits.filter { !done.contains($0) }
        while roundUnits.count < unitsPerRound, let u = takeFreshUnit() { roundUnits.append(u) }
    }

    /// After a restart: the open round already accepted `accepted` units (of this epoch), in
    /// this order. They stay its units and count toward closing it; the rest is filled as
    /// `openRound` would. Returns whether the round is already full.
    public mutating func restoreOpenRound(accepted: [Int], now: Date) -> RoundDecision {
        openRound(now: now)
        for u in accepted { done.insert(u) }
        roundAccepted = accepted.count
        guard mode.hasRoundBarrier else { return roundAccepted >= unitsPerRound ? .close : .keepOpen }
        roundUnits = accepted + roundUnits.filter { !accepted.contains($0) }
        while roundUnits.count > unitsPerRound, let last = roundUnits.last, !accepted.contains(last) {
            roundUnits.removeLast()
            nextFresh = min(nextFresh, last)
        }
        return roundAccepted >= unitsPerRound ? .close : .keepOpen
    }

    /// Sync: the round's deadline passed and it holds enough units to close.
    public func roundDeadlinePassed(now: Date) -> Bool {
        mode.hasRoundBarrier && roundAccepted >= minUnits && now.timeIntervalSince(roundOpened) >= roundDeadline
    }

    // MARK: Leases

    /// The unit the next lease should get.
    public mutating func nextUnit() -> LeaseDecision {
        let busy = Set(leases.values.filter { $0.epoch == epoch && !$0.isReplica }.map(\.unit))
        if mode.hasRoundBarrier {
            guard let u = roundUnits.first(where: { !done.contains($0) && !busy.contains($0) }) else { return .noWork }
            return .grant(unit: u)
        }
        while !requeued.isEmpty {
            let u = requeued.removeFirst()
            if !done.contains(u) && !busy.contains(u) { return .grant(unit: u) }
        }
        if let u = takeFreshUnit() { return .grant(unit: u) }
        return epochComplete ? .epochFinished : .noWork
    }

    /// Records a lease the caller granted for a unit `nextUnit` chose.
    public mutating func grant(id: String, worker: String, unit: Int, baseVersion: Int, replica: Bool = false,
                               now: Date) -> ScheduledLease {
        let lease = ScheduledLease(id: id, workerID: worker, epoch: epoch, unit: unit, baseVersion: baseVersion,
                                   issued: now, deadline: now.addingTimeInterval(leaseDuration), isReplica: replica)
        leases[id] = lease
        grantedThisRound[worker, default: 0] += 1
        if replica { replicasGrantedThisRound[worker, default: 0] += 1 }
        return lease
    }

    public func lookup(_ id: String, worker: String, now: Date) -> LeaseLookup {
        guard let lease = leases[id] else { return .unknown }
        guard lease.workerID == worker else { return .otherWorker }
        return lease.deadline < now ? .pastDeadline : .active(lease)
    }

    /// Extends an active lease by `leaseDuration`, but never past its lifetime or (sync)
    /// its round's deadline: a worker renewing forever would hold its unit, and the round, hostage.
    public mutating func renew(_ id: String, now: Date) -> RenewDecision {
        guard let lease = leases[id] else { return .unknown }
        let lifetimeEnd = lease.issued.addingTimeInterval(maxLeaseLifetime)
        // A lease granted in an earlier round (its unit carried over) is past that round's deadline.
        let roundEnd = !mode.hasRoundBarrier ? Date.distantFuture
            : lease.issued < roundOpened ? lease.deadline : roundOpened.addingTimeInterval(roundDeadline)
        let wanted = now.addingTimeInterval(leaseDuration)
        let deadline = min(wanted, lifetimeEnd, roundEnd)
        guard deadline > lease.deadline else { return lifetimeEnd <= roundEnd ? .atLifetime : .atRoundDeadline }
        leases[id]?.deadline = deadline
        return .extended(deadline)
    }

    /// The worker gave the unit back, or its update was refused as stale: async mode
    /// offers the unit again first.
    @discardableResult
    public mutating func release(_ id: String) -> ScheduledLease? {
        guard let lease = leases.removeValue(forKey: id) else { return nil }
        if !mode.hasRoundBarrier && lease.epoch == epoch && !lease.isReplica { requeued.append(lease.unit) }
        return lease
    }

    /// The lease ran out; same as a release.
    @discardableResult
    public mutating func expire(id: String) -> ScheduledLease? { release(id) }

    /// Ends every lease past its deadline; the caller records them as expired.
    public mutating func expireLeases(now: Date) -> [ScheduledLease] {
        leases.values.filter { $0.deadline < now }.sorted { $0.id < $1.id }.compactMap { expire(id: $0.id) }
    }

    /// Forgets a lease whose unit is already done (nothing to requeue).
    public mutating func discard(_ id: String) { leases[id] = nil }

    /// Whether an update for `lease` may still count: same epoch, unit not yet done.
    public func unitIsOpen(_ lease: ScheduledLease) -> Bool { lease.epoch == epoch && !done.contains(lease.unit) }

    /// An update for the lease was accepted: the unit is done, and the round may be full.
    public mutating func accept(_ lease: ScheduledLease, now: Date? = nil) -> RoundDecision {
        leases[lease.id] = nil
        if let now { noteUnitDuration(now.timeIntervalSince(lease.issued)) }
        done.insert(lease.unit)
        roundAccepted += 1
        return roundIsReadyToClose(now: now ?? roundOpened) ? .close : .keepOpen
    }

    // MARK: Counts for status

    public var leasedUnits: Int { Set(leases.values.filter { $0.epoch == epoch && !$0.isReplica }.map(\.unit)).count }
    public var activeWorkers: Set<String> { Set(leases.values.map(\.workerID)) }

    /// Takes the next unit of the epoch that is neither done nor already assigned.
    private mutating func takeFreshUnit() -> Int? {
        while nextFresh < unitsPerEpoch {
            let u = nextFresh
            nextFresh += 1
            if !done.contains(u) { return u }
        }
        return nil
    }
}
