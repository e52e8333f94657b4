import Foundation
import TributaryModels
import TributaryTensor

/// Draws images from a noise predictor ε̂(x_t, t) trained under a `DDPMSchedule`:
///
/// - `.ddpm`: ancestral sampling (Ho et al. 2020, Algorithm 2) over every timestep T−1 … 0,
///   x_{t−1} = μ̃_t(x_t, x̂₀) + σ_t·z with the posterior variance σ_t² = β̃_t =
///   β_t·(1−ᾱ_{t−1})/(1−ᾱ_t) (the choice that ends each chain exactly at x̂₀: β̃₀ = 0).
///   The mean is written through x̂₀ = (x_t − √(1−ᾱ_t)·ε̂)/√ᾱ_t, which is Algorithm 2's
///   mean when x̂₀ is not clipped.
/// - `.ddim(steps:)`: DDIM with η = 0 (Song et al. 2021), deterministic after x_T, over
///   `steps` timesteps evenly spaced from T−1 down to 0; after the last, x̂₀ itself. Each
///   step pairs x̂₀ with the noise x_t holds over it (`ddimStep`), which is ε̂ unless x̂₀
///   was clipped.
///
/// With `clipDenoised` (the default, as in Ho et al.'s code) x̂₀ is clamped to [−1, 1] at
/// every step, the range the U-Net's data lives in, so the output lies in [−1, 1].
///
/// Image i's x_T and DDPM noise come from `SeededRandom(seed, stream: i)`, so the same seed
/// gives the same images, and image i does not depend on how many are drawn with it.
public struct DiffusionSampler: Sendable {
    public enum Method: Sendable, Equatable, CustomStringConvertible {
        case ddpm
        case ddim(steps: Int)

        public var description: String {
            switch self {
            case .ddpm: return "DDPM"
            case let .ddim(steps): return "DDIM (\(steps) steps)"
            }
        }
    }

    /// Writes ε̂ for `batch` images x_t (batch × pixels values), each at its timestep.
    public typealias NoisePredictor = (_ noisy: UnsafeBufferPointer<Float>, _ timesteps: [Int], _ batch: Int,
                                       _ into: UnsafeMutableBufferPointer<Float>) throws -> Void

    public let schedule: DDPMSchedule
    public let method: Method
    public let clipDenoised: Bool
    /// The timesteps visited, descending.
    public let timesteps: [Int]

    public init(schedule: DDPMSchedule, method: Method, clipDenoised: Bool = true) throws(DiffusionSamplingError) {
        self.schedule = schedule
        self.method = method
        self.clipDenoised = clipDenoised
        let t = schedule.timesteps
        switch method {
        case .ddpm:
            timesteps = Array((0..<t).reversed())
        case let .ddim(steps):
            guard steps >= 1, steps <= t else { throw .steps(steps, timesteps: t) }
            // Spacing (T−1)/(S−1) ≥ 1, so the rounded timesteps are distinct.
            timesteps = steps == 1 ? [t - 1]
                : (0..<steps).reversed().map { Int((Double($0) * Double(t - 1) / Double(steps - 1)).rounded()) }
        }
    }

    /// `count` images of `pixelsPerSample` values each, in batches of at most `batchSize`.
    public func sample(count: Int, pixelsPerSample n: Int, seed: UInt64, batchSize: Int = 32,
                       predict: NoisePredictor) throws -> [Float] {
        guard count >= 1, n >= 1, batchSize >= 1, CheckedSize.fits(count, of: n) else {
            throw DiffusionSamplingError.shape("a sample needs at least one image of at least one pixel, and batches of at least one (got \(count) × \(n), batch \(batchSize))")
        }
        var images = [Float](repeating: 0, count: count * n)
        var noise = [Float](repeating: 0, count: min(count, batchSize) * n)
        try images.withUnsafeMutableBufferPointer { all in
            try noise.withUnsafeMutableBufferPointer { eps in
                guard let base = all.baseAddress else { return }
                var start = 0
                while start < count {
                    let b = min(batchSize, count - start)
                    var rngs = (start..<(start + b)).map { SeededRandom(seed: seed, stream: UInt64($0)) }
                    let x = UnsafeMutableBufferPointer(start: base + start * n, count: b * n)
                    for i in 0..<b {
                        for j in 0..<n { x[i * n + j] = rngs[i].nextGaussian() }
                    }
                    try run(x, batch: b, pixelsPerSample: n, rngs: &rngs,
                            noise: UnsafeMutableBufferPointer(rebasing: eps[0..<(b * n)]), predict: predict)
                    start += b
                }
            }
        }
        return images
    }

