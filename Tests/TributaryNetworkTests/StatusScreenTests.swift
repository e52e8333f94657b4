import AsyncHTTPClient
import Foundation
import TributaryModels
import TributaryProtocol
import XCTest
#if TRIBUTARY_CLI_TESTS
@testable import tributary

/// `tributary status`'s screen (`StatusScreen`, `WorkerTable`, `ScreenLine`): exact lines
/// at 60 columns (DashboardTests holds the 80-column text), every line within the width at
/// any width, the volunteers table sized to the screen's height, and the worker list read
/// page by page.
final class StatusScreenTests: XCTestCase {
    static let now = DashboardTests.fixtureNow

    func fixture() throws -> StatusReport { try DashboardTests.report(DashboardTests.fixtureJSON) }

    func lines(_ status: StatusReport, workers: [WorkerSummary]? = nil, width: Int, height: Int? = nil,
               color: Bool = false) -> [String] {
        StatusScreen.lines(status, workers: .workers(workers ?? DashboardTests.fixtureWorkers(now: Self.now)), width: width,
                           height: height, now: Self.now, color: color)
    }

    /// At 60 columns the sample count of the replicas is left out (the line would be 62
    /// wide), the refusal reasons are cut, and the table leaves out its "refused" column.
    func testFixtureAt60Columns() throws {
        XCTAssertEqual(lines(try fixture(), width: 60), [
            "job        demo  running",
            "model      gpt 4×128 · 812,160 parameters · 6 shards · sync",
            "version    █████········· 120/300 40% · round 121 · epoch 2",
            "loss       1.5000  █▆▄▃▃▂▁▁",
            "val loss   2.2500 at round 100",
            "units      20 done · 3 leased · 77 pending (100/epoch)",
            "time       last round 1.2s · ETA 12m40s",
            "since coordinator start 5m03s (a restart resets these)",
            "speed      123 samples/s · 7898 tokens/s (last minute)",
            "traffic    in 1.2 MiB (×3.0 vs dense 3.6 MiB) · out 34.0 MiB",
            "updates    480 accepted · 3 rejected (stale_version 2, inva…",
            "leases     1 expired",
            "validation 12 replicas · 9 confirmed · 3 disputes",
            "           2 replaced · 1 held back · 1 banned",
            "workers    3 active · 4 recent · 5 total",
            "  worker         samples  share  accepted  last seen  state",
            "  alice           12,800  31.2%        50  1m ago     active",
            "  bob-the-very…    9,600  23.4%        38  1m ago     active",
            "  carol            9,600  23.4%        37  1m ago     active",
            "  dave             7,400  18.0%        29  2h ago     idle",
            "  evil?[31m        1,600   3.9%         6  3d ago     banned",
        ])
    }

    func testFixtureAt80ColumnsIsTheDashboardTestsText() throws {
        XCTAssertEqual(lines(try fixture(), width: 80).map { $0 + "\n" }.joined(), DashboardTests.fixtureText)
    }

    /// Names a volunteer may choose: wide characters count two columns, combining marks none.
    func testNoLineIsWiderThanTheScreen() throws {
        var status = try fixture()
        status.model = GPTConfig(vocabSize: 65, blockSize: 64, nLayer: 4, nHead: 4, nEmbd: 128).summary
        status.job = "a job with a long name that goes on and on, 训练一个模型"
        var workers = DashboardTests.fixtureWorkers(now: Self.now)
        for (i, name) in ["数据志愿者的电脑很长很长的名字", "🚀 rocket 🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀", "cafe\u{301} ne\u{301}e ".repeated(6)].enumerated() {
            workers.append(WorkerSummary(id: "w-x\(i)", name: name, samples: 123_456_789 * (i + 1), flops: 1,
                                         acceptedUpdates: 1_234_567, rejectedUpdates: 89_012, lastSeen: Self.now, active: true))
        }
        for width in [20, 24, 30, 40, 50, 59, 60, 61, 72, 80, 100, 132, 200] {
            for height in [nil, 10, 24, 60] {
                let plain = lines(status, workers: workers, width: width, height: height)
                for line in plain {
                    XCTAssertLessThanOrEqual(TerminalText.width(line), width, "width \(width): \(line)")
                }
                if let height { XCTAssertLessThanOrEqual(plain.count, max(height, 18), "width \(width), height \(height)") }
                let painted = lines(status, workers: workers, width: width, height: height, color: true)
                XCTAssertEqual(painted.map { $0.replacingOccurrences(of: "\u{1B}\\[[0-9;]*m", with: "", options: .regularExpression) },
                               plain, "colour adds escapes only (width \(width))")
            }
        }
        XCTAssertEqual(TerminalText.width("数据"), 4)
        XCTAssertEqual(TerminalText.width("🚀a"), 3)
        XCTAssertEqual(TerminalText.width("cafe\u{301}"), 4)
        XCTAssertEqual(TerminalText.clip("数据志愿者", to: 6), "数据…")
        XCTAssertEqual(TerminalText.clip("abcdef", to: 6), "abcdef")
        XCTAssertEqual(TerminalText.clip("abcdefg", to: 6), "abcde…")
        XCTAssertEqual(TerminalText.clip("ab defgh", to: 6), "ab de…")
        XCTAssertEqual(TerminalText.clip("ab defgh", to: 6, atWord: true), "ab…")
        XCTAssertEqual(TerminalText.clip("abcd fgh", to: 6, atWord: true), "abcd…")
    }

