import AsyncHTTPClient
import Foundation
import Hummingbird
import NIOCore
import ServiceLifecycle
import TributaryCoordinator
import TributaryModels
import TributaryProtocol
import TributaryTensor
import TributaryWorker
import XCTest
#if TRIBUTARY_CLI_TESTS
@testable import tributary
#endif

/// The web dashboard (`DashboardPage`) and the `tributary status` command.
///
/// - The page must be self-contained (no external scripts, styles, fonts or hosts).
/// - A headless Chromium loads it from a live coordinator with two workers and we read
///   the DOM it built (chart paths, version, workers table) and keep screenshots under
///   `.build/test-artifacts/`. Chromium is installed with apt when missing (as root);
///   without it, or while the coordinator does not serve the page at `/`, the test skips.
/// - `tributary status` renders a fixed report to exact text: through the built
///   executable against a fixture server, and (when the test target is built with
///   `TRIBUTARY_CLI_TESTS` and depends on `tributary`) by calling `render` directly.
final class DashboardTests: XCTestCase {
    override func setUp() { ComputeThreads.set(1) }

    // MARK: - The page is self-contained

    func testPageIsSelfContained() throws {
        let html = DashboardPage.html
        XCTAssertTrue(html.hasPrefix("<!doctype html>"))
        XCTAssertTrue(html.contains("<meta name=\"viewport\""))
        XCTAssertTrue(html.contains("@media (max-width:"), "a media query for narrow screens")

        func matches(_ pattern: String) -> [String] {
            let regex = try! NSRegularExpression(pattern: pattern, options: [.caseInsensitive])
            let ns = html as NSString
            return regex.matches(in: html, range: NSRange(location: 0, length: ns.length)).map { ns.substring(with: $0.range) }
        }
        // No absolute or protocol-relative URL to any host.
        XCTAssertEqual(matches(#"https?://[^\s"'<>)]*"#), [])
        XCTAssertEqual(matches(#"["'(=]\s*//[a-z0-9-]+(\.[a-z0-9-]+)+"#), [])
        // No external resources of any kind.
        XCTAssertEqual(matches(#"<script\b[^>]*\bsrc\s*="#), [])
        XCTAssertEqual(matches(#"<link\b[^>]*\bhref\s*="#), [])
        XCTAssertEqual(matches(#"<(img|iframe|object|embed|audio|video|source)\b"#), [])
        XCTAssertEqual(matches(#"@import|@font-face"#), [])
        let style = try XCTUnwrap(Self.firstMatch(#"<style>[\s\S]*?</style>"#, in: html))
        XCTAssertNil(style.range(of: #"url\("#, options: [.regularExpression, .caseInsensitive]), "no url() in CSS")
        // One inline script, and it never parses strings as HTML (worker names are untrusted).
        XCTAssertEqual(matches(#"<script\b"#).count, 1)
        XCTAssertEqual(matches(#"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function"#), [])
        // The hooks tests and tools rely on.
        for id in ["loss-train", "loss-val", "workers-body", "version"] {
            XCTAssertEqual(matches(#"data-testid="\#(id)""#).count, 1, id)
        }
        XCTAssertTrue(html.contains("/v1/status") && html.contains("/v1/workers"))
        // The sample grid is fetched by the script and shown from a blob: URL (the only
        // image source the page's CSP allows besides data:).
        XCTAssertTrue(html.contains("\"/v1/samples/latest.png\"") && html.contains("URL.createObjectURL(blob)"))
        XCTAssertTrue(DashboardPage.contentSecurityPolicy.contains("img-src data: blob:;"))
        XCTAssertTrue(html.contains("Connection lost, retrying"))
    }

    // MARK: - The page in a real browser

    func testDashboardInHeadlessChromium() async throws {
        let dir = try temporaryDirectory("dashboard")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let rounds = 6
        let config = RunningCoordinator.config(directory: "\(dir)/coordinator") { c in
            c.name = "dashboard-test"
            c.optimizer.totalRounds = rounds
            c.rounds.unitsPerRound = 2
            c.storage.validationEveryRounds = 2
        }
        let coordinator = try await RunningCoordinator.start(config)
        do {
            try await checkDashboard(coordinator, dir: dir, rounds: rounds)
        } catch {
            await coordinator.stop()
            throw error
        }
        await coordinator.stop()
    }

    /// A private job (`auth.public_read: false`): the page loads, shows no data, and asks
    /// for the viewer's token instead of reporting a lost connection.
    func testPrivateDashboardAsksForAViewerToken() async throws {
        let dir = try temporaryDirectory("dashboard-private")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let coordinator = try await RunningCoordinator.start(RunningCoordinator.config(directory: "\(dir)/c") {
            $0.auth.publicRead = false
            $0.auth.viewerToken = "viewer-token-for-tests"
        })
        let chromium: String
        do { chromium = try await Self.chromium() } catch { await coordinator.stop(); throw error }
        let dump = try await Self.run(chromium, ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                                 "--no-first-run", "--user-data-dir=\(dir)/profile", "--virtual-time-budget=4000",
                                                 "--dump-dom", coordinator.url + "/"], timeout: 40)
        XCTAssertEqual(dump.status, 0, dump.stderr)
        let form = try XCTUnwrap(Self.firstMatch(#"<form[^>]*data-testid="token-form"[^>]*>"#, in: dump.stdout), dump.stdout)
        XCTAssertFalse(form.contains("hidden"), "the token form is shown: \(form)")
        let version = try XCTUnwrap(Self.firstMatch(#"(?<=data-testid="version" id="version">)[^<]*"#, in: dump.stdout))
        XCTAssertFalse(version.contains("/ 1000"), "no job data without the token: \(version)")
        await coordinator.stop()
    }

    private func checkDashboard(_ coordinator: EmbeddedCoordinator, dir: String, rounds: Int) async throws {
        let client = RawClient(base: coordinator.url)
        let page = try await client.request(.GET, "/")
        if page.status == 404 {
            throw XCTSkip("the coordinator does not serve the dashboard at / yet (404): route GET / to DashboardPage.html")
        }
        XCTAssertEqual(page.status, 200)
        XCTAssertTrue(page.headers.first(name: "Content-Type")?.hasPrefix("text/html") ?? false,
                      "Content-Type: \(page.headers.first(name: "Content-Type") ?? "none")")
        XCTAssertEqual(String(decoding: page.body, as: UTF8.self), DashboardPage.html)

        let chromium = try await Self.chromium()
        let started = Date()

        // Two volunteers, one with a name that is markup: it must show as text.
        let names = ["alice", "<img src=x onerror=alert(1)>bob"]
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (i, name) in names.enumerated() {
                let options = WorkerOptions(coordinator: coordinator.url, joinToken: RunningCoordinator.joinToken,
                                            name: name, dataDirectory: "\(dir)/worker-\(i)")
                let daemon = WorkerDaemon(options: options, logger: quietLogger("test.worker"))
                group.addTask { try await daemon.run() }   // returns when the job is complete
            }
            try await group.waitForAll()
        }
        let status = coordinator.job.status()
        XCTAssertEqual(status.version, rounds)
        XCTAssertGreaterThanOrEqual(status.trainingLoss.count, 4)
        let workersListed = try await client.request(.GET, Routes.workers).status == 200

        let url = coordinator.url + "/"
        let profile = "\(dir)/chromium-profile"
        let common = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                      "--no-default-browser-check", "--hide-scrollbars", "--user-data-dir=\(profile)",
                      "--virtual-time-budget=8000"]
        let dump = try await Self.run(chromium, common + ["--window-size=1280,900", "--dump-dom", url], timeout: 40)
        XCTAssertEqual(dump.status, 0, "chromium --dump-dom failed: \(dump.stderr.suffix(2000))")
        let dom = dump.stdout

        // The training-loss path has one point per reported round.
        let train = try XCTUnwrap(Self.firstMatch(#"<path[^>]*data-testid="loss-train"[^>]*>"#, in: dom), "no loss-train path in:\n\(dom.prefix(3000))")
        let d = try XCTUnwrap(Self.firstMatch(#"(?<=\sd=")[^"]*"#, in: train), train)
        let segments = d.filter { $0 == "L" }.count
        XCTAssertTrue(d.hasPrefix("M"), d)
        XCTAssertEqual(segments + 1, status.trainingLoss.count, d)
        let val = try XCTUnwrap(Self.firstMatch(#"<path[^>]*data-testid="loss-val"[^>]*>"#, in: dom))
        XCTAssertEqual(val.contains(#" d="M"#), !status.validationLoss.isEmpty, val)

        // The version text.
        let version = try XCTUnwrap(Self.firstMatch(#"(?<=data-testid="version" id="version">)[^<]*"#, in: dom))
        XCTAssertEqual(version, "\(status.version) / \(rounds)")

        // The workers table: two rows, names as text (the markup one escaped, not an element).
        let body = try XCTUnwrap(Self.firstMatch(#"<tbody data-testid="workers-body"[^>]*>[\s\S]*?</tbody>"#, in: dom))
        if workersListed {
            XCTAssertEqual(body.components(separatedBy: "<tr").count - 1, 2, body)
            XCTAssertTrue(body.contains(">alice<"), body)
            XCTAssertTrue(body.contains("&lt;img src=x onerror=alert(1)&gt;bob"), body)
            XCTAssertFalse(body.contains("<img"), body)
        } else {
            print("dashboard: GET \(Routes.workers) is not served; the table shows its placeholder")
            XCTAssertTrue(body.contains("does not list its workers"), body)
        }
        XCTAssertFalse(dom.contains("id=\"banner\" role=\"alert\">"), "the connection-lost banner is showing")

        // An API that does not answer: the page says so, visibly, and keeps retrying.
        let lost = try await Self.run(chromium, common + ["--window-size=1280,900", "--dump-dom", url + "?api=http://127.0.0.1:1"],
                                      timeout: 40)
        XCTAssertEqual(lost.status, 0, "chromium --dump-dom failed: \(lost.stderr.suffix(2000))")
        let banner = try XCTUnwrap(Self.firstMatch(#"<div class="banner" id="banner" role="alert"[^>]*>[^<]*"#, in: lost.stdout),
                                   String(lost.stdout.prefix(3000)))
        XCTAssertFalse(banner.contains("hidden"), banner)
        XCTAssertTrue(banner.contains("Connection lost, retrying"), banner)
        XCTAssertTrue(lost.stdout.contains(">offline<"), "the badge should say offline")

        // Screenshots: a laptop and a phone.
        let artifacts = Self.packageRoot.appendingPathComponent(".build/test-artifacts").path
        try FileManager.default.createDirectory(atPath: artifacts, withIntermediateDirectories: true)
        try dom.write(toFile: "\(artifacts)/dashboard-dom.html", atomically: true, encoding: .utf8)
        print("dashboard DOM: \(artifacts)/dashboard-dom.html")
        // A laptop, a phone, and a tall laptop window that also shows the volunteers table.
        for (label, size) in [("laptop", "1280,900"), ("phone", "390,844"), ("laptop-full", "1280,1400")] {
            let path = "\(artifacts)/dashboard-\(label).png"
            try? FileManager.default.removeItem(atPath: path)
            let shot = try await Self.run(chromium, common + ["--window-size=\(size)", "--screenshot=\(path)", url], timeout: 40)
            XCTAssertEqual(shot.status, 0, "chromium --screenshot failed: \(shot.stderr.suffix(2000))")
            let png = try XCTUnwrap(FileManager.default.contents(atPath: path), "no screenshot at \(path)")
            XCTAssertEqual(Array(png.prefix(4)), [0x89, 0x50, 0x4E, 0x47], "not a PNG")
            XCTAssertGreaterThan(png.count, 10_000)
            print("dashboard screenshot (\(label), \(size)): \(path)")
        }
        print(String(format: "dashboard: browser checks took %.1fs after the chromium check", Date().timeIntervalSince(started)))
    }

    // MARK: - `tributary status`: fixture

    /// A fixed report, as a coordinator sends it.
    static let fixtureJSON = """
    {"job":"demo","model":"gpt 4×128","parameters":812160,"shards":6,"mode":"sync","version":120,"round":121,
     "epoch":2,"total_rounds":300,"complete":false,"checkpointed_version":100,
     "training_loss":[{"round":113,"value":3.0},{"round":114,"value":2.5},{"round":115,"value":2.2},
                      {"round":116,"value":2.0},{"round":117,"value":1.9},{"round":118,"value":1.7},
                      {"round":119,"value":1.6},{"round":120,"value":1.5}],
     "validation_loss":[{"round":100,"value":2.25}],
     "workers":{"active":3,"seen_recently":4,"total":5},
     "units":{"done":20,"leased":3,"pending":77,"expired":1,"per_epoch":100},
     "samples_per_second":123.4,"tokens_per_second":7897.6,"bytes_in":1258291,"dense_bytes_in":3774873,
     "bytes_out":35651584,"updates_accepted":480,"updates_rejected":{"stale_version":2,"invalid_update":1,"duplicate_update":0},
     "last_round_seconds":1.25,"uptime_seconds":303,"eta_seconds":760,
     "replication":{"replicas":12,"replica_samples":96,"confirmed":9,"disputes":3,"replaced":2,"unresolved":1,
                    "refuted_replicas":1,"banned":1,"voided_by_ban":1}}
    """

    /// The fixture at 80 columns: every line fits; what the coordinator counts in memory
    /// stands under its heading; the volunteers most samples first (bob and carol tie,
    /// registration order decides), bob's name cut to the width left, evil's escape
    /// neutralised.
    static let fixtureText = """
    job        demo  running
    model      gpt 4×128 · 812,160 parameters · 6 shards · sync
    version    █████████████····················· 120/300 40% · round 121 · epoch 2
    loss       1.5000  █▆▄▃▃▂▁▁
    val loss   2.2500 at round 100
    units      20 done · 3 leased · 77 pending (100/epoch)
    time       last round 1.2s · ETA 12m40s
    since coordinator start 5m03s (a restart resets these)
    speed      123 samples/s · 7898 tokens/s (last minute)
    traffic    in 1.2 MiB (×3.0 vs dense 3.6 MiB) · out 34.0 MiB
    updates    480 accepted · 3 rejected (stale_version 2, invalid_update 1)
    leases     1 expired
    validation 12 replicas (96 samples) · 9 confirmed · 3 disputes
               2 replaced · 1 held back · 1 banned
    workers    3 active · 4 recent · 5 total
      worker                    samples  share  accepted  refused  last seen  state
      alice                      12,800  31.2%        50        0  1m ago     active
      bob-the-very-long-named…    9,600  23.4%        38        1  1m ago     active
      carol                       9,600  23.4%        37        2  1m ago     active
      dave                        7,400  18.0%        29        0  2h ago     idle
      evil?[31m                   1,600   3.9%         6        4  3d ago     banned

    """

    /// A finished job with nothing reported, rendered 60 columns wide.
    static let completeJSON = """
    {"job":"tiny","model":"mlp","parameters":1000,"shards":2,"mode":"async","version":10,"round":10,"epoch":0,
     "total_rounds":10,"complete":true,"checkpointed_version":10,"training_loss":[],"validation_loss":[],
     "workers":{"active":0,"seen_recently":1,"total":1},"units":{"done":10,"leased":0,"pending":0,"expired":0,"per_epoch":10},
     "samples_per_second":0,"tokens_per_second":0,"bytes_in":0,"dense_bytes_in":0,"bytes_out":512,"updates_accepted":10,
     "updates_rejected":{},"uptime_seconds":4000}
    """

    static let completeText = """
    job        tiny  complete
    model      mlp · 1,000 parameters · 2 shards · async
    version    ██████████████ 10/10 100% · done · epoch 0
    loss       –
    val loss   –
    units      10 done · 0 leased · 0 pending (10/epoch)
    time       last round – · ETA done
    since coordinator start 1h06m (a restart resets these)
    speed      0 samples/s (last minute)
    traffic    in 0 B · out 512 B
    updates    10 accepted · none rejected
    leases     0 expired
    workers    0 active · 1 recent · 1 total
      no worker list: this coordinator serves none

    """

    static func report(_ json: String) throws -> StatusReport {
        try WireJSON.decoder().decode(StatusReport.self, from: Data(json.utf8))
    }

    /// The fixture's five volunteers (41,000 samples), last seen minutes, hours and days
    /// before `now`: far enough from a unit's boundary that a test's delays do not change
    /// how their ages read. One name is long, one carries an escape sequence.
    static func fixtureWorkers(now: Date) -> [WorkerSummary] {
        [WorkerSummary(id: "w-1", name: "alice", samples: 12_800, flops: 4.1e12, acceptedUpdates: 50, rejectedUpdates: 0,
                       lastSeen: now.addingTimeInterval(-70), active: true),
         WorkerSummary(id: "w-2", name: "bob-the-very-long-named-volunteer-machine", samples: 9_600, flops: 3.1e12,
                       acceptedUpdates: 38, rejectedUpdates: 1, lastSeen: now.addingTimeInterval(-75), active: true),
         WorkerSummary(id: "w-3", name: "carol", samples: 9_600, flops: 3.1e12, acceptedUpdates: 37, rejectedUpdates: 2,
                       lastSeen: now.addingTimeInterval(-80), active: true),
         WorkerSummary(id: "w-4", name: "dave", samples: 7_400, flops: 2.4e12, acceptedUpdates: 29, rejectedUpdates: 0,
                       lastSeen: now.addingTimeInterval(-7_800), active: false),
         WorkerSummary(id: "w-5", name: "evil\u{1B}[31m", samples: 1_600, flops: 5e11, acceptedUpdates: 6, rejectedUpdates: 4,
                       lastSeen: now.addingTimeInterval(-263_000), active: false, banned: true)]
    }

    static let fixtureNow = Date(timeIntervalSince1970: 1_750_000_000)

    // MARK: - `tributary status`: unit tests (need the test target to depend on `tributary`)

    #if TRIBUTARY_CLI_TESTS
    /// The screen for `status` with the fixture's workers (or `workers`), no height limit.
    /// What the executable reads from a coordinator without `GET /v1/workers`.
    static let olderCoordinator = WorkerListing.unavailable("this coordinator serves none")

    static func render(_ status: StatusReport, workers: WorkerListing? = nil, width: Int, color: Bool) -> String {
        StatusScreen.block(status, workers: workers ?? .workers(fixtureWorkers(now: fixtureNow)), width: width, height: nil,
                           now: fixtureNow, color: color)
    }

    func testSparkline() {
        XCTAssertEqual(StatusScreen.sparkline([1, 2, 3, 4, 5, 6, 7, 8], width: 8), "▁▂▃▄▅▆▇█")
        XCTAssertEqual(StatusScreen.sparkline([8, 7, 6, 5, 4, 3, 2, 1], width: 8), "█▇▆▅▄▃▂▁")
        XCTAssertEqual(StatusScreen.sparkline([1, 2, 3, 4, 5, 6, 7, 8], width: 4), "▁▃▆█")   // the last 4, renormalised
        XCTAssertEqual(StatusScreen.sparkline([3.0, 2.5, 2.2, 2.0, 1.9, 1.7, 1.6, 1.5], width: 40), "█▆▄▃▃▂▁▁")
        XCTAssertEqual(StatusScreen.sparkline([2, 2, 2], width: 8), "▄▄▄")
        XCTAssertEqual(StatusScreen.sparkline([1, .nan, 3, .infinity], width: 8), "▁ █ ")
        XCTAssertEqual(StatusScreen.sparkline([], width: 8), "")
        XCTAssertEqual(StatusScreen.sparkline([1, 2], width: 0), "")
        XCTAssertEqual(StatusScreen.sparkline(Array(repeating: 1.0, count: 100) + [2], width: 40).count, 40)
    }

    func testRenderFixedReport() throws {
        XCTAssertEqual(Self.render(try Self.report(Self.fixtureJSON), width: 80, color: false), Self.fixtureText)
        XCTAssertEqual(Self.render(try Self.report(Self.completeJSON), workers: Self.olderCoordinator, width: 60, color: false),
                       Self.completeText)
    }

    func testCountsAgreeWithTheirNumber() {
        XCTAssertEqual(ProgressReporter.count(1, "worker"), "1 worker")
        XCTAssertEqual(ProgressReporter.count(0, "worker"), "0 workers")
        XCTAssertEqual(ProgressReporter.count(1200, "worker"), "1,200 workers")
    }

    /// A real model summary ends with its parameter count: the line says it once.
    func testRenderNamesTheParameterCountOnce() throws {
        var status = try Self.report(Self.fixtureJSON)
        status.model = GPTConfig(vocabSize: 65, blockSize: 64, nLayer: 4, nHead: 4, nEmbd: 128).summary
        let text = Self.render(status, width: 200, color: false)
        let model = try XCTUnwrap(text.split(separator: "\n").first { $0.hasPrefix("model") })
        XCTAssertEqual(model.components(separatedBy: "parameters").count, 2, String(model))
        XCTAssertTrue(model.hasSuffix("parameters · 6 shards · sync"), String(model))
    }

    func testRenderWithColorIsThePlainTextPlusEscapes() throws {
        let status = try Self.report(Self.fixtureJSON)
        let colored = Self.render(status, width: 80, color: true)
        XCTAssertTrue(colored.contains("\u{1B}[36m█▆▄▃▃▂▁▁\u{1B}[0m"), colored)
        XCTAssertTrue(colored.contains("\u{1B}[33m3 rejected\u{1B}[0m"), colored)
        let stripped = colored.replacingOccurrences(of: "\u{1B}\\[[0-9;]*m", with: "", options: .regularExpression)
        XCTAssertEqual(stripped, Self.fixtureText)
        let done = Self.render(try Self.report(Self.completeJSON), workers: Self.olderCoordinator, width: 60, color: true)
        XCTAssertTrue(done.contains("\u{1B}[32mcomplete\u{1B}[0m"), done)
    }

    func testRenderNeutralisesControlCharacters() throws {
        var status = try Self.report(Self.fixtureJSON)
        status.job = "evil\u{1B}[2Jjob"
        let text = Self.render(status, width: 80, color: false)
        XCTAssertFalse(text.contains("\u{1B}"))
        XCTAssertTrue(text.hasPrefix("job        evil?[2Jjob  running\n"), text)
    }

    func testRenderWidthSizesBarAndSparkline() throws {
        var status = try Self.report(Self.fixtureJSON)
        status.trainingLoss = (0..<100).map { .init(round: $0, value: Double(100 - $0)) }
        let wide = Self.render(status, width: 200, color: false)
        let narrow = Self.render(status, width: 40, color: false)
        let lossLine = { (text: String) in text.split(separator: "\n").first { $0.hasPrefix("loss") }! }
        XCTAssertEqual(lossLine(wide).filter { "▁▂▃▄▅▆▇█".contains($0) }.count, 40)
        XCTAssertEqual(lossLine(narrow).filter { "▁▂▃▄▅▆▇█".contains($0) }.count, 19)
        XCTAssertTrue(wide.contains(String(repeating: "█", count: 16) + String(repeating: "·", count: 24) + " 120/300"), wide)
        XCTAssertTrue(narrow.contains(String(repeating: "█", count: 4) + String(repeating: "·", count: 6) + " 120/300"), narrow)
    }

    func testStatusURLNormalisation() throws {
        for input in ["http://127.0.0.1:8080", "http://127.0.0.1:8080/", "http://127.0.0.1:8080/v1/status",
                      "http://127.0.0.1:8080/v1/status/", " 127.0.0.1:8080 "] {
            XCTAssertEqual(try StatusCommand.statusURL(input), "http://127.0.0.1:8080/v1/status", input)
        }
        XCTAssertEqual(try StatusCommand.statusURL("https://coord.example:8443/tributary/"),
                       "https://coord.example:8443/tributary/v1/status")
        for bad in ["", "ftp://host/", "http://", "http://host/?x=1"] {
            XCTAssertThrowsError(try StatusCommand.statusURL(bad), bad)
        }
    }
    #endif

    // MARK: - `tributary status`: the built executable against a fixture server

    func testStatusCommandAgainstFixtureServer() async throws {
        let exe = try Self.executable()
        let help = try await Self.run(exe.path, ["status", "--help"], timeout: 30)
        guard help.status == 0 else {
            throw XCTSkip("`tributary status` is not a subcommand of this build yet (add StatusCommand.self to TributaryCommand)")
        }
        let fixture = try await FixtureServer.start()
        do {
            try await checkStatusCommand(exe.path, base: fixture.url)
        } catch {
            await fixture.stop()
            throw error
        }
        await fixture.stop()
    }

    private func checkStatusCommand(_ exe: String, base: String) async throws {
        // One report; every spelling of the URL reaches /v1/status.
        for url in [base, base + "/", base + "/v1/status", base.replacingOccurrences(of: "http://", with: "")] {
            let once = try await Self.run(exe, ["status", url], timeout: 30)
            XCTAssertEqual(once.status, 0, "\(url): \(once.stderr)")
            XCTAssertEqual(once.stdout, Self.fixtureText, url)
        }
        let done = try await Self.run(exe, ["status", base + "/complete"], environment: ["COLUMNS": "60"], timeout: 30)
        XCTAssertEqual(done.stdout, Self.completeText)

        // --watch into a pipe: a plain block per refresh, no escape codes; runs until stopped.
        let watch = try await Self.run(exe, ["status", base, "--watch", "--interval", "0.3"], timeout: 2.5)
        XCTAssertTrue(watch.timedOut, "--watch must keep running")
        XCTAssertFalse(watch.stdout.contains("\u{1B}"))
        XCTAssertGreaterThanOrEqual(watch.stdout.components(separatedBy: Self.fixtureText).count - 1, 2, watch.stdout)

        // Failures: one line on stderr and a non-zero exit.
        let failures: [(String, String)] = [
            ("http://127.0.0.1:1", "cannot reach http://127.0.0.1:1/v1/status: connection refused"),
            (base + "/broken", "answered HTTP 503"),
            (base + "/garbage", "did not answer with a status report"),
            (base + "/partial", "missing field"),
            ("ftp://127.0.0.1/", "is not the http(s) URL of a coordinator"),
        ]
        for (url, expected) in failures {
            let r = try await Self.run(exe, ["status", url], timeout: 30)
            XCTAssertNotEqual(r.status, 0, url)
            XCTAssertEqual(r.stdout, "", url)
            let lines = r.stderr.split(separator: "\n")
            XCTAssertEqual(lines.count, 1, "\(url): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(expected), "\(url): \(r.stderr)")
        }
        // --watch fails at once when the first fetch fails.
        let dead = try await Self.run(exe, ["status", "http://127.0.0.1:1", "--watch"], timeout: 5)
        XCTAssertFalse(dead.timedOut)
        XCTAssertNotEqual(dead.status, 0)
    }

    // MARK: - Helpers

    /// Serves the fixtures: `/v1/status`, and failures under path prefixes.
    struct FixtureServer {
        let url: String
        let group: ServiceGroup
        let task: Task<Void, Error>

        static func start() async throws -> FixtureServer {
            let router = Router()
            router.get("/v1/status") { _, _ in Self.reply(.ok, "application/json", DashboardTests.fixtureJSON) }
            // The fixture's workers, last seen relative to now; the /complete coordinator
            // predates the worker list (404).
            router.get("/v1/workers") { _, _ in
                let list = WorkerList(workers: DashboardTests.fixtureWorkers(now: Date()), total: 5)
                return Self.reply(.ok, "application/json", String(decoding: try WireJSON.encoder().encode(list), as: UTF8.self))
            }
            // The same workers two to a page, whatever limit is asked for.
            router.get("/paged/v1/workers") { request, _ in
                let all = DashboardTests.fixtureWorkers(now: Date())
                let start = min(all.count, max(0, request.uri.queryParameters.get("offset").flatMap { Int($0) } ?? 0))
                let end = min(all.count, start + 2)
                let list = WorkerList(workers: Array(all[start..<end]), total: all.count, nextOffset: end < all.count ? end : nil)
                return Self.reply(.ok, "application/json", String(decoding: try WireJSON.encoder().encode(list), as: UTF8.self))
            }
            router.get("/complete/v1/status") { _, _ in Self.reply(.ok, "application/json", DashboardTests.completeJSON) }
            router.get("/broken/v1/status") { _, _ in
                Self.reply(.serviceUnavailable, Problem.contentType,
                      #"{"type":"about:blank","title":"x","status":503,"detail":"resting","code":"no_work"}"#)
            }
            router.get("/garbage/v1/status") { _, _ in Self.reply(.ok, "text/html", "<html>not a coordinator</html>") }
            router.get("/partial/v1/status") { _, _ in Self.reply(.ok, "application/json", #"{"job":"x"}"#) }
            let (ports, continuation) = AsyncStream<Int>.makeStream()
            let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                                  onServerRunning: { channel in continuation.yield(channel.localAddress?.port ?? 0) },
                                  logger: quietLogger("test.fixture"))
            let group = ServiceGroup(configuration: .init(services: [app], logger: quietLogger("test.fixture")))
            let task = Task { try await group.run() }
            var port = 0
            for await p in ports { port = p; break }
            return FixtureServer(url: "http://127.0.0.1:\(port)", group: group, task: task)
        }

        func stop() async {
            await group.triggerGracefulShutdown()
            _ = try? await task.value
        }

        static func reply(_ status: HTTPResponse.Status, _ type: String, _ body: String) -> Response {
            Response(status: status, headers: [.contentType: type], body: .init(byteBuffer: ByteBuffer(string: body)))
        }
    }

    struct Finished {
        let status: Int32
        let stdout: String
        let stderr: String
        let timedOut: Bool
    }

    /// Runs a program to completion (or SIGTERM after `timeout` seconds), output in files.
    static func run(_ exe: String, _ args: [String], environment: [String: String] = [:],
                    timeout: Double) async throws -> Finished {
        let dir = try temporaryDirectory("run")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let outPath = "\(dir)/stdout", errPath = "\(dir)/stderr"
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
        let err = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        defer {
            try? out.close()
            try? err.close()
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        var env = ProcessInfo.processInfo.environment
        env["TRIBUTARY_BLAS_CORETYPE"] = "inherit"
        env["COLUMNS"] = "80"
        env["NO_COLOR"] = nil
        for (k, v) in environment { env[k] = v }
        p.environment = env
        p.standardInput = FileHandle.nullDevice
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning, Date() < deadline { try await Task.sleep(for: .milliseconds(50)) }
        var timedOut = false
        if p.isRunning {
            timedOut = true
            p.terminate()
            let grace = Date().addingTimeInterval(5)
            while p.isRunning, Date() < grace { try await Task.sleep(for: .milliseconds(50)) }
            if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        }
        p.waitUntilExit()
        let read = { (path: String) in String(decoding: FileManager.default.contents(atPath: path) ?? Data(), as: UTF8.self) }
        return Finished(status: p.terminationStatus, stdout: read(outPath), stderr: read(errPath), timedOut: timedOut)
    }

    /// Chromium from PATH, or installed from Debian's archive (root and network needed).
    static func chromium() async throws -> String {
        func find() -> String? {
            let dirs = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":").map(String.init)
            for name in ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"] {
                for d in dirs where FileManager.default.isExecutableFile(atPath: "\(d)/\(name)") { return "\(d)/\(name)" }
            }
            return nil
        }
        if let path = find() { return path }
        guard getuid() == 0 else { throw XCTSkip("chromium is not installed, and installing it needs root") }
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/apt-get") else {
            throw XCTSkip("chromium is not installed and there is no apt-get to install it")
        }
        let env = ["DEBIAN_FRONTEND": "noninteractive"]
        print("dashboard: installing chromium with apt-get (once)…")
        var install = try await run("/usr/bin/apt-get", ["install", "-y", "-q", "chromium"], environment: env, timeout: 900)
        if install.status != 0 {
            _ = try await run("/usr/bin/apt-get", ["update", "-q"], environment: env, timeout: 300)
            install = try await run("/usr/bin/apt-get", ["install", "-y", "-q", "chromium"], environment: env, timeout: 900)
        }
        guard install.status == 0, let path = find() else {
            throw XCTSkip("could not install chromium: \(install.stderr.suffix(500))")
        }
        return path
    }

    /// The built `tributary` beside the test bundle.
    static func executable() throws -> URL {
        let candidates = [Bundle(for: DashboardTests.self).bundleURL.deletingLastPathComponent(),
                          Bundle.main.bundleURL, Bundle.main.bundleURL.deletingLastPathComponent()]
        for dir in candidates {
            let exe = dir.appendingPathComponent("tributary")
            if FileManager.default.isExecutableFile(atPath: exe.path) { return exe }
        }
        throw XCTSkip("the tributary executable was not found beside the test bundle")
    }

    static let packageRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func firstMatch(_ pattern: String, in text: String) -> String? {
        guard let r = text.range(of: pattern, options: .regularExpression) else { return nil }
        return String(text[r])
    }
}
