import TributaryTensor

/// A parameter's name, shape and weight-decay flag, known without allocating it. Each
/// layer type declares its own (`Linear.parameterSpecs`, …) and makes its parameters from
/// them, so shard groups and checkpoints never list a name a second time.
public struct ParameterSpec: Sendable, Equatable {
    public let name: String
    public let shape: [Int]
    public let decays: Bool
    public var count: Int { shape.reduce(1, *) }

    public init(name: String, shape: [Int], decays: Bool) {
        self.name = name
        self.shape = shape
        self.decays = decays
    }
}

/// The parameters of a layer with a weight and an optional bias (Linear, LayerNorm).
public struct WeightAndBias: Sendable, Equatable {
    public let weight: ParameterSpec
    public let bias: ParameterSpec?
    /// In the layer's `parameters` order.
    public var all: [ParameterSpec] { [weight] + (bias.map { [$0] } ?? []) }
}

/// Byte sizes of fp32 buffers, from the shapes the allocating type declares.
public enum TensorShapes {
    /// What the allocator counts for these tensors (it adds no padding).
    public static func byteCount(_ shapes: [[Int]]) -> Int {
        shapes.reduce(0) { $0 + $1.reduce(1, *) } * MemoryLayout<Float>.stride
    }

    /// Bytes of `elements` floats (a shard's storage, a flat gradient).
    public static func byteCount(elements: Int) -> Int { elements * MemoryLayout<Float>.stride }
}

/// One FSDP unit: parameters fetched, updated and made resident together. A GPT is cut
/// into `embeddings` (wte, wpe), one `block.N` per transformer block and `head` (ln_f; the
/// output head is tied to wte); an MLP into one `layer.N` per Linear. The coordinator's
/// shard layout and a streaming worker both use this cut, so it lives with the model
/// (each family's `shardGroups`).
public struct ModelShardGroup: Sendable, Equatable {
    public let name: String
    public let parameters: [ParameterSpec]
    public var elementCount: Int { parameters.reduce(0) { $0 + $1.count } }

    public init(name: String, parameters: [ParameterSpec]) {
        self.name = name
        self.parameters = parameters
    }
}

extension GPT {
    public static func blockShardName(_ index: Int) -> String { "block.\(index)" }
    public static let embeddingsShardName = "embeddings"
    public static let headShardName = "head"

    /// The GPT's shard groups (`GPTConfig.shardGroups`).
    static func shardGroups(_ c: GPTConfig) -> [ModelShardGroup] { c.shardGroups }
}
