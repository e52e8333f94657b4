import TributaryCompression
import TributaryModels
import TributaryTensor

/// How a worker computes its units within its memory budget.
public struct MemoryPlan: Sendable, Equatable, CustomStringConvertible {
    /// How the unit runs: the model family's choice (`ModelExecution`).
    public typealias Execution = ModelExecution

    public let execution: Execution
    /// Encoded updates that may wait for upload at once (what lets uploads overlap the
    /// backward of the next shards); at least the largest shard's worst-case body.
    public let uploadQueueBytes: Int
    /// The allocator's predicted peak, upload queue included: what the budget must cover.
    public let predictedPeakBytes: Int
    /// On a device with memory of its own (a GPU), that memory's predicted peak: the step's
    /// blocks (their copies live as long as they do) and a kernel call's index buffers;
    /// the host-only bytes (shard decoding, the codec, the upload queue) stay out.
    public let predictedDevicePeakBytes: Int?

    public init(execution: Execution, uploadQueueBytes: Int, predictedPeakBytes: Int, predictedDevicePeakBytes: Int? = nil) {
        self.execution = execution
        self.uploadQueueBytes = uploadQueueBytes
        self.predictedPeakBytes = predictedPeakBytes
        self.predictedDevicePeakBytes = predictedDevicePeakBytes
    }

    /// Fits the host's budget and, where the device has memory of its own, the device's
    /// (nil: unbounded). A device without its own prediction must fit the device's budget whole.
    func fits(host: Int?, device: Int?) -> Bool {
        predictedPeakBytes <= (host ?? .max) && (predictedDevicePeakBytes ?? predictedPeakBytes) <= (device ?? .max)
    }

    /// What the device's own memory must hold (the whole plan without a device prediction).
    var devicePeak: Int { predictedDevicePeakBytes ?? predictedPeakBytes }

    public var description: String {
        let how: String
        switch execution {
        case let .streamedGPT(p): how = p.description
        case let .residentModel(m, recomputes):
            how = "whole model resident, micro-batch \(m)" + (recomputes ? ", residual blocks recomputed" : "")
        }
        let device = predictedDevicePeakBytes.map { ", device peak \(ByteCount.format($0))" } ?? ""
        return "\(how), upload queue \(ByteCount.format(uploadQueueBytes)), expected peak \(ByteCount.format(predictedPeakBytes))\(device)"
    }
}

public enum MemoryPlanError: Error, CustomStringConvertible, Equatable {
    case doesNotFit(neededBytes: Int, budgetBytes: Int, smallestPlan: String)
    /// The model family has no way at all to run a unit this large (its sizes overflow).
    case unitTooLarge(samples: Int)

    public var description: String {
        switch self {
        case let .doesNotFit(needed, budget, plan):
            return "the memory budget is too small for this job: its smallest plan (\(plan)) needs \(ByteCount.format(needed)), the budget is \(ByteCount.format(budget)); give --memory-budget at least \(ByteCount.format(needed))"
        case let .unitTooLarge(samples):
            return "a unit of \(samples.formatted()) samples of this model is too large to plan on any machine; the coordinator's job must use smaller units"
        }
    }
}

/// Chooses, from the job's model and unit size and the device's budget, the cheapest plan
/// whose predicted peak fits: the micro-batch size, the schedule (blocks or micro-batches
/// outer), how many block shards stay resident, whether activations are kept or
/// recomputed, and how much encoded upload may queue.
/// Every byte the worker's compute holds is in the prediction: resident parameters,
/// gradients, activations and checkpoints, scratch, a shard body being decoded, the
/// error-feedback residual and codec buffers while a shard is encoded, queued uploads.
public struct MemoryPlanner: Sendable {
    public let model: ModelSpec
    /// Samples per unit and the tokens per sample (`ModelSampleShape.positionsPerSample`:
    /// a GPT's context; 1 for an MLP).
    public let unitSamples: Int
    public let sequence: Int
    /// The coordinator's micro-batch size: the largest the planner uses.
    public let suggestedMicroBatch: Int
    public let codec: UpdateCodecSpec
    /// The device the plan is for (`ComputeDevice.planningTraits`; the CPU by default).
    public let device: DevicePlanningTraits
    /// Elements of the largest shard.
    let largestShard: Int
    /// Each shard's tensor shapes, and per shard size the shapes whose low-rank encoding
    /// holds the most: listed once here, as the peak walks ask for them once per block.
    private let shapesByShard: [String: [MatrixShape]]
    private let largestShapesByElements: [Int: [MatrixShape]]

