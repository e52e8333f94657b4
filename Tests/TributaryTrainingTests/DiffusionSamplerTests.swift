import Foundation
import XCTest
import TributaryData
import TributaryModels
import TributaryTensor
@testable import TributaryTraining

/// DDPM and DDIM sampling: the update rules against exact math, seeded determinism, and
/// samples of a briefly trained U-Net against the data they were trained on.
final class DiffusionSamplerTests: XCTestCase {
    override func setUp() { ComputeThreads.set(2) }

    private func randomImages(_ count: Int, seed: UInt64, scale: Float = 0.9) -> [Float] {
        var rng = SeededRandom(seed: seed)
        return (0..<count).map { _ in (rng.nextUnitFloat() * 2 - 1) * scale }
    }

    func testDDIMTimestepsAreEvenlySpacedFromTheLastToTheFirst() throws {
        let schedule = try DDPMSchedule(kind: .linear, timesteps: 1000)
        let twenty = try DiffusionSampler(schedule: schedule, method: .ddim(steps: 20)).timesteps
        XCTAssertEqual(twenty.count, 20)
        XCTAssertEqual(twenty.first, 999)
        XCTAssertEqual(twenty.last, 0)
        XCTAssertEqual(twenty[1], 946, "999 − 999/19 = 946.4, rounded")
        XCTAssertTrue(zip(twenty, twenty.dropFirst()).allSatisfy { $0 - $1 == 52 || $0 - $1 == 53 })
        XCTAssertEqual(try DiffusionSampler(schedule: schedule, method: .ddim(steps: 1000)).timesteps, Array((0..<1000).reversed()))
        XCTAssertEqual(try DiffusionSampler(schedule: schedule, method: .ddim(steps: 1)).timesteps, [999])
        XCTAssertEqual(try DiffusionSampler(schedule: schedule, method: .ddpm).timesteps.count, 1000)
        XCTAssertThrowsError(try DiffusionSampler(schedule: schedule, method: .ddim(steps: 0)))
        XCTAssertThrowsError(try DiffusionSampler(schedule: schedule, method: .ddim(steps: 1001))) { error in
            XCTAssertEqual(error as? DiffusionSamplingError, .steps(1001, timesteps: 1000))
        }
    }

    /// With the true noise, one DDIM step from x_t lands exactly on the forward process at
    /// the earlier timestep, √ᾱ_s·x₀ + √(1−ᾱ_s)·ε, and the last step (to ᾱ = 1) on x₀.
    func testDDIMStepWithTheTrueNoiseFollowsTheForwardProcess() throws {
        let schedule = try DDPMSchedule(kind: .linear, timesteps: 1000)
        let sampler = try DiffusionSampler(schedule: schedule, method: .ddim(steps: 10), clipDenoised: false)
        let n = 200
        let x0 = randomImages(n, seed: 1)
        var rng = SeededRandom(seed: 2)
        let epsilon = (0..<n).map { _ in rng.nextGaussian() }
        for (from, to) in [(700, 300), (999, 500), (50, -1), (999, -1)] {
            var x = [Float](repeating: 0, count: n)
            x0.withUnsafeBufferPointer { a in
                epsilon.withUnsafeBufferPointer { e in
                    x.withUnsafeMutableBufferPointer { schedule.noise(a.baseAddress!, e.baseAddress!, into: $0.baseAddress!, count: n, timestep: from) }
                }
            }
            var expected = x0
            if to >= 0 {
                x0.withUnsafeBufferPointer { a in
                    epsilon.withUnsafeBufferPointer { e in
                        expected.withUnsafeMutableBufferPointer { schedule.noise(a.baseAddress!, e.baseAddress!, into: $0.baseAddress!, count: n, timestep: to) }
                    }
                }
            }
            epsilon.withUnsafeBufferPointer { e in
                x.withUnsafeMutableBufferPointer { sampler.ddimStep($0.baseAddress!, e.baseAddress!, count: n, from: from, to: to) }
            }
            let worst = zip(x, expected).map { abs($0 - $1) }.max() ?? .infinity
            XCTAssertLessThan(worst, 2e-4, "\(from) → \(to)")
        }
    }