    /// Denoises x (b images, x_T in, x₀ out) in place. `rngs` (one per image) draw DDPM's
    /// per-step noise; `noise` is scratch of x's size for ε̂.
    public func run(_ x: UnsafeMutableBufferPointer<Float>, batch b: Int, pixelsPerSample n: Int,
                    rngs: inout [SeededRandom], noise: UnsafeMutableBufferPointer<Float>, predict: NoisePredictor) throws {
        guard x.count == b * n, noise.count == b * n, rngs.count == b else {
            throw DiffusionSamplingError.shape("\(b) images of \(n) pixels need \(b * n) values, scratch and \(b) generators; got \(x.count), \(noise.count), \(rngs.count)")
        }
        for (k, t) in timesteps.enumerated() {
            try predict(UnsafeBufferPointer(x), Array(repeating: t, count: b), b, noise)
            switch method {
            case .ddpm:
                let (c0, ct, sigma) = posterior(t)
                for i in 0..<b {
                    let xi = x.baseAddress.map { $0 + i * n }, ei = noise.baseAddress.map { $0 + i * n }
                    guard let xi, let ei else { continue }
                    denoisedStep(xi, ei, count: n, t: t) { x0, xt in c0 * x0 + ct * xt }
                    if sigma > 0 {
                        for j in 0..<n { xi[j] += sigma * rngs[i].nextGaussian() }
                    }
                }
            case .ddim:
                let previous = k + 1 < timesteps.count ? timesteps[k + 1] : -1
                guard let xp = x.baseAddress, let ep = noise.baseAddress else { continue }
                ddimStep(xp, ep, count: b * n, from: t, to: previous)
            }
        }
    }

    /// One DDIM (η = 0) step from timestep t to `previous` (−1: the clean image, ᾱ = 1):
    /// x ← √ᾱ_prev·x̂₀ + √(1−ᾱ_prev)·ε', over `count` values in place, where
    /// ε' = (x_t − √ᾱ_t·x̂₀)/√(1−ᾱ_t) is the noise x_t holds over the (clipped) x̂₀: ε̂
    /// itself when nothing was clipped. As in Nichol & Dhariwal's sampler: near t = T a
    /// clipped x̂₀ is far from the unclipped one (x̂₀ divides by √ᾱ_T ≈ 0.006), and pairing it
    /// with the raw ε̂ would step to a point the forward process cannot reach.
    public func ddimStep(_ x: UnsafeMutablePointer<Float>, _ epsilon: UnsafePointer<Float>, count: Int, from t: Int, to previous: Int) {
        let alphaBar = previous >= 0 ? schedule.alphaBars[previous] : 1
        let a = Float(alphaBar.squareRoot()), s = Float((1 - alphaBar).squareRoot())
        let root = Float(schedule.alphaBars[t].squareRoot()), inverseNoiseRoot = Float(1 / (1 - schedule.alphaBars[t]).squareRoot())
        denoisedStep(x, epsilon, count: count, t: t) { x0, xt in
            a * x0 + s * (xt - root * x0) * inverseNoiseRoot
        }
    }

    /// x̂₀ = (x_t − √(1−ᾱ_t)·ε̂)/√ᾱ_t, clipped if asked, then x ← combine(x̂₀, x_t).
    @inline(__always)
    private func denoisedStep(_ x: UnsafeMutablePointer<Float>, _ epsilon: UnsafePointer<Float>, count: Int, t: Int,
                              combine: (Float, Float) -> Float) {
        let alphaBar = schedule.alphaBars[t]
        let inverseRoot = Float(1 / alphaBar.squareRoot()), noiseRoot = Float((1 - alphaBar).squareRoot())
        let clip = clipDenoised
        for j in 0..<count {
            var x0 = (x[j] - noiseRoot * epsilon[j]) * inverseRoot
            if clip { x0 = min(1, max(-1, x0)) }
            x[j] = combine(x0, x[j])
        }
    }

    /// The posterior q(x_{t−1} | x_t, x₀): its mean's coefficients on x₀ and x_t and its
    /// standard deviation √β̃_t (Ho et al. eqs. 6–7).
    func posterior(_ t: Int) -> (onX0: Float, onXt: Float, sigma: Float) {
        let beta = schedule.betas[t], alphaBar = schedule.alphaBars[t]
        let previous = t > 0 ? schedule.alphaBars[t - 1] : 1
        let onX0 = previous.squareRoot() * beta / (1 - alphaBar)
        let onXt = (1 - beta).squareRoot() * (1 - previous) / (1 - alphaBar)
        let variance = beta * (1 - previous) / (1 - alphaBar)
        return (Float(onX0), Float(onXt), Float(max(0, variance).squareRoot()))
    }
}

extension DiffusionSampler {
    /// `count` images from a U-Net, its own schedule, in batches of `batchSize`: b × C × S × S
    /// values in [−1, 1] (with clipping), the space the U-Net maps its [0, 1] pixels to.
    public static func sample(_ model: UNet, method: Method, count: Int, seed: UInt64,
                              batchSize: Int = 32, clipDenoised: Bool = true) throws -> [Float] {
        let sampler = try DiffusionSampler(schedule: model.schedule, method: method, clipDenoised: clipDenoised)
        return try sampler.sample(count: count, pixelsPerSample: model.config.pixelsPerSample, seed: seed,
                                  batchSize: batchSize) { noisy, timesteps, b, out in
            try model.predictNoise(noisy: noisy, timesteps: timesteps, batch: b, into: out)
        }
    }
}

/// Why sampling could not run, and what to change.
public enum DiffusionSamplingError: Error, Equatable, CustomStringConvertible {
    case steps(Int, timesteps: Int)
    case shape(String)

    public var description: String {
        switch self {
        case let .steps(steps, t): return "DDIM needs 1…\(t) steps (the model's diffusion timesteps), got \(steps)"
        case let .shape(message): return message
        }
    }
}
