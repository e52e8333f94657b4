import TributaryTensor

/// The U-Net's residual block (DDPM's ResnetBlock, diffusers' `ResnetBlock2D` names):
///
///     h = Conv3x3(SiLU(GroupNorm(x))) + Linear(time)   (broadcast over H×W)
///     out = Conv3x3(SiLU(GroupNorm(h))) + skip(x)
///
/// where `skip` is a 1×1 convolution (`conv_shortcut`) when the channel count changes and
/// the identity otherwise. `time` is the already activated time embedding
/// (SiLU(temb), which every block of a diffusers U-Net applies to the same temb, so the
/// U-Net computes it once). Parameters: `norm1`, `conv1`, `time_emb_proj`, `norm2`,
/// `conv2`, `conv_shortcut` under `name`.
public struct ResidualBlock: Sendable {
    public let norm1: GroupNorm
    public let conv1: Conv2d
    public let timeProjection: Linear
    public let norm2: GroupNorm
    public let conv2: Conv2d
    public let shortcut: Conv2d?
    public let inChannels: Int
    public let outChannels: Int
    public let timeFeatures: Int

    public init(name: String, inChannels: Int, outChannels: Int, timeFeatures: Int, groups: Int,
                parameters f: ParameterFactory, device: any ComputeDevice) throws {
        guard timeFeatures > 0 else {
            throw ModelError.invalidConfiguration("\(name): a residual block needs a positive time embedding width (\(timeFeatures))")
        }
        norm1 = try GroupNorm(name: "\(name).norm1", channels: inChannels, groups: groups, parameters: f, device: device)
        conv1 = try Conv2d(name: "\(name).conv1", inChannels: inChannels, outChannels: outChannels, kernelSize: 3,
                           padding: 1, bias: true, parameters: f, device: device)
        timeProjection = try Linear(name: "\(name).time_emb_proj", inFeatures: timeFeatures, outFeatures: outChannels,
                                    bias: true, parameters: f, device: device)
        norm2 = try GroupNorm(name: "\(name).norm2", channels: outChannels, groups: groups, parameters: f, device: device)
        conv2 = try Conv2d(name: "\(name).conv2", inChannels: outChannels, outChannels: outChannels, kernelSize: 3,
                           padding: 1, bias: true, parameters: f, device: device)
        shortcut = inChannels == outChannels ? nil
            : try Conv2d(name: "\(name).conv_shortcut", inChannels: inChannels, outChannels: outChannels, kernelSize: 1,
                         bias: true, parameters: f, device: device)
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.timeFeatures = timeFeatures
    }

    /// The parameters `init` makes, in creation order, known without allocating them.
    public static func parameterSpecs(name: String, inChannels: Int, outChannels: Int, timeFeatures: Int) -> [ParameterSpec] {
        var specs = GroupNorm.parameterSpecs(name: "\(name).norm1", channels: inChannels).all
        specs += Conv2d.parameterSpecs(name: "\(name).conv1", inChannels: inChannels, outChannels: outChannels, kernelSize: 3, bias: true).all
        specs += Linear.parameterSpecs(name: "\(name).time_emb_proj", inFeatures: timeFeatures, outFeatures: outChannels, bias: true).all
        specs += GroupNorm.parameterSpecs(name: "\(name).norm2", channels: outChannels).all
        specs += Conv2d.parameterSpecs(name: "\(name).conv2", inChannels: outChannels, outChannels: outChannels, kernelSize: 3, bias: true).all
        if inChannels != outChannels {
            specs += Conv2d.parameterSpecs(name: "\(name).conv_shortcut", inChannels: inChannels, outChannels: outChannels, kernelSize: 1, bias: true).all
        }
        return specs
    }

    public var parameters: [Parameter] {
        norm1.parameters + conv1.parameters + timeProjection.parameters + norm2.parameters + conv2.parameters
            + (shortcut?.parameters ?? [])
    }

    /// PyTorch's default initialisation for the convolutions and the projection; the
    /// GroupNorms keep gain 1, bias 0.
    public func initialize(_ rng: inout SeededRandom) {
        conv1.initialize(&rng)
        let bound = 1 / Float(timeFeatures).squareRoot()
        for p in timeProjection.parameters {
            for i in 0..<p.count { p.value.data[i] = (rng.nextUnitFloat() * 2 - 1) * bound }
        }
        conv2.initialize(&rng)
        shortcut?.initialize(&rng)
    }

