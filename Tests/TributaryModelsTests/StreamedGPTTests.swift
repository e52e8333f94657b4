import Synchronization
import XCTest
@testable import TributaryModels
import TributaryTensor

/// Serves shards from a whole in-memory GPT and keeps the gradients it is handed, holding
/// (and accounting) a stated number of transient bytes while it does, as a worker's cache
/// and codec would.
final class ReferenceShardSource: ShardStreamingDelegate, @unchecked Sendable {
    let model: GPT
    let groups: [String: ModelShardGroup]
    let allocator: TensorAllocator
    let transientPerElement: Int
    var gradients: [String: [Float]] = [:]
    var order: [String] = []
    var loads = 0

    init(model: GPT, allocator: TensorAllocator, transientPerElement: Int) {
        self.model = model
        self.allocator = allocator
        self.transientPerElement = transientPerElement
        var g: [String: ModelShardGroup] = [:]
        for group in GPT.shardGroups(model.config) { g[group.name] = group }
        groups = g
    }

    func loadShard(_ name: String, into values: UnsafeMutableBufferPointer<Float>) throws {
        try allocator.withReservedBytes(transientBytes(loading: values.count)) {
            var offset = 0
            for spec in groups[name]?.parameters ?? [] {
                guard let p = model.parameters[spec.name], let base = values.baseAddress else { continue }
                (base + offset).update(from: p.value.data, count: p.count)
                offset += p.count
            }
            loads += 1
        }
    }

    func contentKey(ofShard name: String) -> String { "v1" }

    func shardGradientReady(_ name: String, gradient: UnsafeBufferPointer<Float>) async throws {
        try allocator.withReservedBytes(transientBytes(takingGradientOf: gradient.count)) {
            gradients[name] = Array(gradient)
            order.append(name)
        }
    }

    func transientBytes(loading elements: Int) -> Int { transientPerElement * elements }
    func transientBytes(takingGradientOf elements: Int) -> Int { 2 * transientPerElement * elements }
}

final class StreamedGPTTests: XCTestCase {
    override func setUp() { ComputeThreads.set(2) }

    private func tokens(vocab: Int, b: Int, t: Int, seed: UInt64) -> ModelBatch {
        var r = SeededRandom(seed: seed)
        let x = (0..<(b * t)).map { _ in Int32(r.nextIndex(below: vocab)) }
        let y = (0..<(b * t)).map { _ in Int32(r.nextIndex(below: vocab)) }
        return .tokens(inputs: x, targets: y, batch: b, sequence: t)
    }

