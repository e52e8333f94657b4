import Foundation

/// GET /v1/status: the job at a glance, cheap to serve (kept up to date in memory).
public struct StatusReport: Codable, Sendable, Equatable {
    public struct Point: Codable, Sendable, Equatable {
        public var round: Int
        public var value: Double
        public init(round: Int, value: Double) {
            self.round = round
            self.value = value
        }

        enum CodingKeys: String, CodingKey { case round, value }
    }
    public struct WorkerCounts: Codable, Sendable, Equatable {
        public var active: Int        // holding a lease now
        public var seenRecently: Int  // any request in the last 5 minutes
        public var total: Int
        public init(active: Int, seenRecently: Int, total: Int) {
            self.active = active
            self.seenRecently = seenRecently
            self.total = total
        }

        enum CodingKeys: String, CodingKey { case active, seenRecently = "seen_recently", total }
    }
    public struct UnitCounts: Codable, Sendable, Equatable {
        public var done: Int
        public var leased: Int
        public var pending: Int
        public var expired: Int       // leases that ran out since start
        public var perEpoch: Int
        public init(done: Int, leased: Int, pending: Int, expired: Int, perEpoch: Int) {
            self.done = done
            self.leased = leased
            self.pending = pending
            self.expired = expired
            self.perEpoch = perEpoch
        }

        enum CodingKeys: String, CodingKey { case done, leased, pending, expired, perEpoch = "per_epoch" }
    }

    public var job: String
    public var model: String
    public var parameters: Int
    public var shards: Int
    public var mode: String
    public var version: Int
    public var round: Int
    public var epoch: Int
    public var totalRounds: Int
    public var complete: Bool
    /// The newest version on disk: every update applied up to it survives a crash.
    public var checkpointedVersion: Int
    public var trainingLoss: [Point]
    public var validationLoss: [Point]
    public var workers: WorkerCounts
    public var units: UnitCounts
    public var samplesPerSecond: Double
    public var tokensPerSecond: Double
    public var bytesIn: Int
    /// What the received updates would weigh as dense fp32: bytesIn / denseBytesIn is the
    /// effective compression.
    public var denseBytesIn: Int
    public var bytesOut: Int
    public var updatesAccepted: Int
    public var updatesRejected: [String: Int]
    public var lastRoundSeconds: Double?
    public var uptimeSeconds: Double
    public var etaSeconds: Double?
    /// true while the last checkpoint write failed (it is retried; the update log keeps
    /// every accepted update meanwhile).
    public var checkpointFailing: Bool?
    /// Why the ledger or the update log cannot be written, while that lasts (leases and
    /// commits are refused with `storage_unavailable`).
    public var storageError: String?
    /// Why the job stopped, when it failed (it will not complete).
    public var failed: String?
    /// Validation by replication so far (absent when the job replicates nothing).
    public var replication: ReplicationStatus?

    public init(job: String, model: String, parameters: Int, shards: Int, mode: String, version: Int, round: Int,
                epoch: Int, totalRounds: Int, complete: Bool, checkpointedVersion: Int, trainingLoss: [Point],
                validationLoss: [Point], workers: WorkerCounts, units: UnitCounts, samplesPerSecond: Double,
                tokensPerSecond: Double, bytesIn: Int, denseBytesIn: Int, bytesOut: Int, updatesAccepted: Int,
                updatesRejected: [String: Int], lastRoundSeconds: Double?, uptimeSeconds: Double, etaSeconds: Double?) {
        self.job = job
        self.model = model
        self.parameters = parameters
        self.shards = shards
        self.mode = mode
        self.version = version
        self.round = round
        self.epoch = epoch
        self.totalRounds = totalRounds
        self.complete = complete
        self.checkpointedVersion = checkpointedVersion
        self.trainingLoss = trainingLoss
        self.validationLoss = validationLoss
        self.workers = workers
        self.units = units
        self.samplesPerSecond = samplesPerSecond
        self.tokensPerSecond = tokensPerSecond
        self.bytesIn = bytesIn
        self.denseBytesIn = denseBytesIn
        self.bytesOut = bytesOut
        self.updatesAccepted = updatesAccepted
        self.updatesRejected = updatesRejected
        self.lastRoundSeconds = lastRoundSeconds
        self.uptimeSeconds = uptimeSeconds
        self.etaSeconds = etaSeconds
    }

