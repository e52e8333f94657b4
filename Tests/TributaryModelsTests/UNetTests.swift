import Foundation
import XCTest
@testable import TributaryModels
import TributaryOptim
import TributaryTensor

/// The DDPM schedule, and the whole U-Net against finite differences (GradientChecker),
/// its shapes, its noise sampling and a short training run.
final class UNetTests: XCTestCase {
    override func setUp() { ComputeThreads.set(2) }

    private var device: CPUDevice { CPUDevice(allocator: .shared) }

    // MARK: Schedule

    func testDDPMSchedules() throws {
        let linear = try DDPMSchedule(kind: .linear, timesteps: 1000)
        XCTAssertEqual(linear.betas.first ?? 0, 1e-4, accuracy: 1e-12)
        XCTAssertEqual(linear.betas.last ?? 0, 0.02, accuracy: 1e-12)
        // ᾱ_T of DDPM's schedule: exp(Σ log(1 − β)) ≈ 4.0e-5.
        XCTAssertEqual(linear.alphaBars.last ?? 1, 4.04e-5, accuracy: 0.1e-5)
        let cosine = try DDPMSchedule(kind: .cosine, timesteps: 1000)
        XCTAssertEqual(cosine.alphaBars.first ?? 0, 0.99996, accuracy: 1e-4)
        XCTAssertLessThan(cosine.alphaBars.last ?? 1, 1e-6)
        for s in [linear, cosine] {
            XCTAssertTrue(zip(s.alphaBars, s.alphaBars.dropFirst()).allSatisfy { $0 > $1 }, "\(s.kind): ᾱ falls")
            XCTAssertTrue(s.betas.allSatisfy { $0 > 0 && $0 <= 0.999 })
        }
        XCTAssertThrowsError(try DDPMSchedule(kind: .linear, timesteps: 0))
        XCTAssertThrowsError(try DDPMSchedule(kind: .linear, betaStart: 0.1, betaEnd: 0.01))
    }

    // MARK: The whole U-Net

    /// 8×8, 1 channel, base 4, multipliers [1, 2], one block per level, 2 groups.
    private let tinyConfig = UNetConfig(imageSize: 8, inChannels: 1, baseChannels: 4, channelMultipliers: [1, 2],
                                        blocksPerLevel: 1, normGroups: 2, timesteps: 100, schedule: .cosine)

    func testUNetLossGradientMatchesFiniteDifferences() throws {
        try checkWholeModelGradient(tinyConfig)
    }

    /// The same with self-attention at the 4×4 level (after its down blocks, the first mid
    /// block and its up blocks).
    func testUNetWithAttentionLossGradientMatchesFiniteDifferences() throws {
        var config = tinyConfig
        config.attentionResolutions = [4]
        try checkWholeModelGradient(config)
    }

    private func checkWholeModelGradient(_ config: UNetConfig) throws {
        let model = try UNet(config: config, seed: 7, device: device)
        // Random biases and off-1 gains so no gradient is trivially zero.
        for (i, p) in model.parameters.parameters.enumerated() where p.name.contains("norm") {
            randomize(p, seed: 300 + UInt64(i), scale: 0.2, offset: p.name.hasSuffix(".weight") ? 1 : 0)
        }
        let b = 2, n = config.pixelsPerSample
        var rng = SeededRandom(seed: 301)
        let clean = (0..<(b * n)).map { _ in rng.nextUnitFloat() * 2 - 1 }
        let noise = (0..<(b * n)).map { _ in rng.nextGaussian() }
        let timesteps = [13, 71]
        for p in model.parameters.parameters { p.gradient.zero() }
        let loss0 = try model.denoisingForwardBackward(cleanImages: clean, timesteps: timesteps, noise: noise, batch: b)
        XCTAssertGreaterThan(loss0, 0)
        let loss = { () throws -> Double in try model.denoisingLoss(cleanImages: clean, timesteps: timesteps, noise: noise, batch: b) }
        // The loss is a mean over 128 pixels, so its gradients are small: scale the
        // absolute tolerance with them (1e-3 of the largest analytic entry).
        let largest = model.parameters.parameters.map { $0.gradient.toArray().map(abs).max() ?? 0 }.max() ?? 0
        var checker = GradientChecker()
        checker.samplesPerTensor = 8
        checker.absoluteTolerance = 1e-3 * Double(largest)
        var worst = 0.0, worstName = ""
        for p in model.parameters.parameters {
            let w = try checker.check(p.name, values: p.value.data, count: p.count, analytic: p.gradient.toArray(), loss: loss)
            if w > worst { (worst, worstName) = (w, p.name) }
        }
        print("gradient check UNet, attention at \(config.attentionResolutions) (\(model.parameters.parameters.count) tensors, largest gradient \(largest)): worst error/tolerance \(worst) at \(worstName)")
    }

