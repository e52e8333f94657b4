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
}
