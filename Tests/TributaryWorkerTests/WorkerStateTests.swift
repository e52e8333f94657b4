import Foundation
import Hummingbird
import Logging
import TributaryCheckpoint
import TributaryProtocol
@testable import TributaryWorker
import XCTest

/// Issue 14, worker state: one process per data directory, leases given back on failure.
final class WorkerStateTests: XCTestCase {
    func testADataDirectoryIsLockedByOneProcessAtATime() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tributary-lock-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let first = try DirectoryLock.acquire(dir, name: "worker.lock")
        XCTAssertThrowsError(try DirectoryLock.acquire(dir, name: "worker.lock")) { error in
            XCTAssertEqual(error as? DirectoryLock.Failure,
                           .held(path: "\(dir)/worker.lock", by: "pid \(ProcessInfo.processInfo.processIdentifier)"))
        }
        first.release()
        let again = try DirectoryLock.acquire(dir, name: "worker.lock")
        again.release()
    }

    func testASecondWorkerOnTheSameDirectoryRefusesAndAFailingUnitGivesItsLeaseBack() async throws {
        // The coordinator grants a lease, then fails the manifest: the worker must release
        // the lease (DELETE) rather than leave it to expire.
        let server = try await HostileCoordinator.start { request, _ in
            switch request.uri.path {
            case Routes.register: return try HostileCoordinator.registered()
            case Routes.leases: return try HostileCoordinator.grant()
            case Routes.lease("l-1"): return Response(status: .noContent)
            default: return try HostileCoordinator.problem(.internalError)
            }
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tributary-wstate-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var logger = Logger(label: "test.state")
        logger.logLevel = .critical
        var options = WorkerOptions(coordinator: server.url, joinToken: "j", dataDirectory: dir)
        options.retry = RetryPolicy(base: .milliseconds(50), cap: .milliseconds(100))
        let worker = WorkerDaemon(options: options, logger: logger)
        let running = Task { try await worker.run() }
        try await Task.sleep(for: .milliseconds(800))
        let second = WorkerDaemon(options: options, logger: logger)
        do {
            try await second.run()
            XCTFail("a second worker on the same data directory refuses")
        } catch let failure as DirectoryLock.Failure {
            XCTAssertTrue(failure.description.contains("locked by another process"), failure.description)
        }
        await worker.requestStop()
        running.cancel()
        _ = try? await running.value
        XCTAssertGreaterThanOrEqual(server.log.count("POST \(Routes.leases)"), 2)
        XCTAssertGreaterThanOrEqual(server.log.count("DELETE \(Routes.lease("l-1"))"), server.log.count("POST \(Routes.leases)") - 1,
                                    "every lease whose unit failed was given back: \(server.log.requests)")
        await server.stop()
    }
}
