import Foundation
import TributaryModels
import TributaryTensor

/// One tensor's place inside a shard's flat body.
public struct TensorSlot: Codable, Sendable, Equatable {
    public var name: String
    public var shape: [Int]
    /// Element offset within the shard.
    public var offset: Int

    public init(name: String, shape: [Int], offset: Int) {
        self.name = name
        self.shape = shape
        self.offset = offset
    }

    public var count: Int { shape.reduce(1, *) }

    enum CodingKeys: String, CodingKey { case name, shape, offset }
}

/// A named group of parameters fetched and updated as one body, FSDP-style (the cut is
/// the model's `shardGroups`: `embeddings`, `block.N`, `head` for a GPT; `layer.N` for an
/// MLP). A streaming worker holds one block shard at a time.
public struct ShardDescriptor: Codable, Sendable, Equatable {
    public var name: String
    public var tensors: [TensorSlot]
    public var elementCount: Int
    /// Size of the shard's body (a tensor frame) in bytes, for this version.
    public var byteSize: Int
    /// SHA-256 of the body, hex; also its ETag. Workers cache shards by it.
    public var contentHash: String
    /// With compressed downloads: the size of this version's delta from the version before
    /// (absent when it has none: the first version, or one published exactly).
    public var deltaByteSize: Int?

    public init(name: String, tensors: [TensorSlot], elementCount: Int, byteSize: Int, contentHash: String,
                deltaByteSize: Int? = nil) {
        self.name = name
        self.tensors = tensors
        self.elementCount = elementCount
        self.byteSize = byteSize
        self.contentHash = contentHash
        self.deltaByteSize = deltaByteSize
    }

    enum CodingKeys: String, CodingKey { case name, tensors, elementCount = "element_count", byteSize = "byte_size", contentHash = "content_hash", deltaByteSize = "delta_byte_size" }
}

/// Every shard of one parameter version.
public struct Manifest: Codable, Sendable, Equatable {
    public var version: Int
    public var shards: [ShardDescriptor]
    /// The download codec of the deltas (`int8:256`, `lowrank:8:int8`, …); absent when the
    /// job publishes full shards only.
    public var deltaCodec: String?

    public init(version: Int, shards: [ShardDescriptor], deltaCodec: String? = nil) {
        self.version = version
        self.shards = shards
        self.deltaCodec = deltaCodec
    }

    public func shard(named name: String) -> ShardDescriptor? { shards.first { $0.name == name } }

    enum CodingKeys: String, CodingKey { case version, shards, deltaCodec = "delta_codec" }
}

/// How a model's parameters are cut into shards (the same on coordinator and worker).
public struct ShardLayout: Sendable, Equatable {
    public struct Shard: Sendable, Equatable {
        public let name: String
        public let tensors: [TensorSlot]
        public var elementCount: Int { tensors.last.map { $0.offset + $0.count } ?? 0 }
    }

    public let shards: [Shard]

    /// The model's shard groups (see `ModelShardGroup`), with each tensor's offset.
    public init(spec: ModelSpec) {
        shards = spec.shardGroups.map { group in
            var offset = 0
            let slots = group.parameters.map { p -> TensorSlot in
                defer { offset += p.count }
                return TensorSlot(name: p.name, shape: p.shape, offset: offset)
            }
            return Shard(name: group.name, tensors: slots)
        }
    }

    public func shard(named name: String) -> Shard? { shards.first { $0.name == name } }

    /// Copies the shard's tensors (values or gradients) into one flat buffer.
    public func gather(_ shard: Shard, from parameters: ParameterSet, gradients: Bool,
                       into out: UnsafeMutablePointer<Float>) {
        for slot in shard.tensors {
            guard let p = parameters[slot.name] else { continue }
            (out + slot.offset).update(from: gradients ? p.gradient.readableData : p.value.readableData, count: slot.count)
        }
    }

    /// Copies a flat buffer back into the shard's parameter values.
    public func scatter(_ shard: Shard, from flat: UnsafePointer<Float>, into parameters: ParameterSet) {
        for slot in shard.tensors {
            guard let p = parameters[slot.name] else { continue }
            p.value.data.update(from: flat + slot.offset, count: slot.count)
        }
    }

    /// Copies a flat buffer into the shard's parameter gradients.
    public func scatterGradients(_ shard: Shard, from flat: UnsafePointer<Float>, into parameters: ParameterSet) {
        for slot in shard.tensors {
            guard let p = parameters[slot.name] else { continue }
            p.gradient.data.update(from: flat + slot.offset, count: slot.count)
        }
    }
}
