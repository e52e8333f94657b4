import Foundation
import TributaryCoordinator
import TributaryData
import TributaryProtocol
import TributaryTensor
import XCTest

/// `GET /v1/samples/latest.png` over HTTP: a U-Net job run by a real worker serves the grid
/// its last validation drew.
final class SampleGridRouteTests: XCTestCase {
    override func setUp() { ComputeThreads.set(1) }

    func testAUNetJobServesItsLatestSampleGridAsPNG() async throws {
        let (coordinator, dir) = try await RunningCoordinator.startInTemporaryDirectory("samples") { c in
            c.model.type = "unet"
            c.model.baseChannels = 4
            c.model.channelMultipliers = [1, 2]
            c.model.normGroups = 2
            c.data.source = "builtin:digits"
            c.rounds.unitsPerRound = 2
            c.optimizer.warmupRounds = 0
            c.optimizer.totalRounds = 2
            c.storage.validationEveryRounds = 1
        }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let client = RawClient(base: coordinator.url)
        let before = try await client.request(.GET, Routes.latestSamples)
        XCTAssertEqual(before.status, 404, "no grid before the first validation")
        XCTAssertEqual(before.problem?.code, .notFound)

        try await RunningCoordinator.runWorkers(1, against: coordinator, directory: dir)
        let reply = try await client.request(.GET, Routes.latestSamples)
        XCTAssertEqual(reply.status, 200)
        XCTAssertEqual(reply.headers.first(name: "Content-Type"), "image/png")
        XCTAssertEqual(reply.headers.first(name: "Cache-Control"), "no-cache")
        let grid = try PNGImage.decode(reply.body)
        XCTAssertEqual([grid.width, grid.height, grid.channels], [118, 118, 1], "4 × 4 images of 28×28 with 2-pixel gaps")
        let status = try await client.request(.GET, Routes.status).json(StatusReport.self)
        XCTAssertEqual(status.validationLoss.last?.round, 2, "drawn at the last validation")

        // The dashboard in headless Chromium: the Samples card shows the grid from a blob: URL.
        let chromium: String
        do { chromium = try await DashboardTests.chromium() } catch { await coordinator.stop(); throw error }
        let common = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                      "--no-default-browser-check", "--hide-scrollbars", "--user-data-dir=\(dir)/chromium-profile",
                      "--virtual-time-budget=6000", "--window-size=1280,900"]
        let dump = try await DashboardTests.run(chromium, common + ["--dump-dom", coordinator.url + "/"], timeout: 40)
        XCTAssertEqual(dump.status, 0, dump.stderr)
        let card = try XCTUnwrap(DashboardTests.firstMatch(#"<section[^>]*id="samples-card"[^>]*>[\s\S]*?</section>"#, in: dump.stdout),
                                 String(dump.stdout.prefix(3000)))
        XCTAssertFalse(card.prefix(while: { $0 != ">" }).contains("hidden"), card)
        XCTAssertTrue(card.contains("drawn by DDIM at round 2"), card)
        let image = try XCTUnwrap(DashboardTests.firstMatch(#"<img[^>]*id="samples-img"[^>]*>"#, in: card), card)
        XCTAssertTrue(image.contains(#"src="blob:"#), image)
        let artifacts = DashboardTests.packageRoot.appendingPathComponent(".build/test-artifacts").path
        try FileManager.default.createDirectory(atPath: artifacts, withIntermediateDirectories: true)
        let shot = try await DashboardTests.run(chromium, common + ["--screenshot=\(artifacts)/dashboard-unet.png", coordinator.url + "/"],
                                                timeout: 40)
        XCTAssertEqual(shot.status, 0, shot.stderr)
        print("dashboard screenshot (U-Net job): \(artifacts)/dashboard-unet.png")
        await coordinator.stop()
    }
}
