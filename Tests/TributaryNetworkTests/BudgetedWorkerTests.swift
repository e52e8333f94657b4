import Foundation
import TributaryCoordinator
import TributaryModels
import TributaryPlanning
import TributaryProtocol
import TributaryTensor
import TributaryWorker
import XCTest

final class BudgetedWorkerTests: XCTestCase {
    override func setUp() { ComputeThreads.set(2) }

    /// One worker trains a 16-block GPT through a real coordinator; nil budget: unbounded.
    private func train(budgetFraction: Int?, directory dir: String) async throws
        -> (status: StatusReport, plan: MemoryPlan?, peak: Int, budget: Int?, trainingState: Int) {
        let config = RunningCoordinator.config(directory: "\(dir)/c") { c in
            c.model.nLayer = 16
            c.model.nHead = 2
            c.model.nEmbd = 64
            c.model.blockSize = 32
            c.units.samplesPerUnit = 4
            c.optimizer.lr = 1e-2
            c.optimizer.totalRounds = 30
            c.rounds.unitsPerRound = 1
            c.compression.codec = "int8:256"
        }
        let coordinator = try await RunningCoordinator.start(config)
        let spec = coordinator.job.spec
        let trainingState = 16 * spec.parameterCount  // fp32 parameters + gradients + AdamW m and v
        let budget = budgetFraction.map { trainingState / $0 }
        let options = WorkerOptions(coordinator: coordinator.url, joinToken: RunningCoordinator.joinToken, name: "w",
                                    dataDirectory: "\(dir)/w", memoryBudgetBytes: budget)
        let daemon = WorkerDaemon(options: options, logger: quietLogger("test.worker"))
        try await daemon.run()
        let status = coordinator.job.status()
        await coordinator.stop()
        return (status, await daemon.memoryPlan, await daemon.peakTensorBytes, budget, trainingState)
    }

    /// A worker whose budget is a quarter of what the model's parameters, gradients and
    /// AdamW state take (16 bytes per parameter) trains it through the real coordinator:
    /// it streams block shards, its allocator never passes the budget, and the training is
    /// the same as an unbudgeted worker's (same data, same updates up to fp32 sum order).
    func testWorkerTrainsAGPTFourTimesItsBudget() async throws {
        let dir = try temporaryDirectory("budget")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let small = try await train(budgetFraction: 4, directory: "\(dir)/small")
        let free = try await train(budgetFraction: nil, directory: "\(dir)/free")

        XCTAssertTrue(small.status.complete)
        XCTAssertEqual(small.status.updatesAccepted, 30)
        let budget = try XCTUnwrap(small.budget)
        XCTAssertGreaterThanOrEqual(small.trainingState, 4 * budget)
        let plan = try XCTUnwrap(small.plan)
        guard case let .streamedGPT(p) = plan.execution else { return XCTFail("\(plan)") }
        XCTAssertLessThan(p.residentBlocks, 16, "blocks must be streamed: \(plan)")
        print("budget \(ByteCount.format(budget)) for \(ByteCount.format(small.trainingState)) of training state; plan: \(plan); measured peak \(ByteCount.format(small.peak)); unbudgeted peak \(ByteCount.format(free.peak))")
        XCTAssertLessThanOrEqual(small.peak, budget)
        XCTAssertLessThanOrEqual(small.peak, plan.predictedPeakBytes)
        XCTAssertGreaterThan(small.peak, budget / 2, "the plan uses the budget it was given")
        XCTAssertGreaterThan(free.peak, 2 * budget, "unbudgeted, the same worker holds far more")

        // The same training: every round's loss agrees (int8 updates of gradients that differ
        // in the last fp32 bits can round differently, hence a tolerance, not equality).
        let a = small.status.trainingLoss.map(\.value), b = free.status.trainingLoss.map(\.value)
        XCTAssertEqual(a.count, 30)
        XCTAssertEqual(a.count, b.count)
        for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: 2e-3, "\(a) vs \(b)") }
        // Below the loss at initialisation (round 1); deterministic: one worker, sync rounds.
        XCTAssertLessThan(a.suffix(8).reduce(0, +) / 8, a[0] - 0.08, "loss falls: \(a)")
    }
}
