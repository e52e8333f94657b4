import Foundation
import Logging
import TributaryCheckpoint
import TributaryModels
import TributaryOptim
import TributaryProtocol
import TributaryTensor

/// DiLoCo's inner loop on the worker (`rounds.mode: local`): a unit is `steps` optimizer
/// steps over equal slices of its samples, by an inner optimizer whose state stays on this
/// worker between units. The state is saved in the data directory when a unit's commit is
/// accepted, and read back when one fails, so what the coordinator counted and what the
/// worker keeps never drift apart (as the error-feedback residuals).
final class LocalStepRunner: @unchecked Sendable {
    // Unchecked: used by one unit at a time, like `UnitCompute`.
    let settings: LocalSteps
    let optimizer: any Optimizer
    let schedule: LearningRateSchedule
    let statePath: String
    /// Ties the saved state to the job's model and optimizer: another job's state is not loaded.
    let fingerprint: String
    private let allocator: TensorAllocator
    private let logger: Logger

    /// Floats of state per parameter the inner optimizer keeps (for the memory plan).
    static func stateFloatsPerParameter(_ settings: LocalSteps) -> Int { settings.optimizer == "sgd" ? 1 : 2 }

    init(settings: LocalSteps, parameters: ParameterSet, allocator: TensorAllocator, directory: String,
         fingerprint: String, logger: Logger) throws {
        self.settings = settings
        self.logger = logger
        self.allocator = allocator
        self.fingerprint = fingerprint
        statePath = "\(directory)/inner-optimizer.safetensors"
        schedule = LearningRateSchedule(peak: settings.lr, minimum: settings.minLr, warmupSteps: settings.warmupSteps,
                                        decaySteps: settings.decaySteps)
        do {
            if settings.optimizer == "sgd" {
                optimizer = try SGD(parameters: parameters, momentum: settings.momentum, nesterov: settings.nesterov,
                                    weightDecay: settings.weightDecay, allocator: allocator)
            } else {
                optimizer = try AdamW(parameters: parameters, beta1: settings.beta1, beta2: settings.beta2,
                                      weightDecay: settings.weightDecay, allocator: allocator)
            }
        } catch {
            throw WorkerError.fatal("the coordinator's inner optimizer is invalid: \(error)")
        }
        try rollBack()
    }

    /// The unit's `steps` inner steps from the parameters now in `parameters` (the lease's
    /// version); the mean of the inner losses. Version v's unit takes schedule steps
    /// v·steps ..< (v + 1)·steps.
    func run(_ model: any TrainableModel, batch: ModelBatch, version: Int, microBatch: Int,
             afterStep: () -> Void = {}) throws -> Double {
        let h = settings.steps
        let n = batch.sampleCount
        guard h >= 1, n % h == 0 else {
            throw ClientError.protocolViolation("a unit of \(n) samples cannot be cut into \(h) equal inner steps")
        }
        let per = n / h
        var lossSum = 0.0
        for i in 0..<h {
            try Task.checkCancellation()  // the lease was lost: stop between inner steps
            let slice = batch.samples(i * per, (i + 1) * per)
            let loss = try UnitCompute.computeGradient(model: model, batch: slice, microBatch: microBatch)
            let norm = GradientClipping.clipGlobalNorm(model.parameters, maxNorm: settings.gradClip)
            guard loss.isFinite, norm.isFinite else {
                // Parameters (or a learning rate) the inner optimizer cannot train from: give the unit back.
                throw ClientError.protocolViolation("inner step \(i + 1) of \(h) on version \(version) had a non-finite loss or gradient")
            }
            // A coordinator's version is any Int: saturate instead of trapping.
            let (base, o1) = version.multipliedReportingOverflow(by: h)
            let (step, o2) = base.addingReportingOverflow(i)
            optimizer.step(model.parameters, learningRate: schedule.rate(at: o1 || o2 ? .max : step))
            lossSum += loss
            afterStep()
        }
        return lossSum / Double(h)
    }

    /// Saves the state the last unit left (its commit was accepted).
    func commit() throws {
        let tensors = optimizer.stateTensors()
        let bytes = tensors.reduce(0) { $0 + 4 * $1.tensor.count }
        try allocator.withReservedBytes(2 * bytes) {
            let file = SafeTensorsFile(
                entries: tensors.map { SafeTensorsEntry(name: $0.name, shape: $0.tensor.shape, floats: $0.tensor.toArray()) },
                metadata: ["step_count": String(optimizer.stepCount), "fingerprint": fingerprint])
            try FileManager.default.createDirectory(atPath: (statePath as NSString).deletingLastPathComponent,
                                                    withIntermediateDirectories: true)
            try AtomicFile.write(try file.serialized(), to: statePath)
        }
    }

    /// Back to the state last saved (a unit failed or was refused): the file when it is this
    /// job's and intact, else a fresh optimizer.
    func rollBack() throws {
        let tensors = optimizer.stateTensors()
        let sizes = Dictionary(tensors.map { ($0.name, $0.tensor.count) }, uniquingKeysWith: { a, _ in a })
        if FileManager.default.fileExists(atPath: statePath) {
            do {
                let file = try SafeTensorsFile.read(path: statePath)
                guard file.metadata["fingerprint"] == fingerprint, let steps = file.metadata["step_count"].flatMap(Int.init),
                      steps >= 0 else {
                    throw ClientError.protocolViolation("it belongs to another job or model")
                }
                try optimizer.restore(stepCount: steps) { name in
                    guard let entry = file.entry(named: name) else { throw OptimizerError.missingState(name) }
                    return try entry.floats()
                }
                return
            } catch {
                try? FileManager.default.removeItem(atPath: statePath)
                logger.warning("inner optimizer state not used; starting a fresh one",
                                                    metadata: ["path": "\(statePath)", "reason": "\(error)"])
            }
        }
        try optimizer.restore(stepCount: 0) { name in [Float](repeating: 0, count: sizes[name] ?? 0) }
    }
}
