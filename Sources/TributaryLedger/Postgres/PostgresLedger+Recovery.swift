import Foundation
internal import PostgresNIO

extension PostgresLedger {
    /// `SQLiteLedger.recoverAfterRestart(checkpointedRound:)` statement for statement, in ONE
    /// transaction: take back the credit of updates after `checkpointedRound`, requeue their units,
    /// expire their leases, delete them and the later rounds and checkpoints, then expire every
    /// active lease and requeue every leased unit. Running it twice reports zeros the second time.
    public func recoverAfterRestart(checkpointedRound: Int) async throws(LedgerError) -> RecoveryReport {
        try await write("recover after restart") { db in
            let round = checkpointedRound
            // SUM of a BIGINT is NUMERIC in PostgreSQL: cast back so it decodes as Int.
            let credits = try await db.all("""
                SELECT workerId, COUNT(*), SUM(samples)::BIGINT, SUM(flops) FROM accepted_update
                WHERE round > \(round) GROUP BY workerId
                """).map { try $0.decode((String, Int, Int, Double).self) }
            for (workerId, count, samples, flops) in credits {
                // Floating-point sums do not cancel exactly; never leave a tiny negative credit.
                try await db.execute("""
                    UPDATE worker SET acceptedUpdates = acceptedUpdates - \(count), samples = samples - \(samples),
                                      flops = GREATEST(0.0, flops - \(flops))
                    WHERE id = \(workerId)
                    """)
            }
            var requeued = try await db.changes("""
                UPDATE unit SET state = 'pending'
                WHERE state = 'done'
                  AND EXISTS (SELECT 1 FROM accepted_update u
                              WHERE u.epoch = unit.epoch AND u.unitIndex = unit.unitIndex AND u.round > \(round))
                RETURNING 1
                """)
            try await db.execute("""
                UPDATE lease SET state = 'expired'
                WHERE id IN (SELECT leaseId FROM accepted_update WHERE round > \(round))
                """)
            let droppedUpdates = try await db.changes("DELETE FROM accepted_update WHERE round > \(round) RETURNING 1")
            let droppedRounds = try await db.changes("DELETE FROM round WHERE round > \(round) RETURNING 1")
            let droppedCheckpoints = try await db.changes("DELETE FROM checkpoint WHERE round > \(round) RETURNING 1")
            let expiredLeases = try await db.changes("UPDATE lease SET state = 'expired' WHERE state = 'active' RETURNING 1")
            // No lease is active any more, so no unit can stay leased.
            requeued += try await db.changes("UPDATE unit SET state = 'pending' WHERE state = 'leased' RETURNING 1")
            return RecoveryReport(droppedUpdates: droppedUpdates, requeuedUnits: requeued,
                                  expiredLeases: expiredLeases, droppedRounds: droppedRounds,
                                  droppedCheckpoints: droppedCheckpoints)
        }
    }
}
