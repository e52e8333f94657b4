import TributaryTensor

extension UNet {
    /// An activation of the U-Net's body and the gradient summed into it during backward.
    final class Node: @unchecked Sendable {
        let value: Tensor
        let gradient: Tensor
        /// Height and width (the body's images are square).
        let side: Int
        init(batch: Int, channels: Int, side: Int, _ allocator: TensorAllocator) throws {
            value = try Tensor(shape: [batch, channels, side, side], allocator: allocator)
            gradient = try Tensor(shape: [batch, channels, side, side], allocator: allocator)
            self.side = side
        }
    }

    /// One operation of the body between conv_in and the output head; forward runs them in
    /// order, backward in reverse. A block's or attention's activations are nil when they
    /// are recomputed (made for the step, and dropped after it, in each pass).
    enum Step {
        case block(ResidualBlock, ResidualBlock.Activations?, input: Node, output: Node)
        case attention(SpatialSelfAttention, SpatialSelfAttention.Activations?, input: Node, output: Node)
        case pool(input: Node, output: Node)
        case upsample(input: Node, output: Node)
        case concat(Node, Node, output: Node)
    }

    /// Everything one step over `batch` images keeps, built once per batch size.
    final class Cache: @unchecked Sendable {
        let batch: Int
        let recomputesBlocks: Bool
        /// Each image's timestep (as the embedding takes it), rewritten every step.
        var timesteps: [Float]
        let input: Tensor, noise: Tensor, prediction: Tensor, dPrediction: Tensor
        let sinusoid: Tensor
        let time1: Tensor, time1Activated: Tensor, time2: Tensor, time: Tensor
        let dTime: Tensor, dTime2: Tensor, dTime1Activated: Tensor, dTime1: Tensor
        let convInScratch: Conv2d.Scratch
        let first: Node
        let steps: [Step]
        let nodes: [Node]
        let last: Node
        let outStats: GroupNorm.Activations
        let outNormalized: Tensor, outActivated: Tensor, dOutNormalized: Tensor, dOutActivated: Tensor
        let convOutScratch: Conv2d.Scratch

        init(model m: UNet, batch b: Int, recomputesBlocks: Bool) throws {
            let a = m.device.allocator, cfg = m.config, s = cfg.imageSize, t = cfg.timeFeatures, c0 = cfg.sinusoidFeatures
            batch = b
            self.recomputesBlocks = recomputesBlocks
            timesteps = Array(repeating: 0, count: b)
            let imageShape = [b, cfg.inChannels, s, s]
            input = try Tensor(shape: imageShape, allocator: a)
            noise = try Tensor(shape: imageShape, allocator: a)
            prediction = try Tensor(shape: imageShape, allocator: a)
            dPrediction = try Tensor(shape: imageShape, allocator: a)
            sinusoid = try Tensor(shape: [b, c0], allocator: a)
            let timeShape = [b, t]
            time1 = try Tensor(shape: timeShape, allocator: a)
            time1Activated = try Tensor(shape: timeShape, allocator: a)
            time2 = try Tensor(shape: timeShape, allocator: a)
            time = try Tensor(shape: timeShape, allocator: a)
            dTime = try Tensor(shape: timeShape, allocator: a)
            dTime2 = try Tensor(shape: timeShape, allocator: a)
            dTime1Activated = try Tensor(shape: timeShape, allocator: a)
            dTime1 = try Tensor(shape: timeShape, allocator: a)
            convInScratch = try Conv2d.Scratch(for: m.convIn, batch: b, height: s, width: s)

            // The body, in the order of UNetConfig.layout, with its skip stack.
            var nodes: [Node] = []
            func node(_ channels: Int, _ size: Int) throws -> Node {
                let n = try Node(batch: b, channels: channels, side: size, a)
                nodes.append(n)
                return n
            }
            var steps: [Step] = []
            func block(_ blk: ResidualBlock, _ input: Node, _ size: Int) throws -> Node {
                let out = try node(blk.outChannels, size)
                let kept = recomputesBlocks ? nil : try ResidualBlock.Activations(for: blk, batch: b, height: size, width: size)
                steps.append(.block(blk, kept, input: input, output: out))
                return out
            }
            func attend(_ attention: SpatialSelfAttention?, _ input: Node, _ size: Int) throws -> Node {
                guard let attention else { return input }
                let out = try node(attention.channels, size)
                let kept = recomputesBlocks ? nil : try SpatialSelfAttention.Activations(for: attention, batch: b, height: size, width: size)
                steps.append(.attention(attention, kept, input: input, output: out))
                return out
            }
            var h = try node(c0, s)
            first = h
            var skips = [h], size = s
            for (i, level) in m.downBlocks.enumerated() {
                for (j, blk) in level.enumerated() {
                    h = try attend(m.downAttentions[i][j], try block(blk, h, size), size)
                    skips.append(h)
                }
                if i < m.downBlocks.count - 1 {
                    size /= 2
                    let pooled = try node(h.value.shape[1], size)
                    steps.append(.pool(input: h, output: pooled))
                    h = pooled
                    skips.append(h)
                }
            }
            for (j, blk) in m.midBlocks.enumerated() { h = try attend(m.midAttentions[j], try block(blk, h, size), size) }
            for (k, level) in m.upBlocks.enumerated() {
                for (j, blk) in level.enumerated() {
                    guard let skip = skips.popLast() else { throw ModelError.invalidConfiguration("the up path ran out of skip connections") }
                    let joined = try node(blk.inChannels, size)
                    steps.append(.concat(h, skip, output: joined))
                    h = try attend(m.upAttentions[k][j], try block(blk, joined, size), size)
                }
                if k < m.upBlocks.count - 1 {
                    size *= 2
                    let upsampled = try node(h.value.shape[1], size)
                    steps.append(.upsample(input: h, output: upsampled))
                    h = upsampled
                }
            }
            last = h
            self.steps = steps
            self.nodes = nodes

            outStats = try GroupNorm.Activations(batch: b, groups: m.normOut.groups, allocator: a)
            outNormalized = try Tensor(shape: [b, c0, s, s], allocator: a)
            outActivated = try Tensor(shape: [b, c0, s, s], allocator: a)
            dOutNormalized = try Tensor(shape: [b, c0, s, s], allocator: a)
            dOutActivated = try Tensor(shape: [b, c0, s, s], allocator: a)
            convOutScratch = try Conv2d.Scratch(for: m.convOut, batch: b, height: s, width: s)
        }
    }
}