    public init(model: ModelSpec, unitSamples: Int, sequence: Int, suggestedMicroBatch: Int, codec: UpdateCodecSpec,
                device: DevicePlanningTraits = .cpu) {
        self.model = model
        self.device = device
        self.unitSamples = max(1, unitSamples)
        self.sequence = max(1, sequence)
        self.suggestedMicroBatch = max(1, min(suggestedMicroBatch, unitSamples))
        self.codec = codec
        let groups = model.shardGroups
        largestShard = groups.map(\.elementCount).max() ?? 0
        var byShard: [String: [MatrixShape]] = [:], largest: [Int: [MatrixShape]] = [:]
        for group in groups {
            let shapes = group.parameters.map { MatrixShape(shape: $0.shape) }
            if byShard[group.name] == nil { byShard[group.name] = shapes }
            guard codec.needsShapes else { continue }
            let size = group.elementCount
            if let held = largest[size],
               (codec.lowRankWorkingBytes(shapes: held) ?? 0) >= (codec.lowRankWorkingBytes(shapes: shapes) ?? 0) { continue }
            largest[size] = shapes
        }
        shapesByShard = byShard
        largestShapesByElements = largest
    }

    /// Plans with the model's own positions per sample.
    public init(model: ModelSpec, unitSamples: Int, suggestedMicroBatch: Int, codec: UpdateCodecSpec, device: DevicePlanningTraits = .cpu) {
        self.init(model: model, unitSamples: unitSamples, sequence: model.sampleShape.positionsPerSample,
                  suggestedMicroBatch: suggestedMicroBatch, codec: codec, device: device)
    }

    // MARK: Bytes outside the step's tensors

    /// A shard body read from the local cache while it is decoded (shards are fp32 frames).
    public func loadTransient(_ elements: Int) -> Int {
        TensorFrame.maximumBodySize(elementCount: elements, codec: .fp32)
    }

    /// While a shard's gradient is taken: its residual (lossy codecs), the gradient
    /// gathered flat (whole-model plans), and the codec's buffers: the payload before zstd
    /// and the body after it (each at most the worst-case body), top-k's selected indices,
    /// values and sent values (12 bytes each) and its 64 KiB histogram.
    /// Low-rank: the residual, the warm start (loaded, and the new one), the payload, every
    /// segment's decoded values, one segment's factors, and the body.
    public func gradientTransient(_ elements: Int, gathers: Bool) -> Int {
        let f = MemoryLayout<Float>.stride
        let residual = codec.codec == .fp32 ? 0 : f * elements
        if let shapes = largestShapes(elements), let working = codec.lowRankWorkingBytes(shapes: shapes) {
            let raw = working - f * (codec.warmStartCount(shapes: shapes))  // an upper bound on the payload
            let body = TensorFrameHeader.size + Zstd.maximumCompressedSize(raw)
            return residual + (gathers ? f * elements : 0) + f * codec.warmStartCount(shapes: shapes) + working + body
        }
        var selection = 0
        if case let .topK(fraction, _) = codec.kind {
            selection = 12 * Int((fraction * Double(elements)).rounded(.up)) + 64 * 1024
        }
        return residual + (gathers ? f * elements : 0) + selection + 2 * codec.maximumBodySize(elementCount: elements)
    }

    /// The tensor shapes of shard `name`, as the low-rank codec sees them.
    public func shapes(ofShard name: String) -> [MatrixShape]? { shapesByShard[name] }

    /// Among shards of `elements` values, the shapes whose low-rank encoding holds the most
    /// (nil when the codec does not use shapes, or no shard has that size).
    func largestShapes(_ elements: Int) -> [MatrixShape]? { largestShapesByElements[elements] }

    /// Micro-batch sizes from the suggested one down to 1, halving.
    var microBatches: [Int] {
        var sizes: [Int] = []
        var m = suggestedMicroBatch
        while m >= 1 {
            sizes.append(m)
            if m == 1 { break }
            m = (m + 1) / 2
        }
        return sizes
    }

    /// What the model family plans with: the unit and this worker's transient bytes.
    public var planningInputs: ExecutionPlanningInputs {
        let planner = self
        return ExecutionPlanningInputs(unitSamples: unitSamples, sequence: sequence, microBatches: microBatches,
                                       loadTransient: { planner.loadTransient($0) },
                                       gradientTransient: { planner.gradientTransient($0, gathers: $1) },
                                       device: device)
    }

    /// A step's estimated cost in FLOP-equivalents, to rank plans (the family's estimate:
    /// compute, less efficient on small micro-batches, plus shards decoded more than once).
    public func estimatedCost(_ execution: MemoryPlan.Execution) -> Double {
        model.family.estimatedCost(of: execution, planningInputs)
    }

