import Foundation

/// Linear warm-up followed by cosine decay to a floor (nanoGPT's `get_lr`).
public struct LearningRateSchedule: Codable, Sendable, Equatable {
    public var peak: Float
    public var minimum: Float
    public var warmupSteps: Int
    /// The step at which the cosine reaches `minimum`; later steps stay there.
    public var decaySteps: Int

    public init(peak: Float, minimum: Float? = nil, warmupSteps: Int = 0, decaySteps: Int) {
        self.peak = peak
        self.minimum = minimum ?? peak / 10
        self.warmupSteps = max(0, warmupSteps)
        self.decaySteps = max(decaySteps, self.warmupSteps)
    }

    /// A constant rate.
    public static func constant(_ rate: Float) -> LearningRateSchedule {
        LearningRateSchedule(peak: rate, minimum: rate, warmupSteps: 0, decaySteps: 0)
    }

    /// The rate for 0-based `step`.
    public func rate(at step: Int) -> Float {
        if step < warmupSteps { return peak * Float(step + 1) / Float(warmupSteps + 1) }
        if step >= decaySteps || decaySteps == warmupSteps { return step >= decaySteps ? minimum : peak }
        let ratio = Double(step - warmupSteps) / Double(decaySteps - warmupSteps)
        let coefficient = 0.5 * (1 + cos(Double.pi * ratio))
        return minimum + Float(coefficient) * (peak - minimum)
    }
}