extension UNet {
    /// Bytes of the activation cache for a batch of `b` images (what `Cache` allocates,
    /// walking the same layout), for memory planning. Recomputing blocks, the cache keeps
    /// the block inputs and outputs but no block's internals; one block's (the largest)
    /// are held at a time on top.
    public static func activationBytes(config: UNetConfig, batch b: Int, recomputingBlocks: Bool = false) -> Int {
        let parts = activationParts(config: config, batch: b)
        let internals = recomputingBlocks ? (parts.internals.max() ?? 0) : parts.internals.reduce(0, +)
        return parts.kept + internals
    }

    /// The bytes every step keeps, and each block's and attention's own activations (their
    /// `Activations`: what forward saves and backward's scratch), in layout order.
    static func activationParts(config: UNetConfig, batch b: Int) -> (kept: Int, internals: [Int]) {
        let s = config.imageSize, c0 = config.sinusoidFeatures, t = config.timeFeatures, groups = config.normGroups
        func conv3(_ i: Int, _ o: Int, _ size: Int) -> Int {
            Conv2d.Scratch.byteCount(geometry: ConvolutionGeometry(inChannels: i, outChannels: o, kernelHeight: 3, kernelWidth: 3,
                                                                   stride: 1, padding: 1, height: size, width: size), batch: b)
        }
        func node(_ channels: Int, _ size: Int) -> Int { 2 * TensorShapes.byteCount([[b, channels, size, size]]) }
        var internals: [Int] = []
        func block(_ blk: UNetConfig.Block, _ size: Int) -> Int {
            internals.append(ResidualBlock.Activations.byteCount(inChannels: blk.inChannels, outChannels: blk.outChannels,
                                                                 groups: groups, batch: b, height: size, width: size))
            guard blk.attention != nil else { return node(blk.outChannels, size) }
            internals.append(SpatialSelfAttention.Activations.byteCount(channels: blk.outChannels, groups: groups,
                                                                        batch: b, height: size, width: size))
            return 2 * node(blk.outChannels, size)
        }
        let image = [b, config.inChannels, s, s], head = [b, c0, s, s]
        var total = TensorShapes.byteCount([image, image, image, image, [b, c0]] + Array(repeating: [b, t], count: 8))
        total += conv3(config.inChannels, c0, s) + node(c0, s)
        let layout = config.layout
        var size = s
        for (i, level) in layout.down.enumerated() {
            for blk in level { total += block(blk, size) }
            if i < layout.down.count - 1 {
                size /= 2
                total += node(level.last?.outChannels ?? c0, size)
            }
        }
        for blk in layout.mid { total += block(blk, size) }
        for (k, level) in layout.up.enumerated() {
            for blk in level { total += node(blk.inChannels, size) + block(blk, size) }
            if k < layout.up.count - 1 {
                size *= 2
                total += node(level.last?.outChannels ?? c0, size)
            }
        }
        total += GroupNorm.Activations.byteCount(batch: b, groups: groups)
            + TensorShapes.byteCount([head, head, head, head]) + conv3(c0, config.inChannels, s)
        return (total, internals)
    }
}
