import Foundation
internal import PostgresNIO

/// The ledger's tables in PostgreSQL and how a database is recognised as a ledger: the same
/// tables, keys, foreign keys and checks as `SQLiteLedgerSchema`, so the same invariants hold.
///
/// A marker table plays the part of SQLite's `application_id` and `user_version`: one row naming
/// the application and the schema version. Dates are BIGINT milliseconds since 1970, as in SQLite.
enum PostgresLedgerSchema {
    static let markerTable = "tributary_ledger"
    static let application = "tributary-ledger"
    static let version = 1
    /// Serializes concurrent opens of one database (two coordinators started at once). "TRBL".
    static let setUpLock: Int64 = 0x5452_424C

    /// Statements of each version, applied in order to bring a database from the previous one.
    /// (PostgresNIO sends each query as one prepared statement, so one statement per string.)
    static let migrations: [(version: Int, statements: [String])] = [(1, [
        """
        CREATE TABLE tributary_ledger (
            application TEXT PRIMARY KEY,
            schema_version INTEGER NOT NULL
        )
        """,
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        // `seq` keeps insertion order, which SQLite's rowid gives for free (ties in listings).
        """
        CREATE TABLE worker (
            id TEXT PRIMARY KEY,
            seq BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
            name TEXT NOT NULL,
            tokenHash TEXT NOT NULL UNIQUE,
            createdAt BIGINT NOT NULL,
            lastSeenAt BIGINT NOT NULL,
            samples BIGINT NOT NULL DEFAULT 0,
            flops DOUBLE PRECISION NOT NULL DEFAULT 0,
            acceptedUpdates BIGINT NOT NULL DEFAULT 0,
            rejectedUpdates BIGINT NOT NULL DEFAULT 0
        )
        """,
        "CREATE INDEX worker_createdAt ON worker (createdAt, seq)",
        """
        CREATE TABLE unit (
            epoch BIGINT NOT NULL,
            unitIndex BIGINT NOT NULL,
            sampleStart BIGINT NOT NULL,
            sampleCount BIGINT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('pending', 'leased', 'done')),
            PRIMARY KEY (epoch, unitIndex)
        )
        """,
        "CREATE INDEX unit_state ON unit (epoch, state, unitIndex)",
        """
        CREATE TABLE lease (
            id TEXT PRIMARY KEY,
            seq BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
            epoch BIGINT NOT NULL,
            unitIndex BIGINT NOT NULL,
            workerId TEXT NOT NULL REFERENCES worker (id),
            baseVersion BIGINT NOT NULL,
            issuedAt BIGINT NOT NULL,
            deadline BIGINT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('active', 'committed', 'expired', 'released')),
            FOREIGN KEY (epoch, unitIndex) REFERENCES unit (epoch, unitIndex)
        )
        """,
        "CREATE INDEX lease_unit ON lease (epoch, unitIndex)",
        "CREATE INDEX lease_active ON lease (deadline, seq) WHERE state = 'active'",
        // UNIQUE (epoch, unitIndex): a unit is done at most once per epoch, even if a bug
        // elsewhere skipped the state check.
        """
        CREATE TABLE accepted_update (
            leaseId TEXT PRIMARY KEY REFERENCES lease (id),
            seq BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
            epoch BIGINT NOT NULL,
            unitIndex BIGINT NOT NULL,
            workerId TEXT NOT NULL REFERENCES worker (id),
            baseVersion BIGINT NOT NULL,
            round BIGINT NOT NULL,
            samples BIGINT NOT NULL,
            loss DOUBLE PRECISION NOT NULL,
            weight DOUBLE PRECISION NOT NULL,
            flops DOUBLE PRECISION NOT NULL,
            bytes BIGINT NOT NULL,
            acceptedAt BIGINT NOT NULL,
            UNIQUE (epoch, unitIndex),
            FOREIGN KEY (epoch, unitIndex) REFERENCES unit (epoch, unitIndex)
        )
        """,
        "CREATE INDEX accepted_update_round ON accepted_update (round, seq)",
        // Counters only: a log of every rejection would let a hostile worker grow the database.
        "CREATE TABLE rejection (reason TEXT PRIMARY KEY, count BIGINT NOT NULL, lastAt BIGINT NOT NULL)",
        """
        CREATE TABLE round (
            round BIGINT PRIMARY KEY,
            version BIGINT NOT NULL,
            openedAt BIGINT NOT NULL,
            closedAt BIGINT NOT NULL,
            updates BIGINT NOT NULL,
            samples BIGINT NOT NULL,
            meanLoss DOUBLE PRECISION NOT NULL
        )
        """,
        """
        CREATE TABLE checkpoint (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            version BIGINT NOT NULL,
            round BIGINT NOT NULL,
            path TEXT NOT NULL,
            createdAt BIGINT NOT NULL
        )
        """,
        "CREATE INDEX checkpoint_round ON checkpoint (round)",
    ])]

    /// Identity check, then the migrations the database lacks, in one transaction under an
    /// advisory lock. A foreign or newer database is refused before anything is written.
    static func setUp(_ connection: PostgresConnection, location: String, logger: Logger) async throws {
        try await connection.withTransaction(logger: logger) { connection in
            let db = PostgresSession(connection: connection, logger: logger)
            try await db.execute("SELECT pg_advisory_xact_lock(\(setUpLock))")
            let found = try await installedVersion(db, location: location)
            for migration in migrations where migration.version > found {
                for statement in migration.statements {
                    try await db.execute(PostgresQuery(unsafeSQL: statement))
                }
                try await db.execute("""
                    INSERT INTO tributary_ledger (application, schema_version) VALUES (\(application), \(migration.version))
                    ON CONFLICT (application) DO UPDATE SET schema_version = excluded.schema_version
                    """)
            }
        }
    }

    /// The schema version of the ledger in this database's current schema (normally `public`),
    /// 0 when the schema holds no table at all. Throws for anything else.
    static func installedVersion(_ db: PostgresSession, location: String) async throws -> Int {
        let tables = try await db.all("""
            SELECT c.relname FROM pg_catalog.pg_class c
            JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
            ORDER BY c.relname
            """).map { try $0.decode(String.self) }
        if tables.isEmpty { return 0 }
        guard tables.contains(markerTable) else {
            let shown = tables.prefix(3).joined(separator: ", ") + (tables.count > 3 ? ", …" : "")
            throw LedgerError.notALedger(path: location, reason: "PostgreSQL database with unrelated tables: \(shown)")
        }
        let marks = try await db.all("SELECT application, schema_version FROM tributary_ledger")
            .map { try $0.decode((String, Int).self) }
        guard marks.count == 1, let (owner, version) = marks.first, owner == application else {
            let owners = marks.map(\.0).joined(separator: ", ")
            throw LedgerError.notALedger(path: location, reason: "its \(markerTable) table names '\(owners)', not '\(application)'")
        }
        if version > Self.version {
            throw LedgerError.newerSchema(path: location, found: version, supported: Self.version)
        }
        return version
    }
}