    /// DDPM's posterior mean written through x̂₀ equals Algorithm 2's
    /// (x_t − β_t/√(1−ᾱ_t)·ε̂)/√α_t, and its variance is β̃_t (0 at t = 0).
    func testDDPMPosteriorMatchesAlgorithmTwo() throws {
        let schedule = try DDPMSchedule(kind: .cosine, timesteps: 200)
        let sampler = try DiffusionSampler(schedule: schedule, method: .ddpm, clipDenoised: false)
        for t in [0, 1, 57, 199] {
            let (c0, ct, sigma) = sampler.posterior(t)
            let beta = schedule.betas[t], alphaBar = schedule.alphaBars[t], previous = t > 0 ? schedule.alphaBars[t - 1] : 1
            XCTAssertEqual(Double(sigma * sigma), beta * (1 - previous) / (1 - alphaBar), accuracy: 1e-6, "β̃_\(t)")
            for (x, e) in [(0.3, -1.2), (-2.0, 0.5), (1.1, 1.7)] {
                let x0 = (x - (1 - alphaBar).squareRoot() * e) / alphaBar.squareRoot()
                let mean = Double(c0) * x0 + Double(ct) * x
                let algorithm2 = (x - beta / (1 - alphaBar).squareRoot() * e) / (1 - beta).squareRoot()
                XCTAssertEqual(mean, algorithm2, accuracy: 1e-4 * max(1, abs(algorithm2)), "t \(t)")
            }
        }
        XCTAssertEqual(sampler.posterior(0).sigma, 0)
    }

    /// A predictor that knows the clean images (it returns the noise that x_t holds over
    /// them) makes both samplers end exactly on those images, from any x_T.
    func testBothSamplersRecoverTheCleanImagesFromAnOracle() throws {
        let schedule = try DDPMSchedule(kind: .linear, timesteps: 300)
        let n = 49, count = 3
        let clean = randomImages(count * n, seed: 9)
        for method in [DiffusionSampler.Method.ddim(steps: 15), .ddpm] {
            let sampler = try DiffusionSampler(schedule: schedule, method: method)
            // One batch of all the images, so batch row i is image i.
            let out = try sampler.sample(count: count, pixelsPerSample: n, seed: 4, batchSize: count) { x, timesteps, b, into in
                for i in 0..<b {
                    let a = Float(schedule.alphaBars[timesteps[i]])
                    for j in 0..<n {
                        into[i * n + j] = (x[i * n + j] - a.squareRoot() * clean[i * n + j]) / (1 - a).squareRoot()
                    }
                }
            }
            let worst = zip(out, clean).map { abs($0 - $1) }.max() ?? .infinity
            XCTAssertLessThan(worst, 1e-3, "\(method)")
        }
    }

    private let tiny = UNetConfig(imageSize: 8, inChannels: 1, baseChannels: 4, channelMultipliers: [1, 2],
                                  blocksPerLevel: 1, normGroups: 2, timesteps: 100, schedule: .cosine)

