import Foundation
internal import PostgresNIO

// The same statements and transaction as SQLiteLedger+Verification.swift.
extension PostgresLedger {
    public func recordVerification(_ record: VerificationRecord) async throws(LedgerError) {
        let at = try LedgerTime.millis(record.at, "verification time")
        for credit in record.credits {
            try LedgerCheck.nonNegative(credit.samples, "credit samples")
            try LedgerCheck.finite(credit.flops, "credit flops")
        }
        try await write("record verification") { db in
            for leaseId in record.voidedLeaseIds {
                guard let row = try await db.one("""
                    SELECT workerId, epoch, unitIndex, samples, flops FROM accepted_update WHERE leaseId = \(leaseId)
                    """) else { continue }
                let (workerId, epoch, unitIndex, samples, flops) = try row.decode((String, Int, Int, Int, Double).self)
                try await db.execute("DELETE FROM accepted_update WHERE leaseId = \(leaseId)")
                try await db.execute("""
                    UPDATE worker SET acceptedUpdates = acceptedUpdates - 1, samples = samples - \(samples),
                                      flops = GREATEST(0.0, flops - \(flops))
                    WHERE id = \(workerId)
                    """)
                try await db.execute("""
                    UPDATE unit SET state = 'pending' WHERE epoch = \(epoch) AND unitIndex = \(unitIndex) AND state = 'done'
                    """)
                try await db.execute("UPDATE lease SET state = 'released' WHERE id = \(leaseId)")
            }
            for credit in record.credits {
                let credited = try await db.changes("""
                    UPDATE worker SET samples = samples + \(credit.samples), flops = flops + \(credit.flops)
                    WHERE id = \(credit.workerId) RETURNING 1
                    """)
                if credited == 0 { throw LedgerError.unknownWorker(id: credit.workerId) }
            }
            for rejection in record.rejections {
                try await db.execute("""
                    INSERT INTO rejection (reason, count, lastAt) VALUES (\(rejection.reason), 1, \(at))
                    ON CONFLICT (reason) DO UPDATE
                    SET count = rejection.count + 1, lastAt = GREATEST(rejection.lastAt, excluded.lastAt)
                    """)
                try await db.execute("UPDATE worker SET rejectedUpdates = rejectedUpdates + 1 WHERE id = \(rejection.workerId)")
            }
            for id in record.revokedCreditWorkerIds {
                try await db.execute("UPDATE worker SET samples = 0, flops = 0 WHERE id = \(id)")
            }
            for (key, value) in record.meta {
                try await db.execute("""
                    INSERT INTO meta (key, value) VALUES (\(key), \(value))
                    ON CONFLICT (key) DO UPDATE SET value = excluded.value
                    """)
            }
        }
    }
}
