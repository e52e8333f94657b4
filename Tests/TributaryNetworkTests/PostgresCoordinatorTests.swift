import Foundation
import TributaryCoordinator
import TributaryLedger
import TributaryWorker
import XCTest

/// The whole coordinator on a PostgreSQL ledger: workers train through it, credit lands in
/// the database, and a restarted coordinator resumes from what the database says.
/// Deploy/test.sh starts the throw-away server; without it this test fails, it does not skip.
final class PostgresCoordinatorTests: XCTestCase {
    func testTrainingCreditAndRestartOnAPostgreSQLLedger() async throws {
        let url = try Self.freshDatabaseURL()
        let dir = try temporaryDirectory("postgres-job")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var config = RunningCoordinator.config(directory: dir) { c in
            c.storage.ledger = url
            c.optimizer.totalRounds = 4
            c.rounds.unitsPerRound = 3
            c.storage.checkpointEveryRounds = 2
        }
        let coordinator = try await RunningCoordinator.start(config)
        try await RunningCoordinator.runWorkers(2, against: coordinator, directory: dir, prefix: "pg")
        let status = coordinator.job.status()
        XCTAssertEqual(status.version, 4)
        XCTAssertEqual(status.updatesAccepted, 12)
        XCTAssertLessThan(status.trainingLoss.last?.value ?? .infinity, status.trainingLoss.first?.value ?? 0,
                          "the loss falls")
        let credit = try await coordinator.job.workers().workers
        XCTAssertEqual(credit.count, 2)
        XCTAssertEqual(credit.reduce(0) { $0 + $1.samples }, 12 * config.units.samplesPerUnit,
                       "every accepted unit is credited in the database")
        await coordinator.stop()

        // A new coordinator on the same database continues at version 4 with the same history.
        config.optimizer.totalRounds = 6
        let reopened = try await TrainingJob.open(config: config, logger: quietLogger("test.reopen"))
        let resumed = reopened.status()
        XCTAssertEqual(resumed.version, 4)
        XCTAssertEqual(resumed.trainingLoss.map(\.round), [1, 2, 3, 4])
        XCTAssertEqual(resumed.workers.total, 2)
        await reopened.close()
    }

    /// A new database on the test server (as its superuser, through psql on the socket).
    static func freshDatabaseURL() throws -> String {
        let variable = "TRIBUTARY_TEST_POSTGRES_URL"
        guard let admin = ProcessInfo.processInfo.environment[variable], !admin.isEmpty else {
            throw TestServerMissing("\(variable) is not set: run the tests through Deploy/test.sh, which starts a PostgreSQL server")
        }
        guard case let .postgres(settings) = try LedgerLocation.parse(admin, dataDirectory: "/nonexistent"),
              case let .unixSocket(socketDirectory, port) = settings.endpoint else {
            throw TestServerMissing("\(variable) must name the test server's Unix socket (Deploy/test-postgres.sh)")
        }
        let name = "tributary_job_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        let psql = Process()
        psql.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        psql.arguments = ["psql", "-h", socketDirectory, "-p", "\(port)", "-U", settings.user, "-d", settings.database,
                          "-v", "ON_ERROR_STOP=1", "-q", "-c", "CREATE DATABASE \(name)"]
        try psql.run()
        psql.waitUntilExit()
        guard psql.terminationStatus == 0 else { throw TestServerMissing("psql could not create a database") }
        return "postgres://\(settings.user)@localhost:\(port)/\(name)?host=\(socketDirectory)"
    }
}

/// A missing test server is a failure, not a skip.
struct TestServerMissing: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
