import Foundation
import TributaryCoordinator
import TributaryModels
import TributaryTensor
import TributaryWorker
import XCTest

final class BudgetedWorkerTests: XCTestCase {
    override func setUp() { ComputeThreads.set(2) }

    /// A worker whose budget is a quarter of what the model's parameters, gradients and
    /// AdamW state take (16 bytes per parameter) trains it through the real coordinator:
    /// it streams block shards, its allocator never passes the budget, the loss falls.
    func testWorkerTrainsAGPTFourTimesItsBudget() async throws {
        let dir = try temporaryDirectory("budget")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = RunningCoordinator.config(directory: "\(dir)/c") { c in
            c.model.nLayer = 16
            c.model.nHead = 2
            c.model.nEmbd = 64
            c.model.blockSize = 32
            c.units.samplesPerUnit = 4
            c.optimizer.lr = 3e-3
            c.optimizer.totalRounds = 24
            c.rounds.unitsPerRound = 1
            c.compression.codec = "int8:256"
        }
        let coordinator = try await RunningCoordinator.start(config)
        let spec = await coordinator.job.spec
        let fullTrainingState = 16 * spec.parameterCount  // fp32 parameters + gradients + AdamW m and v
        let budget = fullTrainingState / 4
        let options = WorkerOptions(coordinator: coordinator.url, joinToken: RunningCoordinator.joinToken, name: "small",
                                    dataDirectory: "\(dir)/w", memoryBudgetBytes: budget)
        let daemon = WorkerDaemon(options: options, logger: quietLogger("test.worker"))
        try await daemon.run()
        let status = await coordinator.job.status()
        await coordinator.stop()

        XCTAssertTrue(status.complete)
        XCTAssertEqual(status.updatesAccepted, 24)
        let chosen = await daemon.memoryPlan
        let plan = try XCTUnwrap(chosen)
        guard case let .streamedGPT(p) = plan.execution else { return XCTFail("\(plan)") }
        XCTAssertLessThan(p.residentBlocks, 16, "blocks must be streamed: \(plan)")
        let peak = await daemon.peakTensorBytes
        print("budget \(ByteCount.format(budget)) for \(ByteCount.format(fullTrainingState)) of training state; plan: \(plan); measured peak \(ByteCount.format(peak))")
        XCTAssertLessThanOrEqual(peak, budget)
        XCTAssertLessThanOrEqual(peak, plan.predictedPeakBytes)
        XCTAssertGreaterThan(peak, budget / 2, "the plan uses the budget it was given")
        let losses = status.trainingLoss.map(\.value)
        XCTAssertLessThan(losses.suffix(4).reduce(0, +) / 4, losses.prefix(4).reduce(0, +) / 4 - 0.1, "loss falls: \(losses)")
    }
}