    func testMNISTConfigShapesAndParameterCount() throws {
        let config = UNetConfig(imageSize: 28, inChannels: 1, baseChannels: 32, channelMultipliers: [1, 2, 2],
                                blocksPerLevel: 1, normGroups: 8)
        let model = try UNet(config: config, seed: 1, device: device)
        XCTAssertEqual(model.parameters.parameters.map(\.name), config.parameterSpecs.map(\.name))
        XCTAssertEqual(model.parameters.parameters.map(\.shape), config.parameterSpecs.map(\.shape))
        // Counted by hand: time MLP 32·128+128 + 128·128+128; conv_in 9·32+32; a block
        // in→out with time width 128 has 2in + 9·in·out+out + 128·out+out + 2out + 9·out²+out
        // (+ in·out+out for a shortcut); head 2·32 + 9·32+1.
        func block(_ i: Int, _ o: Int) -> Int {
            2 * i + 9 * i * o + o + 128 * o + o + 2 * o + 9 * o * o + o + (i == o ? 0 : i * o + o)
        }
        let down = block(32, 32) + block(32, 64) + block(64, 64)
        let mid = 2 * block(64, 64)
        // Up from the bottom: skips popped are 64 (down 2), 64 (pool 1) | 64 (down 1), 32 (pool 0) | 32 (down 0), 32 (conv_in).
        let up = block(128, 64) + block(128, 64) + block(128, 64) + block(96, 64) + block(96, 32) + block(64, 32)
        let expected = (32 * 128 + 128 + 128 * 128 + 128) + (9 * 32 + 32) + down + mid + up + (2 * 32 + 9 * 32 + 1)
        XCTAssertEqual(model.parameters.parameters.reduce(0) { $0 + $1.count }, expected)
        XCTAssertEqual(config.parameterCount, expected)
        // Attention at 7×7: after down_blocks.2's block, the first mid block and up_blocks.0's two blocks.
        var attending = config
        attending.attentionResolutions = [7]
        XCTAssertEqual(attending.parameterCount, expected + 4 * (2 * 64 + 4 * (64 * 64 + 64)))
        XCTAssertEqual(attending.layout.allBlocks.compactMap(\.attention),
                       ["down_blocks.2.attentions.0", "mid_block.attentions.0", "up_blocks.0.attentions.0", "up_blocks.0.attentions.1"])
        print("UNet 28×28 base 32 [1,2,2]: \(expected) parameters, \(config.multiplyAddsPerSample / 1e6) M multiply-adds per image")

        let b = 3
        let pixels = (0..<(b * 784)).map { Float($0 % 256) / 255 }
        let loss = try model.forwardBackward(.features(inputs: pixels, targets: [0, 1, 2], batch: b), lossScale: 1)
        XCTAssertTrue(loss.isFinite && loss > 0)
        let cache = try XCTUnwrap(model.cache)
        XCTAssertEqual(cache.prediction.shape, [b, 1, 28, 28])
        XCTAssertEqual(cache.last.value.shape, [b, 32, 28, 28])
        let bottom = cache.steps.compactMap { step -> [Int]? in
            if case let .block(_, _, _, output) = step { return output.value.shape }
            return nil
        }
        XCTAssertEqual(bottom.first, [b, 32, 28, 28])
        XCTAssertTrue(bottom.contains([b, 64, 7, 7]), "the lowest level runs at 7×7")
        XCTAssertThrowsError(try model.forwardBackward(.features(inputs: [0, 1], targets: [0], batch: 1), lossScale: 1))
        XCTAssertThrowsError(try model.forwardBackward(.tokens(inputs: [1], targets: [1], batch: 1, sequence: 1), lossScale: 1))
    }

    func testUNetConfigRefusesLayoutsThatDoNotFit() {
        XCTAssertThrowsError(try UNetConfig(imageSize: 28, channelMultipliers: [1, 2, 2, 2]).validate(), "28 is not divisible by 8")
        XCTAssertThrowsError(try UNetConfig(baseChannels: 12, normGroups: 8).validate(), "8 groups do not divide 12 channels")
        XCTAssertThrowsError(try UNetConfig(channelMultipliers: []).validate())
        XCTAssertThrowsError(try UNetConfig(blocksPerLevel: 0).validate())
        XCTAssertThrowsError(try UNetConfig(timesteps: 0).validate())
        XCTAssertThrowsError(try UNetConfig(attentionResolutions: [5]).validate(), "no level is 5×5")
        XCTAssertNoThrow(try UNetConfig().validate())
    }

