import Foundation
import XCTest
import TributaryLedger

/// `LedgerLocation.parse`: the configuration's ledger setting. No server needed.
final class LedgerLocationTests: XCTestCase {
    private struct Unreadable: Error, CustomStringConvertible {
        var description: String { "No such file or directory" }
    }

    private func parse(_ text: String, environment: [String: String] = [:],
                       files: [String: String] = [:]) throws -> LedgerLocation {
        try LedgerLocation.parse(text, dataDirectory: "/var/lib/tributary/job", environment: environment) { path in
            guard let contents = files[path] else { throw Unreadable() }
            return contents
        }
    }

    private func settings(_ text: String, environment: [String: String] = [:],
                          files: [String: String] = [:]) throws -> PostgresLedgerSettings {
        guard case let .postgres(settings) = try parse(text, environment: environment, files: files) else {
            throw LedgerError.invalidLocation("expected PostgreSQL settings for \(text)")
        }
        return settings
    }

    private func assertInvalid(_ text: String, environment: [String: String] = [:], files: [String: String] = [:],
                               mentioning fragment: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try parse(text, environment: environment, files: files), file: file, line: line) { error in
            guard case let .invalidLocation(message)? = error as? LedgerError else {
                return XCTFail("expected invalidLocation, got \(error)", file: file, line: line)
            }
            XCTAssertTrue(message.contains(fragment), "'\(message)' does not mention '\(fragment)'", file: file, line: line)
            XCTAssertFalse(String(describing: error).contains("\n"), file: file, line: line)
        }
    }

    func testSQLiteLocations() throws {
        XCTAssertEqual(try parse("sqlite"), .sqlite(path: "/var/lib/tributary/job/ledger.sqlite"))
        XCTAssertEqual(try parse("  sqlite\n"), .sqlite(path: "/var/lib/tributary/job/ledger.sqlite"))
        XCTAssertEqual(try parse("sqlite:/srv/ledgers/a.sqlite"), .sqlite(path: "/srv/ledgers/a.sqlite"))
        XCTAssertEqual(try parse("sqlite:other.sqlite"), .sqlite(path: "/var/lib/tributary/job/other.sqlite"))
        XCTAssertEqual(try LedgerLocation.parse("sqlite", dataDirectory: "/d/", environment: [:]), .sqlite(path: "/d/ledger.sqlite"))
        XCTAssertEqual(String(describing: try parse("sqlite:/srv/a.sqlite")), "sqlite:/srv/a.sqlite")
        assertInvalid("sqlite:", mentioning: "names no file")
        assertInvalid("mysql://root:hunter2@db/ledger", mentioning: "unknown kind of ledger 'mysql'")
        assertInvalid("", mentioning: "unknown kind of ledger")
    }

    func testTCPURLs() throws {
        XCTAssertEqual(try settings("postgres://tributary@db.example.org:6432/ledger"),
                       PostgresLedgerSettings(endpoint: .tcp(host: "db.example.org", port: 6432), user: "tributary",
                                              database: "ledger", password: nil, tls: .prefer))
        let defaults = try settings("postgresql://coordinator@10.0.0.5/jobs?sslmode=require")
        XCTAssertEqual(defaults.endpoint, .tcp(host: "10.0.0.5", port: 5432))
        XCTAssertEqual(defaults.tls, .require)
        XCTAssertEqual(defaults.redacted, "postgres://coordinator@10.0.0.5:5432/jobs?sslmode=require")
        XCTAssertEqual(try settings("postgres://u@[::1]:5433/d?sslmode=disable").endpoint, .tcp(host: "::1", port: 5433))
        XCTAssertEqual(try settings("postgres://u@[::1]:5433/d?sslmode=disable").redacted,
                       "postgres://u@[::1]:5433/d?sslmode=disable")
        // Percent-escapes in the user and database names.
        let escaped = try settings("postgres://job%40team@h/my%20ledger")
        XCTAssertEqual([escaped.user, escaped.database], ["job@team", "my ledger"])
        XCTAssertEqual(try settings(escaped.redacted), escaped)
    }

    func testUnixSocketURLs() throws {
        let socket = try settings("postgres://postgres@localhost/postgres?host=/tmp/xyz")
        XCTAssertEqual(socket.endpoint, .unixSocket(directory: "/tmp/xyz", port: 5432))
        XCTAssertEqual(socket.redacted, "postgres://postgres@/postgres?host=/tmp/xyz")
        XCTAssertEqual(try settings(socket.redacted), socket)
        let other = try settings("postgres://u@:5433/d?host=%2Fvar%2Frun%2Fpostgresql")
        XCTAssertEqual(other.endpoint, .unixSocket(directory: "/var/run/postgresql", port: 5433))
        XCTAssertEqual(try settings(other.redacted), other)
        // A host= that is not a path overrides the URL's host name, as in libpq.
        XCTAssertEqual(try settings("postgres://u@ignored/d?host=db2").endpoint, .tcp(host: "db2", port: 5432))
        assertInvalid("postgres://u@/d?host=/tmp/x&sslmode=require", mentioning: "cannot be used with a Unix socket")
    }

    func testPasswordComesFromFileThenEnvironment() throws {
        let files = ["/run/secrets/ledger": "from-file\n"]
        let environment = ["TRIBUTARY_LEDGER_PASSWORD": "from-tributary", "PGPASSWORD": "from-pg"]
        XCTAssertEqual(try settings("postgres://u@h/d?password_file=/run/secrets/ledger", environment: environment,
                                    files: files).password, "from-file")
        XCTAssertEqual(try settings("postgres://u@h/d", environment: environment).password, "from-tributary")
        XCTAssertEqual(try settings("postgres://u@h/d", environment: ["PGPASSWORD": "from-pg"]).password, "from-pg")
        XCTAssertEqual(try settings("postgres://u@h/d", environment: ["TRIBUTARY_LEDGER_PASSWORD": ""]).password, nil)
        XCTAssertNil(try settings("postgres://u@h/d").password)

        assertInvalid("postgres://u@h/d?password_file=/nope", mentioning: "cannot read the password file /nope")
        assertInvalid("postgres://u@h/d?password_file=/empty", files: ["/empty": "\n"], mentioning: "is empty")
        assertInvalid("postgres://u@h/d?password_file=/two", files: ["/two": "a\nb\n"], mentioning: "more than one line")
    }

    func testPasswordInsideTheURLIsRefusedWithoutBeingEchoed() {
        for text in ["postgres://admin:hunter2@db/ledger", "postgresql://admin:hunter2@db:5432/ledger?sslmode=require",
                     "postgres://admin:hunter2@/ledger?host=/tmp/s", "postgres://admin@db/ledger?password=hunter2",
                     "postgres://admin:p%40ss@hunter2@db/ledger"] {
            XCTAssertThrowsError(try parse(text), text) { error in
                let message = String(describing: error)
                XCTAssertTrue(message.contains("password_file"), message)
                XCTAssertTrue(message.contains("TRIBUTARY_LEDGER_PASSWORD"), message)
                XCTAssertFalse(message.contains("hunter2"), message)
                XCTAssertFalse(message.contains("\n"), message)
            }
        }
    }

    func testMalformedURLsSayWhatIsMissing() {
        assertInvalid("postgres://db.example.org/ledger", mentioning: "name the database user")
        assertInvalid("postgres://@db/ledger", mentioning: "name the database user")
        assertInvalid("postgres://u@db", mentioning: "name one database")
        assertInvalid("postgres://u@db/", mentioning: "name one database")
        assertInvalid("postgres://u@db/a/b", mentioning: "name one database")
        assertInvalid("postgres://u@/ledger", mentioning: "name the server")
        assertInvalid("postgres://u@db:0/ledger", mentioning: "port")
        assertInvalid("postgres://u@db:99999/ledger", mentioning: "port")
        assertInvalid("postgres://u@db:pg/ledger", mentioning: "port")
        assertInvalid("postgres://u@db/ledger?sslmode=verify-full", mentioning: "sslmode must be one of disable, prefer, require")
        assertInvalid("postgres://u@db/ledger?sslmod=require", mentioning: "unknown URL parameter 'sslmod'")
        assertInvalid("postgres://u@db/ledger?sslmode=disable&sslmode=require", mentioning: "given twice")
        assertInvalid("postgres://u@db/ledger#x", mentioning: "fragment")
        assertInvalid("postgres://u@[::1/ledger", mentioning: "unclosed")
        assertInvalid("postgres://u%zz@db/ledger", mentioning: "malformed %-escape")
    }

    func testDescriptionsNeverShowThePassword() throws {
        let secret = "s3cret-Pa55"
        let parsed = try parse("postgres://tributary@db:5432/ledger?password_file=/s",
                               files: ["/s": secret + "\n"])
        guard case let .postgres(settings) = parsed else { return XCTFail("\(parsed)") }
        XCTAssertEqual(settings.password, secret)
        var dumped = ""
        dump(settings, to: &dumped)
        var dumpedLocation = ""
        dump(parsed, to: &dumpedLocation)
        let texts = [settings.redacted, settings.description, settings.debugDescription, String(reflecting: settings),
                     "\(settings)", String(describing: parsed), String(reflecting: parsed), "\(parsed)", dumped,
                     dumpedLocation]
        for text in texts {
            XCTAssertFalse(text.contains(secret), text)
            XCTAssertTrue(text.contains("tributary@db:5432/ledger"), text)
        }
        XCTAssertTrue(settings.debugDescription.contains("password: set"), settings.debugDescription)
    }
}
