import Foundation
internal import GRDB

/// The ledger's tables and how a file is recognised as a ledger.
enum SQLiteLedgerSchema {
    /// Written to the SQLite header (`PRAGMA application_id`) so another program's database,
    /// or ours opened by another program, is recognised as such. "TRBL".
    static let applicationID = 0x5452_424C
    /// `PRAGMA user_version`; bumped by each migration so an older build refuses a newer file.
    static let version = 1

    static let migrator: DatabaseMigrator = {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            // Dates are INTEGER milliseconds since 1970: exact round trips and cheap ordering.
            try db.execute(sql: """
                CREATE TABLE meta (
                    key TEXT PRIMARY KEY NOT NULL,
                    value TEXT NOT NULL
                ) WITHOUT ROWID;

                CREATE TABLE worker (
                    id TEXT PRIMARY KEY NOT NULL,
                    name TEXT NOT NULL,
                    tokenHash TEXT NOT NULL UNIQUE,
                    createdAt INTEGER NOT NULL,
                    lastSeenAt INTEGER NOT NULL,
                    samples INTEGER NOT NULL DEFAULT 0,
                    flops REAL NOT NULL DEFAULT 0,
                    acceptedUpdates INTEGER NOT NULL DEFAULT 0,
                    rejectedUpdates INTEGER NOT NULL DEFAULT 0
                );
                CREATE INDEX worker_createdAt ON worker(createdAt);

                CREATE TABLE unit (
                    epoch INTEGER NOT NULL,
                    unitIndex INTEGER NOT NULL,
                    sampleStart INTEGER NOT NULL,
                    sampleCount INTEGER NOT NULL,
                    state TEXT NOT NULL CHECK (state IN ('pending', 'leased', 'done')),
                    PRIMARY KEY (epoch, unitIndex)
                ) WITHOUT ROWID;
                CREATE INDEX unit_state ON unit(epoch, state, unitIndex);

                CREATE TABLE lease (
                    id TEXT PRIMARY KEY NOT NULL,
                    epoch INTEGER NOT NULL,
                    unitIndex INTEGER NOT NULL,
                    workerId TEXT NOT NULL REFERENCES worker(id),
                    baseVersion INTEGER NOT NULL,
                    issuedAt INTEGER NOT NULL,
                    deadline INTEGER NOT NULL,
                    state TEXT NOT NULL CHECK (state IN ('active', 'committed', 'expired', 'released')),
                    FOREIGN KEY (epoch, unitIndex) REFERENCES unit(epoch, unitIndex)
                );
                CREATE INDEX lease_unit ON lease(epoch, unitIndex);
                CREATE INDEX lease_active ON lease(state) WHERE state = 'active';

                -- UNIQUE (epoch, unitIndex): a unit is done at most once per epoch, even if a bug
                -- elsewhere skipped the state check.
                CREATE TABLE accepted_update (
                    leaseId TEXT PRIMARY KEY NOT NULL REFERENCES lease(id),
                    epoch INTEGER NOT NULL,
                    unitIndex INTEGER NOT NULL,
                    workerId TEXT NOT NULL REFERENCES worker(id),
                    baseVersion INTEGER NOT NULL,
                    round INTEGER NOT NULL,
                    samples INTEGER NOT NULL,
                    loss REAL NOT NULL,
                    weight REAL NOT NULL,
                    flops REAL NOT NULL,
                    bytes INTEGER NOT NULL,
                    acceptedAt INTEGER NOT NULL,
                    UNIQUE (epoch, unitIndex),
                    FOREIGN KEY (epoch, unitIndex) REFERENCES unit(epoch, unitIndex)
                );
                CREATE INDEX accepted_update_round ON accepted_update(round);

                -- Counters only: a log of every rejection would let a hostile worker grow the file.
                CREATE TABLE rejection (
                    reason TEXT PRIMARY KEY NOT NULL,
                    count INTEGER NOT NULL,
                    lastAt INTEGER NOT NULL
                ) WITHOUT ROWID;

                CREATE TABLE round (
                    round INTEGER PRIMARY KEY NOT NULL,
                    version INTEGER NOT NULL,
                    openedAt INTEGER NOT NULL,
                    closedAt INTEGER NOT NULL,
                    updates INTEGER NOT NULL,
                    samples INTEGER NOT NULL,
                    meanLoss REAL NOT NULL
                );

                CREATE TABLE checkpoint (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    version INTEGER NOT NULL,
                    round INTEGER NOT NULL,
                    path TEXT NOT NULL,
                    createdAt INTEGER NOT NULL
                );
                CREATE INDEX checkpoint_round ON checkpoint(round);
                """)
            try db.execute(sql: "PRAGMA application_id = \(applicationID)")
            try db.execute(sql: "PRAGMA user_version = 1")
        }
        return migrator
    }()

    /// Refuses a database that is neither empty nor a ledger this build can read. Runs before
    /// anything is written, so a foreign file is left exactly as it was.
    static func checkIdentity(_ db: Database, location: String) throws {
        let applicationID = try Int.fetchOne(db, sql: "PRAGMA application_id") ?? 0
        let userVersion = try Int.fetchOne(db, sql: "PRAGMA user_version") ?? 0
        if applicationID == Self.applicationID {
            if userVersion > version {
                throw LedgerError.newerSchema(path: location, found: userVersion, supported: version)
            }
            if try migrator.hasBeenSuperseded(db) {
                throw LedgerError.newerSchema(path: location, found: max(userVersion, version + 1), supported: version)
            }
            return
        }
        let tables = try String.fetchAll(db, sql: """
            SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name LIMIT 3
            """)
        if applicationID == 0 && tables.isEmpty {
            return  // a new or empty database: the migrator creates the ledger in it
        }
        if applicationID != 0 {
            let hex = String(UInt32(truncatingIfNeeded: applicationID), radix: 16)
            throw LedgerError.notALedger(path: location, reason: "SQLite database of another application, application_id 0x\(hex)")
        }
        throw LedgerError.notALedger(path: location,
                                     reason: "SQLite database with unrelated tables: \(tables.joined(separator: ", "))")
    }
}
