import Foundation
import TributaryCoordinator
import TributaryData
import TributaryCompression
import TributaryModels
import TributaryPlanning
import TributaryProtocol
import TributaryTensor
import TributaryTraining
import TributaryWorker
import XCTest

/// The DDPM U-Net trained through a real coordinator and real workers over HTTP, on MNIST
/// (../shared; skipped without it), whose batches travel as 8-bit pixels (kind 3).
final class UNetDistributedTests: XCTestCase {
    override func setUp() { ComputeThreads.set(1) }

    private func mnist() throws -> String {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../../shared/data/mnist")
            .standardizedFileURL.path
        guard FileManager.default.fileExists(atPath: path) else { throw XCTSkip("../shared/data/mnist is absent") }
        return path
    }

    private func unetJob(_ c: inout JobConfig, source: String) {
        c.model.type = "unet"
        c.model.baseChannels = 4
        c.model.channelMultipliers = [1, 2]
        c.model.normGroups = 2
        c.model.attentionResolutions = [14]
        c.data.source = source
        c.optimizer.lr = 2e-3
    }

    /// Synchronous rounds, the mean rule and uncompressed updates: three workers' U-Net after
    /// five rounds is single-process training's with batch 12, parameter for parameter. Each
    /// image's noise and timestep depend on the step and the image alone, so this holds only if
    /// the batches, the noise and the averaging are all right.
    func testSynchronousRoundsEqualSingleProcessTraining() async throws {
        let source = try mnist()
        let rounds = 5
        let dir = try temporaryDirectory("unet-equivalence")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = RunningCoordinator.config(directory: "\(dir)/coordinator") { c in
            unetJob(&c, source: source)
            c.optimizer.totalRounds = rounds
            c.optimizer.warmupRounds = 2
            c.optimizer.gradClip = 1
            c.units.samplesPerUnit = 4
            c.units.microBatch = 2
            c.rounds.unitsPerRound = 3
            c.rounds.maxStaleness = 0
            c.aggregation.rule = .mean
        }
        let coordinator = try await RunningCoordinator.start(config)
        try await RunningCoordinator.runWorkers(3, against: coordinator, directory: dir)
        let distributed = await coordinator.job.parameterValues()
        let status = coordinator.job.status()
        await coordinator.stop()
        XCTAssertEqual(status.version, rounds)
        XCTAssertEqual(status.updatesAccepted, rounds * 3)

        let options = SingleProcessReference.options(config, rounds: rounds)
        let raw = try DatasetSource.load(source)
        let data = try DatasetSource.prepare(raw, name: "mnist", blockSize: nil, validationFraction: config.data.validationFraction,
                                             seed: config.data.seed)
        let spec = coordinator.job.spec
        let trainer = try Trainer(spec: spec, data: data, options: options)
        for _ in 0..<rounds { try trainer.trainStep() }

        // As for the GPT (EquivalenceTests): the same 12 per-sample gradients summed in
        // another order, through AdamW's 1/√v, stay within 1e-5; a lost unit, a wrong weight,
        // a wrong pixel or a different noise draw moves parameters by about lr (2e-3).
        // An attention's key bias adds the same q·b to every score of a query, which the
        // softmax cancels: its true gradient is zero, so what it gets is rounding noise, and
        // AdamW's g/√v turns noise of either sign into steps of about lr. Those are left out.
        let (worst, moved) = try SingleProcessReference.compare(trainer.model, with: distributed, spec: spec, seed: config.data.seed,
                                                                including: { !$0.hasSuffix(".k.bias") })
        print("U-Net equivalence: \(spec.parameterCount) parameters, largest difference \(worst), largest movement \(moved)")
        XCTAssertGreaterThan(moved, 1e-3)
        XCTAssertLessThan(worst, 1e-5)
    }

    /// Two workers, one with a memory budget 60% of what its planner needs to hold the
    /// unit's whole micro-batch (so it runs another plan), both sending rank-2 int8 updates
    /// with error feedback (the coordinator sends int8 deltas back): the held-out denoising
    /// loss falls, and the budgeted worker's allocator never passes its budget.
    func testABudgetedWorkerAndALowRankCodecTrainTheUNet() async throws {
        let source = try mnist()
        let dir = try temporaryDirectory("unet-lowrank")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let rounds = 40
        let config = RunningCoordinator.config(directory: "\(dir)/coordinator") { c in
            unetJob(&c, source: source)
            c.optimizer.totalRounds = rounds
            c.optimizer.warmupRounds = 2
            c.units.samplesPerUnit = 8
            c.units.microBatch = 8
            c.rounds.unitsPerRound = 2
            c.compression.codec = "lowrank:2:int8"
            c.storage.validationEveryRounds = 4
            c.storage.validationBatches = 8
        }
        let coordinator = try await RunningCoordinator.start(config)
        let spec = coordinator.job.spec
        let planner = MemoryPlanner(model: spec, unitSamples: 8, suggestedMicroBatch: 8, codec: try UpdateCodecSpec(parsing: "lowrank:2:int8"))
        let full = try planner.plan(budgetBytes: nil)
        let budget = full.predictedPeakBytes * 6 / 10
        let budgeted = WorkerDaemon(options: WorkerOptions(coordinator: coordinator.url, joinToken: RunningCoordinator.joinToken, name: "small",
                                                           dataDirectory: "\(dir)/small", memoryBudgetBytes: budget),
                                    logger: quietLogger("test.worker"))
        let free = WorkerDaemon(options: WorkerOptions(coordinator: coordinator.url, joinToken: RunningCoordinator.joinToken, name: "free",
                                                       dataDirectory: "\(dir)/free"),
                                logger: quietLogger("test.worker"))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await budgeted.run() }
            group.addTask { try await free.run() }
            try await group.waitForAll()
        }
        let status = coordinator.job.status()
        await coordinator.stop()
        let chosen = await budgeted.memoryPlan
        let plan = try XCTUnwrap(chosen)
        let peak = await budgeted.peakTensorBytes
        let losses = status.validationLoss.map(\.value)
        print("U-Net, lowrank:2:int8, budget \(ByteCount.format(budget)) (full plan \(full)): budgeted plan \(plan), peak \(ByteCount.format(peak)); "
              + "validation loss \(losses.map { String(format: "%.4f", $0) }.joined(separator: " → ")); in \(status.bytesIn) B, out \(status.bytesOut) B")
        XCTAssertEqual(status.version, rounds)
        XCTAssertEqual(full.execution, .residentModel(microBatch: 8))
        XCTAssertNotEqual(plan.execution, full.execution, "60% of the memory cannot hold the whole micro-batch's activations")
        XCTAssertLessThanOrEqual(peak, budget)
        XCTAssertGreaterThanOrEqual(status.updatesAccepted, rounds * 2)
        let first = try XCTUnwrap(losses.first), last = try XCTUnwrap(losses.last)
        XCTAssertEqual(losses.count, rounds / 4)
        XCTAssertLessThan(last, 0.8 * first, "the denoising loss falls under low-rank updates")
        XCTAssertLessThan(Double(status.bytesIn), 0.25 * Double(status.denseBytesIn), "low-rank uploads are a fraction of dense ones")
    }
}