    enum CodingKeys: String, CodingKey { case job, model, parameters, shards, mode, version, round, epoch, totalRounds = "total_rounds", complete, checkpointedVersion = "checkpointed_version", trainingLoss = "training_loss", validationLoss = "validation_loss", workers, units, samplesPerSecond = "samples_per_second", tokensPerSecond = "tokens_per_second", bytesIn = "bytes_in", denseBytesIn = "dense_bytes_in", bytesOut = "bytes_out", updatesAccepted = "updates_accepted", updatesRejected = "updates_rejected", lastRoundSeconds = "last_round_seconds", uptimeSeconds = "uptime_seconds", etaSeconds = "eta_seconds", checkpointFailing = "checkpoint_failing", storageError = "storage_error", failed, replication }
}

/// A bounded series: when full, every other old point is dropped, so a long job keeps
/// its whole shape at decreasing resolution instead of growing without limit.
public struct BoundedSeries: Sendable, Equatable {
    public private(set) var points: [StatusReport.Point] = []
    public let capacity: Int

    public init(capacity: Int = 512) { self.capacity = max(4, capacity) }

    public mutating func append(_ p: StatusReport.Point) {
        points.append(p)
        if points.count > capacity {
            // Thin the older half; keep the recent half at full resolution.
            let half = points.count / 2
            let thinned = points[..<half].enumerated().filter { $0.offset % 2 == 0 }.map(\.element)
            points = thinned + points[half...]
        }
    }
}

/// GET /v1/workers: each volunteer's contribution (never its token).
/// What validation by replication has done so far.
public struct ReplicationStatus: Codable, Sendable, Equatable {
    /// Replica results received, and their samples: the compute replication cost.
    public var replicas = 0
    public var replicaSamples = 0
    /// Counted updates a replica confirmed; disputes opened; counted updates replaced by a
    /// disputing replica that a third worker sided with; held back without a majority.
    public var confirmed = 0
    public var disputes = 0
    public var replaced = 0
    public var unresolved = 0
    /// Replicas that disagreed with a unit's correct result.
    public var refutedReplicas = 0
    /// Workers banned for repeated disagreement, and counted updates voided with them.
    public var banned = 0
    public var voidedByBan = 0

    public init() {}

    enum CodingKeys: String, CodingKey {
        case replicas, replicaSamples = "replica_samples", confirmed, disputes, replaced, unresolved,
             refutedReplicas = "refuted_replicas", banned, voidedByBan = "voided_by_ban"
    }
}

/// A worker's record under validation by replication.
public struct WorkerReputationSummary: Codable, Sendable, Equatable {
    public var agreements: Int
    public var disagreements: Int
    public var consecutiveAgreements: Int
    /// Trusted workers' units are replicated only at the job's `trusted_rate`.
    public var trusted: Bool

    public init(agreements: Int, disagreements: Int, consecutiveAgreements: Int, trusted: Bool) {
        self.agreements = agreements
        self.disagreements = disagreements
        self.consecutiveAgreements = consecutiveAgreements
        self.trusted = trusted
    }

    enum CodingKeys: String, CodingKey {
        case agreements, disagreements, consecutiveAgreements = "consecutive_agreements", trusted
    }
}

public struct WorkerSummary: Codable, Sendable, Equatable {
    public var id: String
    public var name: String
    public var samples: Int
    public var flops: Double
    public var acceptedUpdates: Int
    public var rejectedUpdates: Int
    public var lastSeen: Date
    public var active: Bool
    /// true when the worker is banned, by the operator or for disagreeing (absent otherwise).
    public var banned: Bool?
    public var reputation: WorkerReputationSummary?

    public init(id: String, name: String, samples: Int, flops: Double, acceptedUpdates: Int, rejectedUpdates: Int,
                lastSeen: Date, active: Bool, banned: Bool? = nil, reputation: WorkerReputationSummary? = nil) {
        self.id = id
        self.name = name
        self.samples = samples
        self.flops = flops
        self.acceptedUpdates = acceptedUpdates
        self.rejectedUpdates = rejectedUpdates
        self.lastSeen = lastSeen
        self.active = active
        self.banned = banned
        self.reputation = reputation
    }

    enum CodingKeys: String, CodingKey {
        case id, name, samples, flops, acceptedUpdates = "accepted_updates", rejectedUpdates = "rejected_updates",
             lastSeen = "last_seen", active, banned, reputation
    }
}

/// `GET /v1/workers`: one page (`?offset=&limit=`) in registration order.
public struct WorkerList: Codable, Sendable, Equatable {
    public var workers: [WorkerSummary]
    /// Workers in the whole list.
    public var total: Int?
    /// The offset of the next page; absent on the last.
    public var nextOffset: Int?
    public init(workers: [WorkerSummary], total: Int? = nil, nextOffset: Int? = nil) {
        self.workers = workers
        self.total = total
        self.nextOffset = nextOffset
    }

    enum CodingKeys: String, CodingKey { case workers, total, nextOffset = "next_offset" }
}
