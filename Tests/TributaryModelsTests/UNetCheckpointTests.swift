import XCTest
@testable import TributaryModels
import TributaryTensor

/// The U-Net with its residual blocks and attentions recomputed in backward (activation
/// checkpointing): the same loss and gradients as keeping every activation, in less memory,
/// exactly as much as `UNet.activationBytes(recomputingBlocks: true)` says.
final class UNetCheckpointTests: XCTestCase {
    override func setUp() { ComputeThreads.set(2) }

    /// 8×8, two levels with two blocks each, attention at 4×4 (the second level and the mid block).
    private let config = UNetConfig(imageSize: 8, inChannels: 1, baseChannels: 4, channelMultipliers: [1, 2],
                                    blocksPerLevel: 2, normGroups: 2, timesteps: 100, schedule: .cosine,
                                    attentionResolutions: [4])

    private struct Batch {
        let clean: [Float], noise: [Float], timesteps: [Int], size: Int
    }

    private func batch(_ config: UNetConfig, images b: Int, seed: UInt64) -> Batch {
        var rng = SeededRandom(seed: seed)
        let n = config.pixelsPerSample
        return Batch(clean: (0..<(b * n)).map { _ in rng.nextUnitFloat() * 2 - 1 },
                     noise: (0..<(b * n)).map { _ in rng.nextGaussian() },
                     timesteps: (0..<b).map { _ in rng.nextIndex(below: config.timesteps) }, size: b)
    }

    /// Loss and every parameter gradient, over two micro-batches of different sizes
    /// (accumulated), with blocks kept or recomputed.
    private func lossAndGradients(_ model: UNet, recomputing: Bool, _ batches: [Batch]) throws -> (Float, [[Float]]) {
        model.recomputesBlocks = recomputing
        model.parameters.zeroGradients()
        var loss: Float = 0
        for b in batches {
            loss += try model.denoisingForwardBackward(cleanImages: b.clean, timesteps: b.timesteps, noise: b.noise,
                                                       batch: b.size, lossScale: 0.5)
        }
        return (loss, model.parameters.parameters.map { $0.gradient.toArray() })
    }

    func testRecomputedBlocksGiveTheSameLossAndGradients() throws {
        let model = try UNet(config: config, seed: 11, device: CPUDevice(allocator: TensorAllocator(budgetBytes: nil)))
        // Off-1 gains and random norm biases so no gradient is trivially zero.
        for (i, p) in model.parameters.parameters.enumerated() where p.name.contains("norm") {
            randomize(p, seed: 500 + UInt64(i), scale: 0.2, offset: p.name.hasSuffix(".weight") ? 1 : 0)
        }
        let batches = [batch(config, images: 3, seed: 1), batch(config, images: 2, seed: 2)]
        let (keptLoss, kept) = try lossAndGradients(model, recomputing: false, batches)
        let (recomputedLoss, recomputed) = try lossAndGradients(model, recomputing: true, batches)
        // And back: the mode switches the cache both ways.
        let (againLoss, again) = try lossAndGradients(model, recomputing: false, batches)
        XCTAssertGreaterThan(keptLoss, 0.1)
        XCTAssertEqual(recomputedLoss, keptLoss)
        XCTAssertEqual(againLoss, keptLoss)
        var exact = 0
        for (k, p) in model.parameters.parameters.enumerated() {
            let scale = kept[k].map(abs).max() ?? 0
            XCTAssertGreaterThan(scale, 0, "\(p.name): no gradient to compare")
            let worst = zip(kept[k], recomputed[k]).map { abs($0 - $1) }.max() ?? .infinity
            XCTAssertLessThanOrEqual(worst, 1e-6 * scale, p.name)
            XCTAssertEqual(again[k], kept[k], p.name)
            if recomputed[k] == kept[k] { exact += 1 }
        }
        // The same kernels on the same inputs in the same order: every tensor bit for bit.
        XCTAssertEqual(exact, kept.count)
        XCTAssertTrue(model.parameters.parameters.contains { $0.name.contains("attentions") })
    }

    /// One micro-batch's peak over parameters and gradients, measured by a fresh allocator,
    /// equals `activationBytes` in both modes, and recomputing holds much less.
    func testRecomputingLowersTheMeasuredPeakToThePrediction() throws {
        let config = UNetConfig(imageSize: 16, inChannels: 1, baseChannels: 8, channelMultipliers: [1, 2], blocksPerLevel: 2,
                                normGroups: 4, timesteps: 100, schedule: .cosine, attentionResolutions: [8])
        let images = 4, b = batch(config, images: images, seed: 3)
        let parameters = 2 * TensorShapes.byteCount(elements: config.parameterCount)
        var peaks: [Bool: Int] = [:]
        for recomputing in [false, true] {
            let device = CPUDevice(allocator: TensorAllocator(budgetBytes: nil))
            let model = try UNet(config: config, seed: 5, device: device)
            model.recomputesBlocks = recomputing
            _ = try model.denoisingForwardBackward(cleanImages: b.clean, timesteps: b.timesteps, noise: b.noise, batch: images)
            let predicted = UNet.activationBytes(config: config, batch: images, recomputingBlocks: recomputing)
            XCTAssertEqual(device.allocator.peakBytes - parameters, predicted, "recomputing \(recomputing)")
            peaks[recomputing] = device.allocator.peakBytes - parameters
        }
        let kept = peaks[false] ?? 0, recomputed = peaks[true] ?? 0
        print("U-Net 16×16 base 8, 4 images: activations kept \(ByteCount.format(kept)), blocks recomputed \(ByteCount.format(recomputed))")
        XCTAssertLessThan(recomputed, kept / 2)
    }
}
