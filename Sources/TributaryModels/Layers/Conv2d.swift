import TributaryTensor

/// A 2-D convolution over NCHW images, square kernel, equal stride and padding on both
/// axes, weight `[out, in, k, k]` (PyTorch's `nn.Conv2d` layout, so checkpoints map
/// one to one). Runs as im2col + sgemm (`ConvolutionKernels`).
public struct Conv2d: Sendable {
    public let weight: Parameter
    public let bias: Parameter?
    public let inChannels: Int
    public let outChannels: Int
    public let kernelSize: Int
    public let stride: Int
    public let padding: Int
    public let device: any ComputeDevice

    public init(name: String, inChannels: Int, outChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
                bias: Bool, device: any ComputeDevice) throws {
        try self.init(name: name, inChannels: inChannels, outChannels: outChannels, kernelSize: kernelSize,
                      stride: stride, padding: padding, bias: bias, parameters: .allocating(device.allocator), device: device)
    }

    public init(name: String, inChannels: Int, outChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
                bias: Bool, parameters f: ParameterFactory, device: any ComputeDevice) throws {
        guard inChannels > 0, outChannels > 0, kernelSize > 0, stride > 0, padding >= 0 else {
            throw ModelError.invalidConfiguration(
                "\(name): a convolution needs positive channels (\(inChannels)→\(outChannels)), kernel size (\(kernelSize)) and stride (\(stride)), and padding ≥ 0 (\(padding))")
        }
        let specs = Self.parameterSpecs(name: name, inChannels: inChannels, outChannels: outChannels,
                                        kernelSize: kernelSize, bias: bias)
        weight = try f.make(specs.weight)
        self.bias = try specs.bias.map { try f.make($0) }
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.kernelSize = kernelSize
        self.stride = stride
        self.padding = padding
        self.device = device
    }

    /// The parameters `init` makes, known without allocating them (shard groups use this).
    public static func parameterSpecs(name: String, inChannels: Int, outChannels: Int, kernelSize: Int, bias: Bool) -> WeightAndBias {
        WeightAndBias(weight: ParameterSpec(name: "\(name).weight", shape: [outChannels, inChannels, kernelSize, kernelSize], decays: true),
                      bias: bias ? ParameterSpec(name: "\(name).bias", shape: [outChannels], decays: false) : nil)
    }

    public var parameters: [Parameter] { [weight] + (bias.map { [$0] } ?? []) }

    /// PyTorch's default initialisation: U(−1/√fan_in, 1/√fan_in) for weight and bias.
    public func initialize(_ rng: inout SeededRandom) {
        let bound = 1 / Float(inChannels * kernelSize * kernelSize).squareRoot()
        for p in parameters {
            for i in 0..<p.count { p.value.data[i] = (rng.nextUnitFloat() * 2 - 1) * bound }
        }
    }

    /// The convolution over height × width inputs; throws when the kernel does not fit
    /// the padded image.
    public func geometry(height: Int, width: Int) throws(ModelError) -> ConvolutionGeometry {
        guard height > 0, width > 0, height + 2 * padding >= kernelSize, width + 2 * padding >= kernelSize else {
            throw .batchShape("a \(kernelSize)×\(kernelSize) kernel with padding \(padding) does not fit a \(height)×\(width) image")
        }
        return ConvolutionGeometry(inChannels: inChannels, outChannels: outChannels, kernelHeight: kernelSize,
                                   kernelWidth: kernelSize, stride: stride, padding: padding, height: height, width: width)
    }

    /// Column buffers for `forward`/`backward` over up to `batch` images of height × width,
    /// one per thread that runs images (and the threads' weight-gradient partial sums).
    public struct Scratch: Sendable {
        public let columns: Tensor
        public let weightPartials: Tensor
        public let slots: Int
        public let geometry: ConvolutionGeometry

        public init(for layer: Conv2d, batch: Int, height: Int, width: Int) throws {
            geometry = try layer.geometry(height: height, width: width)
            let s = Self.shapes(geometry: geometry, batch: batch)
            slots = s[0][0]
            columns = try Tensor(shape: s[0], allocator: layer.device.allocator)
            weightPartials = try Tensor(shape: s[1], allocator: layer.device.allocator)
        }

        /// The shapes `init` allocates, with today's `ComputeThreads.count`.
        static func shapes(geometry g: ConvolutionGeometry, batch: Int) -> [[Int]] {
            let slots = max(1, min(ComputeThreads.count, batch))
            return [[slots, g.isPointwise ? 0 : g.columnCount], [slots - 1, g.outChannels * g.patchSize]]
        }

        public static func byteCount(geometry: ConvolutionGeometry, batch: Int) -> Int {
            TensorShapes.byteCount(shapes(geometry: geometry, batch: batch))
        }
    }

    /// out [B, out, OH, OW] from input [B, in, H, W].
    public func forward(_ input: Tensor, into out: Tensor, scratch: Scratch) throws(ModelError) {
        let (batch, g) = try checkShapes(input: input, output: out, scratch: scratch)
        ConvolutionKernels.forward(out: out.data, input: input.data, weight: weight.value.data, bias: bias?.value.data,
                                   batch: batch, geometry: g, columns: scratch.columns.data, slots: scratch.slots)
    }

    /// Accumulates weight/bias gradients; writes (or adds to) dInput when given.
    public func backward(dOut: Tensor, input: Tensor, dInput: Tensor?, scratch: Scratch,
                         accumulateInput: Bool = false) throws(ModelError) {
        let (batch, g) = try checkShapes(input: input, output: dOut, scratch: scratch)
        if let dInput, dInput.shape != input.shape {
            throw .batchShape("conv input gradient \(dInput.shape) for an input of \(input.shape)")
        }
        ConvolutionKernels.backward(dInput: dInput?.data, dWeight: weight.gradient.data, dBias: bias?.gradient.data,
                                    dOut: dOut.data, input: input.data, weight: weight.value.data, batch: batch,
                                    geometry: g, accumulateInput: accumulateInput, columns: scratch.columns.data,
                                    weightPartials: scratch.weightPartials.data, slots: scratch.slots)
    }

    private func checkShapes(input: Tensor, output: Tensor, scratch: Scratch) throws(ModelError) -> (Int, ConvolutionGeometry) {
        let image = try ImageShape(input, "conv input")
        guard image.channels == inChannels else {
            throw .batchShape("conv input has \(image.channels) channels, the layer takes \(inChannels)")
        }
        let g = try geometry(height: image.height, width: image.width)
        let expected = [image.batch, outChannels, g.outHeight, g.outWidth]
        guard output.shape == expected else { throw .batchShape("conv output \(output.shape), expected \(expected)") }
        guard scratch.geometry == g else {
            throw .batchShape("conv scratch was made for another layer or \(scratch.geometry.height)×\(scratch.geometry.width) images")
        }
        return (image.batch, g)
    }
}
