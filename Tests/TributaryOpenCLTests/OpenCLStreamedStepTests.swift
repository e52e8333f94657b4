import Foundation
import TributaryModels
@testable import TributaryOpenCL
import TributaryTensor
import XCTest

/// Serves shards from a whole GPT on the CPU and keeps the gradients handed back, noting
/// how many downloads the device had begun when each arrived.
private final class RecordingShardSource: ShardStreamingDelegate, @unchecked Sendable {
    let model: GPT
    let groups: [String: ModelShardGroup]
    let allocator: TensorAllocator
    let device: OpenCLDevice
    let transientPerElement = 3
    var gradients: [String: [Float]] = [:]
    var order: [String] = []
    var downloadsBegunAtDelivery: [String: Int] = [:]

    init(model: GPT, device: OpenCLDevice) {
        self.model = model
        self.device = device
        allocator = device.allocator
        groups = Dictionary(uniqueKeysWithValues: model.config.shardGroups.map { ($0.name, $0) })
    }

    func loadShard(_ name: String, into values: UnsafeMutableBufferPointer<Float>) throws {
        try allocator.withReservedBytes(transientBytes(loading: values.count)) {
            var offset = 0
            for spec in groups[name]?.parameters ?? [] {
                guard let p = model.parameters[spec.name], let base = values.baseAddress else { continue }
                (base + offset).update(from: p.value.readableData, count: p.count)
                offset += p.count
            }
        }
    }

    func contentKey(ofShard name: String) -> String { "v1" }

    func shardGradientReady(_ name: String, gradient: UnsafeBufferPointer<Float>) async throws {
        downloadsBegunAtDelivery[name] = device.downloadsBegun
        try allocator.withReservedBytes(transientBytes(takingGradientOf: gradient.count)) {
            gradients[name] = Array(gradient)
            order.append(name)
        }
    }

    func transientBytes(loading elements: Int) -> Int { transientPerElement * elements }
    func transientBytes(takingGradientOf elements: Int) -> Int { 2 * transientPerElement * elements }
}

/// A streamed GPT step on the OpenCL device: each block's gradient starts down as soon as
/// its backward is queued and reaches the delegate only after the next block's backward
/// was queued, so the transfer and the host's encoding overlap the device's compute. The
/// plan's walk counts the one extra block gradient this holds, exactly.
final class OpenCLStreamedStepTests: XCTestCase {
    func testBlockGradientsComeDownWhileTheNextBlockComputes() async throws {
        let layers = 3
        let cfg = GPTConfig(vocabSize: 13, blockSize: 16, nLayer: layers, nHead: 2, nEmbd: 16)
        let model = try GPT(config: cfg, seed: 5)
        for (i, p) in model.parameters.parameters.enumerated() {
            var r = SeededRandom(seed: 40 + UInt64(i))
            let gain = p.name.contains(".ln_") && p.name.hasSuffix("weight")
            for k in 0..<p.count { p.value.data[k] = (gain ? 1 : 0) + 0.3 * r.nextGaussian() }
        }
        var r = SeededRandom(seed: 9)
        let batch = ModelBatch.tokens(inputs: (0..<60).map { _ in Int32(r.nextIndex(below: 13)) },
                                      targets: (0..<60).map { _ in Int32(r.nextIndex(below: 13)) }, batch: 5, sequence: 12)
        model.parameters.zeroGradients()
        let referenceLoss = Double(try model.forwardBackward(batch, lossScale: 1))
        let blockBytes = 4 * (cfg.shardGroups.first { $0.name == "block.0" }?.elementCount ?? 0)

        for plan in [GPTExecutionPlan(microBatch: 5, activations: .kept, residentBlocks: layers),
                     GPTExecutionPlan(microBatch: 2, activations: .recomputed, residentBlocks: 0)] {
            let what = "\(plan)"
            let traits = try OpenCLDevice(info: OpenCLTestDevice.device(), vramBudgetBytes: nil, memoryBudgetBytes: nil,
                                          cache: OpenCLProgramCache(directory: nil)).planningTraits
            func walk(_ overlap: Bool) -> Int {
                StreamedGPT.peakBytes(config: cfg, batch: 5, sequence: 12, plan: plan,
                                      device: DevicePlanningTraits(overlapsDownloads: overlap, attentionScratchShape: traits.attentionScratchShape),
                                      loadTransient: { 3 * $0 }, gradientTransient: { 6 * $0 })
            }
            let predicted = walk(true)
            XCTAssertGreaterThanOrEqual(predicted, walk(false), what)
            XCTAssertLessThanOrEqual(predicted, walk(false) + blockBytes, "\(what): at most one block gradient more")
            // The host budget is the prediction: one byte more than the walk and the step fails.
            let device = try OpenCLDevice(info: OpenCLTestDevice.device(), vramBudgetBytes: nil, memoryBudgetBytes: predicted,
                                          cache: OpenCLProgramCache(directory: nil))
            XCTAssertTrue(device.overlapsDownloads)
            let source = RecordingShardSource(model: model, device: device)
            let step = try StreamedGPT(config: cfg, plan: plan, device: device)
            let loss = try await step.step(batch, delegate: source)
            try device.checkHealthy()
            XCTAssertEqual(loss, referenceLoss, accuracy: 1e-5 * referenceLoss, what)
            XCTAssertEqual(device.allocator.peakBytes, predicted, "\(what): the walk is exact")
            XCTAssertLessThanOrEqual(device.deviceBytesPeak, predicted, what)
            XCTAssertEqual(source.order, ["head"] + (0..<layers).reversed().map { "block.\($0)" } + ["embeddings"], what)
            // Block l + 1 reaches the delegate after block l's download began (so after block
            // l's backward was queued); block 0, the last, after every block's had.
            for l in 0..<layers {
                XCTAssertEqual(source.downloadsBegunAtDelivery["block.\(l)"], l == 0 ? layers : layers - l + 1, "\(what): block.\(l)")
            }
            XCTAssertEqual(device.downloadsBegun, layers, "\(what): one asynchronous download per block gradient")
            for group in cfg.shardGroups {
                let got = try XCTUnwrap(source.gradients[group.name], group.name)
                var offset = 0, worst: Float = 0, scale: Float = 0
                for spec in group.parameters {
                    let p = try XCTUnwrap(model.parameters[spec.name])
                    let expected = p.gradient.toArray()
                    for k in 0..<p.count {
                        worst = max(worst, abs(got[offset + k] - expected[k]))
                        scale = max(scale, abs(expected[k]))
                    }
                    offset += p.count
                }
                XCTAssertGreaterThan(scale, 1e-4, "\(what): \(group.name) has a gradient")
                XCTAssertLessThanOrEqual(worst, 1e-5 * scale, "\(what): \(group.name)")
            }
        }
    }
}
