import TributaryTensor

/// Every model family a job can name. Adding a family: its own files (a config type that
/// conforms to `ModelFamily`, its model) and one line here.
public enum ModelFamilies {
    public static var registered: [any ModelFamily.Type] {
        [
            GPTConfig.self,
            MLPConfig.self,
            UNetConfig.self,
        ]
    }

    static func named(_ modelType: String) -> (any ModelFamily.Type)? {
        registered.first { $0.modelType == modelType }
    }
}

/// Which model a job trains, with its hyper-parameters. Encoded as nanoGPT-style JSON:
/// `{"model_type": "gpt", "model_args": {"n_layer": 4, …}}`. The one place that maps a
/// spec to its family; everything else asks `family` (or the conveniences below).
///
/// The two first families keep cases of their own, so `.gpt(config)` and
/// `if case let .gpt(g) = spec` go on working; a family added later lives in `registered`.
/// Make specs with `ModelSpec(family)` (or `.gpt`/`.mlp`), which files the first two under
/// their own cases; equality and JSON compare and write the family whatever the case.
public enum ModelSpec: Codable, Sendable, Equatable {
    case gpt(GPTConfig)
    case mlp(MLPConfig)
    /// A family without a case of its own.
    case registered(any ModelFamily)

    public init(_ family: any ModelFamily) {
        if let g = family as? GPTConfig {
            self = .gpt(g)
        } else if let m = family as? MLPConfig {
            self = .mlp(m)
        } else {
            self = .registered(family)
        }
    }

    public var family: any ModelFamily {
        switch self {
        case let .gpt(c): return c
        case let .mlp(c): return c
        case let .registered(f): return f
        }
    }

    /// The job JSON's `model_type`.
    public var modelType: String { type(of: family).modelType }

    enum CodingKeys: String, CodingKey { case modelType = "model_type", modelArgs = "model_args" }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let tag = try c.decode(String.self, forKey: .modelType)
        guard let type = ModelFamilies.named(tag) else {
            let known = ModelFamilies.registered.map { $0.modelType }.joined(separator: " or ")
            throw DecodingError.dataCorruptedError(forKey: .modelType, in: c,
                                                   debugDescription: "unknown model_type '\(tag)' (expected \(known))")
        }
        self.init(try type.decodeArguments(c, forKey: .modelArgs))
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(modelType, forKey: .modelType)
        try family.encodeArguments(&c, forKey: .modelArgs)
    }

    public static func == (lhs: ModelSpec, rhs: ModelSpec) -> Bool { lhs.family.isEqual(to: rhs.family) }

    public func validate() throws(ModelError) { try family.validate() }
    public var parameterCount: Int { family.parameterCount }
    public var summary: String { family.summary }
    public var shardGroups: [ModelShardGroup] { family.shardGroups }
    public var tiedAliases: [(alias: String, of: String)] { family.tiedAliases }
    public var sampleShape: ModelSampleShape { family.sampleShape }

    /// Builds the model with deterministic initialisation from `seed`, computing on `device`.
    public func build(seed: UInt64, device: any ComputeDevice) throws -> any TrainableModel {
        try family.build(seed: seed, device: device)
    }

    /// The model on the CPU, its tensors from `allocator`.
    public func build(seed: UInt64, allocator: TensorAllocator = .shared) throws -> any TrainableModel {
        try family.build(seed: seed, device: CPUDevice(allocator: allocator))
    }
}

extension Int {
    /// 1234567 → "1,234,567".
    public func formatted() -> String {
        let digits = String(Swift.abs(self))
        var out = ""
        for (i, ch) in digits.reversed().enumerated() {
            if i > 0 && i % 3 == 0 { out.append(",") }
            out.append(ch)
        }
        return (self < 0 ? "-" : "") + String(out.reversed())
    }
}
