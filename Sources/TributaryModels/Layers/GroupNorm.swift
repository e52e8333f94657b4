import TributaryTensor

/// GroupNorm over NCHW images with a per-channel gain and bias (PyTorch's
/// `nn.GroupNorm(groups, channels, eps, affine=True)`, the U-Net's normalisation).
public struct GroupNorm: Sendable {
    public let weight: Parameter
    public let bias: Parameter
    public let channels: Int
    public let groups: Int
    public let epsilon: Float
    public let device: any ComputeDevice

    public init(name: String, channels: Int, groups: Int, epsilon: Float = 1e-5, device: any ComputeDevice) throws {
        try self.init(name: name, channels: channels, groups: groups, epsilon: epsilon,
                      parameters: .allocating(device.allocator), device: device)
    }

    /// A fresh gain starts at 1; a shard-backed layer keeps the values its shard holds.
    public init(name: String, channels: Int, groups: Int, epsilon: Float = 1e-5, parameters f: ParameterFactory,
                device: any ComputeDevice) throws {
        guard channels > 0, groups > 0, channels % groups == 0, epsilon > 0, epsilon.isFinite else {
            throw ModelError.invalidConfiguration(
                "\(name): GroupNorm needs positive channels (\(channels)) divisible by a positive group count (\(groups)), and a positive epsilon (\(epsilon))")
        }
        weight = try f.make(Self.gainSpec(name: name, channels: channels))
        if f.initializesValues { weight.value.fill(1) }
        bias = try f.make(Self.biasSpec(name: name, channels: channels))
        self.channels = channels
        self.groups = groups
        self.epsilon = epsilon
        self.device = device
    }

    /// The parameters `init` makes (gain, then bias), known without allocating them.
    public static func parameterSpecs(name: String, channels: Int) -> WeightAndBias {
        WeightAndBias(weight: gainSpec(name: name, channels: channels), bias: biasSpec(name: name, channels: channels))
    }

    static func gainSpec(name: String, channels: Int) -> ParameterSpec {
        ParameterSpec(name: "\(name).weight", shape: [channels], decays: false)
    }

    static func biasSpec(name: String, channels: Int) -> ParameterSpec {
        ParameterSpec(name: "\(name).bias", shape: [channels], decays: false)
    }

    public var parameters: [Parameter] { [weight, bias] }

    /// What forward keeps for backward besides its input: each (image, group)'s mean and 1/σ.
    public struct Activations: Sendable {
        public let mean: Tensor
        public let rstd: Tensor

        public init(batch: Int, groups: Int, allocator: TensorAllocator) throws {
            mean = try Tensor(shape: [batch, groups], allocator: allocator)
            rstd = try Tensor(shape: [batch, groups], allocator: allocator)
        }

        public static func byteCount(batch: Int, groups: Int) -> Int {
            TensorShapes.byteCount([[batch, groups], [batch, groups]])
        }
    }

    /// out [B, C, H, W] from input of the same shape.
    public func forward(_ input: Tensor, into out: Tensor, saving a: Activations) throws(ModelError) {
        let image = try checkShapes(input, out, a)
        GroupNormKernels.forward(out: out.data, mean: a.mean.data, rstd: a.rstd.data, input: input.data,
                                 weight: weight.value.data, bias: bias.value.data, batch: image.batch,
                                 channels: channels, groups: groups, pixels: image.height * image.width, epsilon: epsilon)
    }

    /// Writes (or adds to) dInput; gain and bias gradients accumulate.
    public func backward(dOut: Tensor, input: Tensor, saved a: Activations, dInput: Tensor,
                         accumulateInput: Bool = false) throws(ModelError) {
        let image = try checkShapes(input, dOut, a)
        guard dInput.shape == input.shape else { throw .batchShape("GroupNorm input gradient \(dInput.shape) for \(input.shape)") }
        GroupNormKernels.backward(dInput: dInput.data, dWeight: weight.gradient.data, dBias: bias.gradient.data,
                                  dOut: dOut.data, input: input.data, weight: weight.value.data,
                                  mean: a.mean.data, rstd: a.rstd.data, batch: image.batch, channels: channels,
                                  groups: groups, pixels: image.height * image.width, accumulateInput: accumulateInput)
    }

    private func checkShapes(_ input: Tensor, _ other: Tensor, _ a: Activations) throws(ModelError) -> ImageShape {
        let image = try ImageShape(input, "GroupNorm input")
        guard image.channels == channels else {
            throw .batchShape("GroupNorm input has \(image.channels) channels, the layer takes \(channels)")
        }
        guard other.shape == input.shape else { throw .batchShape("GroupNorm output \(other.shape) for an input of \(input.shape)") }
        guard a.mean.count >= image.batch * groups, a.rstd.count >= image.batch * groups else {
            throw .batchShape("GroupNorm statistics hold \(a.mean.count) values, \(image.batch) images need \(image.batch * groups)")
        }
        return image
    }
}
