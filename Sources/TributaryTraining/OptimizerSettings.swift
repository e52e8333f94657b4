import TributaryOptim
import TributaryTensor

/// The update rules a run can use.
public enum OptimizerKind: String, Codable, Sendable, CaseIterable {
    case adamw
    case sgd

    /// Decoupled weight decay when the run does not set one: nanoGPT's 0.1 for AdamW,
    /// none for SGD.
    public var defaultWeightDecay: Float { self == .sgd ? 0 : 0.1 }
}

/// Everything that decides how gradients become a step: the rule and its hyper-parameters,
/// the learning-rate schedule and clipping. `tributary train` and the coordinator both
/// describe their optimizer with this, so the two loops build it the same way.
public struct OptimizerSettings: Sendable, Equatable {
    public var kind: OptimizerKind
    public var schedule: LearningRateSchedule
    public var beta1: Float
    public var beta2: Float
    public var weightDecay: Float
    public var momentum: Float
    public var nesterov: Bool
    /// AdamW's bound on each coordinate's normalised step (nil: none); see `AdamW.updateBound`.
    public var updateBound: Float?
    /// Global gradient-norm clipping (0: off).
    public var gradClip: Float

    public init(kind: OptimizerKind, schedule: LearningRateSchedule, beta1: Float = 0.9, beta2: Float = 0.99,
                weightDecay: Float? = nil, momentum: Float = 0.9, nesterov: Bool = false,
                updateBound: Float? = nil, gradClip: Float = 1.0) {
        self.kind = kind
        self.schedule = schedule
        self.beta1 = beta1
        self.beta2 = beta2
        self.weightDecay = weightDecay ?? kind.defaultWeightDecay
        self.momentum = momentum
        self.nesterov = nesterov
        self.updateBound = updateBound
        self.gradClip = gradClip
    }

    /// The optimizer over `parameters`, its state allocated from `allocator`.
    public func makeOptimizer(for parameters: ParameterSet, allocator: TensorAllocator) throws -> any Optimizer {
        switch kind {
        case .sgd:
            return try SGD(parameters: parameters, momentum: momentum, nesterov: nesterov, weightDecay: weightDecay,
                           allocator: allocator)
        case .adamw:
            return try AdamW(parameters: parameters, beta1: beta1, beta2: beta2, weightDecay: weightDecay,
                             updateBound: updateBound, allocator: allocator)
        }
    }
}

/// When a run gives up on steps it had to skip.
public enum SkipPolicy: Sendable, Equatable {
    /// A single process stops after this many skipped steps in a row: its data or learning
    /// rate is broken and going on only burns time.
    case stopAfter(Int)
    /// A coordinator keeps serving: a non-finite round can come from one hostile update,
    /// and stopping the job would hand any volunteer a way to end it.
    case neverStop
}
