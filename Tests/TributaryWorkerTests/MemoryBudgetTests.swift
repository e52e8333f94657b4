import Foundation
import TributaryCompression
import TributaryModels
import TributaryPlanning
import TributaryProtocol
import TributaryTensor
import XCTest
@testable import TributaryWorker

final class MemoryBudgetTests: XCTestCase {
    override func setUp() { ComputeThreads.set(2) }

    struct Case {
        let name: String
        let model: ModelSpec
        let samples: Int
    }

    static let cases: [Case] = [
        Case(name: "gpt 4×32 bias", model: .gpt(GPTConfig(vocabSize: 17, blockSize: 16, nLayer: 4, nHead: 2, nEmbd: 32)), samples: 6),
        Case(name: "gpt 2×48 no bias", model: .gpt(GPTConfig(vocabSize: 40, blockSize: 24, nLayer: 2, nHead: 4, nEmbd: 48, bias: false)), samples: 4),
        // Activations far larger than parameters: accumulating micro-batches wins.
        Case(name: "gpt 2×16 ctx 64", model: .gpt(GPTConfig(vocabSize: 11, blockSize: 64, nLayer: 2, nHead: 4, nEmbd: 16)), samples: 8),
        Case(name: "mlp 20-32-16-5", model: .mlp(MLPConfig(inputFeatures: 20, hidden: [32, 16], classes: 5)), samples: 10),
        // Per-image noise: micro-batches draw what the whole unit draws, so gradients agree.
        Case(name: "unet 8×8 base 4 [1,2]", model: ModelSpec(UNetConfig(imageSize: 8, inChannels: 1, baseChannels: 4, channelMultipliers: [1, 2],
                                                                        blocksPerLevel: 1, normGroups: 2, timesteps: 100,
                                                                        attentionResolutions: [4])), samples: 5),
    ]

    func batch(for c: Case, seed: UInt64) -> ModelBatch {
        var r = SeededRandom(seed: seed)
        // Inputs, then targets: the same draws as before families had a sample shape.
        return c.model.sampleShape.randomBatch(samples: c.samples, using: &r)
    }

    func job(_ c: Case, codec: String) -> JobDescription {
        JobDescription(name: "budget", model: c.model, samplesPerUnit: c.samples, microBatchSize: c.samples,
                       updateCodec: codec, zstdLevel: 1)
    }

