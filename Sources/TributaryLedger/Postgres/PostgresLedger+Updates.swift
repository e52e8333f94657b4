import Foundation
internal import PostgresNIO

// The same statements, checks and transaction boundaries as SQLiteLedger+Updates.swift; see the
// comments there for what each operation promises.
extension PostgresLedger {
    // MARK: Accepted and rejected updates

    public func recordAcceptedUpdate(_ update: UpdateRecord) async throws(LedgerError) {
        let acceptedAt = try LedgerCheck.update(update)
        try await write("record accepted update") { db in
            guard let unit = try await Self.fetchUnit(db, epoch: update.epoch, index: update.unitIndex) else {
                throw LedgerError.unknownUnit(epoch: update.epoch, index: update.unitIndex)
            }
            try LedgerCheck.notDone(unit, update)
            guard let lease = try await Self.fetchLease(db, id: update.leaseId) else {
                throw LedgerError.unknownLease(id: update.leaseId)
            }
            try LedgerCheck.matches(lease, update)
            try await db.execute("UPDATE lease SET state = 'committed' WHERE id = \(lease.id)")
            try await db.execute("""
                UPDATE unit SET state = 'done' WHERE epoch = \(update.epoch) AND unitIndex = \(update.unitIndex)
                """)
            try await db.execute("""
                INSERT INTO accepted_update (\(unescaped: UpdateRecord.columns))
                VALUES (\(update.leaseId), \(update.epoch), \(update.unitIndex), \(update.workerId), \(update.baseVersion),
                        \(update.round), \(update.samples), \(update.loss), \(update.weight), \(update.flops),
                        \(update.bytes), \(acceptedAt))
                """)
            let credited = try await db.changes("""
                UPDATE worker SET samples = samples + \(update.samples), flops = flops + \(update.flops),
                                  acceptedUpdates = acceptedUpdates + 1
                WHERE id = \(update.workerId) RETURNING 1
                """)
            if credited == 0 { throw LedgerError.unknownWorker(id: update.workerId) }
        }
    }

    public func recordRejectedUpdate(workerId: String?, reason: String, at date: Date) async throws(LedgerError) {
        let at = try LedgerTime.millis(date, "rejection time")
        try await write("record rejected update") { db in
            try await db.execute("""
                INSERT INTO rejection (reason, count, lastAt) VALUES (\(reason), 1, \(at))
                ON CONFLICT (reason) DO UPDATE
                SET count = rejection.count + 1, lastAt = GREATEST(rejection.lastAt, excluded.lastAt)
                """)
            if let workerId {
                try await db.execute("UPDATE worker SET rejectedUpdates = rejectedUpdates + 1 WHERE id = \(workerId)")
            }
        }
    }

    public func rejectionCounts() async throws(LedgerError) -> [String: Int] {
        try await read("read rejections") { db in
            var counts: [String: Int] = [:]
            for row in try await db.all("SELECT reason, count FROM rejection") {
                let (reason, count) = try row.decode((String, Int).self)
                counts[reason] = count
            }
            return counts
        }
    }

    public func updates(round: Int) async throws(LedgerError) -> [UpdateRecord] {
        try await read("read updates") { db in
            try await db.all("""
                SELECT \(unescaped: UpdateRecord.columns) FROM accepted_update WHERE round = \(round) ORDER BY seq
                """).map(UpdateRecord.init(postgres:))
        }
    }

    public func update(epoch: Int, unitIndex: Int) async throws(LedgerError) -> UpdateRecord? {
        try await read("read update") { db in
            try await db.one("""
                SELECT \(unescaped: UpdateRecord.columns) FROM accepted_update
                WHERE epoch = \(epoch) AND unitIndex = \(unitIndex)
                """).map(UpdateRecord.init(postgres:))
        }
    }

    // MARK: Rounds

    public func recordRound(_ round: RoundRecord) async throws(LedgerError) {
        try LedgerCheck.nonNegative(round.updates, "round updates")
        try LedgerCheck.nonNegative(round.samples, "round samples")
        try LedgerCheck.finite(round.meanLoss, "round meanLoss")
        let openedAt = try LedgerTime.millis(round.openedAt, "round openedAt")
        let closedAt = try LedgerTime.millis(round.closedAt, "round closedAt")
        try await write("record round") { db in
            if try await db.exists("SELECT 1 FROM round WHERE round = \(round.round)") {
                throw LedgerError.duplicate(kind: "round", key: String(round.round))
            }
            try await db.execute("""
                INSERT INTO round (\(unescaped: RoundRecord.columns))
                VALUES (\(round.round), \(round.version), \(openedAt), \(closedAt), \(round.updates), \(round.samples),
                        \(round.meanLoss))
                """)
        }
    }

    public func rounds(limit: Int) async throws(LedgerError) -> [RoundRecord] {
        if limit <= 0 { return [] }
        return try await read("read rounds") { db in
            try await db.all("""
                SELECT * FROM (SELECT \(unescaped: RoundRecord.columns) FROM round ORDER BY round DESC LIMIT \(limit)) AS last
                ORDER BY round
                """).map(RoundRecord.init(postgres:))
        }
    }

    public func lastRound() async throws(LedgerError) -> RoundRecord? {
        try await read("read rounds") { db in
            try await db.one("SELECT \(unescaped: RoundRecord.columns) FROM round ORDER BY round DESC LIMIT 1")
                .map(RoundRecord.init(postgres:))
        }
    }

    // MARK: Checkpoints

    public func recordCheckpoint(_ checkpoint: CheckpointRecord) async throws(LedgerError) {
        let createdAt = try LedgerTime.millis(checkpoint.createdAt, "checkpoint createdAt")
        try await write("record checkpoint") { db in
            try await db.execute("""
                INSERT INTO checkpoint (\(unescaped: CheckpointRecord.columns))
                VALUES (\(checkpoint.version), \(checkpoint.round), \(checkpoint.path), \(createdAt))
                """)
        }
    }

    public func latestCheckpoint() async throws(LedgerError) -> CheckpointRecord? {
        try await read("read checkpoints") { db in
            try await db.one("""
                SELECT \(unescaped: CheckpointRecord.columns) FROM checkpoint ORDER BY round DESC, version DESC, id DESC LIMIT 1
                """).map(CheckpointRecord.init(postgres:))
        }
    }
}
