/// A trainable tensor with its gradient, under the name the rest of the field uses
/// (PyTorch state_dict keys), so checkpoints and parameter shards need no renaming.
public struct Parameter: Sendable {
    public let name: String
    public let value: Tensor
    public let gradient: Tensor
    /// Whether decoupled weight decay applies (matrices and embeddings yes; biases and
    /// LayerNorm gains no, as in nanoGPT's `configure_optimizers`).
    public let decays: Bool

    public init(name: String, shape: [Int], decays: Bool, allocator: TensorAllocator) throws(TensorAllocationError) {
        self.name = name
        value = try Tensor(shape: shape, allocator: allocator)
        gradient = try Tensor(shape: shape, allocator: allocator)
        self.decays = decays
    }

    /// A parameter over existing tensors (views into a shard's storage).
    public init(name: String, value: Tensor, gradient: Tensor, decays: Bool) {
        self.name = name
        self.value = value
        self.gradient = gradient
        self.decays = decays
    }

    public var shape: [Int] { value.shape }
    public var count: Int { value.count }
}

/// The ordered parameters of a model.
public struct ParameterSet: Sendable {
    public let parameters: [Parameter]
    private let index: [String: Int]

    public init(_ parameters: [Parameter]) {
        self.parameters = parameters
        var idx: [String: Int] = [:]
        for (i, p) in parameters.enumerated() { idx[p.name] = i }
        index = idx
    }

    public subscript(name: String) -> Parameter? { index[name].map { parameters[$0] } }

    /// Number of scalar parameters.
    public var scalarCount: Int { parameters.reduce(0) { $0 + $1.count } }

    public func zeroGradients() {
        for p in parameters { p.gradient.zero() }
    }

    /// ‖g‖₂ over all gradients.
    public func gradientNorm() -> Double {
        var s = 0.0
        for p in parameters { s += ElementwiseKernels.sumOfSquares(p.gradient.data, count: p.count) }
        return s.squareRoot()
    }
}