    /// Over a grid of models, codecs and falling budgets: every plan the planner produces
    /// runs two units with the allocator's peak at or under the budget (the allocator
    /// refuses to go past it, so finishing is the proof) and under the plan's prediction;
    /// with fp32 updates, every plan's gradient equals the whole model's; budgets below
    /// the smallest plan are refused before any work.
    func testEveryPlanStaysWithinItsBudgetAndComputesTheSameGradient() async throws {
        let dir = NSTemporaryDirectory() + "tributary-budget-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var distinct = Set<String>()
        var refusals = 0
        for c in Self.cases {
            let model = try c.model.build(seed: 3)
            let units = [batch(for: c, seed: 1), batch(for: c, seed: 2)]
            // The reference: the whole model's gradient of each unit.
            var reference: [[Float]] = []
            for u in units {
                model.parameters.zeroGradients()
                _ = try model.forwardBackward(u, lossScale: 1)
                reference.append(model.parameters.parameters.flatMap { $0.gradient.toArray() })
            }
            for codec in ["fp32", "int8:64", "topk:0.05", "lowrank:2:int8"] {
                let unbudgeted = try OfflineUnitRunner(job: job(c, codec: codec), directory: "\(dir)/probe", budgetBytes: nil)
                let full = unbudgeted.plan.predictedPeakBytes
                for fraction in [1.0, 0.75, 0.5, 0.35, 0.25, 0.15, 0.1, 0.05] {
                    let budget = Int(Double(full) * fraction)
                    let what = "\(c.name), \(codec), budget \(budget) (\(fraction) of \(full))"
                    let runner: OfflineUnitRunner
                    do {
                        runner = try OfflineUnitRunner(job: job(c, codec: codec), directory: "\(dir)/\(UUID().uuidString)", budgetBytes: budget)
                    } catch let WorkerError.fatal(why) {
                        XCTAssertTrue(why.contains("needs") && why.contains(ByteCount.format(budget)) && !why.contains("\n"), "\(what): \(why)")
                        refusals += 1
                        continue
                    }
                    XCTAssertLessThanOrEqual(runner.plan.predictedPeakBytes, budget, what)
                    distinct.insert("\(runner.plan.execution)")
                    try runner.publish(model.parameters)
                    for (k, u) in units.enumerated() {
                        let (_, updates) = try await runner.run(u)
                        XCTAssertLessThanOrEqual(runner.device.allocator.peakBytes, budget, what)
                        XCTAssertLessThanOrEqual(runner.device.allocator.peakBytes, runner.plan.predictedPeakBytes, what)
                        guard codec == "fp32" else {
                            XCTAssertEqual(updates.count, runner.shards.count, what)
                            continue
                        }
                        // Decode every shard's update back into parameter order and compare.
                        var decoded: [String: [Float]] = [:]
                        for (name, n) in runner.shards {
                            guard let body = updates[name] else { XCTFail("\(what): no update for \(name)"); continue }
                            var out = [Float](repeating: 0, count: n)
                            try body.withUnsafeBytes { raw in
                                try out.withUnsafeMutableBufferPointer { try TensorFrame.decode(raw, expectedCount: n, into: $0) }
                            }
                            decoded[name] = out
                        }
                        var flat: [Float] = []
                        for group in c.model.shardGroups { flat += decoded[group.name] ?? [] }
                        // Shard order is parameter order for both models.
                        XCTAssertEqual(flat.count, reference[k].count, what)
                        let scale = reference[k].map(abs).max() ?? 0
                        let worst = zip(flat, reference[k]).map { abs($0 - $1) }.max() ?? .infinity
                        // Micro-batches and recomputation reorder fp32 sums: a few ulps of the largest gradient.
                        XCTAssertLessThanOrEqual(worst, 2e-6 * scale, "\(what), unit \(k)")
                        XCTAssertGreaterThan(scale, 1e-3, what)
                    }
                }
            }
        }
        // The grid reaches streamed, recomputing and smaller micro-batch plans, and refusals.
        XCTAssertGreaterThanOrEqual(distinct.count, 8, "\(distinct)")
        XCTAssertTrue(distinct.contains { $0.contains("micro-batches outer") }, "\(distinct)")
        XCTAssertTrue(distinct.contains { $0.contains("recomputed") }, "\(distinct)")
        XCTAssertTrue(distinct.contains { $0.contains("recomputesBlocks: true") }, "a U-Net's blocks recomputed: \(distinct)")
        XCTAssertGreaterThan(refusals, 0)
    }

    /// A U-Net whose kept activations do not fit at the full micro-batch but whose
    /// recomputed ones do: the planner recomputes the residual blocks rather than halve the
    /// micro-batch, the worker sets the model's mode and runs the unit within the budget, and
    /// the update is the unbudgeted plan's, byte for byte.
    func testAUNetRecomputesItsBlocksWhenItsActivationsDoNotFit() async throws {
        let c = Case(name: "unet 16×16 base 8", model: ModelSpec(UNetConfig(imageSize: 16, inChannels: 1, baseChannels: 8,
                                                                             channelMultipliers: [1, 2], blocksPerLevel: 1, normGroups: 4,
                                                                             timesteps: 100, attentionResolutions: [8])), samples: 4)
        let planner = MemoryPlanner(model: c.model, unitSamples: 4, suggestedMicroBatch: 4, codec: try UpdateCodecSpec(parsing: "fp32"))
        let all = planner.candidates()
        let keptPeak = all.filter { $0.execution == .residentModel(microBatch: 4) }.map(\.predictedPeakBytes).min() ?? 0
        let recomputedPeak = all.filter { $0.execution == .residentModel(microBatch: 4, recomputesBlocks: true) }
            .map(\.predictedPeakBytes).max() ?? .max
        XCTAssertLessThan(recomputedPeak, keptPeak)
        // Kept activations are cheaper: the planner recomputes only when it must.
        XCTAssertLessThan(planner.estimatedCost(.residentModel(microBatch: 4)),
                          planner.estimatedCost(.residentModel(microBatch: 4, recomputesBlocks: true)))
        let budget = recomputedPeak
        let dir = NSTemporaryDirectory() + "tributary-recompute-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let unbudgeted = try OfflineUnitRunner(job: job(c, codec: "fp32"), directory: "\(dir)/all", budgetBytes: nil)
        let budgeted = try OfflineUnitRunner(job: job(c, codec: "fp32"), directory: "\(dir)/budget", budgetBytes: budget)
        XCTAssertEqual(unbudgeted.plan.execution, .residentModel(microBatch: 4))
        XCTAssertEqual(budgeted.plan.execution, .residentModel(microBatch: 4, recomputesBlocks: true))
        XCTAssertTrue(budgeted.plan.description.hasPrefix("whole model resident, micro-batch 4, residual blocks recomputed, "),
                      budgeted.plan.description)
        let weights = try c.model.build(seed: 3)
        try unbudgeted.publish(weights.parameters)
        try budgeted.publish(weights.parameters)
        for seed: UInt64 in [1, 2] {
            let unit = batch(for: c, seed: seed)
            let (referenceLoss, reference) = try await unbudgeted.run(unit)
            let (loss, updates) = try await budgeted.run(unit)
            XCTAssertLessThanOrEqual(budgeted.device.allocator.peakBytes, budget)
            XCTAssertLessThanOrEqual(budgeted.device.allocator.peakBytes, budgeted.plan.predictedPeakBytes)
            // The kept plan's unit would not have fit.
            XCTAssertGreaterThan(unbudgeted.device.allocator.peakBytes, budget)
            XCTAssertEqual(loss, referenceLoss)
            XCTAssertEqual(updates.count, budgeted.shards.count)
            XCTAssertEqual(updates, reference, "unit \(seed)")
        }
    }

