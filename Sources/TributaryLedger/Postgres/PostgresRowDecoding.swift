import Foundation
internal import PostgresNIO

// Rows are decoded by position, matching each type's `columns` list; a value of the wrong type
// throws `PostgresDecodingError` (mapped to `.corruptRow`), never traps.

extension WorkerRecord {
    init(postgres row: PostgresRow) throws {
        let (id, name, tokenHash, createdAt, lastSeenAt, samples, flops, accepted, rejected) =
            try row.decode((String, String, String, Int64, Int64, Int, Double, Int, Int).self)
        self.init(id: id, name: name, tokenHash: tokenHash, createdAt: LedgerTime.date(createdAt),
                  lastSeenAt: LedgerTime.date(lastSeenAt), samples: samples, flops: flops,
                  acceptedUpdates: accepted, rejectedUpdates: rejected)
    }
}

extension UnitRecord {
    init(postgres row: PostgresRow) throws {
        let (epoch, index, sampleStart, sampleCount, state) = try row.decode((Int, Int, Int, Int, String).self)
        self.init(epoch: epoch, index: index, sampleStart: sampleStart, sampleCount: sampleCount,
                  state: try decodeLedgerState(state, table: "unit"))
    }
}

extension LeaseRecord {
    init(postgres row: PostgresRow) throws {
        let (id, epoch, unitIndex, workerId, baseVersion, issuedAt, deadline, state) =
            try row.decode((String, Int, Int, String, Int, Int64, Int64, String).self)
        self.init(id: id, epoch: epoch, unitIndex: unitIndex, workerId: workerId, baseVersion: baseVersion,
                  issuedAt: LedgerTime.date(issuedAt), deadline: LedgerTime.date(deadline),
                  state: try decodeLedgerState(state, table: "lease"))
    }
}

extension UpdateRecord {
    init(postgres row: PostgresRow) throws {
        let (leaseId, epoch, unitIndex, workerId, baseVersion, round, samples, loss, weight, flops, bytes, acceptedAt) =
            try row.decode((String, Int, Int, String, Int, Int, Int, Double, Double, Double, Int, Int64).self)
        self.init(leaseId: leaseId, epoch: epoch, unitIndex: unitIndex, workerId: workerId, baseVersion: baseVersion,
                  round: round, samples: samples, loss: loss, weight: weight, flops: flops, bytes: bytes,
                  acceptedAt: LedgerTime.date(acceptedAt))
    }
}

extension RoundRecord {
    init(postgres row: PostgresRow) throws {
        let (round, version, openedAt, closedAt, updates, samples, meanLoss) =
            try row.decode((Int, Int, Int64, Int64, Int, Int, Double).self)
        self.init(round: round, version: version, openedAt: LedgerTime.date(openedAt),
                  closedAt: LedgerTime.date(closedAt), updates: updates, samples: samples, meanLoss: meanLoss)
    }
}

extension CheckpointRecord {
    init(postgres row: PostgresRow) throws {
        let (version, round, path, createdAt) = try row.decode((Int, Int, String, Int64).self)
        self.init(version: version, round: round, path: path, createdAt: LedgerTime.date(createdAt))
    }
}
