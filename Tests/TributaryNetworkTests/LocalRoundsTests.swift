import Foundation
import TributaryCoordinator
import TributaryData
import TributaryLedger
import TributaryModels
import TributaryOptim
import TributaryProtocol
import TributaryTensor
import TributaryTraining
import TributaryWorker
import XCTest

/// Local rounds (DiLoCo) through the real coordinator and workers equal a single-process
/// DiLoCo simulation: each worker's inner AdamW kept across its units, pseudo-gradients
/// averaged, an outer Nesterov step.
final class LocalRoundsTests: XCTestCase {
    override func setUp() { ComputeThreads.set(1) }

    func testLocalRoundsEqualASingleProcessDiLoCoSimulation() async throws {
        let rounds = 4, steps = 3, workers = 2
        let dir = try temporaryDirectory("local-rounds")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = RunningCoordinator.config(directory: "\(dir)/coordinator") { c in
            c.rounds.mode = .local
            c.local.steps = steps
            c.units.samplesPerUnit = 12         // 3 inner steps of 4 samples …
            c.units.microBatch = 2              // … each accumulated over 2 micro-batches
            c.rounds.unitsPerRound = 2
            c.rounds.maxStaleness = 0
            c.optimizer.totalRounds = rounds
            c.optimizer.warmupRounds = 1
            c.optimizer.lr = 3e-3
            c.optimizer.gradClip = 0.5          // inner clipping is active at this scale
            c.aggregation.rule = .mean
        }
        let coordinator = try await RunningCoordinator.start(config)
        try await RunningCoordinator.runWorkers(workers, against: coordinator, directory: dir)
        let distributed = await coordinator.job.parameterValues()
        let status = coordinator.job.status()
        await coordinator.stop()
        XCTAssertEqual(status.version, rounds)
        XCTAssertEqual(status.updatesAccepted, rounds * 2)
        for i in 0..<workers {
            XCTAssertTrue(FileManager.default.fileExists(atPath: "\(dir)/worker-\(i)/inner-optimizer.safetensors"),
                          "worker \(i) kept its inner optimizer state")
        }

        // Who computed which unit, in the order the coordinator counted them.
        let ledger = try await LedgerStores.open(try config.ledgerLocation(), logger: nil)
        var counted: [[UpdateRecord]] = []
        for r in 1...rounds { counted.append(try await ledger.updates(round: r)) }
        await ledger.close()

        // The simulation.
        let raw = try DatasetSource.load(config.data.source)
        let data = try DatasetSource.prepare(raw, name: "arithmetic", blockSize: 16, validationFraction: 0.1, seed: config.data.seed)
        guard case let .tokens(_, _, vocab) = raw else { return XCTFail("token data expected") }
        let spec = ModelSpec.gpt(GPTConfig(vocabSize: vocab, blockSize: 16, nLayer: 1, nHead: 2, nEmbd: 16))
        let global = try spec.build(seed: config.data.seed)
        let outer = try SGD(parameters: global.parameters, momentum: 0.9, nesterov: true, weightDecay: 0)
        let order = try EpochSchedule(sampleCount: data.train.sampleCount, batchSize: 12, seed: config.data.seed)
        let inner = try XCTUnwrap(config.localStepsDescription)
        let schedule = LearningRateSchedule(peak: inner.lr, minimum: inner.minLr, warmupSteps: inner.warmupSteps,
                                            decaySteps: inner.decaySteps)
        var local: [String: (model: any TrainableModel, optimizer: AdamW)] = [:]
        for (round, records) in counted.enumerated() {
            var sum: [String: [Float]] = [:]
            var weights = 0.0
            for record in records {
                if local[record.workerId] == nil {
                    let m = try spec.build(seed: 0)
                    local[record.workerId] = (m, try AdamW(parameters: m.parameters, beta1: inner.beta1, beta2: inner.beta2,
                                                           weightDecay: inner.weightDecay))
                }
                guard let (model, optimizer) = local[record.workerId] else { continue }
                for p in model.parameters.parameters { p.value.copy(from: global.parameters[p.name]?.value.toArray() ?? []) }
                let batch = data.train.batch(order.batch(epoch: record.epoch, index: record.unitIndex))
                for i in 0..<steps {
                    model.parameters.zeroGradients()
                    for start in stride(from: 4 * i, to: 4 * i + 4, by: 2) {
                        _ = try model.forwardBackward(batch.samples(start, start + 2), lossScale: 0.5)
                    }
                    _ = GradientClipping.clipGlobalNorm(model.parameters, maxNorm: inner.gradClip)
                    optimizer.step(model.parameters, learningRate: schedule.rate(at: round * steps + i))
                }
                for p in model.parameters.parameters {
                    let start = global.parameters[p.name]?.value.toArray() ?? []
                    let end = p.value.toArray()
                    var acc = sum[p.name] ?? [Float](repeating: 0, count: end.count)
                    for k in 0..<end.count { acc[k] += Float(record.weight) * (start[k] - end[k]) }
                    sum[p.name] = acc
                }
                weights += record.weight
            }
            for p in global.parameters.parameters {
                p.gradient.copy(from: (sum[p.name] ?? []).map { $0 / Float(weights) })
            }
            outer.step(global.parameters, learningRate: config.local.outerLr)
        }

        // Tolerance: the coordinator's mean and the simulation's sum in another order; AdamW's
        // division by √v amplifies 1-ulp gradient differences to ~lr·1e-4 per inner step. A
        // lost inner step, a wrong schedule step or a reset inner state moves parameters by
        // ~lr (3e-3) or more.
        var worst: Float = 0, moved: Float = 0
        let initial = try spec.build(seed: config.data.seed)
        for p in global.parameters.parameters {
            let theirs = try XCTUnwrap(distributed[p.name], p.name)
            let mine = p.value.toArray()
            let start = try XCTUnwrap(initial.parameters[p.name]).value.toArray()
            for i in 0..<mine.count {
                worst = max(worst, abs(mine[i] - theirs[i]))
                moved = max(moved, abs(mine[i] - start[i]))
            }
        }
        print("local rounds: largest difference from the DiLoCo simulation \(worst), largest movement \(moved)")
        XCTAssertGreaterThan(moved, 1e-2, "H inner steps × outer lr 0.7 must move the parameters")
        XCTAssertLessThan(worst, 2e-5)
    }
}