    /// What forward keeps for backward, plus the scratch both passes need, for `batch`
    /// images of height × width.
    public struct Activations: Sendable {
        public let batch: Int
        let normalized1: Tensor, activated1: Tensor, stats1: GroupNorm.Activations
        let hidden: Tensor, time: Tensor, stats2: GroupNorm.Activations
        let normalized2: Tensor, activated2: Tensor
        let shortcutOut: Tensor?
        let conv1Scratch: Conv2d.Scratch, conv2Scratch: Conv2d.Scratch, shortcutScratch: Conv2d.Scratch?
        // Backward scratch: two output-sized and two input-sized gradient buffers, and ∂L/∂time.
        let gradOutA: Tensor, gradOutB: Tensor, gradInA: Tensor, gradInB: Tensor, gradTime: Tensor

        public init(for block: ResidualBlock, batch b: Int, height: Int, width: Int) throws {
            let a = block.conv1.device.allocator
            let inShape = [b, block.inChannels, height, width], outShape = [b, block.outChannels, height, width]
            batch = b
            normalized1 = try Tensor(shape: inShape, allocator: a)
            activated1 = try Tensor(shape: inShape, allocator: a)
            stats1 = try GroupNorm.Activations(batch: b, groups: block.norm1.groups, allocator: a)
            hidden = try Tensor(shape: outShape, allocator: a)
            time = try Tensor(shape: [b, block.outChannels], allocator: a)
            stats2 = try GroupNorm.Activations(batch: b, groups: block.norm2.groups, allocator: a)
            normalized2 = try Tensor(shape: outShape, allocator: a)
            activated2 = try Tensor(shape: outShape, allocator: a)
            shortcutOut = block.shortcut == nil ? nil : try Tensor(shape: outShape, allocator: a)
            conv1Scratch = try Conv2d.Scratch(for: block.conv1, batch: b, height: height, width: width)
            conv2Scratch = try Conv2d.Scratch(for: block.conv2, batch: b, height: height, width: width)
            shortcutScratch = try block.shortcut.map { try Conv2d.Scratch(for: $0, batch: b, height: height, width: width) }
            gradOutA = try Tensor(shape: outShape, allocator: a)
            gradOutB = try Tensor(shape: outShape, allocator: a)
            gradInA = try Tensor(shape: inShape, allocator: a)
            gradInB = try Tensor(shape: inShape, allocator: a)
            gradTime = try Tensor(shape: [b, block.outChannels], allocator: a)
        }

        /// What `init` takes from the allocator, known without a block (memory planning).
        public static func byteCount(inChannels: Int, outChannels: Int, groups: Int, batch b: Int, height: Int, width: Int) -> Int {
            let inShape = [b, inChannels, height, width], outShape = [b, outChannels, height, width]
            func conv(_ i: Int, _ o: Int, _ k: Int) -> Int {
                let g = ConvolutionGeometry(inChannels: i, outChannels: o, kernelHeight: k, kernelWidth: k, stride: 1,
                                            padding: k / 2, height: height, width: width)
                return Conv2d.Scratch.byteCount(geometry: g, batch: b)
            }
            let shortcut = inChannels == outChannels ? 0 : TensorShapes.byteCount([outShape]) + conv(inChannels, outChannels, 1)
            return TensorShapes.byteCount([inShape, inShape, outShape, [b, outChannels], outShape, outShape,
                                           outShape, outShape, inShape, inShape, [b, outChannels]])
                + 2 * GroupNorm.Activations.byteCount(batch: b, groups: groups)
                + conv(inChannels, outChannels, 3) + conv(outChannels, outChannels, 3) + shortcut
        }
    }

    /// out [B, out, H, W] from input [B, in, H, W] and time [B, timeFeatures].
    public func forward(_ input: Tensor, time: Tensor, into out: Tensor, saving a: Activations) throws {
        try checkShapes(input: input, time: time, output: out, a)
        try norm1.forward(input, into: a.normalized1, saving: a.stats1)
        try SiLU.forward(a.normalized1, into: a.activated1)
        try conv1.forward(a.activated1, into: a.hidden, scratch: a.conv1Scratch)
        timeProjection.forward(time, into: a.time, rows: a.batch)
        ChannelBroadcast.add(a.time, to: a.hidden)
        try norm2.forward(a.hidden, into: a.normalized2, saving: a.stats2)
        try SiLU.forward(a.normalized2, into: a.activated2)
        try conv2.forward(a.activated2, into: out, scratch: a.conv2Scratch)
        if let shortcut, let s = a.shortcutOut, let scratch = a.shortcutScratch {
            try shortcut.forward(input, into: s, scratch: scratch)
            ChannelBroadcast.addElementwise(s, to: out)
        } else {
            ChannelBroadcast.addElementwise(input, to: out)
        }
    }