    /// A real model summary ends with its own parameter count: the line says the count
    /// once, cuts the summary (at a word) before it leaves anything else out, and keeps the
    /// count whole.
    func testTheParameterCountAppearsOnceAtEveryWidth() throws {
        var status = try fixture()
        let config = GPTConfig(vocabSize: 65, blockSize: 64, nLayer: 4, nHead: 4, nEmbd: 128)
        status.model = config.summary
        status.parameters = config.parameterCount
        XCTAssertEqual(StatusScreen.modelDescription(config.summary), "GPT 4 layers × 4 heads × 128 wide, context 64, vocabulary 65")
        XCTAssertEqual(lines(status, width: 80)[1],
                       "model      GPT 4 layers × 4 heads × 128… · 809,856 parameters · 6 shards · sync")
        XCTAssertEqual(lines(status, width: 60)[1], "model      GPT 4 layers × 4 heads ×… · 809,856 parameters")
        XCTAssertEqual(lines(status, width: 200)[1],
                       "model      GPT 4 layers × 4 heads × 128 wide, context 64, vocabulary 65 · 809,856 parameters · 6 shards · sync")
        for width in 20...200 {
            let model = lines(status, width: width)[1]
            XCTAssertLessThanOrEqual(model.components(separatedBy: "parameters").count, 2, model)
        }
        // A summary that is nothing but the count.
        status.model = "809,856 parameters"
        XCTAssertEqual(lines(status, width: 80)[1], "model      809,856 parameters · 6 shards · sync")
    }

    /// On a screen the table takes the lines left: the top workers by samples, then how
    /// many more there are, with their samples and share.
    func testTableFitsTheScreensHeight() throws {
        let status = try fixture()
        let twenty = lines(status, width: 80, height: 20)
        XCTAssertEqual(twenty.count, 20)
        XCTAssertEqual(Array(twenty.suffix(5)), [
            "  worker                    samples  share  accepted  refused  last seen  state",
            "  alice                      12,800  31.2%        50        0  1m ago     active",
            "  bob-the-very-long-named…    9,600  23.4%        38        1  1m ago     active",
            "  carol                       9,600  23.4%        37        2  1m ago     active",
            "  and 2 more (9,000 samples, 22.0%)",
        ])
        // Too little room: one worker and the rest counted (columns are as wide as what they show).
        let tiny = lines(status, width: 80, height: 10)
        XCTAssertEqual(Array(tiny.suffix(3)), [
            "  worker  samples  share  accepted  refused  last seen  state",
            "  alice    12,800  31.2%        50        0  1m ago     active",
            "  and 4 more (28,200 samples, 68.8%)",
        ])
        XCTAssertEqual(lines(status, width: 80, height: 21).count, 21, "all five fit")
        XCTAssertFalse(lines(status, width: 80, height: 21).contains { $0.contains("more") })
        // Not a screen: the top ten.
        let many = (0..<25).map { i in
            WorkerSummary(id: "w-\(i)", name: "n\(i)", samples: 100 * i, flops: 0, acceptedUpdates: i, rejectedUpdates: 0,
                          lastSeen: Self.now, active: false)
        }
        let piped = lines(status, workers: many, width: 80)
        XCTAssertEqual(piped.filter { $0.hasPrefix("  n") }.map { String($0.prefix(6)) },
                       ["  n24 ", "  n23 ", "  n22 ", "  n21 ", "  n20 ", "  n19 ", "  n18 ", "  n17 ", "  n16 "])
        // 100 × (0 + … + 15) = 12,000 of 30,000 samples.
        XCTAssertEqual(piped.last, "  and 16 more (12,000 samples, 40.0%)")
    }

    func testEmptyAndUnavailableWorkerLists() throws {
        let status = try fixture()
        XCTAssertEqual(lines(status, workers: [], width: 80).last, "  no volunteer has joined yet")
        let unavailable = StatusScreen.lines(status, workers: .unavailable("the coordinator answered HTTP 401 Unauthorized"),
                                             width: 60, height: nil, now: Self.now, color: false)
        XCTAssertEqual(unavailable.last, "  no worker list: the coordinator answered HTTP 401 Unautho…")
    }

    func testAges() {
        XCTAssertEqual(WorkerTable.ago(-5), "just now")
        XCTAssertEqual(WorkerTable.ago(0.5), "just now")
        XCTAssertEqual(WorkerTable.ago(59.9), "59s ago")
        XCTAssertEqual(WorkerTable.ago(60), "1m ago")
        XCTAssertEqual(WorkerTable.ago(3_599), "59m ago")
        XCTAssertEqual(WorkerTable.ago(7_800), "2h ago")
        XCTAssertEqual(WorkerTable.ago(263_000), "3d ago")
        XCTAssertEqual(WorkerTable.ago(.infinity), "just now")
        XCTAssertEqual(WorkerTable.ago(1e300), "11574074d ago")
    }

    /// The list is read page by page until the coordinator names no next page.
    func testWorkerListIsReadPageByPage() async throws {
        let fixture = try await DashboardTests.FixtureServer.start()
        let client = StatusCommand.makeClient()
        let paged = await StatusCommand.fetchWorkers(fixture.url + "/paged", client: client)
        let missing = await StatusCommand.fetchWorkers(fixture.url + "/complete", client: client)
        try? await client.shutdown()
        await fixture.stop()
        guard case let .workers(list) = paged else { return XCTFail("\(paged)") }
        XCTAssertEqual(list.map(\.id), ["w-1", "w-2", "w-3", "w-4", "w-5"])
        XCTAssertEqual(missing, DashboardTests.olderCoordinator)
    }
}

private extension String {
    func repeated(_ n: Int) -> String { String(repeating: self, count: n) }
}
#endif