    /// Each image's timestep and noise come from its own pixels and the seed, so a
    /// micro-batch draws what the same images drew inside a larger batch.
    func testNoiseIsPerSampleAndSeeded() throws {
        let model = try UNet(config: tinyConfig, seed: 7, device: device)
        var rng = SeededRandom(seed: 400)
        let pixels = (0..<(4 * 64)).map { _ in rng.nextUnitFloat() }
        let whole = model.sampleNoise(pixels: pixels, batch: 4, seed: model.evaluationSeed)
        let tail = model.sampleNoise(pixels: Array(pixels[128...]), batch: 2, seed: model.evaluationSeed)
        XCTAssertEqual(Array(whole.timesteps[2...]), tail.timesteps)
        XCTAssertEqual(Array(whole.noise[128...]), tail.noise)
        XCTAssertNotEqual(whole.noise[0..<64], whole.noise[64..<128])
        // A batch is noised with exactly what sampleNoise draws, from pixels mapped to [−1, 1].
        let batch = ModelBatch.features(inputs: pixels, targets: [0, 0, 0, 0], batch: 4)
        let explicit = try model.denoisingLoss(cleanImages: pixels.map { 2 * $0 - 1 }, timesteps: whole.timesteps,
                                               noise: whole.noise, batch: 4)
        XCTAssertEqual(try model.evaluate(batch).loss, explicit, accuracy: 1e-6 * explicit)
        XCTAssertNotEqual(model.sampleNoise(pixels: pixels, batch: 4, seed: 1).noise, whole.noise)
        // Training draws with trainingSeed, evaluation with the fixed evaluationSeed.
        model.trainingSeed = model.evaluationSeed
        let trained = try model.forwardBackward(batch, lossScale: 1)
        XCTAssertEqual(Double(trained), explicit, accuracy: 1e-5 * explicit)
        model.trainingSeed = 12
        XCTAssertNotEqual(Double(try model.forwardBackward(batch, lossScale: 1)), explicit)
        XCTAssertEqual(try model.evaluate(batch).loss, explicit, accuracy: 1e-6 * explicit, "evaluation ignores trainingSeed")
    }

    // MARK: Training

    /// 16×16 images of one bright disc (random centre and radius) on a dark background.
    private func discs(count: Int, seed: UInt64) -> [Float] {
        var rng = SeededRandom(seed: seed), pixels: [Float] = []
        for _ in 0..<count {
            let cx = 4 + rng.nextUnitFloat() * 8, cy = 4 + rng.nextUnitFloat() * 8, r = 2 + rng.nextUnitFloat() * 3
            for y in 0..<16 {
                for x in 0..<16 {
                    let d = ((Float(x) - cx) * (Float(x) - cx) + (Float(y) - cy) * (Float(y) - cy)).squareRoot()
                    pixels.append(max(0, min(1, r + 0.5 - d)))
                }
            }
        }
        return pixels
    }

    func testShortTrainingRunLowersTheDenoisingLoss() throws {
        let config = UNetConfig(imageSize: 16, inChannels: 1, baseChannels: 8, channelMultipliers: [1, 2],
                                blocksPerLevel: 1, normGroups: 4, timesteps: 1000, schedule: .linear)
        let model = try UNet(config: config, seed: 11, device: device)
        let adam = try AdamW(parameters: model.parameters, weightDecay: 0)
        let held = ModelBatch.features(inputs: discs(count: 64, seed: 500), targets: [Int32](repeating: 0, count: 64), batch: 64)
                let before = try model.evaluate(held).loss
        let batch = 16, steps = 150
        let start = Date()
        for step in 0..<steps {
            model.trainingSeed = UInt64(step) // fresh timesteps and noise every step
            let images = discs(count: batch, seed: 1000 + UInt64(step))
            for p in model.parameters.parameters { p.gradient.zero() }
            _ = try model.forwardBackward(.features(inputs: images, targets: [Int32](repeating: 0, count: batch), batch: batch),
                                          lossScale: 1)
            adam.step(model.parameters, learningRate: 2e-3)
        }
                let after = try model.evaluate(held).loss
        print(String(format: "UNet denoising training (%d steps of %d 16×16 discs, %.1f s): held-out loss %.4f → %.4f",
                     steps, batch, Date().timeIntervalSince(start), before, after))
        XCTAssertLessThan(after, 0.6 * before, "the denoising loss falls by at least 40%")
    }
}
