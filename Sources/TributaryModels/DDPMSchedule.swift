import Foundation

/// The forward (noising) process of DDPM (Ho et al. 2020): betas β_t for t in 0..<T and
/// ᾱ_t = Π_{s≤t} (1 − β_s), so that x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε.
public struct DDPMSchedule: Sendable, Equatable {
    public enum Kind: String, Sendable, Codable, Equatable {
        /// β linear from `betaStart` to `betaEnd` (DDPM's 1e-4 … 0.02 over 1000 steps).
        case linear
        /// Nichol & Dhariwal 2021: ᾱ(t) = f(t)/f(0), f(t) = cos²(((t/T) + s)/(1 + s)·π/2),
        /// s = 0.008, each β capped at 0.999 (diffusers' `squaredcos_cap_v2`).
        case cosine
    }

    public let kind: Kind
    public let betas: [Double]
    public let alphaBars: [Double]
    public var timesteps: Int { betas.count }

    public init(kind: Kind, timesteps: Int = 1000, betaStart: Double = 1e-4, betaEnd: Double = 0.02) throws(ModelError) {
        guard timesteps >= 1, timesteps <= 1_000_000 else {
            throw .invalidConfiguration("a diffusion schedule needs 1…1000000 timesteps, got \(timesteps)")
        }
        self.kind = kind
        switch kind {
        case .linear:
            guard betaStart > 0, betaEnd < 1, betaStart <= betaEnd else {
                throw .invalidConfiguration("linear betas need 0 < start (\(betaStart)) ≤ end (\(betaEnd)) < 1")
            }
            let step = timesteps > 1 ? (betaEnd - betaStart) / Double(timesteps - 1) : 0
            betas = (0..<timesteps).map { betaStart + step * Double($0) }
        case .cosine:
            let s = 0.008
            func f(_ t: Double) -> Double {
                let c = cos((t / Double(timesteps) + s) / (1 + s) * Double.pi / 2)
                return c * c
            }
            betas = (0..<timesteps).map { min(1 - f(Double($0 + 1)) / f(Double($0)), 0.999) }
        }
        var product = 1.0
        alphaBars = betas.map { product *= 1 - $0; return product }
    }

    /// x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε, elementwise over `count` values.
    public func noise(_ x0: UnsafePointer<Float>, _ epsilon: UnsafePointer<Float>, into xt: UnsafeMutablePointer<Float>,
                      count: Int, timestep t: Int) {
        let a = Float(alphaBars[t].squareRoot()), b = Float((1 - alphaBars[t]).squareRoot())
        for i in 0..<count { xt[i] = a * x0[i] + b * epsilon[i] }
    }
}
