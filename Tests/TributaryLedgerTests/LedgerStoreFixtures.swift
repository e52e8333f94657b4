import Foundation
import XCTest
import Logging
import PostgresNIO
import TributaryLedger

/// The stores every shared ledger test runs against.
enum StoreKind: String, CaseIterable, Sendable {
    case sqlite = "SQLite"
    case postgres = "PostgreSQL"

    /// The store the current `forEachStore` body runs on, to tag assertion messages.
    @TaskLocal static var current: StoreKind?
}

/// One fresh, empty store's storage (a file, or a database of its own) and the stores opened on it.
final class StoreFixture: @unchecked Sendable {
    // @unchecked: used by one test body at a time, never concurrently.
    let kind: StoreKind
    private let open: () async throws -> any LedgerStore
    private var opened: [any LedgerStore] = []

    init(kind: StoreKind, open: @escaping () async throws -> any LedgerStore) {
        self.kind = kind
        self.open = open
    }

    /// Opens (another instance of) the store on this fixture's storage, as a restarted coordinator would.
    func openStore() async throws -> any LedgerStore {
        let store = try await open()
        opened.append(store)
        return store
    }

    func closeAll() async {
        for store in opened { await store.close() }
        opened.removeAll()
    }
}

/// A test case whose tests run on every `StoreKind`, each on fresh storage removed afterwards.
class LedgerStoreTestCase: LedgerFileTestCase {
    /// Runs `body` once per store kind. A failure on one store is recorded (tagged with the kind)
    /// and the next store still runs. Without `TRIBUTARY_TEST_POSTGRES_URL` the PostgreSQL run FAILS.
    func forEachStore(file: StaticString = #filePath, line: UInt = #line,
                      _ body: (StoreFixture) async throws -> Void) async {
        for kind in StoreKind.allCases {
            await StoreKind.$current.withValue(kind) {
                await runOn(kind, file: file, line: line, body)
            }
        }
    }

    private func runOn(_ kind: StoreKind, file: StaticString, line: UInt,
                       _ body: (StoreFixture) async throws -> Void) async {
        let fixture: StoreFixture
        var database: String?
        do {
            switch kind {
            case .sqlite:
                let file = path("ledger-\(UUID().uuidString).sqlite")
                fixture = StoreFixture(kind: kind) { try SQLiteLedger(path: file) }
            case .postgres:
                let settings = try await PostgresTestServer.createDatabase()
                database = settings.database
                fixture = StoreFixture(kind: kind) { try await PostgresLedger.open(settings) }
            }
        } catch {
            return XCTFail("[\(kind.rawValue)] \(error)", file: file, line: line)
        }
        do {
            try await body(fixture)
        } catch {
            XCTFail("[\(kind.rawValue)] threw \(error)", file: file, line: line)
        }
        await fixture.closeAll()
        if let database {
            do { try await PostgresTestServer.dropDatabase(database) } catch {
                XCTFail("[\(kind.rawValue)] could not drop test database \(database): \(error)", file: file, line: line)
            }
        }
    }
}

/// The server named by `TRIBUTARY_TEST_POSTGRES_URL` (Deploy/test.sh starts one): a database per
/// test is created from its maintenance database and dropped afterwards.
enum PostgresTestServer {
    static let variable = "TRIBUTARY_TEST_POSTGRES_URL"

    struct NotConfigured: Error, CustomStringConvertible {
        var description: String {
            "\(PostgresTestServer.variable) is not set, so the PostgreSQL ledger tests cannot run: run "
                + "`bash Deploy/test.sh` (it starts a throw-away server), or start one with "
                + "`dir=$(bash Deploy/test-postgres.sh start)` and export "
                + "\(PostgresTestServer.variable)=$(bash Deploy/test-postgres.sh url \"$dir\")"
        }
    }

    /// The settings of the server's maintenance database (from the URL).
    static func adminSettings() throws -> PostgresLedgerSettings {
        guard let url = ProcessInfo.processInfo.environment[variable], !url.isEmpty else { throw NotConfigured() }
        guard case let .postgres(settings) = try LedgerLocation.parse(url, dataDirectory: "/nonexistent") else {
            throw LedgerError.invalidLocation("\(variable) must be a postgres:// URL")
        }
        return settings
    }

    /// A new, empty database; its settings point at it.
    static func createDatabase() async throws -> PostgresLedgerSettings {
        var settings = try adminSettings()
        let name = "tributary_test_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        // Database names cannot be bound parameters; this one is made of [a-z0-9_] only.
        try await execute("CREATE DATABASE \(name)", in: settings.database)
        settings.database = name
        return settings
    }

    static func dropDatabase(_ name: String) async throws {
        try await execute("DROP DATABASE IF EXISTS \(name) WITH (FORCE)", in: try adminSettings().database)
    }

    /// Runs statements as the server's superuser, outside the ledger (to plant foreign tables etc.).
    /// Returns the first column of the last statement's rows, as text.
    @discardableResult
    static func execute(_ statements: String..., in database: String) async throws -> [String] {
        var settings = try adminSettings()
        settings.database = database
        let connection = try await PostgresConnection.connect(configuration: configuration(settings), id: 1,
                                                              logger: logger)
        do {
            var result: [String] = []
            for statement in statements {
                let rows = try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger).collect()
                result = try rows.map { try $0.decode(String.self) }
            }
            try await connection.close()
            return result
        } catch {
            try? await connection.close()
            throw error
        }
    }

    private static let logger = Logger(label: "ledger-tests", factory: { _ in SwiftLogNoOpLogHandler() })

    private static func configuration(_ settings: PostgresLedgerSettings) -> PostgresConnection.Configuration {
        switch settings.endpoint {
        case let .unixSocket(directory, port):
            return .init(unixSocketPath: "\(directory)/.s.PGSQL.\(port)", username: settings.user,
                         password: settings.password, database: settings.database)
        case let .tcp(host, port):
            return .init(host: host, port: port, username: settings.user, password: settings.password,
                         database: settings.database, tls: .disable)
        }
    }
}
