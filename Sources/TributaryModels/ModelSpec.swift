import TributaryTensor

/// Which model a job trains, with its hyper-parameters. Encoded as nanoGPT-style JSON:
/// `{"model_type": "gpt", "model_args": {"n_layer": 4, …}}`.
public enum ModelSpec: Codable, Sendable, Equatable {
    case gpt(GPTConfig)
    case mlp(MLPConfig)

    enum CodingKeys: String, CodingKey { case modelType = "model_type", modelArgs = "model_args" }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        switch try c.decode(String.self, forKey: .modelType) {
        case "gpt": self = .gpt(try c.decode(GPTConfig.self, forKey: .modelArgs))
        case "mlp": self = .mlp(try c.decode(MLPConfig.self, forKey: .modelArgs))
        case let other:
            throw DecodingError.dataCorruptedError(forKey: .modelType, in: c,
                                                   debugDescription: "unknown model_type '\(other)' (expected gpt or mlp)")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case let .gpt(cfg):
            try c.encode("gpt", forKey: .modelType)
            try c.encode(cfg, forKey: .modelArgs)
        case let .mlp(cfg):
            try c.encode("mlp", forKey: .modelType)
            try c.encode(cfg, forKey: .modelArgs)
        }
    }

    public func validate() throws(ModelError) {
        switch self {
        case let .gpt(cfg): try cfg.validate()
        case let .mlp(cfg): try cfg.validate()
        }
    }

    public var parameterCount: Int {
        switch self {
        case let .gpt(cfg): return cfg.parameterCount
        case let .mlp(cfg): return cfg.parameterCount
        }
    }

    /// Builds the model with deterministic initialisation from `seed`.
    public func build(seed: UInt64, allocator: TensorAllocator = .shared) throws -> any TrainableModel {
        switch self {
        case let .gpt(cfg): return try GPT(config: cfg, seed: seed, allocator: allocator)
        case let .mlp(cfg): return try MLPClassifier(config: cfg, seed: seed, allocator: allocator)
        }
    }

    /// Parameters stored under a second name in checkpoints: GPT's head is tied to the
    /// token embedding, and PyTorch's state_dict lists it as `lm_head.weight` too.
    public var tiedAliases: [(alias: String, of: String)] {
        switch self {
        case .gpt: return [("lm_head.weight", "transformer.wte.weight")]
        case .mlp: return []
        }
    }

    public var summary: String {
        switch self {
        case let .gpt(c):
            return "GPT \(c.nLayer) layers × \(c.nHead) heads × \(c.nEmbd) wide, context \(c.blockSize), vocabulary \(c.vocabSize), \(parameterCount.formatted()) parameters"
        case let .mlp(c):
            return "MLP \(c.layerSizes.map(String.init).joined(separator: "-")), \(parameterCount.formatted()) parameters"
        }
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
