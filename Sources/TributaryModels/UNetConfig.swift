import TributaryTensor

/// Hyper-parameters of the DDPM U-Net (`UNet`).
public struct UNetConfig: Codable, Sendable, Equatable {
    /// Square images of imageSize × imageSize pixels; divisible by 2^(levels − 1).
    public var imageSize: Int
    /// Image channels (1 for MNIST), in and out: the model predicts the noise per pixel.
    public var inChannels: Int
    /// Channels of the first level; level i has baseChannels × channelMultipliers[i].
    public var baseChannels: Int
    public var channelMultipliers: [Int]
    /// Residual blocks per level on the way down (the way up has one more, for the pooled skip).
    public var blocksPerLevel: Int
    /// GroupNorm groups; must divide every block's input and output channels.
    public var normGroups: Int
    /// Diffusion steps T and how their betas are spaced.
    public var timesteps: Int
    public var schedule: DDPMSchedule.Kind
    /// Resolutions (image side in pixels, e.g. 7 for the bottom of a 28×28 U-Net) whose
    /// residual blocks are each followed by self-attention (mid block included). Attention
    /// keeps an (H·W)² matrix per image, so it belongs at low resolutions.
    public var attentionResolutions: [Int]

    public init(imageSize: Int = 28, inChannels: Int = 1, baseChannels: Int = 32, channelMultipliers: [Int] = [1, 2, 2],
                blocksPerLevel: Int = 1, normGroups: Int = 8, timesteps: Int = 1000, schedule: DDPMSchedule.Kind = .linear,
                attentionResolutions: [Int] = []) {
        self.imageSize = imageSize
        self.inChannels = inChannels
        self.baseChannels = baseChannels
        self.channelMultipliers = channelMultipliers
        self.blocksPerLevel = blocksPerLevel
        self.normGroups = normGroups
        self.timesteps = timesteps
        self.schedule = schedule
        self.attentionResolutions = attentionResolutions
    }

    enum CodingKeys: String, CodingKey {
        case imageSize = "image_size", inChannels = "in_channels", baseChannels = "base_channels"
        case channelMultipliers = "channel_multipliers", blocksPerLevel = "blocks_per_level", normGroups = "norm_groups"
        case timesteps, schedule, attentionResolutions = "attention_resolutions"
    }

    public var levels: Int { channelMultipliers.count }
    /// Width of the sinusoidal timestep embedding (diffusers: the first level's channels).
    public var sinusoidFeatures: Int { baseChannels * (channelMultipliers.first ?? 1) }
    /// Width of the time embedding MLP and of what the blocks project (4 × sinusoid, as in DDPM).
    public var timeFeatures: Int { 4 * sinusoidFeatures }
    public var pixelsPerSample: Int { inChannels * imageSize * imageSize }

    public func validate() throws(ModelError) {
        guard imageSize >= 1, imageSize <= 4096 else { throw .invalidConfiguration("image_size must be 1…4096 (got \(imageSize))") }
        guard inChannels >= 1, inChannels <= 64 else { throw .invalidConfiguration("in_channels must be 1…64 (got \(inChannels))") }
        guard baseChannels >= 1, baseChannels <= 65_536 else { throw .invalidConfiguration("base_channels must be 1…65536 (got \(baseChannels))") }
        guard !channelMultipliers.isEmpty, channelMultipliers.count <= 12 else {
            throw .invalidConfiguration("channel_multipliers needs 1…12 levels (got \(channelMultipliers.count))")
        }
        if let bad = channelMultipliers.first(where: { $0 < 1 || $0 > 64 }) {
            throw .invalidConfiguration("channel multipliers must be 1…64 (got \(bad))")
        }
        guard blocksPerLevel >= 1, blocksPerLevel <= 64 else { throw .invalidConfiguration("blocks_per_level must be 1…64 (got \(blocksPerLevel))") }
        guard normGroups >= 1 else { throw .invalidConfiguration("norm_groups must be positive (got \(normGroups))") }
        let reduction = 1 << (levels - 1)
        guard imageSize % reduction == 0 else {
            throw .invalidConfiguration("image_size \(imageSize) must be divisible by 2^(levels − 1) = \(reduction) so the up path meets the skips")
        }
        let sides = (0..<levels).map { imageSize >> $0 }
        if let bad = attentionResolutions.first(where: { !sides.contains($0) }) {
            throw .invalidConfiguration("attention resolution \(bad) is none of the U-Net's levels \(sides)")
        }
        _ = try DDPMSchedule(kind: schedule, timesteps: timesteps)
        _ = try TimestepEmbedding(dimension: sinusoidFeatures, frequencyShift: 0, flipSinToCos: true)
        let layout = self.layout
        for block in layout.allBlocks {
            guard block.inChannels % normGroups == 0, block.outChannels % normGroups == 0 else {
                throw .invalidConfiguration("norm_groups \(normGroups) must divide \(block.name)'s \(block.inChannels) input and \(block.outChannels) output channels")
            }
        }
        _ = try checkedParameterCount()
    }

    /// One residual block: its parameter prefix and channels (for the up path, the input is
    /// the previous output concatenated with `skipChannels` of a skip connection).
    public struct Block: Sendable, Equatable {
        public let name: String
        public let inChannels: Int
        public let outChannels: Int
        public let skipChannels: Int
        /// The self-attention after the block (its parameter prefix), if its level has one.
        public var attention: String? = nil
    }

