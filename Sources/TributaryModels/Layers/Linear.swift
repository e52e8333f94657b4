import TributaryTensor

/// `y = x · Wᵀ + b`, weight `[out, in]` (PyTorch's layout).
public struct Linear: Sendable {
    public let weight: Parameter
    public let bias: Parameter?
    public let inFeatures: Int
    public let outFeatures: Int
    public let device: any ComputeDevice

    public init(name: String, inFeatures: Int, outFeatures: Int, bias: Bool, allocator: TensorAllocator) throws {
        try self.init(name: name, inFeatures: inFeatures, outFeatures: outFeatures, bias: bias, device: CPUDevice(allocator: allocator))
    }

    public init(name: String, inFeatures: Int, outFeatures: Int, bias: Bool, device: any ComputeDevice) throws {
        try self.init(name: name, inFeatures: inFeatures, outFeatures: outFeatures, bias: bias,
                      parameters: .allocating(device.allocator), device: device)
    }

    public init(name: String, inFeatures: Int, outFeatures: Int, bias: Bool, parameters f: ParameterFactory,
                device: any ComputeDevice) throws {
        let specs = Self.parameterSpecs(name: name, inFeatures: inFeatures, outFeatures: outFeatures, bias: bias)
        weight = try f.make(specs.weight)
        self.bias = try specs.bias.map { try f.make($0) }
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        self.device = device
    }

    /// The parameters `init` makes, known without allocating them (shard groups use this).
    public static func parameterSpecs(name: String, inFeatures: Int, outFeatures: Int, bias: Bool) -> WeightAndBias {
        WeightAndBias(weight: ParameterSpec(name: "\(name).weight", shape: [outFeatures, inFeatures], decays: true),
                      bias: bias ? ParameterSpec(name: "\(name).bias", shape: [outFeatures], decays: false) : nil)
    }

    public var parameters: [Parameter] { [weight] + (bias.map { [$0] } ?? []) }

    /// out[rows, out] from input[rows, in]. With `addBias: false` the caller fuses the bias
    /// into the next elementwise pass (bias + GELU).
    public func forward(_ input: Tensor, into out: Tensor, rows: Int, addBias: Bool = true) {
        device.kernels.linearForward(out: out, input: input, weight: weight.value,
                                     bias: addBias ? bias?.value : nil,
                                     rows: rows, inFeatures: inFeatures, outFeatures: outFeatures)
    }

    /// Accumulates weight/bias gradients; writes (or adds to) dInput when given.
    public func backward(dOut: Tensor, input: Tensor, dInput: Tensor?, rows: Int, accumulateInput: Bool = false) {
        device.kernels.linearBackward(dInput: dInput, dWeight: weight.gradient, dBias: bias?.gradient,
                                      dOut: dOut, input: input, weight: weight.value,
                                      rows: rows, inFeatures: inFeatures, outFeatures: outFeatures,
                                      accumulateInput: accumulateInput)
    }
}

/// LayerNorm over the last dimension, with optional bias (nanoGPT's `bias=False` drops it).
public struct LayerNorm: Sendable {
    public let weight: Parameter
    public let bias: Parameter?
    public let features: Int
    public let device: any ComputeDevice

    public init(name: String, features: Int, bias: Bool, allocator: TensorAllocator) throws {
        try self.init(name: name, features: features, bias: bias, device: CPUDevice(allocator: allocator))
    }

    public init(name: String, features: Int, bias: Bool, device: any ComputeDevice) throws {
        try self.init(name: name, features: features, bias: bias, parameters: .allocating(device.allocator), device: device)
    }

    /// A fresh gain starts at 1; a shard-backed layer keeps the values its shard holds.
    public init(name: String, features: Int, bias: Bool, parameters f: ParameterFactory, device: any ComputeDevice) throws {
        let specs = Self.parameterSpecs(name: name, features: features, bias: bias)
        weight = try f.make(specs.weight)
        if f.initializesValues { weight.value.fill(1) }
        self.bias = try specs.bias.map { try f.make($0) }
        self.features = features
        self.device = device
    }

    /// The parameters `init` makes (gain, then bias), known without allocating them.
    public static func parameterSpecs(name: String, features: Int, bias: Bool) -> WeightAndBias {
        WeightAndBias(weight: ParameterSpec(name: "\(name).weight", shape: [features], decays: false),
                      bias: bias ? ParameterSpec(name: "\(name).bias", shape: [features], decays: false) : nil)
    }

    public var parameters: [Parameter] { [weight] + (bias.map { [$0] } ?? []) }

    public func forward(_ input: Tensor, into out: Tensor, mean: Tensor, rstd: Tensor, rows: Int) {
        device.kernels.layerNormForward(out: out, mean: mean, rstd: rstd, input: input, weight: weight.value,
                                        bias: bias?.value, rows: rows, columns: features)
    }

    /// Adds ∂L/∂input into dInput (residual streams accumulate).
    public func backward(dOut: Tensor, input: Tensor, mean: Tensor, rstd: Tensor, dInput: Tensor, rows: Int) {
        device.kernels.layerNormBackward(dInput: dInput, dWeight: weight.gradient, dBias: bias?.gradient,
                                         dOut: dOut, input: input, weight: weight.value, mean: mean, rstd: rstd,
                                         rows: rows, columns: features)
    }
}
