import Foundation
import TributaryCoordinator
import TributaryProtocol
import TributaryTensor
import TributaryWorker
import XCTest

final class CompressedTrainingTests: XCTestCase {
    override func setUp() { ComputeThreads.set(1) }

    /// Two workers train 30 rounds of 2 units through the real coordinator with `codec`; the
    /// finished job's status, and each worker's residual directory listing.
    func trainThroughCoordinator(codec: String, downloads: String = "none") async throws -> (status: StatusReport, residualFiles: [[String]]) {
        let dir = try temporaryDirectory("\(codec)-\(downloads)".replacingOccurrences(of: ":", with: "-"))
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let coordinator = try await RunningCoordinator.start(RunningCoordinator.config(directory: "\(dir)/c") { c in
            c.compression.codec = codec
            c.compression.downloadCodec = downloads
            c.optimizer.totalRounds = 30
            c.optimizer.lr = 1e-2
            c.rounds.unitsPerRound = 2
            c.storage.validationEveryRounds = 30
        })
        try await RunningCoordinator.runWorkers(2, against: coordinator, directory: dir)
        let status = coordinator.job.status()
        await coordinator.stop()
        let files = (0..<2).map { i in
            ((try? FileManager.default.contentsOfDirectory(atPath: "\(dir)/worker-\(i)/residual")) ?? []).sorted()
        }
        return (status, files)
    }

    /// Top-k updates with error feedback through the real coordinator: far fewer bytes on
    /// the wire, training still proceeds, and the residuals are on disk for a restart.
    func testTopKUpdatesWithErrorFeedbackTrainThroughTheCoordinator() async throws {
        let (status, residualFiles) = try await trainThroughCoordinator(codec: "topk:0.01")
        XCTAssertTrue(status.complete)
        XCTAssertEqual(status.updatesAccepted, 60)
        let ratio = Double(status.denseBytesIn) / Double(status.bytesIn)
        print("top-k 1%: \(status.bytesIn) bytes on the wire for \(status.denseBytesIn) dense (×\(String(format: "%.1f", ratio)))")
        XCTAssertGreaterThan(ratio, 20, "1% of the values plus indices must be far smaller than dense fp32")
        let losses = status.trainingLoss.map(\.value)
        XCTAssertLessThan(losses.suffix(3).reduce(0, +) / 3, losses.prefix(3).reduce(0, +) / 3, "loss falls")
        for (i, files) in residualFiles.enumerated() {
            XCTAssertEqual(files, ["block.0.f32", "embeddings.f32", "head.f32"], "worker \(i) persisted its residuals")
        }
    }

    /// Low-rank updates (PowerSGD-style) through the real coordinator: the coordinator decodes
    /// factors it was never told the shapes of, training proceeds, and each worker keeps its
    /// warm start beside its residual for the shards that hold matrices.
    func testLowRankUpdatesTrainThroughTheCoordinator() async throws {
        let (status, residualFiles) = try await trainThroughCoordinator(codec: "lowrank:1:int8")
        XCTAssertTrue(status.complete)
        XCTAssertEqual(status.updatesAccepted, 60)
        let ratio = Double(status.denseBytesIn) / Double(status.bytesIn)
        print("low-rank 1, int8: \(status.bytesIn) bytes on the wire for \(status.denseBytesIn) dense (×\(String(format: "%.1f", ratio)))")
        XCTAssertGreaterThan(ratio, 10, "rank-1 factors in int8 must be far smaller than dense fp32")
        let losses = status.trainingLoss.map(\.value)
        XCTAssertLessThan(losses.suffix(3).reduce(0, +) / 3, losses.prefix(3).reduce(0, +) / 3, "loss falls")
        for (i, files) in residualFiles.enumerated() {
            XCTAssertEqual(files, ["block.0.f32", "block.0.warm.f32", "embeddings.f32", "embeddings.warm.f32", "head.f32"],
                           "worker \(i) persisted its residuals and warm starts (head holds vectors only)")
        }
    }