    /// The blocks of every level in order: `down[i]` at resolution imageSize/2^i, `mid`,
    /// and `up[k]` for level levels − 1 − k (diffusers numbers up blocks from the bottom).
    public struct Layout: Sendable, Equatable {
        public var down: [[Block]] = []
        public var mid: [Block] = []
        public var up: [[Block]] = []
        public var allBlocks: [Block] { down.flatMap { $0 } + mid + up.flatMap { $0 } }
    }

    public func channels(level i: Int) -> Int { baseChannels * channelMultipliers[i] }

    /// Whether level i (side imageSize/2^i) has self-attention after its blocks.
    public func attends(level i: Int) -> Bool { attentionResolutions.contains(imageSize >> i) }

    /// A block's parameters in creation order: the residual block, then its attention.
    public func parameterSpecs(of b: Block) -> [ParameterSpec] {
        ResidualBlock.parameterSpecs(name: b.name, inChannels: b.inChannels, outChannels: b.outChannels, timeFeatures: timeFeatures)
            + (b.attention.map { SpatialSelfAttention.parameterSpecs(name: $0, channels: b.outChannels) } ?? [])
    }

    /// The skip connections follow DDPM/diffusers: conv_in's output, every down block's
    /// output and every pooled output are pushed; each up block pops one.
    /// Empty for a configuration whose sizes `validate` would refuse before reaching it.
    public var layout: Layout {
        var layout = Layout()
        guard !channelMultipliers.isEmpty, channelMultipliers.count <= 12, (1...65_536).contains(baseChannels),
              channelMultipliers.allSatisfy({ (1...64).contains($0) }), (1...64).contains(blocksPerLevel) else { return layout }
        var previous = channels(level: 0)
        var skips = [previous]
        for i in 0..<levels {
            var level: [Block] = []
            for j in 0..<blocksPerLevel {
                level.append(Block(name: "down_blocks.\(i).resnets.\(j)", inChannels: previous, outChannels: channels(level: i), skipChannels: 0,
                                   attention: attends(level: i) ? "down_blocks.\(i).attentions.\(j)" : nil))
                previous = channels(level: i)
                skips.append(previous)
            }
            if i < levels - 1 { skips.append(previous) }
            layout.down.append(level)
        }
        layout.mid = (0..<2).map {
            Block(name: "mid_block.resnets.\($0)", inChannels: previous, outChannels: previous, skipChannels: 0,
                  attention: $0 == 0 && attends(level: levels - 1) ? "mid_block.attentions.0" : nil)
        }
        for k in 0..<levels {
            let out = channels(level: levels - 1 - k)
            var level: [Block] = []
            for j in 0...blocksPerLevel {
                let skip = skips.popLast() ?? 0
                level.append(Block(name: "up_blocks.\(k).resnets.\(j)", inChannels: previous + skip, outChannels: out, skipChannels: skip,
                                   attention: attends(level: levels - 1 - k) ? "up_blocks.\(k).attentions.\(j)" : nil))
                previous = out
            }
            layout.up.append(level)
        }
        return layout
    }

    /// Every parameter in creation order (the order `UNet` builds them and a shard lists them).
    public var parameterSpecs: [ParameterSpec] {
        let c0 = sinusoidFeatures, t = timeFeatures
        var specs = Linear.parameterSpecs(name: "time_embedding.linear_1", inFeatures: c0, outFeatures: t, bias: true).all
        specs += Linear.parameterSpecs(name: "time_embedding.linear_2", inFeatures: t, outFeatures: t, bias: true).all
        specs += Conv2d.parameterSpecs(name: "conv_in", inChannels: inChannels, outChannels: c0, kernelSize: 3, bias: true).all
        for b in layout.allBlocks { specs += parameterSpecs(of: b) }
        specs += GroupNorm.parameterSpecs(name: "conv_norm_out", channels: c0).all
        specs += Conv2d.parameterSpecs(name: "conv_out", inChannels: c0, outChannels: inChannels, kernelSize: 3, bias: true).all
        return specs
    }

    /// Parameters (`Int.max` for a configuration `validate` refuses: the layout of an
    /// unvalidated one may not even be computable).
    public var parameterCount: Int {
        do {
            try validate()
            return try checkedParameterCount()
        } catch {
            return .max
        }
    }

    func checkedParameterCount() throws(ModelError) -> Int {
        var terms: [Int] = []
        for spec in parameterSpecs {
            var n = 1
            for d in spec.shape { n = try CheckedSize.product(n, d, what: "the parameter count") }
            terms.append(n)
        }
        return try CheckedSize.sum(terms, what: "the parameter count")
    }

    /// Multiply-adds of one forward pass for one image (convolutions and time projections;
    /// the elementwise work is noise next to them).
    public var multiplyAddsPerSample: Double {
        let t = Double(timeFeatures), c0 = Double(sinusoidFeatures)
        var total = c0 * t + t * t
        func pixels(_ level: Int) -> Double { Double(imageSize >> level) * Double(imageSize >> level) }
        func block(_ b: Block, _ level: Int) -> Double {
            let i = Double(b.inChannels), o = Double(b.outChannels)
            // Attention: four C×C 1×1 convolutions and two N×N×C products per image.
            let attention = b.attention == nil ? 0 : pixels(level) * (4 * o * o + 2 * pixels(level) * o)
            return pixels(level) * (9 * i * o + 9 * o * o + (b.inChannels == b.outChannels ? 0 : i * o)) + t * o + attention
        }
        let layout = self.layout
        for (i, level) in layout.down.enumerated() { for b in level { total += block(b, i) } }
        for b in layout.mid { total += block(b, levels - 1) }
        for (k, level) in layout.up.enumerated() { for b in level { total += block(b, levels - 1 - k) } }
        total += 2 * pixels(0) * 9 * Double(inChannels) * c0
        return total
    }
}
