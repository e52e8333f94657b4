import Foundation
internal import GRDB

extension SQLiteLedger {
    /// Registers a worker. Throws `.duplicate` if its id or token hash is already registered.
    public func insertWorker(_ worker: WorkerRecord) throws(LedgerError) {
        let (createdAt, lastSeenAt) = try LedgerCheck.worker(worker)
        try write("insert worker") { db in
            // Checked first so the error names which key clashed (the UNIQUE constraints back it up).
            if try Bool.fetchOne(db, sql: "SELECT 1 FROM worker WHERE id = ?", arguments: [worker.id]) == true {
                throw LedgerError.duplicate(kind: "worker id", key: worker.id)
            }
            if try Bool.fetchOne(db, sql: "SELECT 1 FROM worker WHERE tokenHash = ?", arguments: [worker.tokenHash]) == true {
                // The hash itself stays out of messages and logs.
                throw LedgerError.duplicate(kind: "worker token hash", key: "registering \(worker.id)")
            }
            try db.execute(sql: """
                INSERT INTO worker (\(WorkerRecord.columns)) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [worker.id, worker.name, worker.tokenHash, createdAt, lastSeenAt,
                                 worker.samples, worker.flops, worker.acceptedUpdates, worker.rejectedUpdates])
        }
    }

    public func worker(id: String) throws(LedgerError) -> WorkerRecord? {
        try read("read worker") { db in
            try Row.fetchOne(db, sql: "SELECT \(WorkerRecord.columns) FROM worker WHERE id = ?", arguments: [id])
                .map(WorkerRecord.init(row:))
        }
    }

    /// The worker a bearer token belongs to (the caller hashes the presented token).
    public func worker(tokenHash: String) throws(LedgerError) -> WorkerRecord? {
        try read("read worker") { db in
            try Row.fetchOne(db, sql: "SELECT \(WorkerRecord.columns) FROM worker WHERE tokenHash = ?",
                             arguments: [tokenHash])
                .map(WorkerRecord.init(row:))
        }
    }

    /// All workers, oldest registration first (ties in registration order).
    public func workers() throws(LedgerError) -> [WorkerRecord] {
        try read("read workers") { db in
            try Row.fetchAll(db, sql: "SELECT \(WorkerRecord.columns) FROM worker ORDER BY createdAt, rowid")
                .map(WorkerRecord.init(row:))
        }
    }

    /// Moves `lastSeenAt` forward to `at`; an older time (a delayed request) leaves it unchanged.
    public func noteWorkerSeen(id: String, at date: Date) throws(LedgerError) {
        let at = try LedgerTime.millis(date, "seen time")
        try write("note worker seen") { db in
            try db.execute(sql: "UPDATE worker SET lastSeenAt = max(lastSeenAt, ?) WHERE id = ?", arguments: [at, id])
            if db.changesCount == 0 { throw LedgerError.unknownWorker(id: id) }
        }
    }
}
