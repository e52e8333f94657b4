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
    func trainThroughCoordinator(codec: String) async throws -> (status: StatusReport, residualFiles: [[String]]) {
        let dir = try temporaryDirectory(codec.replacingOccurrences(of: ":", with: "-"))
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let coordinator = try await RunningCoordinator.start(RunningCoordinator.config(directory: "\(dir)/c") { c in
            c.compression.codec = codec
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
}