    func testUNetSamplesHaveTheirShapeAreFiniteInRangeAndSeeded() throws {
        let model = try UNet(config: tiny, seed: 3, device: CPUDevice(allocator: .shared))
        for method in [DiffusionSampler.Method.ddim(steps: 10), .ddpm] {
            let a = try DiffusionSampler.sample(model, method: method, count: 5, seed: 11, batchSize: 1)
            XCTAssertEqual(a.count, 5 * 64)
            XCTAssertTrue(a.allSatisfy { $0.isFinite && $0 >= -1 && $0 <= 1 }, "\(method)")
            XCTAssertGreaterThanOrEqual(Set(a).count, 10, "not a constant image (an untrained U-Net saturates most pixels at ±1)")
            XCTAssertEqual(try DiffusionSampler.sample(model, method: method, count: 5, seed: 11, batchSize: 1), a, "same seed")
            XCTAssertNotEqual(try DiffusionSampler.sample(model, method: method, count: 5, seed: 12, batchSize: 1), a, "another seed")
            // Image i does not depend on how many are drawn with it.
            XCTAssertEqual(try DiffusionSampler.sample(model, method: method, count: 2, seed: 11, batchSize: 1), Array(a.prefix(128)))
            // Batched, the same images (up to the order of the batch's float sums).
            let batched = try DiffusionSampler.sample(model, method: method, count: 5, seed: 11, batchSize: 4)
            XCTAssertLessThan(zip(batched, a).map { abs($0 - $1) }.max() ?? .infinity, 1e-3, "\(method)")
        }
        XCTAssertThrowsError(try DiffusionSampler.sample(model, method: .ddim(steps: 101), count: 1, seed: 1))
        XCTAssertThrowsError(try DiffusionSampler.sample(model, method: .ddim(steps: 10), count: 0, seed: 1))
    }

    /// Samples of a briefly trained U-Net against its training images, in the [−1, 1] space:
    /// `meanImage` is the RMS over pixels between the samples' per-pixel mean and the data's;
    /// `nearestClass` the mean RMS from each sample to its nearest class mean; `dark` the
    /// share of pixels below −0.8 (background, for MNIST). Each for the trained model's
    /// samples, an untrained model's, clipped Gaussian noise and the data itself.
    struct QualityFigures { var meanImage: [Double], nearestClass: [Double], dark: [Double] }

