import Foundation
internal import GRDB

extension SQLiteLedger {
    // MARK: Accepted and rejected updates

    /// Accepts an update in ONE transaction: the lease becomes committed, the unit done, the update
    /// row is inserted and the worker is credited (samples, flops, acceptedUpdates + 1).
    /// A unit is done at most once per epoch: if it already is, throws `.unitAlreadyDone` and
    /// changes nothing. The lease may have expired meanwhile; late work on an undone unit counts.
    public func recordAcceptedUpdate(_ update: UpdateRecord) throws(LedgerError) {
        let acceptedAt = try LedgerCheck.update(update)
        try write("record accepted update") { db in
            guard let unit = try SQLiteLedger.fetchUnit(db, epoch: update.epoch, index: update.unitIndex) else {
                throw LedgerError.unknownUnit(epoch: update.epoch, index: update.unitIndex)
            }
            try LedgerCheck.notDone(unit, update)
            guard let lease = try SQLiteLedger.fetchLease(db, id: update.leaseId) else {
                throw LedgerError.unknownLease(id: update.leaseId)
            }
            try LedgerCheck.matches(lease, update)
            try db.execute(sql: "UPDATE lease SET state = 'committed' WHERE id = ?", arguments: [lease.id])
            try db.execute(sql: "UPDATE unit SET state = 'done' WHERE epoch = ? AND unitIndex = ?",
                           arguments: [update.epoch, update.unitIndex])
            try db.execute(sql: """
                INSERT INTO accepted_update (\(UpdateRecord.columns)) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [update.leaseId, update.epoch, update.unitIndex, update.workerId, update.baseVersion,
                                 update.round, update.samples, update.loss, update.weight, update.flops,
                                 update.bytes, acceptedAt])
            try db.execute(sql: """
                UPDATE worker SET samples = samples + ?, flops = flops + ?, acceptedUpdates = acceptedUpdates + 1
                WHERE id = ?
                """, arguments: [update.samples, update.flops, update.workerId])
            if db.changesCount == 0 { throw LedgerError.unknownWorker(id: update.workerId) }
        }
    }

    /// Counts a refused update under `reason`, and against the worker when it is known (an update
    /// with a bad token has no worker to blame).
    public func recordRejectedUpdate(workerId: String?, reason: String, at date: Date) throws(LedgerError) {
        let at = try LedgerTime.millis(date, "rejection time")
        try write("record rejected update") { db in
            try db.execute(sql: """
                INSERT INTO rejection (reason, count, lastAt) VALUES (?, 1, ?)
                ON CONFLICT (reason) DO UPDATE SET count = count + 1, lastAt = max(lastAt, excluded.lastAt)
                """, arguments: [reason, at])
            if let workerId {
                try db.execute(sql: "UPDATE worker SET rejectedUpdates = rejectedUpdates + 1 WHERE id = ?",
                               arguments: [workerId])
            }
        }
    }

    /// Rejected updates per reason.
    public func rejectionCounts() throws(LedgerError) -> [String: Int] {
        try read("read rejections") { db in
            var counts: [String: Int] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT reason, count FROM rejection") {
                counts[try row.decode(atIndex: 0)] = try row.decode(atIndex: 1)
            }
            return counts
        }
    }

    /// The updates folded into `round`, in the order they were accepted.
    public func updates(round: Int) throws(LedgerError) -> [UpdateRecord] {
        try read("read updates") { db in
            try Row.fetchAll(db, sql: """
                SELECT \(UpdateRecord.columns) FROM accepted_update WHERE round = ? ORDER BY rowid
                """, arguments: [round])
                .map(UpdateRecord.init(row:))
        }
    }

    /// The accepted update of a unit, if it is done.
    public func update(epoch: Int, unitIndex: Int) throws(LedgerError) -> UpdateRecord? {
        try read("read update") { db in
            try Row.fetchOne(db, sql: """
                SELECT \(UpdateRecord.columns) FROM accepted_update WHERE epoch = ? AND unitIndex = ?
                """, arguments: [epoch, unitIndex])
                .map(UpdateRecord.init(row:))
        }
    }

    // MARK: Rounds

    /// Records a closed round. Throws `.duplicate` if that round number is already recorded.
    public func recordRound(_ round: RoundRecord) throws(LedgerError) {
        try LedgerCheck.nonNegative(round.updates, "round updates")
        try LedgerCheck.nonNegative(round.samples, "round samples")
        try LedgerCheck.finite(round.meanLoss, "round meanLoss")
        let openedAt = try LedgerTime.millis(round.openedAt, "round openedAt")
        let closedAt = try LedgerTime.millis(round.closedAt, "round closedAt")
        try write("record round") { db in
            if try Bool.fetchOne(db, sql: "SELECT 1 FROM round WHERE round = ?", arguments: [round.round]) == true {
                throw LedgerError.duplicate(kind: "round", key: String(round.round))
            }
            try db.execute(sql: """
                INSERT INTO round (\(RoundRecord.columns)) VALUES (?, ?, ?, ?, ?, ?, ?)
                """, arguments: [round.round, round.version, openedAt, closedAt, round.updates, round.samples,
                                 round.meanLoss])
        }
    }

    /// The most recent `limit` rounds, in ascending round order.
    public func rounds(limit: Int) throws(LedgerError) -> [RoundRecord] {
        if limit <= 0 { return [] }
        return try read("read rounds") { db in
            try Row.fetchAll(db, sql: """
                SELECT * FROM (SELECT \(RoundRecord.columns) FROM round ORDER BY round DESC LIMIT ?) ORDER BY round
                """, arguments: [limit])
                .map(RoundRecord.init(row:))
        }
    }

    public func lastRound() throws(LedgerError) -> RoundRecord? {
        try read("read rounds") { db in
            try Row.fetchOne(db, sql: "SELECT \(RoundRecord.columns) FROM round ORDER BY round DESC LIMIT 1")
                .map(RoundRecord.init(row:))
        }
    }

    // MARK: Checkpoints

    public func recordCheckpoint(_ checkpoint: CheckpointRecord) throws(LedgerError) {
        let createdAt = try LedgerTime.millis(checkpoint.createdAt, "checkpoint createdAt")
        try write("record checkpoint") { db in
            try db.execute(sql: """
                INSERT INTO checkpoint (\(CheckpointRecord.columns)) VALUES (?, ?, ?, ?)
                """, arguments: [checkpoint.version, checkpoint.round, checkpoint.path, createdAt])
        }
    }

    /// The checkpoint of the highest round (the newest version, then the last recorded, on ties).
    public func latestCheckpoint() throws(LedgerError) -> CheckpointRecord? {
        try read("read checkpoints") { db in
            try Row.fetchOne(db, sql: """
                SELECT \(CheckpointRecord.columns) FROM checkpoint ORDER BY round DESC, version DESC, id DESC LIMIT 1
                """)
                .map(CheckpointRecord.init(row:))
        }
    }

    // MARK: Crash recovery

    /// Rolls the ledger back to the state of a checkpoint taken after round `checkpointedRound`
    /// (0: no checkpoint), in ONE transaction:
    /// - updates of later rounds are deleted, their units go back to pending and their credit is
    ///   taken back from their workers (samples, flops, acceptedUpdates); their leases become expired
    ///   (counted in `droppedUpdates`, not `expiredLeases`): a retried commit must not read as accepted;
    /// - rounds and checkpoint records after `checkpointedRound` are deleted;
    /// - every active lease expires and every leased unit goes back to pending.
    /// Running it twice is harmless: the second run changes nothing and reports zeros.
    public func recoverAfterRestart(checkpointedRound: Int) throws(LedgerError) -> RecoveryReport {
        try write("recover after restart") { db in
            let round = checkpointedRound
            let credits = try Row.fetchAll(db, sql: """
                SELECT workerId, COUNT(*), SUM(samples), SUM(flops) FROM accepted_update
                WHERE round > ? GROUP BY workerId
                """, arguments: [round])
            for credit in credits {
                let workerId: String = try credit.decode(atIndex: 0)
                let count: Int = try credit.decode(atIndex: 1)
                let samples: Int = try credit.decode(atIndex: 2)
                let flops: Double = try credit.decode(atIndex: 3)
                // Floating-point sums do not cancel exactly; never leave a tiny negative credit.
                try db.execute(sql: """
                    UPDATE worker SET acceptedUpdates = acceptedUpdates - ?, samples = samples - ?,
                                      flops = max(0.0, flops - ?)
                    WHERE id = ?
                    """, arguments: [count, samples, flops, workerId])
            }
            try db.execute(sql: """
                UPDATE unit SET state = 'pending'
                WHERE state = 'done'
                  AND EXISTS (SELECT 1 FROM accepted_update u
                              WHERE u.epoch = unit.epoch AND u.unitIndex = unit.unitIndex AND u.round > ?)
                """, arguments: [round])
            var requeued = db.changesCount
            try db.execute(sql: """
                UPDATE lease SET state = 'expired'
                WHERE id IN (SELECT leaseId FROM accepted_update WHERE round > ?)
                """, arguments: [round])
            try db.execute(sql: "DELETE FROM accepted_update WHERE round > ?", arguments: [round])
            let droppedUpdates = db.changesCount
            try db.execute(sql: "DELETE FROM round WHERE round > ?", arguments: [round])
            let droppedRounds = db.changesCount
            try db.execute(sql: "DELETE FROM checkpoint WHERE round > ?", arguments: [round])
            let droppedCheckpoints = db.changesCount
            try db.execute(sql: "UPDATE lease SET state = 'expired' WHERE state = 'active'")
            let expiredLeases = db.changesCount
            // No lease is active any more, so no unit can stay leased.
            try db.execute(sql: "UPDATE unit SET state = 'pending' WHERE state = 'leased'")
            requeued += db.changesCount
            return RecoveryReport(droppedUpdates: droppedUpdates, requeuedUnits: requeued,
                                  expiredLeases: expiredLeases, droppedRounds: droppedRounds,
                                  droppedCheckpoints: droppedCheckpoints)
        }
    }
}