    /// The budget is refused before any unit, in one line that says what is needed.
    func testTooSmallABudgetIsRefusedInOneLine() throws {
        let c = Self.cases[0]
        XCTAssertThrowsError(try OfflineUnitRunner(job: job(c, codec: "fp32"), directory: NSTemporaryDirectory(), budgetBytes: 4096)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("the memory budget is too small"), text)
            XCTAssertTrue(text.contains("4.0 KiB"), text)
            XCTAssertFalse(text.contains("\n"), text)
        }
    }

    /// Cheapest first: with room for everything the plan keeps every block and every
    /// activation in one pass; as the budget falls the chosen plan's predicted peak falls
    /// and its estimated cost never drops, and it is always the cheapest plan that fits.
    func testPlannerTakesTheCheapestPlanThatFits() throws {
        let cfg = GPTConfig(vocabSize: 65, blockSize: 64, nLayer: 6, nHead: 4, nEmbd: 128)
        let planner = MemoryPlanner(model: .gpt(cfg), unitSamples: 16, sequence: 64, suggestedMicroBatch: 16,
                                    codec: try UpdateCodecSpec(parsing: "int8:256"))
        let full = try planner.plan(budgetBytes: nil)
        XCTAssertEqual(full.execution, .streamedGPT(GPTExecutionPlan(microBatch: 16, activations: .kept, residentBlocks: 6)))
        let all = planner.candidates()
        var previousPeak = full.predictedPeakBytes, previousCost = planner.estimatedCost(full.execution)
        var kinds = Set<String>()
        for fraction in stride(from: 0.95, through: 0.02, by: -0.03) {
            let budget = Int(Double(full.predictedPeakBytes) * fraction)
            guard let plan = try? planner.plan(budgetBytes: budget) else { break }
            let cost = planner.estimatedCost(plan.execution)
            XCTAssertLessThanOrEqual(plan.predictedPeakBytes, min(budget, previousPeak))
            XCTAssertGreaterThanOrEqual(cost, previousCost)
            let cheapest = all.filter { $0.predictedPeakBytes <= budget }.map { planner.estimatedCost($0.execution) }.min()
            XCTAssertEqual(cost, cheapest)
            previousPeak = plan.predictedPeakBytes
            previousCost = cost
            guard case let .streamedGPT(p) = plan.execution else { return XCTFail("a GPT is streamed") }
            kinds.insert("\(p.schedule) \(p.activations) \(p.residentBlocks < 6 ? "streamed" : "resident")")
        }
        XCTAssertGreaterThanOrEqual(kinds.count, 3, "\(kinds)")
    }
}
