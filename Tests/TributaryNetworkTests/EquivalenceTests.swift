import Foundation
import TributaryCoordinator
import TributaryData
import TributaryModels
import TributaryProtocol
import TributaryTensor
import TributaryTraining
import TributaryWorker
import XCTest

/// The proof that averaging is right: with synchronous rounds, uncompressed updates and
/// one data order, the coordinator's model after K rounds equals single-process training
/// with the same total batch per step.
final class EquivalenceTests: XCTestCase {
    override func setUp() { ComputeThreads.set(1) }

    func testSynchronousRoundsEqualSingleProcessTraining() async throws {
        let status = try await trainAndCompare(replication: .off)
        XCTAssertNil(status.replication)
    }

    /// Every unit computed twice, by two real workers over HTTP: honest replicas agree
    /// (no dispute, nothing voided), only one update per unit counts, and the model is still
    /// the single process's.
    func testWithEveryUnitReplicatedTheModelIsStillSingleProcessTraining() async throws {
        let status = try await trainAndCompare(replication: .all)
        let r = try XCTUnwrap(status.replication)
        XCTAssertEqual(r.confirmed, 6 * 3, "every unit confirmed by a second worker")
        XCTAssertEqual(r.replicas, 6 * 3)
        XCTAssertEqual(r.disputes, 0)
        XCTAssertEqual(r.replaced + r.unresolved + r.banned, 0)
    }

    private func trainAndCompare(replication: ReplicationMode) async throws -> StatusReport {
        let rounds = 6
        let dir = try temporaryDirectory("equivalence")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = RunningCoordinator.config(directory: "\(dir)/coordinator") { c in
            c.optimizer.totalRounds = rounds
            c.optimizer.warmupRounds = 2
            c.optimizer.gradClip = 0.5          // clipping is active at this scale: it is part of the proof
            c.units.samplesPerUnit = 4
            c.units.microBatch = 2              // workers accumulate over micro-batches
            c.rounds.unitsPerRound = 3
            c.rounds.maxStaleness = 0
            c.aggregation.rule = .mean          // the mean of equal units is the single process's large batch
            c.validation.replication = replication
        }
        let coordinator = try await RunningCoordinator.start(config)
        try await RunningCoordinator.runWorkers(3, against: coordinator, directory: dir)
        let distributed = await coordinator.job.parameterValues()
        let status = coordinator.job.status()
        await coordinator.stop()
        XCTAssertEqual(status.version, rounds)
        XCTAssertEqual(status.updatesAccepted, rounds * 3)

        // The same job in one process: batch = units_per_round × samples_per_unit.
        let options = SingleProcessReference.options(config, rounds: rounds)
        let raw = try DatasetSource.load(config.data.source)
        let data = try DatasetSource.prepare(raw, name: "arithmetic", blockSize: 16, validationFraction: 0.1, seed: config.data.seed)
        guard case let .tokens(_, _, vocab) = raw else {
            XCTFail("token data expected")
            return status
        }
        let spec = ModelSpec.gpt(GPTConfig(vocabSize: vocab, blockSize: 16, nLayer: 1, nHead: 2, nEmbd: 16))
        let trainer = try Trainer(spec: spec, data: data, options: options)
        for _ in 0..<rounds { try trainer.trainStep() }

        // Tolerance: the two sum the same 12 per-sample gradients in a different order
        // (3 unit means averaged vs one mean; micro-batches), which changes fp32 results in
        // the 7th digit; AdamW divides by √v, so a parameter may move by up to ~lr·1e-4
        // differently per step. Six steps at lr 3e-3: within 1e-5 absolute. A wrong
        // weighting or a lost unit moves parameters by ~lr per step (1e-3), far outside.
        let (worst, moved) = try SingleProcessReference.compare(trainer.model, with: distributed, spec: spec, seed: config.data.seed)
        print("equivalence: \(spec.parameterCount) parameters, largest difference \(worst), largest movement from init \(moved)")
        XCTAssertGreaterThan(moved, 1e-3, "training must have moved the parameters for the comparison to mean anything")
        XCTAssertLessThan(worst, 1e-5)
        return status
    }
}
