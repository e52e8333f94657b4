import Foundation
public import Logging
internal import PostgresNIO

/// The ledger in a PostgreSQL database (see `LedgerStore`), through PostgresNIO's connection pool.
///
/// Every write runs in one SERIALIZABLE transaction, retried when the server reports a
/// serialization conflict, so concurrent calls behave as if they ran one after another, as with
/// SQLite. Values are always bound as parameters. Open it with `PostgresLedger.open` (or
/// `LedgerStores.open`) and `close()` it when done: the pool runs in a task this object owns.
public final class PostgresLedger: LedgerStore {
    /// The database URL without its password.
    public let location: String
    let client: PostgresClient
    let logger: Logger
    private let runner: Task<Void, Never>

    /// Connects, checks that the database is empty or a ledger this build can read, and creates
    /// or migrates the tables, all in one transaction on one connection (so a bad URL or password
    /// fails here, at once, with the server's reason). Refuses a foreign database without writing.
    public static func open(_ settings: PostgresLedgerSettings, logger: Logger? = nil) async throws(LedgerError) -> PostgresLedger {
        let logger = logger ?? Logger(label: "tributary.ledger", factory: { _ in SwiftLogNoOpLogHandler() })
        let location = settings.redacted
        let connection: PostgresConnection
        do {
            connection = try await PostgresConnection.connect(configuration: try settings.connectionConfiguration(),
                                                              id: 0, logger: logger)
        } catch {
            throw PostgresErrors.connectFailure(error, location: location)
        }
        do {
            try await PostgresLedgerSchema.setUp(connection, location: location, logger: logger)
        } catch {
            try? await connection.close()
            throw PostgresErrors.map(error, operation: "open", location: location)
        }
        try? await connection.close()

        let client = PostgresClient(configuration: settings.clientConfiguration(), backgroundLogger: logger)
        logger.info("ledger opened", metadata: ["ledger": "\(location)"])
        return PostgresLedger(location: location, client: client, logger: logger)
    }

    private init(location: String, client: PostgresClient, logger: Logger) {
        self.location = location
        self.client = client
        self.logger = logger
        // The pool serves no connection until `run()` runs; cancelling this task shuts it down.
        runner = Task { await client.run() }
    }

    deinit {
        runner.cancel()
    }

    /// Shuts the pool down and waits until its connections are closed. Later calls throw
    /// `.server(sqlState: "08003", message: "the ledger was closed")`.
    public func close() async {
        runner.cancel()
        await runner.value
    }

    // MARK: Transactions and error mapping

    /// One SERIALIZABLE transaction; rolled back if `body` throws. Runs `body` again, on fresh
    /// data, when the transaction lost a race (serialization failure, deadlock) or ran on a pooled
    /// connection the server had closed (restart, failover): in both cases nothing was committed.
    /// A failure of COMMIT itself is never retried, since the commit may have happened.
    func write<T: Sendable>(_ operation: String, _ body: @escaping @Sendable (PostgresSession) async throws -> T) async throws(LedgerError) -> T {
        let logger = self.logger, client = self.client
        return try await retrying(operation, retryAfterTimeout: false) {
            try await client.withTransaction(logger: logger) { connection in
                let session = PostgresSession(connection: connection, logger: logger)
                try await session.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
                return try await body(session)
            }
        }
    }

    /// One statement (or a few) on a pooled connection, outside an explicit transaction.
    func read<T: Sendable>(_ operation: String, _ body: @escaping @Sendable (PostgresSession) async throws -> T) async throws(LedgerError) -> T {
        let logger = self.logger, client = self.client
        return try await retrying(operation, retryAfterTimeout: true) {
            try await client.withConnection { connection in
                try await body(PostgresSession(connection: connection, logger: logger))
            }
        }
    }

    /// Enough for every pooled connection to turn out dead after a server restart, plus races.
    static let maxAttempts = 20

    /// How long one attempt may take before it counts as a dead connection (and is retried).
    static let attemptSeconds = 30.0

    private func retrying<T: Sendable>(_ operation: String, retryAfterTimeout: Bool,
                                       _ attemptOnce: @escaping @Sendable () async throws -> T) async throws(LedgerError) -> T {
        var attempt = 1
        while true {
            // A closed pool would make callers wait for a connection that never comes.
            if runner.isCancelled {
                throw .server(operation: operation, sqlState: "08003", message: "the ledger was closed")
            }
            do {
                return try await PostgresDeadline.run(seconds: Self.attemptSeconds, attemptOnce)
            } catch is PostgresDeadline.Expired {
                // A wedged pool or a half-open connection. A read is tried again; a write is not,
                // since its COMMIT may have happened without an answer reaching us.
                logger.warning("ledger call timed out", metadata: ["operation": "\(operation)", "attempt": "\(attempt)"])
                guard retryAfterTimeout, attempt < 3 else {
                    throw .cannotConnect(location: location, message: "no answer within \(Int(Self.attemptSeconds)) s, \(attempt) times")
                }
                attempt += 1
            } catch {
                let mapped = PostgresErrors.map(error, operation: operation, location: location)
                guard attempt < Self.maxAttempts,
                      PostgresErrors.isRetryable(mapped) || PostgresErrors.isStaleConnection(error) else { throw mapped }
                logger.debug("ledger call retried", metadata: ["operation": "\(operation)", "attempt": "\(attempt)",
                                                               "reason": "\(mapped)"])
                // Jittered so that two retrying writers do not collide again in lockstep.
                try? await Task.sleep(for: .milliseconds(Int.random(in: 1...(5 * attempt))))
                attempt += 1
            }
        }
    }

    // MARK: Job metadata

    public func setMeta(_ key: String, _ value: String) async throws(LedgerError) {
        try await write("set meta") { db in
            try await db.execute("""
                INSERT INTO meta (key, value) VALUES (\(key), \(value))
                ON CONFLICT (key) DO UPDATE SET value = excluded.value
                """)
        }
    }

    public func meta(_ key: String) async throws(LedgerError) -> String? {
        try await read("read meta") { db in
            try await db.one("SELECT value FROM meta WHERE key = \(key)")?.decode(String.self)
        }
    }

    public func allMeta() async throws(LedgerError) -> [String: String] {
        try await read("read meta") { db in
            var result: [String: String] = [:]
            for row in try await db.all("SELECT key, value FROM meta") {
                let (key, value) = try row.decode((String, String).self)
                result[key] = value
            }
            return result
        }
    }
}

/// A connection inside `read` or `write`, with the few ways the ledger runs statements.
struct PostgresSession {
    let connection: PostgresConnection
    let logger: Logger

    func all(_ query: PostgresQuery) async throws -> [PostgresRow] {
        try await connection.query(query, logger: logger).collect()
    }

    func one(_ query: PostgresQuery) async throws -> PostgresRow? {
        try await all(query).first
    }

    /// Whether the query returns at least one row (for `SELECT 1 … WHERE …` checks).
    func exists(_ query: PostgresQuery) async throws -> Bool {
        try await one(query) != nil
    }

    func execute(_ query: PostgresQuery) async throws {
        _ = try await all(query)
    }

    /// Runs `query`, a statement ending in `RETURNING 1`, and counts the rows it changed.
    func changes(_ query: PostgresQuery) async throws -> Int {
        try await all(query).count
    }
}
