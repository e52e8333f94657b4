import Foundation

/// A volunteer. Only a hash of its bearer token is ever stored.
public struct WorkerRecord: Sendable, Equatable, Codable {
    public var id: String
    public var name: String
    public var tokenHash: String
    public var createdAt: Date
    public var lastSeenAt: Date
    /// Credit: training samples, floating-point operations and updates accepted from this worker.
    public var samples: Int
    public var flops: Double
    public var acceptedUpdates: Int
    public var rejectedUpdates: Int

    public init(id: String, name: String, tokenHash: String, createdAt: Date, lastSeenAt: Date,
                samples: Int = 0, flops: Double = 0, acceptedUpdates: Int = 0, rejectedUpdates: Int = 0) {
        self.id = id
        self.name = name
        self.tokenHash = tokenHash
        self.createdAt = createdAt
        self.lastSeenAt = lastSeenAt
        self.samples = samples
        self.flops = flops
        self.acceptedUpdates = acceptedUpdates
        self.rejectedUpdates = rejectedUpdates
    }
}

public enum UnitState: String, Sendable, Codable, CaseIterable {
    case pending, leased, done
}

/// One work unit: a contiguous range of an epoch's sample order.
public struct UnitRecord: Sendable, Equatable, Codable {
    public var epoch: Int
    public var index: Int
    public var sampleStart: Int
    public var sampleCount: Int
    public var state: UnitState

    public init(epoch: Int, index: Int, sampleStart: Int, sampleCount: Int, state: UnitState = .pending) {
        self.epoch = epoch
        self.index = index
        self.sampleStart = sampleStart
        self.sampleCount = sampleCount
        self.state = state
    }
}

public enum LeaseState: String, Sendable, Codable, CaseIterable {
    case active, committed, expired, released
}

public struct LeaseRecord: Sendable, Equatable, Codable {
    public var id: String
    public var epoch: Int
    public var unitIndex: Int
    public var workerId: String
    /// The model version the worker computes its gradient against.
    public var baseVersion: Int
    public var issuedAt: Date
    public var deadline: Date
    public var state: LeaseState

    public init(id: String, epoch: Int, unitIndex: Int, workerId: String, baseVersion: Int,
                issuedAt: Date, deadline: Date, state: LeaseState = .active) {
        self.id = id
        self.epoch = epoch
        self.unitIndex = unitIndex
        self.workerId = workerId
        self.baseVersion = baseVersion
        self.issuedAt = issuedAt
        self.deadline = deadline
        self.state = state
    }
}

/// An accepted update: the gradient of one unit, folded into `round`.
public struct UpdateRecord: Sendable, Equatable, Codable {
    public var leaseId: String
    public var epoch: Int
    public var unitIndex: Int
    public var workerId: String
    public var baseVersion: Int
    public var round: Int
    public var samples: Int
    public var loss: Double
    public var weight: Double
    public var flops: Double
    public var bytes: Int
    public var acceptedAt: Date

    public init(leaseId: String, epoch: Int, unitIndex: Int, workerId: String, baseVersion: Int, round: Int,
                samples: Int, loss: Double, weight: Double, flops: Double, bytes: Int, acceptedAt: Date) {
        self.leaseId = leaseId
        self.epoch = epoch
        self.unitIndex = unitIndex
        self.workerId = workerId
        self.baseVersion = baseVersion
        self.round = round
        self.samples = samples
        self.loss = loss
        self.weight = weight
        self.flops = flops
        self.bytes = bytes
        self.acceptedAt = acceptedAt
    }
}

/// A closed round: the updates it folded in and the model version it published.
public struct RoundRecord: Sendable, Equatable, Codable {
    public var round: Int
    public var version: Int
    public var openedAt: Date
    public var closedAt: Date
    public var updates: Int
    public var samples: Int
    public var meanLoss: Double

    public init(round: Int, version: Int, openedAt: Date, closedAt: Date, updates: Int, samples: Int, meanLoss: Double) {
        self.round = round
        self.version = version
        self.openedAt = openedAt
        self.closedAt = closedAt
        self.updates = updates
        self.samples = samples
        self.meanLoss = meanLoss
    }
}

/// A checkpoint file of model and optimizer state taken after `round` closed.
public struct CheckpointRecord: Sendable, Equatable, Codable {
    public var version: Int
    public var round: Int
    public var path: String
    public var createdAt: Date

    public init(version: Int, round: Int, path: String, createdAt: Date) {
        self.version = version
        self.round = round
        self.path = path
        self.createdAt = createdAt
    }
}

/// What `LedgerStore.recoverAfterRestart(checkpointedRound:)` undid.
public struct RecoveryReport: Sendable, Equatable {
    public var droppedUpdates: Int
    /// Units put back to pending: done units whose update was dropped plus units of expired leases.
    public var requeuedUnits: Int
    public var expiredLeases: Int
    public var droppedRounds: Int
    /// Checkpoint records after the restored round: their history no longer exists.
    public var droppedCheckpoints: Int

    public init(droppedUpdates: Int, requeuedUnits: Int, expiredLeases: Int, droppedRounds: Int,
                droppedCheckpoints: Int = 0) {
        self.droppedUpdates = droppedUpdates
        self.requeuedUnits = requeuedUnits
        self.expiredLeases = expiredLeases
        self.droppedRounds = droppedRounds
        self.droppedCheckpoints = droppedCheckpoints
    }

    public var isEmpty: Bool {
        droppedUpdates == 0 && requeuedUnits == 0 && expiredLeases == 0 && droppedRounds == 0 && droppedCheckpoints == 0
    }
}

/// The storage settings in force on the ledger's connection.
public struct LedgerDurability: Sendable, Equatable {
    /// `PRAGMA journal_mode`: "wal" for a file ledger, "memory" for an in-memory one.
    public var journalMode: String
    /// `PRAGMA synchronous`: 2 is FULL (every commit is synced to disk).
    public var synchronous: Int

    public init(journalMode: String, synchronous: Int) {
        self.journalMode = journalMode
        self.synchronous = synchronous
    }
}
