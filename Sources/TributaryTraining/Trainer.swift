import Foundation
import TributaryCheckpoint
import TributaryData
import TributaryModels
import TributaryOptim
import TributaryTensor

/// How a single-process training run proceeds.
public struct TrainingOptions: Codable, Sendable, Equatable {
    public var steps = 1000
    public var batchSize = 32
    /// The batch is computed in this many slices with accumulated gradients.
    public var microBatches = 1
    public var optimizer = "adamw"
    public var learningRate: Float = 1e-3
    public var minLearningRate: Float?
    public var warmupSteps = 0
    public var beta1: Float = 0.9
    public var beta2: Float = 0.99
    public var weightDecay: Float = 0.1
    public var momentum: Float = 0.9
    public var nesterov = false
    public var gradClip: Float = 1.0
    public var evalInterval = 100
    public var evalBatches = 20
    public var checkpointInterval = 0
    public var seed: UInt64 = 1337

    public init() {}

    public func validate() throws {
        func bad(_ s: String) -> TrainingError { .invalidOptions(s) }
        if steps < 1 { throw bad("steps must be positive") }
        if batchSize < 1 { throw bad("batch size must be positive") }
        if microBatches < 1 || batchSize % microBatches != 0 {
            throw bad("batch size \(batchSize) must be a multiple of micro-batches \(microBatches)")
        }
        if !(learningRate > 0) || !learningRate.isFinite { throw bad("learning rate must be positive") }
        if OptimizerKind(rawValue: optimizer) == nil { throw bad("optimizer must be adamw or sgd (got \(optimizer))") }
        if evalInterval < 0 || evalBatches < 0 || checkpointInterval < 0 { throw bad("intervals must not be negative") }
    }

    public var schedule: LearningRateSchedule {
        LearningRateSchedule(peak: learningRate, minimum: minLearningRate, warmupSteps: warmupSteps, decaySteps: steps)
    }

    /// The optimizer these options describe (validated: `optimizer` names a known kind).
    public var optimizerSettings: OptimizerSettings {
        OptimizerSettings(kind: OptimizerKind(rawValue: optimizer) ?? .adamw, schedule: schedule, beta1: beta1, beta2: beta2,
                          weightDecay: weightDecay, momentum: momentum, nesterov: nesterov, gradClip: gradClip)
    }
}

public enum TrainingError: Error, CustomStringConvertible, Equatable {
    case invalidOptions(String)
    case datasetTooSmall(String)
    case diverged(step: Int)

    public var description: String {
        switch self {
        case let .invalidOptions(why): return "invalid training options: \(why)"
        case let .datasetTooSmall(why): return "dataset too small: \(why)"
        case let .diverged(step): return "training diverged at step \(step): loss or gradients stayed NaN/inf; lower the learning rate"
        }
    }
}

/// What one optimizer step did.
public struct StepReport: Sendable {
    public let step: Int
    public let loss: Float
    public let learningRate: Float
    public let gradientNorm: Double
    public let samples: Int
    public let predictions: Int
    public let seconds: Double
    public let flops: Double
    public let skipped: Bool
}

/// Events a run reports to whoever shows progress.
public enum TrainingEvent: Sendable {
    case step(StepReport, elapsed: Double, remaining: Double)
    case validation(step: Int, Evaluation)
    case checkpoint(step: Int, path: String)
}

/// Position in the run, saved with each checkpoint.
struct TrainerState: Codable {
    var step: Int
    var seed: UInt64
    var batchSize: Int
}

/// Single-process training: deterministic data order (from the seed and the step), the
/// optimizer in this process, periodic validation and checkpoints.
public final class Trainer {
    public let state: ModelState
    public var spec: ModelSpec { state.spec }
    public var model: any TrainableModel { state.model }
    public var optimizer: any Optimizer { state.optimizer }
    public let data: PreparedDataset
    public let options: TrainingOptions
    public let order: EpochSchedule
    public private(set) var step = 0
    private let validationIndices: [[Int]]

    /// A single process gives up after this many non-finite steps in a row.
    public static let skipLimit = 5

    public init(spec: ModelSpec, data: PreparedDataset, options: TrainingOptions,
                allocator: TensorAllocator = .shared, device: (any ComputeDevice)? = nil) throws {
        try options.validate()
        try spec.validate()
        guard data.train.sampleCount >= options.batchSize else {
            throw TrainingError.datasetTooSmall("\(data.train.sampleCount) training samples, batch size is \(options.batchSize)")
        }
        self.data = data
        self.options = options
        state = try ModelState(spec: spec, seed: options.seed, settings: options.optimizerSettings,
                               skipPolicy: .stopAfter(Self.skipLimit), allocator: allocator, device: device)
        order = try EpochSchedule(sampleCount: data.train.sampleCount, batchSize: options.batchSize, seed: options.seed)
        // A fixed validation subset, the same at every evaluation, so the curve is comparable.
        let vCount = data.validation.sampleCount
        let vBatch = min(options.batchSize, vCount)
        var rng = SeededRandom(seed: options.seed, stream: 0xEA1)
        let perm = rng.permutation(count: vCount)
        let batches = vBatch > 0 ? min(options.evalBatches, vCount / vBatch) : 0
        validationIndices = (0..<batches).map { Array(perm[($0 * vBatch)..<(($0 + 1) * vBatch)]) }
    }