    /// Compressed downloads through the real coordinator: the coordinator sends a fraction of
    /// the bytes (deltas instead of fp32 shards), every worker rebuilds the published shards
    /// (a mismatch would be a refused hash, then a full download), and training proceeds like
    /// the run with full downloads.
    func testCompressedDownloadsTrainThroughTheCoordinator() async throws {
        func run(_ downloads: String) async throws -> StatusReport {
            try await trainThroughCoordinator(codec: "fp32", downloads: downloads).status
        }
        let full = try await run("none")
        let int8 = try await run("int8")
        XCTAssertTrue(int8.complete)
        let ratio = Double(full.bytesOut) / Double(int8.bytesOut)
        print("downloads: \(full.bytesOut) bytes with full shards, \(int8.bytesOut) with int8 deltas (×\(String(format: "%.2f", ratio)))")
        XCTAssertGreaterThan(ratio, 2.5, "int8 deltas are about a quarter of fp32 shards")
        let losses = int8.trainingLoss.map(\.value)
        XCTAssertLessThan(losses.suffix(3).reduce(0, +) / 3, losses.prefix(3).reduce(0, +) / 3, "loss falls")
        let a = try XCTUnwrap(full.validationLoss.last?.value), b = try XCTUnwrap(int8.validationLoss.last?.value)
        XCTAssertLessThan(abs(a - b) / a, 0.03, "compressed downloads train like full ones (\(a) vs \(b))")
    }

    /// A new worker builds version 0 from the job's seed and fetches deltas from there on; a
    /// coordinator restarted from its checkpoint publishes the same values it had published
    /// (the download state and the latest deltas are saved beside the checkpoint), so the
    /// worker goes on with short delta chains instead of whole shards.
    func testAfterARestartWorkersKeepDownloadingDeltas() async throws {
        let dir = try temporaryDirectory("downloads-restart")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = RunningCoordinator.config(directory: "\(dir)/c") { c in
            c.compression.downloadCodec = "lowrank:2:int8"
            c.optimizer.totalRounds = 100
            c.rounds.unitsPerRound = 2
            c.storage.checkpointEveryRounds = 4
        }
        func work(_ coordinator: EmbeddedCoordinator, units: Int) async throws -> [UnitReport] {
            let options = WorkerOptions(coordinator: coordinator.url, joinToken: RunningCoordinator.joinToken, name: "w",
                                        dataDirectory: "\(dir)/worker", maxUnits: units)
            let reports = ReportLog()
            try await WorkerDaemon(options: options, logger: quietLogger("test.worker")).run { reports.add($0) }
            return reports.all
        }
        var coordinator = try await RunningCoordinator.start(config)
        let before = try await work(coordinator, units: 22)   // 11 rounds: checkpoint at 8, rounds 9–11 in the log
        let version = coordinator.job.status().version
        XCTAssertEqual(version, 11)
        let published = try coordinator.job.publisher.manifest(version: version)
        await coordinator.stop()

        coordinator = try await RunningCoordinator.start(config)
        XCTAssertEqual(try coordinator.job.publisher.manifest(version: version).shards.map(\.contentHash),
                       published.shards.map(\.contentHash), "the restarted coordinator publishes the same values")
        let after = try await work(coordinator, units: 2)
        await coordinator.stop()
        let whole = published.shards.reduce(0) { $0 + $1.byteSize }
        let firstDown = try XCTUnwrap(before.first?.bytesDown), resumedDown = try XCTUnwrap(after.first?.bytesDown)
        print("downloads across a restart: first unit \(firstDown) bytes, first unit after the restart \(resumedDown) (shards \(whole))")
        XCTAssertLessThan(firstDown, 200, "the first unit's version 0 was built from the job's seed: only its batch was fetched")
        let deltas = before.dropFirst().map(\.bytesDown)
        XCTAssertLessThan(deltas.max() ?? .max, whole / 3, "every later unit fetched deltas, never whole shards")
        XCTAssertLessThan(resumedDown, whole / 3, "after the restart the worker fetched deltas, not shards")
    }
}

/// Unit reports collected from a worker's callback.
final class ReportLog: @unchecked Sendable {
    private let lock = NSLock()
    private var reports: [UnitReport] = []
    func add(_ r: UnitReport) { lock.withLock { reports.append(r) } }
    var all: [UnitReport] { lock.withLock { reports } }
}
