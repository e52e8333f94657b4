import Foundation
import TributaryCoordinator
import TributaryProtocol
import TributaryTensor
import XCTest

/// `/metrics` as Prometheus' own linter sees it: a live coordinator after a short job (so the
/// counters, the round histogram and the refusals are not empty), through `promtool check
/// metrics`, which must exit 0 and print nothing (any lint finding is printed and exits 3).
final class PromtoolTests: XCTestCase {
    override func setUp() { ComputeThreads.set(1) }

    func testMetricsPassPromtoolLint() async throws {
        let promtool = try ExternalTool.require("promtool", for: "/metrics' Prometheus format")
        // The linter is live: a counter without _total is a finding.
        let bad = try await ExternalTool.run(promtool, ["check", "metrics"],
                                             stdin: Data("# HELP x_count X.\n# TYPE x_count counter\nx_count 1\n".utf8))
        XCTAssertNotEqual(bad.status, 0, "promtool accepted a counter without _total: \(bad.output)")
        XCTAssertTrue(bad.output.contains("_total"), bad.output)

        let (coordinator, dir) = try await RunningCoordinator.startInTemporaryDirectory("promtool") {
            $0.optimizer.totalRounds = 2
            $0.rounds.unitsPerRound = 2
        }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            try await RunningCoordinator.runWorkers(2, against: coordinator, directory: dir)
            let client = RawClient(base: coordinator.url)
            // One refusal, so that a labelled counter is in the text too.
            let refused = try await client.json(.POST, Routes.register, RegisterRequest(joinToken: "wrong-token", name: "x"))
            XCTAssertEqual(refused.status, 403)
            let reply = try await client.request(.GET, "/metrics")
            XCTAssertEqual(reply.status, 200)
            XCTAssertTrue(reply.headers.first(name: "Content-Type")?.hasPrefix("text/plain") ?? false,
                          "Content-Type: \(reply.headers.first(name: "Content-Type") ?? "none")")
            let text = String(decoding: reply.body, as: UTF8.self)
            XCTAssertTrue(text.contains("tributary_updates_accepted_total 4"), "4 units over 2 rounds:\n\(text)")
            XCTAssertTrue(text.contains("tributary_round_duration_seconds_count 2"), text)
            XCTAssertTrue(text.contains("tributary_updates_rejected_total{reason=\"bad_join_token\"} 1"), text)

            let lint = try await ExternalTool.run(promtool, ["check", "metrics"], stdin: Data(text.utf8), timeout: 30)
            XCTAssertEqual(lint.status, 0, "promtool check metrics:\n\(lint.output)\n--- /metrics:\n\(text)")
            XCTAssertEqual(lint.output.trimmingCharacters(in: .whitespacesAndNewlines), "", "lint findings")

            let head = try await client.request(.HEAD, "/metrics")
            XCTAssertEqual(head.status, 200)
            XCTAssertTrue(head.body.isEmpty)
        } catch {
            await coordinator.stop()
            throw error
        }
        await coordinator.stop()
    }
}
