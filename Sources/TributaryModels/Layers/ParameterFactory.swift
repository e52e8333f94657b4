import TributaryTensor

/// Where a layer's parameters come from when it is built: fresh tensors from an allocator
/// (a whole model in memory), or consecutive views into one shard's value and gradient
/// storage (a worker streaming one FSDP unit at a time, decoding the shard body straight
/// into the layer's weights with no copy).
public final class ParameterFactory: @unchecked Sendable {
    // Unchecked: a factory is used by the one task that builds a layer, then dropped.
    private enum Source {
        case allocator(TensorAllocator)
        case views(values: TensorStorage, gradients: TensorStorage)
    }
    private let source: Source
    private var offset = 0

    private init(_ source: Source) { self.source = source }

    /// Fresh zero-filled tensors from `allocator`.
    public static func allocating(_ allocator: TensorAllocator) -> ParameterFactory { ParameterFactory(.allocator(allocator)) }

    /// Parameters laid end to end in `values`/`gradients`, in creation order (the order a
    /// shard's body lists its tensors).
    public static func views(values: TensorStorage, gradients: TensorStorage) -> ParameterFactory {
        ParameterFactory(.views(values: values, gradients: gradients))
    }

    /// Whether layers set their initial values (fresh tensors) or leave them alone (views
    /// over a shard whose values are, or will be, loaded from its body).
    public var initializesValues: Bool {
        if case .allocator = source { return true }
        return false
    }

    /// Elements handed out so far (a view factory's next offset).
    public var consumed: Int { offset }

    public func make(_ spec: ParameterSpec) throws -> Parameter {
        try make(name: spec.name, shape: spec.shape, decays: spec.decays)
    }

    public func make(name: String, shape: [Int], decays: Bool) throws -> Parameter {
        switch source {
        case let .allocator(a):
            return try Parameter(name: name, shape: shape, decays: decays, allocator: a)
        case let .views(values, gradients):
            let v = try Tensor(viewing: values, offset: offset, shape: shape)
            let g = try Tensor(viewing: gradients, offset: offset, shape: shape)
            offset += v.count
            return Parameter(name: name, value: v, gradient: g, decays: decays)
        }
    }
}
