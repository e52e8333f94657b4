import Foundation
import TributaryCheckpoint
import TributaryData
import TributaryModels
import TributaryOptim
import TributaryTensor

/// What one optimizer step did with the gradients it was given.
public struct StepOutcome: Sendable, Equatable {
    /// The global gradient norm before clipping.
    public let gradientNorm: Double
    public let learningRate: Float
    /// True when the loss or the gradient was not finite: weights and moments are untouched.
    public let skipped: Bool
}

/// The model being trained and everything that turns its gradients into a step: the
/// optimizer, the learning-rate schedule, clipping and the policy for non-finite steps.
/// `Trainer` and the coordinator's job both step through this type, so a single process
/// and a distributed job cannot drift apart in how a step is taken.
public final class ModelState {
    public let spec: ModelSpec
    public let model: any TrainableModel
    public let optimizer: any Optimizer
    public let settings: OptimizerSettings
    public let skipPolicy: SkipPolicy
    public private(set) var consecutiveSkips = 0

    public var parameters: ParameterSet { model.parameters }

    /// The model computes on `device` (nil: the CPU, its tensors from `allocator`); the
    /// optimizer's state stays in host memory from `allocator`.
    public init(spec: ModelSpec, seed: UInt64, settings: OptimizerSettings, skipPolicy: SkipPolicy,
                allocator: TensorAllocator = .shared, device: (any ComputeDevice)? = nil) throws {
        self.spec = spec
        self.settings = settings
        self.skipPolicy = skipPolicy
        model = try device.map { try spec.build(seed: seed, device: $0) } ?? spec.build(seed: seed, allocator: allocator)
        optimizer = try settings.makeOptimizer(for: model.parameters, allocator: allocator)
    }

    /// Clips the gradients now in the parameters and applies one step at `step`'s learning
    /// rate, unless the loss (when given) or the gradient norm is not finite: then the step
    /// is skipped, and under `.stopAfter(n)` the n-th skip in a row throws `diverged`.
    public func step(at step: Int, loss: Float? = nil) throws(TrainingError) -> StepOutcome {
        let norm = GradientClipping.clipGlobalNorm(model.parameters, maxNorm: settings.gradClip)
        let rate = settings.schedule.rate(at: step)
        let skip = !(loss?.isFinite ?? true) || !norm.isFinite
        if skip {
            // Never let a non-finite gradient into the weights or the optimizer moments.
            consecutiveSkips += 1
            if case let .stopAfter(limit) = skipPolicy, consecutiveSkips >= limit {
                throw .diverged(step: step)
            }
        } else {
            consecutiveSkips = 0
            optimizer.step(model.parameters, learningRate: rate)
        }
        return StepOutcome(gradientNorm: norm, learningRate: rate, skipped: skip)
    }

    /// Loads weights and optimizer state. Everything is checked before anything is copied,
    /// so a refused checkpoint leaves the state as it was.
    public func restore(from checkpoint: LoadedCheckpoint) throws {
        let weights = try checkpoint.validatedWeights(for: model.parameters)
        let (optimizerStep, optimizerState) = try checkpoint.validatedOptimizerState(for: optimizer)
        for (p, values) in zip(model.parameters.parameters, weights) { p.value.copy(from: values) }
        try optimizer.restore(stepCount: optimizerStep) { name in
            guard let values = optimizerState[name] else { throw OptimizerError.missingState(name) }
            return values
        }
    }

    /// Back to the seeded initial weights and a fresh optimizer (after a checkpoint that was
    /// loaded and then found unusable).
    public func reset(seed: UInt64) throws {
        let fresh = try spec.build(seed: seed, allocator: .shared)
        for (p, q) in zip(model.parameters.parameters, fresh.parameters.parameters) { p.value.copy(from: q.value.toArray()) }
        let sizes = Dictionary(optimizer.stateTensors().map { ($0.name, $0.tensor.count) }, uniquingKeysWith: { a, _ in a })
        try optimizer.restore(stepCount: 0) { name in [Float](repeating: 0, count: sizes[name] ?? 0) }
        consecutiveSkips = 0
    }

    /// Writes weights, optimizer state and the caller's position; returns the checkpoint's path.
    public func save(to store: CheckpointStore, step: Int, vocabulary: CharacterVocabulary?,
                     position: [UInt8]) throws -> String {
        try store.save(step: step, spec: spec, model: model, vocabulary: vocabulary, optimizer: optimizer,
                       trainerState: position)
    }
}
