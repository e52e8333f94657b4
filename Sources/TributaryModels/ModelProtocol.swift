import TributaryTensor

/// One batch as a model consumes it.
public enum ModelBatch: Sendable, Equatable {
    /// Token ids for a language model: inputs and next-token targets, both [batch, sequence].
    case tokens(inputs: [Int32], targets: [Int32], batch: Int, sequence: Int)
    /// Feature rows (a classifier's features, or an image's pixels): inputs [batch, features], targets [batch].
    case features(inputs: [Float], targets: [Int32], batch: Int)

    /// The number of samples (sequences or rows).
    public var sampleCount: Int {
        switch self {
        case let .tokens(_, _, b, _): return b
        case let .features(_, _, b): return b
        }
    }

    /// The number of predictions the loss averages over.
    public var predictionCount: Int {
        switch self {
        case let .tokens(_, _, b, t): return b * t
        case let .features(_, _, b): return b
        }
    }

    /// Samples `lo ..< hi` (within `0...sampleCount`) as a batch of their own: a micro-batch,
    /// or one inner step's share of a unit.
    public func samples(_ lo: Int, _ hi: Int) -> ModelBatch {
        switch self {
        case let .tokens(x, y, _, t):
            return .tokens(inputs: Array(x[(lo * t)..<(hi * t)]), targets: Array(y[(lo * t)..<(hi * t)]), batch: hi - lo, sequence: t)
        case let .features(x, y, b):
            let f = x.count / max(1, b)
            return .features(inputs: Array(x[(lo * f)..<(hi * f)]), targets: Array(y[lo..<hi]), batch: hi - lo)
        }
    }
}

/// What an evaluation pass reports.
public struct Evaluation: Sendable, Equatable {
    /// Mean loss over the batch's predictions (summed in double precision).
    public var loss: Double
    /// Predictions whose arg-max equals the target.
    public var correct: Int
    public var predictions: Int
    public var accuracy: Double { predictions > 0 ? Double(correct) / Double(predictions) : 0 }

    public init(loss: Double, correct: Int, predictions: Int) {
        self.loss = loss
        self.correct = correct
        self.predictions = predictions
    }
}

/// A model the training loop, the benchmarks and (later) the worker drive.
public protocol TrainableModel: AnyObject {
    var parameters: ParameterSet { get }
    /// Forward, loss and backward; gradients are *accumulated* into the parameters'
    /// gradient tensors (callers zero them), so micro-batches sum naturally.
    /// `lossScale` multiplies the gradient (1/micro-batches for accumulation).
    func forwardBackward(_ batch: ModelBatch, lossScale: Float) throws -> Float
    /// Forward and loss only; gradients untouched.
    func evaluate(_ batch: ModelBatch) throws -> Evaluation
    /// Model FLOPs for one training step on `batch` (the convention of peers.md).
    func trainingFLOPs(_ batch: ModelBatch) -> Double
}

/// A model whose training loss draws random numbers (a diffusion model's timesteps and
/// noise). Training loops set `trainingSeed` before each step to a value every process
/// computing that step agrees on (the trainer's step, a worker's unit version), so the
/// draws change from step to step while replicas of a unit still agree. Evaluation does
/// not use it, so validation losses stay comparable across rounds.
public protocol StochasticTrainingModel: TrainableModel {
    var trainingSeed: UInt64 { get set }
}

/// Bad model input or configuration.
public enum ModelError: Error, CustomStringConvertible, Equatable {
    case invalidConfiguration(String)
    case tokenOutOfRange(token: Int32, vocabularySize: Int)
    case targetOutOfRange(target: Int32, classes: Int)
    case batchShape(String)

    public var description: String {
        switch self {
        case let .invalidConfiguration(why): return "invalid model configuration: \(why)"
        case let .tokenOutOfRange(t, v): return "token id \(t) is outside the vocabulary 0..<\(v); the data and the model's vocabulary disagree"
        case let .targetOutOfRange(t, c): return "target \(t) is outside the classes 0..<\(c)"
        case let .batchShape(why): return "batch does not fit the model: \(why)"
        }
    }
}

@inlinable
func validateIDs(_ ids: [Int32], below limit: Int, isTarget: Bool) throws(ModelError) {
    for id in ids where id < 0 || Int(id) >= limit {
        throw isTarget ? .targetOutOfRange(target: id, classes: limit) : .tokenOutOfRange(token: id, vocabularySize: limit)
    }
}