    /// Every plan of a grid: the step's gradient equals the whole model's (micro-batching
    /// and recomputation reorder fp32 sums, nothing more), and the allocator's peak equals
    /// the planner's prediction, which the step runs under as a hard budget.
    func testEveryPlanMatchesTheWholeModelAndItsPredictedPeak() async throws {
        for bias in [true, false] {
            let cfg = GPTConfig(vocabSize: 13, blockSize: 16, nLayer: 3, nHead: 2, nEmbd: 16, bias: bias)
            let model = try GPT(config: cfg, seed: 5)
            for (i, p) in model.parameters.parameters.enumerated() {
                // Larger than the GPT-2 init so every gradient stands well above fp32 noise.
                var r = SeededRandom(seed: 40 + UInt64(i))
                let gain = p.name.contains(".ln_") && p.name.hasSuffix("weight")
                for k in 0..<p.count { p.value.data[k] = (gain ? 1 : 0) + 0.3 * r.nextGaussian() }
            }
            let batch = tokens(vocab: 13, b: 5, t: 12, seed: 9)
            model.parameters.zeroGradients()
            let referenceLoss = Double(try model.forwardBackward(batch, lossScale: 1))
            for micro in [5, 2, 1] {
                for policy in [GPTExecutionPlan.ActivationPolicy.kept, .recomputed] {
                    for resident in [0, 1, 3] {
                      for schedule in [GPTExecutionPlan.Schedule.blocksOuter, .microBatchesOuter] {
                        let plan = GPTExecutionPlan(microBatch: micro, activations: policy, residentBlocks: resident, schedule: schedule)
                        let transient = 3
                        let predicted = StreamedGPT.peakBytes(config: cfg, batch: 5, sequence: 12, plan: plan,
                                                              loadTransient: { transient * $0 },
                                                              gradientTransient: { 2 * transient * $0 })
                        let device = CPUDevice(memoryBudgetBytes: predicted)
                        let source = ReferenceShardSource(model: model, allocator: device.allocator, transientPerElement: transient)
                        let step = try StreamedGPT(config: cfg, plan: plan, device: device)
                        let what = "bias \(bias), \(plan)"
                        let loss: Double
                        do { loss = try await step.step(batch, delegate: source) } catch {
                            XCTFail("\(what): \(error)")
                            continue
                        }
                        XCTAssertEqual(loss, referenceLoss, accuracy: 1e-6 * referenceLoss, what)
                        XCTAssertEqual(device.allocator.peakBytes, predicted, what)
                        let expectedOrder = ["head"] + (0..<3).reversed().map { "block.\($0)" } + ["embeddings"]
                        XCTAssertEqual(source.order, expectedOrder, what)
                        for group in GPT.shardGroups(cfg) {
                            guard let got = source.gradients[group.name] else { XCTFail("no gradient for \(group.name)"); continue }
                            var offset = 0, worst: Float = 0, scale: Float = 0
                            for spec in group.parameters {
                                guard let p = model.parameters[spec.name] else { continue }
                                for k in 0..<p.count {
                                    worst = max(worst, abs(got[offset + k] - p.gradient.data[k]))
                                    scale = max(scale, abs(p.gradient.data[k]))
                                }
                                offset += p.count
                            }
                            // fp32 sums in another order: differences of a few ulps of the largest term.
                            XCTAssertLessThanOrEqual(worst, 2e-6 * scale + 1e-9, "\(what): \(group.name)")
                            XCTAssertGreaterThan(scale, 1e-4, "\(what): \(group.name) has a gradient")
                        }
                        // Streamed blocks are made resident twice per pass, resident ones once.
                        let passes = schedule == .blocksOuter ? 1 : (5 + micro - 1) / micro
                        XCTAssertEqual(source.loads, 2 + resident + 2 * passes * (3 - resident), what)
                        XCTAssertEqual(device.allocator.currentBytes, resident == 3
                            ? GPT.shardGroups(cfg).reduce(0) { $0 + 4 * $1.elementCount } : 0, "\(what): only kept shards stay")
                      }
                    }
                }
            }
        }
    }

    /// One byte less than the prediction and the step is refused, not run over budget.
    func testABudgetBelowThePredictionIsRefused() async throws {
        let cfg = GPTConfig(vocabSize: 13, blockSize: 16, nLayer: 2, nHead: 2, nEmbd: 16)
        let model = try GPT(config: cfg, seed: 5)
        let plan = GPTExecutionPlan(microBatch: 2, activations: .recomputed, residentBlocks: 0)
        let predicted = StreamedGPT.peakBytes(config: cfg, batch: 4, sequence: 16, plan: plan,
                                              loadTransient: { _ in 0 }, gradientTransient: { _ in 0 })
        let device = CPUDevice(memoryBudgetBytes: predicted - 1)
        let step = try StreamedGPT(config: cfg, plan: plan, device: device)
        let source = ReferenceShardSource(model: model, allocator: device.allocator, transientPerElement: 0)
        do {
            _ = try await step.step(tokens(vocab: 13, b: 4, t: 16, seed: 1), delegate: source)
            XCTFail("ran over its budget")
        } catch let e as TensorAllocationError {
            guard case .overBudget = e else { return XCTFail("\(e)") }
        }
    }

    /// Kept between steps, a shard is loaded again only when its content key changes.
    func testResidentShardsAreReusedAcrossSteps() async throws {
        let cfg = GPTConfig(vocabSize: 13, blockSize: 16, nLayer: 2, nHead: 2, nEmbd: 16)
        let model = try GPT(config: cfg, seed: 5)
        let device = CPUDevice(memoryBudgetBytes: nil)
        let step = try StreamedGPT(config: cfg, plan: GPTExecutionPlan(microBatch: 4, activations: .kept, residentBlocks: 2), device: device)
        let source = ReferenceShardSource(model: model, allocator: device.allocator, transientPerElement: 0)
        let batch = tokens(vocab: 13, b: 4, t: 8, seed: 2)
        let first = try await step.step(batch, delegate: source)
        XCTAssertEqual(source.loads, 4)
        let second = try await step.step(batch, delegate: source)
        XCTAssertEqual(source.loads, 4, "nothing changed, nothing loaded")
        XCTAssertEqual(first, second)
    }
}
