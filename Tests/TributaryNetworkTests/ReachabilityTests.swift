import Foundation
import Logging
import NIOConcurrencyHelpers
import TributaryCoordinator
import TributaryWorker
import XCTest

/// A worker whose coordinator is away says so once, in words, and backs off quietly.
final class ReachabilityTests: XCTestCase {
    final class Lines: @unchecked Sendable {
        let lines = NIOLockedValueBox<[(Logger.Level, String, Logger.Metadata)]>([])
        struct Handler: LogHandler {
            let sink: Lines
            var metadata: Logger.Metadata = [:]
            var logLevel: Logger.Level = .debug
            subscript(metadataKey key: String) -> Logger.Metadata.Value? {
                get { metadata[key] }
                set { metadata[key] = newValue }
            }
            func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String, file: String,
                     function: String, line: UInt) {
                sink.lines.withLockedValue { $0.append((level, message.description, metadata ?? [:])) }
            }
        }
        func at(_ level: Logger.Level, _ prefix: String) -> [(Logger.Level, String, Logger.Metadata)] {
            lines.withLockedValue { $0.filter { $0.0 == level && $0.1.hasPrefix(prefix) } }
        }
    }

    func testAnAbsentCoordinatorIsSaidOnceInWords() async throws {
        // A port that was free a moment ago: the coordinator's, once it starts.
        let (probe, dir) = try await RunningCoordinator.startInTemporaryDirectory("reachability")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let port = URL(string: probe.url)?.port ?? 0
        await probe.stop()
        try FileManager.default.removeItem(atPath: dir)

        let sink = Lines()
        let logger = Logger(label: "test.reachability") { _ in Lines.Handler(sink: sink) }
        let options = WorkerOptions(coordinator: "http://127.0.0.1:\(port)", joinToken: RunningCoordinator.joinToken,
                                    name: "w", dataDirectory: "\(dir)-worker", maxUnits: 2)
        defer { try? FileManager.default.removeItem(atPath: "\(dir)-worker") }
        let worker = Task { try await WorkerDaemon(options: options, logger: logger).run() }
        try await Task.sleep(for: .seconds(2))
        let away = sink.at(.warning, "cannot reach the coordinator")
        XCTAssertEqual(away.count, 1, "said once, however many attempts failed")
        XCTAssertTrue(away.first?.2["reason"]?.description.contains("connection refused: nothing listens at that address") ?? false,
                      "\(away)")
        XCTAssertTrue(sink.at(.warning, "retrying").isEmpty, "the retries after it are quiet")

        worker.cancel()
        _ = try? await worker.value
        XCTAssertTrue(sink.at(.notice, "connected to the coordinator again").isEmpty, "never reached, never said")
    }
}
