import Foundation
import Logging
import TributaryCoordinator
import TributaryTestSupport
import TributaryWorker
import XCTest

/// A worker whose coordinator is away says so once, in words, and backs off quietly.
final class ReachabilityTests: XCTestCase {
    func testAnAbsentCoordinatorIsSaidOnceInWords() async throws {
        // A port that was free a moment ago: the coordinator's, once it starts.
        let (probe, dir) = try await RunningCoordinator.startInTemporaryDirectory("reachability")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let port = URL(string: probe.url)?.port ?? 0
        await probe.stop()
        try FileManager.default.removeItem(atPath: dir)

        let sink = CapturedLog()
        let logger = sink.logger("test.reachability")
        let options = WorkerOptions(coordinator: "http://127.0.0.1:\(port)", joinToken: RunningCoordinator.joinToken,
                                    name: "w", dataDirectory: "\(dir)-worker", maxUnits: 2)
        defer { try? FileManager.default.removeItem(atPath: "\(dir)-worker") }
        let worker = Task { try await WorkerDaemon(options: options, logger: logger).run() }
        try await Task.sleep(for: .seconds(2))
        let away = sink.at(.warning, "cannot reach the coordinator")
        XCTAssertEqual(away.count, 1, "said once, however many attempts failed")
        XCTAssertTrue(away.first?.metadata["reason"]?.description.contains("connection refused: nothing listens at that address") ?? false,
                      "\(away)")
        XCTAssertTrue(sink.at(.warning, "retrying").isEmpty, "the retries after it are quiet")

        worker.cancel()
        _ = try? await worker.value
        XCTAssertTrue(sink.at(.notice, "connected to the coordinator again").isEmpty, "never reached, never said")
    }

    /// An https:// URL for a coordinator that serves plain HTTP fails its handshake at once,
    /// and the worker says so in words within seconds (it was 25 s of silence).
    func testHTTPSAgainstAPlainHTTPCoordinatorIsSaidAtOnce() async throws {
        let (coordinator, dir) = try await RunningCoordinator.startInTemporaryDirectory("https-mismatch")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let sink = CapturedLog()
        let https = coordinator.url.replacingOccurrences(of: "http://", with: "https://")
        let options = WorkerOptions(coordinator: https, joinToken: RunningCoordinator.joinToken,
                                    name: "w", dataDirectory: "\(dir)/worker", maxUnits: 1)
        let started = Date()
        let worker = Task { try await WorkerDaemon(options: options, logger: sink.logger("test.https")).run() }
        while sink.at(.warning, "cannot reach the coordinator").isEmpty, Date().timeIntervalSince(started) < 10 {
            try await Task.sleep(for: .milliseconds(20))
        }
        XCTAssertLessThan(Date().timeIntervalSince(started), 3)
        let away = sink.at(.warning, "cannot reach the coordinator")
        XCTAssertEqual(away.count, 1)
        XCTAssertTrue(away.first?.metadata["reason"]?.description.contains(
            "the TLS handshake failed (for a coordinator serving plain HTTP use http://; for a self-signed one give --ca-file)") ?? false,
            "\(away)")
        worker.cancel()
        _ = try? await worker.value
        await coordinator.stop()
    }

    /// The coordinator goes away mid-job and comes back on the same address: the worker says
    /// it is unreachable once, says when it is connected again, and goes on with the job.
    func testACoordinatorThatComesBackIsSaidOnceAndWorkGoesOn() async throws {
        let dir = try temporaryDirectory("reconnect")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = RunningCoordinator.config(directory: "\(dir)/c") { $0.rounds.unitsPerRound = 1 }
        let first = try await RunningCoordinator.start(config)
        let port = URL(string: first.url)?.port ?? 0
        let sink = CapturedLog()
        var options = WorkerOptions(coordinator: first.url, joinToken: RunningCoordinator.joinToken,
                                    name: "w", dataDirectory: "\(dir)/worker")
        options.retry = RetryPolicy(base: .milliseconds(100), cap: .seconds(1))  // tries again within a second
        let daemon = WorkerDaemon(options: options, logger: sink.logger("test.reconnect"))
        let worker = Task { try await daemon.run() }
        while first.job.status().version < 3 { try await Task.sleep(for: .milliseconds(20)) }
        await first.stop()
        while sink.at(.warning, "cannot reach the coordinator").isEmpty { try await Task.sleep(for: .milliseconds(20)) }
        try await Task.sleep(for: .seconds(1))
        let second = try await RunningCoordinator.start(config, port: port)
        let resumedFrom = second.job.status().version
        let deadline = Date().addingTimeInterval(60)
        while second.job.status().version < resumedFrom + 3, Date() < deadline { try await Task.sleep(for: .milliseconds(50)) }
        XCTAssertGreaterThanOrEqual(second.job.status().version, resumedFrom + 3, "work went on")
        XCTAssertEqual(sink.at(.warning, "cannot reach the coordinator").count, 1)
        XCTAssertEqual(sink.at(.notice, "connected to the coordinator again").count, 1)
        await daemon.requestStop()
        worker.cancel()
        _ = try? await worker.value
        await second.stop()
    }
}
