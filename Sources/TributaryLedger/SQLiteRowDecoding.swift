import Foundation
internal import GRDB

// Rows are decoded by column position, matching each type's `columns` list, with GRDB's throwing
// `decode` (never the trapping subscript): a damaged file must produce an error, not a crash.

extension WorkerRecord {
    init(row: Row) throws {
        self.init(id: try row.decode(atIndex: 0),
                  name: try row.decode(atIndex: 1),
                  tokenHash: try row.decode(atIndex: 2),
                  createdAt: LedgerTime.date(try row.decode(atIndex: 3)),
                  lastSeenAt: LedgerTime.date(try row.decode(atIndex: 4)),
                  samples: try row.decode(atIndex: 5),
                  flops: try row.decode(atIndex: 6),
                  acceptedUpdates: try row.decode(atIndex: 7),
                  rejectedUpdates: try row.decode(atIndex: 8))
    }
}

extension UnitRecord {
    init(row: Row) throws {
        self.init(epoch: try row.decode(atIndex: 0),
                  index: try row.decode(atIndex: 1),
                  sampleStart: try row.decode(atIndex: 2),
                  sampleCount: try row.decode(atIndex: 3),
                  state: try decodeState(row, 4, table: "unit"))
    }
}

extension LeaseRecord {
    init(row: Row) throws {
        self.init(id: try row.decode(atIndex: 0),
                  epoch: try row.decode(atIndex: 1),
                  unitIndex: try row.decode(atIndex: 2),
                  workerId: try row.decode(atIndex: 3),
                  baseVersion: try row.decode(atIndex: 4),
                  issuedAt: LedgerTime.date(try row.decode(atIndex: 5)),
                  deadline: LedgerTime.date(try row.decode(atIndex: 6)),
                  state: try decodeState(row, 7, table: "lease"))
    }
}

extension UpdateRecord {
    init(row: Row) throws {
        self.init(leaseId: try row.decode(atIndex: 0),
                  epoch: try row.decode(atIndex: 1),
                  unitIndex: try row.decode(atIndex: 2),
                  workerId: try row.decode(atIndex: 3),
                  baseVersion: try row.decode(atIndex: 4),
                  round: try row.decode(atIndex: 5),
                  samples: try row.decode(atIndex: 6),
                  loss: try row.decode(atIndex: 7),
                  weight: try row.decode(atIndex: 8),
                  flops: try row.decode(atIndex: 9),
                  bytes: try row.decode(atIndex: 10),
                  acceptedAt: LedgerTime.date(try row.decode(atIndex: 11)))
    }
}

extension RoundRecord {
    init(row: Row) throws {
        self.init(round: try row.decode(atIndex: 0),
                  version: try row.decode(atIndex: 1),
                  openedAt: LedgerTime.date(try row.decode(atIndex: 2)),
                  closedAt: LedgerTime.date(try row.decode(atIndex: 3)),
                  updates: try row.decode(atIndex: 4),
                  samples: try row.decode(atIndex: 5),
                  meanLoss: try row.decode(atIndex: 6))
    }
}

extension CheckpointRecord {
    init(row: Row) throws {
        self.init(version: try row.decode(atIndex: 0),
                  round: try row.decode(atIndex: 1),
                  path: try row.decode(atIndex: 2),
                  createdAt: LedgerTime.date(try row.decode(atIndex: 3)))
    }
}

private func decodeState<State: RawRepresentable<String>>(_ row: Row, _ index: Int, table: String) throws -> State {
    try decodeLedgerState(try row.decode(atIndex: index) as String, table: table)
}
