import TributaryTensor

/// Hyper-parameters of the MLP classifier.
public struct MLPConfig: Codable, Sendable, Equatable {
    public var inputFeatures: Int
    public var hidden: [Int]
    public var classes: Int

    public init(inputFeatures: Int = 784, hidden: [Int] = [512, 512], classes: Int = 10) {
        self.inputFeatures = inputFeatures
        self.hidden = hidden
        self.classes = classes
    }

    enum CodingKeys: String, CodingKey { case inputFeatures = "input_features", hidden, classes }

    public func validate() throws(ModelError) {
        if inputFeatures < 1 { throw .invalidConfiguration("input_features must be positive (got \(inputFeatures))") }
        if classes < 2 { throw .invalidConfiguration("classes must be at least 2 (got \(classes))") }
        if let bad = hidden.first(where: { $0 < 1 }) { throw .invalidConfiguration("hidden sizes must be positive (got \(bad))") }
        if hidden.count > CheckedSize.maximumLayers {
            throw .invalidConfiguration("\(hidden.count) hidden layers is more than \(CheckedSize.maximumLayers)")
        }
        _ = try checkedParameterCount()
        _ = try activationElementsPerSample()
    }

    public var layerSizes: [Int] { [inputFeatures] + hidden + [classes] }

    /// Parameters (`Int.max` for a configuration whose count overflows, which `validate` refuses).
    public var parameterCount: Int { (try? checkedParameterCount()) ?? .max }

    func checkedParameterCount() throws(ModelError) -> Int {
        var terms: [Int] = []
        for (i, o) in zip(layerSizes, layerSizes.dropFirst()) {
            terms.append(try CheckedSize.product(i, o, what: "the parameter count"))
            terms.append(o)
        }
        return try CheckedSize.sum(terms, what: "the parameter count")
    }

    /// fp32 elements one row keeps through a step (every layer's input and outputs, the
    /// two widest scratch rows).
    func activationElementsPerSample() throws(ModelError) -> Int {
        let widest = layerSizes.max() ?? 1
        return try CheckedSize.sum(layerSizes + layerSizes + [1, widest, widest], what: "one row's activations")
    }
}

/// The MLP family: a classifier over feature rows, held whole on workers.
extension MLPConfig: ModelFamily {
    public static let modelType = "mlp"

    public var summary: String {
        "MLP \(layerSizes.map(String.init).joined(separator: "-")), \(parameterCount.formatted()) parameters"
    }

    public func build(seed: UInt64, device: any ComputeDevice) throws -> any TrainableModel {
        try MLPClassifier(config: self, seed: seed, device: device)
    }

    /// One `layer.N` per Linear, from the declarations `MLPClassifier`'s layers use.
    public var shardGroups: [ModelShardGroup] {
        let sizes = layerSizes
        return (0..<(sizes.count - 1)).map { i in
            ModelShardGroup(name: "layer.\(i)",
                            parameters: Linear.parameterSpecs(name: MLPClassifier.layerName(i), inFeatures: sizes[i],
                                                              outFeatures: sizes[i + 1], bias: true).all)
        }
    }

    public var sampleShape: ModelSampleShape { .features(count: inputFeatures, classes: classes) }

    /// The whole model resident, one candidate per micro-batch size.
    public func executionCandidates(_ inputs: ExecutionPlanningInputs) -> [ExecutionCandidate] {
        guard let perSample = try? activationElementsPerSample(), CheckedSize.fits(inputs.unitSamples, of: perSample) else {
            return []
        }
        return ModelExecution.residentCandidates(parameterCount: parameterCount, shardGroups: shardGroups, inputs: inputs) {
            MLPClassifier.activationBytes(config: self, batch: $0)
        }
    }

    /// 6 FLOPs per parameter and sample, less efficient on small micro-batches.
    public func estimatedCost(of execution: ModelExecution, _ inputs: ExecutionPlanningInputs) -> Double {
        guard case let .residentModel(m, false) = execution else { return .infinity }  // an MLP has no blocks to recompute
        let rows = Double(min(m, inputs.unitSamples))
        return 6 * (Double(parameterCount) * Double(inputs.unitSamples)) * (1 + 64 / rows)
    }
}
