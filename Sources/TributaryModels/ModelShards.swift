import TributaryTensor

/// A parameter's name, shape and weight-decay flag, known without allocating it.
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

/// One FSDP unit: parameters fetched, updated and made resident together. A GPT is cut
/// into `embeddings` (wte, wpe), one `block.N` per transformer block and `head` (ln_f; the
/// output head is tied to wte); an MLP into one `layer.N` per Linear. The coordinator's
/// shard layout and a streaming worker both use this cut, so it lives with the model.
public struct ModelShardGroup: Sendable, Equatable {
    public let name: String
    public let parameters: [ParameterSpec]
    public var elementCount: Int { parameters.reduce(0) { $0 + $1.count } }
}

extension ModelSpec {
    /// The model's shard groups, each listing its parameters in the model's
    /// `parameters` order (the order of a shard body).
    public var shardGroups: [ModelShardGroup] {
        switch self {
        case let .gpt(c): return GPT.shardGroups(c)
        case let .mlp(c):
            let sizes = c.layerSizes
            return (0..<(sizes.count - 1)).map { i in
                ModelShardGroup(name: "layer.\(i)", parameters: [
                    ParameterSpec(name: "net.\(2 * i).weight", shape: [sizes[i + 1], sizes[i]], decays: true),
                    ParameterSpec(name: "net.\(2 * i).bias", shape: [sizes[i + 1]], decays: false),
                ])
            }
        }
    }
}

extension GPT {
    public static func blockShardName(_ index: Int) -> String { "block.\(index)" }
    public static let embeddingsShardName = "embeddings"
    public static let headShardName = "head"

    static func shardGroups(_ c: GPTConfig) -> [ModelShardGroup] {
        let e = c.nEmbd
        func linear(_ name: String, _ out: Int, _ inF: Int) -> [ParameterSpec] {
            [ParameterSpec(name: "\(name).weight", shape: [out, inF], decays: true)]
                + (c.bias ? [ParameterSpec(name: "\(name).bias", shape: [out], decays: false)] : [])
        }
        func norm(_ name: String) -> [ParameterSpec] {
            [ParameterSpec(name: "\(name).weight", shape: [e], decays: false)]
                + (c.bias ? [ParameterSpec(name: "\(name).bias", shape: [e], decays: false)] : [])
        }
        let embeddings = ModelShardGroup(name: embeddingsShardName, parameters: [
            ParameterSpec(name: "transformer.wte.weight", shape: [c.vocabSize, e], decays: true),
            ParameterSpec(name: "transformer.wpe.weight", shape: [c.blockSize, e], decays: true),
        ])
        let blocks = (0..<c.nLayer).map { i -> ModelShardGroup in
            let p = "transformer.h.\(i)"
            return ModelShardGroup(name: blockShardName(i), parameters:
                norm("\(p).ln_1") + linear("\(p).attn.c_attn", 3 * e, e) + linear("\(p).attn.c_proj", e, e)
                + norm("\(p).ln_2") + linear("\(p).mlp.c_fc", 4 * e, e) + linear("\(p).mlp.c_proj", e, 4 * e))
        }
        return [embeddings] + blocks + [ModelShardGroup(name: headShardName, parameters: norm("transformer.ln_f"))]
    }
}
