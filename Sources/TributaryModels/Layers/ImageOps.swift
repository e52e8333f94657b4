import TributaryTensor

/// The batch, channels, height and width of an NCHW tensor.
public struct ImageShape: Sendable, Equatable {
    public let batch: Int
    public let channels: Int
    public let height: Int
    public let width: Int

    /// Throws when `tensor` is not four-dimensional; `label` names it in the error.
    public init(_ tensor: Tensor, _ label: String) throws(ModelError) {
        guard tensor.shape.count == 4 else { throw .batchShape("\(label) has shape \(tensor.shape), expected [batch, channels, height, width]") }
        batch = tensor.shape[0]
        channels = tensor.shape[1]
        height = tensor.shape[2]
        width = tensor.shape[3]
    }

    var planes: Int { batch * channels }
}

private func requireSameShape(_ a: Tensor, _ b: Tensor, _ what: String) throws(ModelError) {
    guard a.shape == b.shape else { throw .batchShape("\(what): \(a.shape) and \(b.shape) differ") }
}

/// x · σ(x) elementwise (the U-Net's activation; PyTorch's `nn.SiLU`).
public enum SiLU {
    public static func forward(_ input: Tensor, into out: Tensor) throws(ModelError) {
        try requireSameShape(input, out, "SiLU input and output")
        ImageOpKernels.siluForward(out: out.data, input: input.data, count: input.count)
    }

    /// Writes (or adds to) dInput.
    public static func backward(dOut: Tensor, input: Tensor, dInput: Tensor, accumulateInput: Bool = false) throws(ModelError) {
        try requireSameShape(input, dOut, "SiLU input and output gradient")
        try requireSameShape(input, dInput, "SiLU input and input gradient")
        ImageOpKernels.siluBackward(dInput: dInput.data, dOut: dOut.data, input: input.data, count: input.count,
                                    accumulate: accumulateInput)
    }
}

/// 2× nearest-neighbour upsampling: [B, C, H, W] → [B, C, 2H, 2W] (`F.interpolate(scale_factor=2)`).
public enum NearestUpsample2x {
    public static func outputShape(_ image: ImageShape) -> [Int] { [image.batch, image.channels, 2 * image.height, 2 * image.width] }

    public static func forward(_ input: Tensor, into out: Tensor) throws(ModelError) {
        let image = try ImageShape(input, "upsample input")
        guard out.shape == outputShape(image) else { throw .batchShape("upsample output \(out.shape), expected \(outputShape(image))") }
        ImageOpKernels.upsampleNearest2xForward(out: out.data, input: input.data, planes: image.planes,
                                                height: image.height, width: image.width)
    }

    /// Writes (or adds to) dInput [B, C, H, W] from dOut [B, C, 2H, 2W].
    public static func backward(dOut: Tensor, dInput: Tensor, accumulateInput: Bool = false) throws(ModelError) {
        let image = try ImageShape(dInput, "upsample input gradient")
        guard dOut.shape == outputShape(image) else { throw .batchShape("upsample output gradient \(dOut.shape), expected \(outputShape(image))") }
        ImageOpKernels.upsampleNearest2xBackward(dInput: dInput.data, dOut: dOut.data, planes: image.planes,
                                                 height: image.height, width: image.width, accumulate: accumulateInput)
    }
}

/// 2×2 average pooling at stride 2: [B, C, H, W] → [B, C, ⌊H/2⌋, ⌊W/2⌋] (`F.avg_pool2d(x, 2)`).
public enum AveragePool2x {
    public static func outputShape(_ image: ImageShape) -> [Int] { [image.batch, image.channels, image.height / 2, image.width / 2] }

    public static func forward(_ input: Tensor, into out: Tensor) throws(ModelError) {
        let image = try ImageShape(input, "pool input")
        guard image.height >= 2, image.width >= 2 else { throw .batchShape("a 2×2 pool needs at least 2×2 pixels, got \(image.height)×\(image.width)") }
        guard out.shape == outputShape(image) else { throw .batchShape("pool output \(out.shape), expected \(outputShape(image))") }
        ImageOpKernels.averagePool2xForward(out: out.data, input: input.data, planes: image.planes,
                                            height: image.height, width: image.width)
    }

    /// Writes (or adds to) dInput [B, C, H, W] from dOut [B, C, ⌊H/2⌋, ⌊W/2⌋].
    public static func backward(dOut: Tensor, dInput: Tensor, accumulateInput: Bool = false) throws(ModelError) {
        let image = try ImageShape(dInput, "pool input gradient")
        guard dOut.shape == outputShape(image) else { throw .batchShape("pool output gradient \(dOut.shape), expected \(outputShape(image))") }
        ImageOpKernels.averagePool2xBackward(dInput: dInput.data, dOut: dOut.data, planes: image.planes,
                                             height: image.height, width: image.width, accumulate: accumulateInput)
    }
}

/// The sinusoidal timestep embedding of DDPM and diffusers' `get_timestep_embedding`:
/// `dimension` values per timestep, half sines and half cosines over geometrically spaced
/// frequencies down to 1/maxPeriod. No parameters, so no backward.
public struct TimestepEmbedding: Sendable, Equatable {
    public let dimension: Int
    public let maxPeriod: Double
    /// 1 (DDPM's original and the function's default) or 0 (diffusers' UNet2DModel).
    public let frequencyShift: Double
    /// Cosines first (UNet2DModel's `flip_sin_to_cos=True`).
    public let flipSinToCos: Bool

    public init(dimension: Int, maxPeriod: Double = 10_000, frequencyShift: Double = 1, flipSinToCos: Bool = false) throws(ModelError) {
        guard dimension >= 2, maxPeriod > 0, maxPeriod.isFinite, Double(dimension / 2) - frequencyShift > 0 else {
            throw .invalidConfiguration(
                "a timestep embedding needs a dimension ≥ 2 (\(dimension)) with more than \(frequencyShift) frequencies, and a positive max period (\(maxPeriod))")
        }
        self.dimension = dimension
        self.maxPeriod = maxPeriod
        self.frequencyShift = frequencyShift
        self.flipSinToCos = flipSinToCos
    }

    /// out [timesteps.count, dimension].
    public func forward(timesteps: [Float], into out: Tensor) throws(ModelError) {
        guard out.shape == [timesteps.count, dimension] else {
            throw .batchShape("timestep embedding output \(out.shape), expected \([timesteps.count, dimension])")
        }
        timesteps.withUnsafeBufferPointer { t in
            guard let base = t.baseAddress else { return }
            ImageOpKernels.timestepEmbedding(out: out.data, timesteps: base, count: t.count, dimension: dimension,
                                             maxPeriod: maxPeriod, frequencyShift: frequencyShift, flipSinToCos: flipSinToCos)
        }
    }
}