    /// Every candidate, cheapest first (by `estimatedCost`), with its predicted peak: the
    /// family's candidates, each with a double and a single upload queue added.
    public func candidates() -> [MemoryPlan] {
        let body = codec.maximumBodySize(elementCount: largestShard)
        let queues = [2 * body, body]
        let inputs = planningInputs
        let candidates = model.family.executionCandidates(inputs)
        let devicePeaks = devicePeakBytes(candidates.count)
        var out: [MemoryPlan] = []
        for (i, candidate) in candidates.enumerated() {
            for q in queues {
                out.append(MemoryPlan(execution: candidate.execution, uploadQueueBytes: q, predictedPeakBytes: candidate.peakBytes + q,
                                      predictedDevicePeakBytes: devicePeaks?[i]))
            }
        }
        // Stable: among equal costs the listing order (a larger upload queue first) stays.
        let costs = out.map { model.family.estimatedCost(of: $0.execution, inputs) }
        return out.indices.sorted { costs[$0] != costs[$1] ? costs[$0] < costs[$1] : $0 < $1 }.map { out[$0] }
    }

    /// The device memory of each candidate (in `executionCandidates`' order), on a device
    /// that holds a copy of every block: the same walk without the host-only transients,
    /// plus the most a kernel call takes for itself. nil on the CPU.
    private func devicePeakBytes(_ count: Int) -> [Int]? {
        guard device.holdsBlockCopies else { return nil }
        let blocksOnly = ExecutionPlanningInputs(unitSamples: unitSamples, sequence: sequence, microBatches: microBatches,
                                                 loadTransient: { _ in 0 }, gradientTransient: { _, _ in 0 }, device: device)
        let peaks = model.family.executionCandidates(blocksOnly).map(\.peakBytes)
        guard peaks.count == count else { return nil }
        let (positions, overflow) = unitSamples.multipliedReportingOverflow(by: sequence)
        let call = overflow ? Int.max / 2 : device.callTransientBytes(positions)
        return peaks.map { $0 > Int.max - call ? Int.max : $0 + call }
    }

    /// Local steps (DiLoCo; the planner made with one inner step's samples as its unit): the
    /// whole model held, the inner optimizer's state (`stateFloatsPerParameter` floats per
    /// parameter: 2 for AdamW, 1 for SGD with momentum) and, while a shard's pseudo-gradient
    /// is taken, its start values read back from the cache. The largest micro-batch that fits.
    public func planLocal(budgetBytes: Int?, stateFloatsPerParameter: Int) throws(MemoryPlanError) -> MemoryPlan {
        let state = TensorShapes.byteCount(elements: stateFloatsPerParameter * model.parameterCount)
        let start = loadTransient(largestShard) + TensorShapes.byteCount(elements: largestShard)
        let body = codec.maximumBodySize(elementCount: largestShard)
        let all = model.family.residentExecutionCandidates(planningInputs).flatMap { c in
            [2 * body, body].map { q in
                MemoryPlan(execution: c.execution, uploadQueueBytes: q, predictedPeakBytes: c.peakBytes + state + start + q)
            }
        }
        guard let first = all.first else { throw .unitTooLarge(samples: unitSamples) }
        guard let budget = budgetBytes else { return first }
        if let fit = all.first(where: { $0.predictedPeakBytes <= budget }) { return fit }
        let smallest = all.min { $0.predictedPeakBytes < $1.predictedPeakBytes }
        throw .doesNotFit(neededBytes: smallest?.predictedPeakBytes ?? 0, budgetBytes: budget,
                          smallestPlan: "local steps: " + (smallest?.description ?? "none"))
    }

    /// The first candidate that fits the host's budget and the device's (a GPU's VRAM;
    /// nil: none), fastest first. When none does, the error names the budget that binds:
    /// the host's when no plan fits it, else the device's, with the smallest need.
    public func plan(budgetBytes: Int?, deviceBudgetBytes: Int? = nil) throws(MemoryPlanError) -> MemoryPlan {
        let all = candidates()
        guard let first = all.first else { throw .unitTooLarge(samples: unitSamples) }
        if budgetBytes == nil && deviceBudgetBytes == nil { return first }
        if let fit = all.first(where: { $0.fits(host: budgetBytes, device: deviceBudgetBytes) }) { return fit }
        let hostFitting = all.filter { $0.fits(host: budgetBytes, device: nil) }
        if let deviceBudget = deviceBudgetBytes, !hostFitting.isEmpty {
            let smallest = hostFitting.min { $0.devicePeak < $1.devicePeak }
            throw .doesNotFit(neededBytes: smallest?.devicePeak ?? 0, budgetBytes: deviceBudget,
                              smallestPlan: smallest?.description ?? "none")
        }
        let smallest = all.min { $0.predictedPeakBytes < $1.predictedPeakBytes }
        throw .doesNotFit(neededBytes: smallest?.predictedPeakBytes ?? 0, budgetBytes: budgetBytes ?? 0,
                          smallestPlan: smallest?.description ?? "none")
    }
}