    /// Continues from a checkpoint: weights, optimizer state and step. Everything is
    /// checked before anything is copied, so a refused checkpoint leaves the trainer as it was.
    public func restore(from checkpoint: LoadedCheckpoint) throws {
        guard checkpoint.config.model == spec else {
            throw CheckpointError.mismatch("the checkpoint's model (\(checkpoint.config.model.summary)) differs from this run's (\(spec.summary))")
        }
        if let bytes = checkpoint.trainerState {
            guard let state = try? JSONDecoder().decode(TrainerState.self, from: Data(bytes)) else {
                throw CheckpointError.corrupt(path: checkpoint.path, reason: "\(CheckpointStore.trainerStateFile) is not valid")
            }
            guard state.seed == options.seed, state.batchSize == options.batchSize else {
                throw CheckpointError.mismatch("resuming needs the same seed and batch size as the checkpointed run (seed \(state.seed), batch \(state.batchSize))")
            }
        }
        try state.restore(from: checkpoint)
        step = checkpoint.config.step
    }

    /// One optimizer step on the next batch in the deterministic order.
    @discardableResult
    public func trainStep() throws -> StepReport {
        let start = DispatchTime.now().uptimeNanoseconds
        let indices = order.batch(step: step)
        let epoch = step / order.batchesPerEpoch  // the epoch `order.batch(step:)` reads, for random flips
        let micro = options.microBatches
        let slice = options.batchSize / micro
        model.parameters.zeroGradients()
        // A diffusion model's noise: new each step, reproducible from the step.
        (model as? any StochasticTrainingModel)?.trainingSeed = UInt64(step)
        var lossSum: Float = 0
        var flops = 0.0
        var predictions = 0
        for m in 0..<micro {
            let batch = data.trainingBatch(Array(indices[(m * slice)..<((m + 1) * slice)]), epoch: epoch)
            lossSum += try model.forwardBackward(batch, lossScale: 1 / Float(micro))
            flops += model.trainingFLOPs(batch)
            predictions += batch.predictionCount
        }
        let loss = lossSum / Float(micro)
        let outcome = try state.step(at: step, loss: loss)
        step += 1
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        return StepReport(step: step, loss: loss, learningRate: outcome.learningRate, gradientNorm: outcome.gradientNorm,
                          samples: options.batchSize, predictions: predictions, seconds: seconds, flops: flops,
                          skipped: outcome.skipped)
    }

    /// Mean loss and accuracy over the fixed validation subset.
    public func validate() throws -> Evaluation? {
        guard !validationIndices.isEmpty else { return nil }
        var lossSum = 0.0
        var correct = 0, predictions = 0
        // In micro-batch slices, like training, so evaluation fits the same memory.
        let slices = options.microBatches
        for indices in validationIndices {
            let slice = max(1, indices.count / slices)
            for start in stride(from: 0, to: indices.count, by: slice) {
                let e = try model.evaluate(data.validation.batch(Array(indices[start..<min(indices.count, start + slice)])))
                lossSum += e.loss * Double(e.predictions)
                correct += e.correct
                predictions += e.predictions
            }
        }
        return Evaluation(loss: lossSum / Double(max(1, predictions)), correct: correct, predictions: predictions)
    }

    @discardableResult
    public func saveCheckpoint(to store: CheckpointStore) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let state = try encoder.encode(TrainerState(step: step, seed: options.seed, batchSize: options.batchSize))
        return try self.state.save(to: store, step: step, vocabulary: data.vocabulary, position: Array(state))
    }

    /// Trains until `options.steps`, reporting progress; validates every `evalInterval`
    /// steps (0: never in between) and at the end, checkpoints every `checkpointInterval`
    /// steps and at the end. `shouldStop` is asked after each step: when it says yes (Ctrl-C),
    /// the run checkpoints where it is and returns, so an interrupted run loses nothing.
    public func run(store: CheckpointStore?, shouldStop: () -> Bool = { false }, report: (TrainingEvent) -> Void) throws {
        let begin = DispatchTime.now().uptimeNanoseconds
        let firstStep = step
        while step < options.steps {
            try Task.checkCancellation()
            let r = try trainStep()
            let elapsed = Double(DispatchTime.now().uptimeNanoseconds - begin) / 1e9
            let perStep = elapsed / Double(step - firstStep)
            report(.step(r, elapsed: elapsed, remaining: perStep * Double(options.steps - step)))
            let last = step == options.steps
            if !last && shouldStop() {
                if let store { report(.checkpoint(step: step, path: try saveCheckpoint(to: store))) }
                return
            }
            if (options.evalInterval > 0 && step % options.evalInterval == 0) || last, let e = try validate() {
                report(.validation(step: step, e))
            }
            if let store, (options.checkpointInterval > 0 && step % options.checkpointInterval == 0) || last {
                report(.checkpoint(step: step, path: try saveCheckpoint(to: store)))
            }
        }
    }
}
