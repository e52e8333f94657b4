import Foundation
internal import GRDB

/// The name the ledger had before it had a PostgreSQL sibling; existing call sites keep compiling.
public typealias Ledger = SQLiteLedger

/// The ledger in one SQLite file (see `LedgerStore`). The coordinator keeps hot state in memory
/// and writes through; after a crash it restarts from its last checkpoint plus this ledger.
///
/// Every method is synchronous and runs one transaction; calls from several tasks are serialized.
/// The synchronous methods also satisfy `LedgerStore`'s async requirements.
/// All SQL of the project lives in this module.
public final class SQLiteLedger: LedgerStore {
    /// The file path, or ":memory:".
    public let location: String
    private let dbQueue: DatabaseQueue
    /// GRDB crashes on a closed connection, so every call checks this first, under its lock.
    private let gate = ClosedGate()

    /// Opens the ledger at `path`, creating and migrating it if needed. Refuses a file that is not
    /// a Tributary ledger, or one written by a newer schema, without modifying it.
    public init(path: String) throws(LedgerError) {
        location = path
        do {
            dbQueue = try DatabaseQueue(path: path, configuration: SQLiteLedger.configuration())
        } catch let error as DatabaseError {
            if error.resultCode == .SQLITE_NOTADB {
                throw .notALedger(path: path, reason: "not a SQLite database")
            }
            throw .cannotOpen(path: path, message: SQLiteLedger.oneLine(error))
        } catch {
            throw .cannotOpen(path: path, message: String(describing: error))
        }
        try setUp()
    }

    private init(inMemoryQueue: DatabaseQueue) throws(LedgerError) {
        location = ":memory:"
        dbQueue = inMemoryQueue
        try setUp()
    }

    /// A private, empty ledger that lives as long as the object (tests, dry runs).
    public static func inMemory() throws(LedgerError) -> SQLiteLedger {
        let queue: DatabaseQueue
        do {
            queue = try DatabaseQueue(configuration: configuration())
        } catch {
            throw .cannotOpen(path: ":memory:", message: String(describing: error))
        }
        return try SQLiteLedger(inMemoryQueue: queue)
    }

    private static func configuration() -> Configuration {
        var config = Configuration()
        config.label = "TributaryLedger"
        config.foreignKeysEnabled = true
        // Another process (an operator's sqlite3 shell) may hold the lock briefly.
        config.busyMode = .timeout(5)
        config.prepareDatabase { db in
            // Per connection: FULL syncs the WAL on every commit, so a committed transaction
            // survives power loss, not only a process crash.
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        return config
    }

    /// Identity check first (no write may touch a foreign file), then WAL, then migrations.
    private func setUp() throws(LedgerError) {
        let location = self.location
        try perform("open") {
            try dbQueue.read { db in try SQLiteLedgerSchema.checkIdentity(db, location: location) }
            try dbQueue.writeWithoutTransaction { db in
                let mode = try String.fetchOne(db, sql: "PRAGMA journal_mode = WAL") ?? ""
                // An in-memory database has no WAL and reports "memory".
                if mode != "wal" && mode != "memory" {
                    throw LedgerError.cannotOpen(path: location, message: "could not enable WAL journal mode (got '\(mode)')")
                }
            }
            try SQLiteLedgerSchema.migrator.migrate(dbQueue)
        }
    }

    /// Closes the database connection; later calls throw. Dropping the last reference closes it too.
    public func close() {
        gate.close {
            // An error here means a statement is still in use, which cannot happen between calls.
            try? dbQueue.close()
        }
    }

    /// The settings in force on this ledger's connection (SQLite only).
    public func durability() throws(LedgerError) -> LedgerDurability {
        try read("read settings") { db in
            LedgerDurability(
                journalMode: try String.fetchOne(db, sql: "PRAGMA journal_mode") ?? "",
                synchronous: try Int.fetchOne(db, sql: "PRAGMA synchronous") ?? -1)
        }
    }

    // MARK: Job metadata

    public func setMeta(_ key: String, _ value: String) throws(LedgerError) {
        try write("set meta") { db in
            try db.execute(sql: """
                INSERT INTO meta (key, value) VALUES (?, ?)
                ON CONFLICT (key) DO UPDATE SET value = excluded.value
                """, arguments: [key, value])
        }
    }

    public func meta(_ key: String) throws(LedgerError) -> String? {
        try read("read meta") { db in
            try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = ?", arguments: [key])
        }
    }

    /// All metadata, for status pages and dumps.
    public func allMeta() throws(LedgerError) -> [String: String] {
        try read("read meta") { db in
            var result: [String: String] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT key, value FROM meta") {
                result[try row.decode(atIndex: 0)] = try row.decode(atIndex: 1)
            }
            return result
        }
    }

    // MARK: Transactions and error mapping

    /// One IMMEDIATE transaction; rolled back if `body` throws.
    func write<T>(_ operation: String, _ body: (Database) throws -> T) throws(LedgerError) -> T {
        try gate.whileOpen(operation) { () throws(LedgerError) in try perform(operation) { try dbQueue.write(body) } }
    }

    func read<T>(_ operation: String, _ body: (Database) throws -> T) throws(LedgerError) -> T {
        try gate.whileOpen(operation) { () throws(LedgerError) in try perform(operation) { try dbQueue.read(body) } }
    }

    /// Passes `LedgerError`s through and turns anything else into one.
    private func perform<T>(_ operation: String, _ body: () throws -> T) throws(LedgerError) -> T {
        do {
            return try body()
        } catch let error as LedgerError {
            throw error
        } catch let error as DatabaseError {
            throw .database(operation: operation, code: Int(error.extendedResultCode.rawValue), message: SQLiteLedger.oneLine(error))
        } catch let error as RowDecodingError {
            throw .corruptRow(table: operation, detail: String(describing: error).split(separator: "\n").joined(separator: " "))
        } catch {
            throw .database(operation: operation, code: -1, message: String(describing: error))
        }
    }

    /// SQLite's message without GRDB's appended SQL text (which spans lines).
    static func oneLine(_ error: DatabaseError) -> String {
        error.message ?? "result code \(error.extendedResultCode.rawValue)"
    }
}

/// Whether `close()` has run. Calls hold the lock while they use the connection, so `close()`
/// waits for a call in progress and no call starts on a closed connection. (The connection
/// serializes calls anyway, so the lock costs no concurrency.)
private final class ClosedGate: @unchecked Sendable {
    private let lock = NSLock()
    private var closed = false

    func whileOpen<T>(_ operation: String, _ body: () throws(LedgerError) -> T) throws(LedgerError) -> T {
        lock.lock()
        defer { lock.unlock() }
        if closed { throw .database(operation: operation, code: 21, message: "the ledger was closed") }
        return try body()
    }

    func close(_ body: () -> Void) {
        lock.lock()
        defer { lock.unlock() }
        if !closed { body() }
        closed = true
    }
}