    /// Parameter gradients accumulate; ∂L/∂input is written (or added to, with
    /// `accumulateInput`), ∂L/∂time is always added to `dTime` (every block shares it).
    public func backward(dOut: Tensor, input: Tensor, time: Tensor, saved a: Activations, dInput: Tensor, dTime: Tensor,
                         accumulateInput: Bool = false) throws {
        try checkShapes(input: input, time: time, output: dOut, a)
        guard dInput.shape == input.shape, dTime.shape == time.shape else {
            throw ModelError.batchShape("residual block gradients \(dInput.shape), \(dTime.shape) for inputs \(input.shape), \(time.shape)")
        }
        // The skip path first, so it sets dInput and the main path can add to it.
        if let shortcut, let scratch = a.shortcutScratch {
            try shortcut.backward(dOut: dOut, input: input, dInput: dInput, scratch: scratch, accumulateInput: accumulateInput)
        } else if accumulateInput {
            ChannelBroadcast.addElementwise(dOut, to: dInput)
        } else {
            dInput.copy(from: dOut)
        }
        try conv2.backward(dOut: dOut, input: a.activated2, dInput: a.gradOutA, scratch: a.conv2Scratch)
        try SiLU.backward(dOut: a.gradOutA, input: a.normalized2, dInput: a.gradOutB)
        try norm2.backward(dOut: a.gradOutB, input: a.hidden, saved: a.stats2, dInput: a.gradOutA)
        // ∂L/∂hidden is gradOutA; the time projection was broadcast over H×W, so it gets the sum.
        ChannelBroadcast.sumOverPixels(a.gradOutA, into: a.gradTime)
        timeProjection.backward(dOut: a.gradTime, input: time, dInput: dTime, rows: a.batch, accumulateInput: true)
        try conv1.backward(dOut: a.gradOutA, input: a.activated1, dInput: a.gradInA, scratch: a.conv1Scratch)
        try SiLU.backward(dOut: a.gradInA, input: a.normalized1, dInput: a.gradInB)
        try norm1.backward(dOut: a.gradInB, input: input, saved: a.stats1, dInput: dInput, accumulateInput: true)
    }

    private func checkShapes(input: Tensor, time: Tensor, output: Tensor, _ a: Activations) throws {
        let image = try ImageShape(input, "residual block input")
        guard image.channels == inChannels, image.batch == a.batch,
              a.normalized1.shape == input.shape,
              output.shape == [image.batch, outChannels, image.height, image.width] else {
            throw ModelError.batchShape("residual block \(inChannels)→\(outChannels) channels got input \(input.shape), output \(output.shape), activations for \(a.normalized1.shape)")
        }
        guard time.shape == [image.batch, timeFeatures] else {
            throw ModelError.batchShape("residual block time embedding \(time.shape), expected \([image.batch, timeFeatures])")
        }
    }
}

/// Per-channel broadcasts over NCHW images (the time projection's add and its gradient),
/// and elementwise adds for the residual paths.
enum ChannelBroadcast {
    /// image[b, c, :, :] += values[b, c].
    static func add(_ values: Tensor, to image: Tensor) {
        let planes = values.count, pixels = image.count / max(1, planes)
        let v = values.data, x = image.data
        for p in 0..<planes {
            let row = x + p * pixels, value = v[p]
            for i in 0..<pixels { row[i] += value }
        }
    }

    /// out[b, c] = Σ over pixels of image[b, c, :, :], summed in double (a 28×28 plane of
    /// gradients loses bits in fp32).
    static func sumOverPixels(_ image: Tensor, into out: Tensor) {
        let planes = out.count, pixels = image.count / max(1, planes)
        let x = image.data, o = out.data
        for p in 0..<planes {
            let row = x + p * pixels
            var s = 0.0
            for i in 0..<pixels { s += Double(row[i]) }
            o[p] = Float(s)
        }
    }

    /// target += source, same element count.
    static func addElementwise(_ source: Tensor, to target: Tensor) {
        let s = source.data, t = target.data
        for i in 0..<min(source.count, target.count) { t[i] += s[i] }
    }
}
