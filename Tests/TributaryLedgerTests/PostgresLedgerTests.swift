import Foundation
import XCTest
import TributaryLedger

/// PostgreSQL only: recognising a database as a ledger, the schema's own constraints, opening
/// from configuration, and passwords kept out of messages. Needs TRIBUTARY_TEST_POSTGRES_URL
/// (Deploy/test.sh); without it these tests fail, they do not skip.
final class PostgresLedgerTests: XCTestCase {
    private var databases: [String] = []
    private var stores: [any LedgerStore] = []

    override func tearDown() async throws {
        for store in stores { await store.close() }
        stores.removeAll()
        for database in databases { try await PostgresTestServer.dropDatabase(database) }
        databases.removeAll()
    }

    /// A new, empty database of this test's (dropped in tearDown).
    private func freshDatabase() async throws -> PostgresLedgerSettings {
        let settings = try await PostgresTestServer.createDatabase()
        databases.append(settings.database)
        return settings
    }

    private func open(_ settings: PostgresLedgerSettings) async throws -> PostgresLedger {
        let store = try await PostgresLedger.open(settings)
        stores.append(store)
        return store
    }

    private func sql(_ statements: String..., in settings: PostgresLedgerSettings) async throws -> [String] {
        var result: [String] = []
        for statement in statements {
            result = try await PostgresTestServer.execute(statement, in: settings.database)
        }
        return result
    }

    func testForeignDatabaseIsRefusedAndLeftAlone() async throws {
        let settings = try await freshDatabase()
        _ = try await sql("CREATE TABLE notes (id BIGINT PRIMARY KEY, body TEXT)",
                          "INSERT INTO notes VALUES (1, 'hello')", in: settings)
        await expectLedgerError(try await open(settings),
                                .notALedger(path: settings.redacted, reason: "PostgreSQL database with unrelated tables: notes"))
        await expectThrows(try await open(settings)) { error in
            XCTAssertEqual(String(describing: error),
                           "\(settings.redacted) is not a Tributary ledger (PostgreSQL database with unrelated tables: "
                           + "notes); give the coordinator a database of its own (CREATE DATABASE)")
        }
        // Nothing was created or changed: the other program's table is all there is.
        let tables = try await sql("""
            SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'
            """, in: settings)
        XCTAssertEqual(tables, ["notes"])
        await expectEqual(try await sql("SELECT body FROM notes WHERE id = 1", in: settings), ["hello"])
    }

    func testNewerSchemaAndOtherApplicationAreRefused() async throws {
        let settings = try await freshDatabase()
        let first = try await open(settings)
        try await first.insertWorker(makeWorker("w1"))
        await first.close()

        _ = try await sql("UPDATE tributary_ledger SET schema_version = 2", in: settings)
        await expectLedgerError(try await open(settings), .newerSchema(path: settings.redacted, found: 2, supported: 1))
        _ = try await sql("UPDATE tributary_ledger SET schema_version = 1", in: settings)
        await expectEqual(try await open(settings).worker(id: "w1")?.id, "w1")

        _ = try await sql("UPDATE tributary_ledger SET application = 'someone-else'", in: settings)
        await expectLedgerError(try await open(settings), .notALedger(
            path: settings.redacted, reason: "its tributary_ledger table names 'someone-else', not 'tributary-ledger'"))
    }