    private func quality(_ data: PreparedDataset, steps: Int, batchSize: Int, count: Int) throws -> QualityFigures {
        guard case let .images(train) = data.train else { throw XCTSkip("not images") }
        let n = train.featureCount
        var classMeans = [Double](repeating: 0, count: 10 * n), counts = [Int](repeating: 0, count: 10)
        var dataMean = [Double](repeating: 0, count: n)
        for i in 0..<train.count {
            let label = Int(train.labels[i])
            counts[label] += 1
            for j in 0..<n {
                let v = Double(2 * train.pixels[i * n + j] - 1)
                classMeans[label * n + j] += v
                dataMean[j] += v / Double(train.count)
            }
        }
        for c in 0..<10 { for j in 0..<n { classMeans[c * n + j] /= Double(max(1, counts[c])) } }
        func figures(_ images: [Float]) -> (Double, Double, Double) {
            let k = images.count / n
            var total = 0.0, mean = [Double](repeating: 0, count: n), dark = 0
            for i in 0..<k {
                var best = Double.infinity
                for c in 0..<10 {
                    var s = 0.0
                    for j in 0..<n { let d = Double(images[i * n + j]) - classMeans[c * n + j]; s += d * d }
                    best = min(best, (s / Double(n)).squareRoot())
                }
                total += best
                for j in 0..<n {
                    mean[j] += Double(images[i * n + j]) / Double(k)
                    if images[i * n + j] < -0.8 { dark += 1 }
                }
            }
            let meanDistance = (zip(mean, dataMean).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) } / Double(n)).squareRoot()
            return (meanDistance, total / Double(k), Double(dark) / Double(images.count))
        }

        let side = Int(Double(n).squareRoot())
        let config = UNetConfig(imageSize: side, inChannels: 1, baseChannels: 8, channelMultipliers: [1, 2], blocksPerLevel: 1,
                                normGroups: 4, timesteps: 1000, schedule: .linear)
        let untrained = try UNet(config: config, seed: 1337, device: CPUDevice(allocator: .shared))
        let trainer = try Trainer(spec: ModelSpec(config), data: data,
                                  options: trainingOptions(steps: steps, batchSize: batchSize, learningRate: 2e-3, evalBatches: 2))
        let start = Date()
        try trainer.run(store: nil) { _ in }
        let trainSeconds = Date().timeIntervalSince(start)
        let model = try XCTUnwrap(trainer.model as? UNet)
        let method = DiffusionSampler.Method.ddim(steps: 20)
        let sampleStart = Date()
        let trained = try DiffusionSampler.sample(model, method: method, count: count, seed: 5)
        let sampleSeconds = Date().timeIntervalSince(sampleStart)
        let fresh = try DiffusionSampler.sample(untrained, method: method, count: count, seed: 5)
        var rng = SeededRandom(seed: 5)
        let noise = (0..<(count * n)).map { _ in min(1, max(-1, rng.nextGaussian())) }
        let real = (0..<count).flatMap { i in (0..<n).map { 2 * train.pixels[i * n + $0] - 1 } }
        let all = [trained, fresh, noise, real].map(figures)
        print(String(format: "%@: U-Net base 8 [1,2], %d steps of %d (%.0f s); %d samples by %@ (%.1f s); trained / untrained / clipped noise / data: per-pixel mean RMS %.3f / %.3f / %.3f / %.3f, RMS to nearest class mean %.3f / %.3f / %.3f / %.3f, dark pixels %.2f / %.2f / %.2f / %.2f",
                     data.name, steps, batchSize, trainSeconds, count, "\(method)", sampleSeconds,
                     all[0].0, all[1].0, all[2].0, all[3].0, all[0].1, all[1].1, all[2].1, all[3].1, all[0].2, all[1].2, all[2].2, all[3].2))
        return QualityFigures(meanImage: all.map(\.0), nearestClass: all.map(\.1), dark: all.map(\.2))
    }

    /// builtin:digits is 10 classes, each a pattern of independent uniform pixels plus pixel
    /// noise: hard for a convolutional network, which has no position to hang a random
    /// pattern on, so the margins are modest. Measured (600 steps of 32, ~40 s on 2 cores):
    /// per-pixel mean RMS 0.175 (noise 0.200), nearest class 0.745 (untrained 1.098, noise 0.875).
    func testBrieflyTrainedUNetSamplesMoveTowardsTheDigits() throws {
        let f = try quality(try digitsData(), steps: 600, batchSize: 32, count: 64)
        XCTAssertLessThan(f.meanImage[0], 0.95 * f.meanImage[2], "the samples' mean image is nearer the data's than noise's is")
        XCTAssertLessThan(f.nearestClass[0], 0.9 * f.nearestClass[2], "samples lie nearer the classes than noise")
        XCTAssertLessThan(f.nearestClass[0], 0.75 * f.nearestClass[1], "and than an untrained U-Net's samples")
    }

    /// MNIST (the shared t10k set; skipped without it), where strokes on a black ground are
    /// what a U-Net learns first. Measured (1000 steps of 32, ~60 s on 2 cores): per-pixel mean
    /// RMS 0.344 (untrained 0.805, noise 0.812), nearest class 0.603 (1.264, 1.078), dark
    /// pixels 34 % (data 84 %, noise 21 %).
    func testBrieflyTrainedUNetSamplesLookLikeMNIST() throws {
        let raw = try DatasetSource.load(try sharedData("mnist"))
        let data = try DatasetSource.prepare(raw, name: "mnist", blockSize: nil, validationFraction: 0.1, seed: 42)
        let f = try quality(data, steps: 1000, batchSize: 32, count: 64)
        XCTAssertLessThan(f.meanImage[0], 0.6 * f.meanImage[2], "the samples' mean image is far nearer the data's than noise's is")
        XCTAssertLessThan(f.meanImage[0], 0.6 * f.meanImage[1])
        XCTAssertLessThan(f.nearestClass[0], 0.7 * f.nearestClass[2])
        XCTAssertGreaterThan(f.dark[0], 1.3 * f.dark[2], "more black background than noise has")
    }
}
