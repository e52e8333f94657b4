import Foundation
internal import PostgresNIO

extension PostgresLedger {
    /// Registers a worker. Throws `.duplicate` if its id or token hash is already registered.
    public func insertWorker(_ worker: WorkerRecord) async throws(LedgerError) {
        let (createdAt, lastSeenAt) = try LedgerCheck.worker(worker)
        try await write("insert worker") { db in
            // Checked first so the error names which key clashed (the UNIQUE constraints back it up).
            if try await db.exists("SELECT 1 FROM worker WHERE id = \(worker.id)") {
                throw LedgerError.duplicate(kind: "worker id", key: worker.id)
            }
            if try await db.exists("SELECT 1 FROM worker WHERE tokenHash = \(worker.tokenHash)") {
                // The hash itself stays out of messages and logs.
                throw LedgerError.duplicate(kind: "worker token hash", key: "registering \(worker.id)")
            }
            try await db.execute("""
                INSERT INTO worker (\(unescaped: WorkerRecord.columns))
                VALUES (\(worker.id), \(worker.name), \(worker.tokenHash), \(createdAt), \(lastSeenAt),
                        \(worker.samples), \(worker.flops), \(worker.acceptedUpdates), \(worker.rejectedUpdates))
                """)
        }
    }

    public func worker(id: String) async throws(LedgerError) -> WorkerRecord? {
        try await read("read worker") { db in
            try await db.one("SELECT \(unescaped: WorkerRecord.columns) FROM worker WHERE id = \(id)")
                .map(WorkerRecord.init(postgres:))
        }
    }

    public func worker(tokenHash: String) async throws(LedgerError) -> WorkerRecord? {
        try await read("read worker") { db in
            try await db.one("SELECT \(unescaped: WorkerRecord.columns) FROM worker WHERE tokenHash = \(tokenHash)")
                .map(WorkerRecord.init(postgres:))
        }
    }

    public func workers() async throws(LedgerError) -> [WorkerRecord] {
        try await read("read workers") { db in
            try await db.all("SELECT \(unescaped: WorkerRecord.columns) FROM worker ORDER BY createdAt, seq")
                .map(WorkerRecord.init(postgres:))
        }
    }

    public func noteWorkerSeen(id: String, at date: Date) async throws(LedgerError) {
        let at = try LedgerTime.millis(date, "seen time")
        try await write("note worker seen") { db in
            let changed = try await db.changes("""
                UPDATE worker SET lastSeenAt = GREATEST(lastSeenAt, \(at)) WHERE id = \(id) RETURNING 1
                """)
            if changed == 0 { throw LedgerError.unknownWorker(id: id) }
        }
    }
}
