import Foundation
internal import GRDB

extension SQLiteLedger {
    /// Applies a replication verdict in ONE transaction (see `VerificationRecord`). A voided
    /// lease without an accepted update (already voided) is skipped: running a record twice
    /// voids nothing twice.
    public func recordVerification(_ record: VerificationRecord) throws(LedgerError) {
        let at = try LedgerTime.millis(record.at, "verification time")
        for credit in record.credits {
            try LedgerCheck.nonNegative(credit.samples, "credit samples")
            try LedgerCheck.finite(credit.flops, "credit flops")
        }
        try write("record verification") { db in
            for leaseId in record.voidedLeaseIds {
                guard let row = try Row.fetchOne(db, sql: """
                    SELECT workerId, epoch, unitIndex, samples, flops FROM accepted_update WHERE leaseId = ?
                    """, arguments: [leaseId]) else { continue }
                let workerId: String = try row.decode(atIndex: 0)
                let epoch: Int = try row.decode(atIndex: 1)
                let unitIndex: Int = try row.decode(atIndex: 2)
                let samples: Int = try row.decode(atIndex: 3)
                let flops: Double = try row.decode(atIndex: 4)
                try db.execute(sql: "DELETE FROM accepted_update WHERE leaseId = ?", arguments: [leaseId])
                try db.execute(sql: """
                    UPDATE worker SET acceptedUpdates = acceptedUpdates - 1, samples = samples - ?,
                                      flops = max(0.0, flops - ?)
                    WHERE id = ?
                    """, arguments: [samples, flops, workerId])
                try db.execute(sql: "UPDATE unit SET state = 'pending' WHERE epoch = ? AND unitIndex = ? AND state = 'done'",
                               arguments: [epoch, unitIndex])
                try db.execute(sql: "UPDATE lease SET state = 'released' WHERE id = ?", arguments: [leaseId])
            }
            for credit in record.credits {
                try db.execute(sql: "UPDATE worker SET samples = samples + ?, flops = flops + ? WHERE id = ?",
                               arguments: [credit.samples, credit.flops, credit.workerId])
                if db.changesCount == 0 { throw LedgerError.unknownWorker(id: credit.workerId) }
            }
            for rejection in record.rejections {
                try db.execute(sql: """
                    INSERT INTO rejection (reason, count, lastAt) VALUES (?, 1, ?)
                    ON CONFLICT (reason) DO UPDATE SET count = count + 1, lastAt = max(lastAt, excluded.lastAt)
                    """, arguments: [rejection.reason, at])
                try db.execute(sql: "UPDATE worker SET rejectedUpdates = rejectedUpdates + 1 WHERE id = ?",
                               arguments: [rejection.workerId])
            }
            for id in record.revokedCreditWorkerIds {
                try db.execute(sql: "UPDATE worker SET samples = 0, flops = 0 WHERE id = ?", arguments: [id])
            }
            for (key, value) in record.meta {
                try db.execute(sql: """
                    INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value
                    """, arguments: [key, value])
            }
        }
    }
}