    /// Two coordinators opening one empty database at once: one creates the tables, the other
    /// waits for it (advisory lock) and finds a ledger.
    func testConcurrentOpensOfAnEmptyDatabaseAllSucceed() async throws {
        let settings = try await freshDatabase()
        let opened = try await withThrowingTaskGroup(of: PostgresLedger.self) { group in
            for _ in 0..<4 { group.addTask { try await PostgresLedger.open(settings) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        stores.append(contentsOf: opened)
        try await opened[0].setMeta("k", "v")
        for store in opened { await expectEqual(try await store.meta("k"), "v") }
        await expectEqual(try await sql("SELECT schema_version::text FROM tributary_ledger", in: settings), ["1"])
    }

    /// After a server restart or an administrator ending sessions, the pool still holds dead
    /// connections: calls run again on a fresh one instead of failing.
    func testCallsSurviveConnectionsTheServerClosed() async throws {
        let settings = try await freshDatabase()
        let ledger = try await open(settings)
        try await ledger.setMeta("k", "v")
        for round in 1...3 {
            let ended = try await sql("""
                SELECT count(pg_terminate_backend(pid))::text FROM pg_stat_activity
                WHERE datname = '\(settings.database)' AND pid <> pg_backend_pid()
                """, in: settings)
            XCTAssertGreaterThanOrEqual(Int(ended.first ?? "") ?? 0, 1, "round \(round): \(ended)")
            // pg_terminate_backend only signals: wait until the backends are gone, so that the
            // ledger meets connections the server has closed, not ones still closing.
            for _ in 0..<100 {
                let left = try await sql("""
                    SELECT count(*)::text FROM pg_stat_activity
                    WHERE datname = '\(settings.database)' AND pid <> pg_backend_pid()
                    """, in: settings)
                if left.first == "0" { break }
                try await Task.sleep(for: .milliseconds(20))
            }
            // Alternately a read and a write first on the dead connection.
            if round % 2 == 1 {
                await expectEqual(try await ledger.meta("k"), round == 1 ? "v" : "v\(round - 1)")
                try await ledger.setMeta("k", "v\(round)")
            } else {
                try await ledger.setMeta("k", "v\(round)")
                await expectEqual(try await ledger.meta("k"), "v\(round)")
            }
        }
        await expectEqual(try await ledger.meta("k"), "v3")
    }

    /// The schema itself refuses rows that break the ledger's invariants, as SQLite's does, even
    /// when written around the ledger's own checks.
    func testSchemaConstraintsHoldOutsideTheLedgersChecks() async throws {
        let settings = try await freshDatabase()
        let ledger = try await open(settings)
        try await ledger.insertWorker(makeWorker("w1"))
        try await ledger.insertUnits(makeUnits(epoch: 0, count: 2))
        let lease = makeLease("L1", unit: 0, worker: "w1")
        try await ledger.insertLease(lease)
        try await ledger.insertLease(makeLease("L2", unit: 0, worker: "w1"))
        try await ledger.recordAcceptedUpdate(makeUpdate(lease: lease, round: 1, samples: 1, flops: 1))

        let refused: [(String, String)] = [
            ("UPDATE unit SET state = 'lost' WHERE unitIndex = 1", "23514"),                    // check
            ("UPDATE lease SET state = 'paused' WHERE id = 'L2'", "23514"),                     // check
            ("INSERT INTO lease VALUES ('L3', DEFAULT, 0, 7, 'w1', 0, 0, 0, 'active')", "23503"), // unit key
            ("INSERT INTO lease VALUES ('L3', DEFAULT, 0, 1, 'ghost', 0, 0, 0, 'active')", "23503"), // worker key
            ("""
             INSERT INTO accepted_update VALUES ('L2', DEFAULT, 0, 0, 'w1', 0, 1, 1, 1.0, 1.0, 1.0, 1, 0)
             """, "23505"),                                                                   // done once
            ("INSERT INTO worker (id, name, tokenHash, createdAt, lastSeenAt) VALUES ('w2', 'n', 'sha256:w1-hash', 0, 0)",
             "23505"),                                                                        // token hash
            ("INSERT INTO unit VALUES (0, 1, 0, 1, 'pending')", "23505"),                        // unit key
        ]
        for (statement, state) in refused {
            await expectThrows(try await sql(statement, in: settings)) { error in
                XCTAssertTrue(String(reflecting: error).contains(state), "\(statement): \(String(reflecting: error))")
            }
        }
        await expectEqual(try await ledger.unitCounts(epoch: 0), [.pending: 1, .leased: 0, .done: 1])
    }

    func testOpeningFromConfigurationAndPasswordsStayOutOfMessages() async throws {
        var settings = try await freshDatabase()
        let secret = "pa55-Never-Shown"
        settings.password = secret  // the test server trusts its socket, so any password works
        let store = try await LedgerStores.open(.postgres(settings), logger: nil)
        stores.append(store)
        XCTAssertTrue(store is PostgresLedger)
        XCTAssertEqual(store.location, settings.redacted)
        XCTAssertFalse(store.location.contains(secret))
        try await store.setMeta("k", "v")
        await expectEqual(try await store.meta("k"), "v")

        let file = FileManager.default.temporaryDirectory.appendingPathComponent("ledger-\(UUID().uuidString).sqlite").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        let sqlite = try await LedgerStores.open(.sqlite(path: file), logger: nil)
        stores.append(sqlite)
        XCTAssertTrue(sqlite is SQLiteLedger)
        XCTAssertEqual(sqlite.location, file)

        // A server that is not there: a one-line error naming the URL, without the password.
        var missing = settings
        missing.endpoint = .unixSocket(directory: "/nonexistent-\(UUID().uuidString)", port: 5432)
        await expectThrows(try await PostgresLedger.open(missing)) { error in
            guard case let .cannotConnect(location, _)? = error as? LedgerError else { return XCTFail("\(error)") }
            XCTAssertEqual(location, missing.redacted)
            let text = String(describing: error)
            XCTAssertFalse(text.contains(secret), text)
            XCTAssertFalse(text.contains("\n"), text)
        }
        // A database that does not exist: the server's reason, again without the password.
        var absent = settings
        absent.database = "tributary_absent_\(UUID().uuidString.prefix(8).lowercased())"
        await expectThrows(try await PostgresLedger.open(absent)) { error in
            let text = String(describing: error)
            XCTAssertTrue(text.contains("does not exist"), text)
            XCTAssertFalse(text.contains(secret), text)
        }
    }
}
