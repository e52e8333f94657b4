import Foundation
import TributaryTensor

/// An update rule whose state (moments, momentum buffers) lives beside the parameters.
/// On the coordinator it is the single owner of that state; workers never hold it.
public protocol Optimizer: AnyObject {
    /// A short identifier, stored in checkpoints ("adamw", "sgd").
    var kind: String { get }
    /// Steps taken; AdamW's bias correction depends on it.
    var stepCount: Int { get }
    /// Applies one update from the parameters' gradients.
    func step(_ parameters: ParameterSet, learningRate: Float)
    /// Named state tensors for checkpoints, e.g. "transformer.wte.weight.exp_avg".
    func stateTensors() -> [(name: String, tensor: Tensor)]
    /// Restores state written by `stateTensors()`.
    func restore(stepCount: Int, tensor: (String) throws -> [Float]) throws
}

public enum OptimizerError: Error, CustomStringConvertible, Equatable {
    case invalidHyperparameter(String)
    case missingState(String)
    case stateShape(name: String, expected: Int, got: Int)

    public var description: String {
        switch self {
        case let .invalidHyperparameter(why): return "invalid optimizer setting: \(why)"
        case let .missingState(name): return "optimizer state '\(name)' is missing from the checkpoint"
        case let .stateShape(name, e, g): return "optimizer state '\(name)' has \(g) values, the model needs \(e)"
        }
    }
}

extension Optimizer {
    func restoreTensors(_ named: [(name: String, tensor: Tensor)], from source: (String) throws -> [Float]) throws {
        for (name, t) in named {
            let values = try source(name)
            guard values.count == t.count else {
                throw OptimizerError.stateShape(name: name, expected: t.count, got: values.count)
            }
            t.copy(from: values)
        }
    }
}

/// AdamW with decoupled weight decay (Loshchilov & Hutter), PyTorch's formulation:
/// p ← p·(1 − lr·wd); m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²;
/// p ← p − lr/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + ε).
/// Decay applies to parameters marked `decays` (matrices and embeddings), not to biases
/// or LayerNorm gains, as nanoGPT configures it.
///
/// With `updateBound` b, each coordinate's normalised step m̂/(√v̂ + ε) is clamped to [−b, b].
/// Dense training never comes near it (|m̂/√v̂| stays about 1 or below); it is for sparse,
/// error-feedback updates, where a coordinate silent for many rounds has a small v and
/// then receives many rounds' mass at once: unbounded, that one step is up to
/// 1/√(1−β₂) times the learning rate (10x at β₂ 0.99), and training spikes.
public final class AdamW: Optimizer {
    public let kind = "adamw"
    public let beta1: Float, beta2: Float, epsilon: Float, weightDecay: Float
    public let updateBound: Float?
    public private(set) var stepCount = 0
    private let moments: [(name: String, m: Tensor, v: Tensor)]

    public init(parameters: ParameterSet, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8,
                weightDecay: Float = 0.01, updateBound: Float? = nil, allocator: TensorAllocator = .shared) throws {
        guard (0..<1).contains(beta1), (0..<1).contains(beta2) else {
            throw OptimizerError.invalidHyperparameter("betas must lie in [0, 1) (got \(beta1), \(beta2))")
        }
        if let updateBound, !(updateBound > 0) {
            throw OptimizerError.invalidHyperparameter("the update bound must be positive (got \(updateBound))")
        }
        self.updateBound = updateBound
        guard epsilon > 0, weightDecay >= 0 else {
            throw OptimizerError.invalidHyperparameter("epsilon must be positive and weight decay non-negative")
        }
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        moments = try parameters.parameters.map {
            ($0.name, try Tensor(shape: $0.shape, allocator: allocator), try Tensor(shape: $0.shape, allocator: allocator))
        }
    }

    public func step(_ parameters: ParameterSet, learningRate lr: Float) {
        stepCount += 1
        let t = Double(stepCount)
        let bc1 = Float(1 - pow(Double(beta1), t))
        let bc2Sqrt = Float((1 - pow(Double(beta2), t)).squareRoot())
        let stepSize = lr / bc1
        let b1 = beta1, b2 = beta2, eps = epsilon, bound = updateBound ?? .infinity
        for (p, state) in zip(parameters.parameters, moments) {
            let decay = p.decays ? 1 - lr * weightDecay : 1
            // The formula above, vectorised in C for this CPU (same operations and order).
            OptimizerKernels.adamW(weight: p.value.data, gradient: p.gradient.data, m: state.m.data, v: state.v.data,
                                   count: p.count, beta1: b1, beta2: b2, epsilon: eps, biasCorrection2Sqrt: bc2Sqrt,
                                   stepSize: stepSize, decay: decay, bound: bound)
        }
    }

    public func stateTensors() -> [(name: String, tensor: Tensor)] {
        moments.flatMap { [("\($0.name).exp_avg", $0.m), ("\($0.name).exp_avg_sq", $0.v)] }
    }

    public func restore(stepCount: Int, tensor: (String) throws -> [Float]) throws {
        try restoreTensors(stateTensors(), from: tensor)
        self.stepCount = stepCount
    }
}

/// SGD with momentum and optional Nesterov, PyTorch's formulation (dampening 0):
/// g ← g + wd·p; b ← μb + g (b = g on the first step); g ← g + μb (Nesterov) or b; p ← p − lr·g.
public final class SGD: Optimizer {
    public let kind = "sgd"
    public let momentum: Float, nesterov: Bool, weightDecay: Float
    public private(set) var stepCount = 0
    private let buffers: [(name: String, b: Tensor)]

    public init(parameters: ParameterSet, momentum: Float = 0.9, nesterov: Bool = false, weightDecay: Float = 0,
                allocator: TensorAllocator = .shared) throws {
        guard momentum >= 0, momentum < 1, weightDecay >= 0 else {
            throw OptimizerError.invalidHyperparameter("momentum must lie in [0, 1) and weight decay be non-negative")
        }
        guard !nesterov || momentum > 0 else {
            throw OptimizerError.invalidHyperparameter("Nesterov momentum needs momentum > 0")
        }
        self.momentum = momentum
        self.nesterov = nesterov
        self.weightDecay = weightDecay
        buffers = try parameters.parameters.map { ($0.name, try Tensor(shape: $0.shape, allocator: allocator)) }
    }

    public func step(_ parameters: ParameterSet, learningRate lr: Float) {
        let first = stepCount == 0
        stepCount += 1
        let mu = momentum, nest = nesterov
        for (p, state) in zip(parameters.parameters, buffers) {
            let wd = p.decays ? weightDecay : 0
            let w = p.value.data, g = p.gradient.data, buf = state.b.data
            Parallel.forRanges(p.count, minPerThread: 32_768) { range in
                for i in range {
                    let gi = g[i] + wd * w[i]
                    var d = gi
                    if mu > 0 {
                        let bi = first ? gi : mu * buf[i] + gi
                        buf[i] = bi
                        d = nest ? gi + mu * bi : bi
                    }
                    w[i] -= lr * d
                }
            }
        }
    }

    public func stateTensors() -> [(name: String, tensor: Tensor)] {
        buffers.map { ("\($0.name).momentum_buffer", $0.b) }
    }

    public func restore(stepCount: Int, tensor: (String) throws -> [Float]) throws {
        try restoreTensors(stateTensors(), from: tensor)
        self.stepCount = stepCount
    }
}
