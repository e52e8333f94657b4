import Foundation
import TributaryTensor

/// A small DDPM U-Net (Ho et al. 2020) predicting the noise ε in x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε,
/// trained on the mean squared error between predicted and true noise.
///
/// Layout (`UNetConfig.layout`): timestep sinusoid → `time_embedding.linear_1` → SiLU →
/// `time_embedding.linear_2` → SiLU (shared by every block); `conv_in` (3×3); per level
/// `down_blocks.i.resnets.j` then a 2×2 average pool (no pool after the last level);
/// `mid_block.resnets.{0,1}`; per level from the bottom `up_blocks.k.resnets.j`, each
/// taking the previous output concatenated with a skip, then 2× nearest upsampling (none
/// after the top level); `conv_norm_out` → SiLU → `conv_out` (3×3). The resampling carries
/// no convolution. Levels whose side is in `attentionResolutions` follow every block with
/// `SpatialSelfAttention` (`….attentions.j`; in the mid block, after the first). Names
/// follow diffusers' UNet2DModel; the attention's inner names are DDPM's AttnBlock's.
///
/// Batches are `.features` rows of pixels in [0, 1] (how image datasets reach the MLP),
/// channel-major per image; the model maps them to [−1, 1]. Targets are ignored.
///
/// Noise and timesteps: each image draws t and ε from `SeededRandom(seed: trainingSeed,
/// stream: hash of its pixels)`, so a sample gets the same noise whichever process,
/// micro-batch or position in a batch it lands in (distributed and single-process runs
/// agree). Training loops set `trainingSeed` per step (`StochasticTrainingModel`: the
/// trainer's step, a worker's unit version), so an image meets new t and ε each time;
/// evaluation draws with the fixed `evaluationSeed`.
///
/// With `recomputesBlocks` (activation checkpointing) forward keeps only the input of each
/// residual block and attention, and backward recomputes each one's internals from it
/// just before its gradient: the same operations in the same order, so the same gradients.
public final class UNet: StochasticTrainingModel, BlockRecomputing, @unchecked Sendable {
    // Unchecked: the activation cache is mutated by forward/backward; driven by one task at a time.
    public let config: UNetConfig
    public let schedule: DDPMSchedule
    public let parameters: ParameterSet
    public let device: any ComputeDevice
    /// The seed of a training step's noise (set per step by the training loop).
    public var trainingSeed: UInt64 = 0
    /// The seed of evaluation's noise: fixed, so every evaluation of a sample sees the same x_t.
    public var evaluationSeed: UInt64 = 0x5EED_E7A1
    /// Keep only block inputs from forward to backward (`BlockRecomputing`); the cache is
    /// rebuilt for the new mode at the next step.
    public var recomputesBlocks = false

    let timeLinear1: Linear, timeLinear2: Linear
    let sinusoid: TimestepEmbedding
    let convIn: Conv2d
    let downBlocks: [[ResidualBlock]], midBlocks: [ResidualBlock], upBlocks: [[ResidualBlock]]
    /// The self-attention after each block (nil where its level has none), parallel to the blocks.
    let downAttentions: [[SpatialSelfAttention?]], midAttentions: [SpatialSelfAttention?], upAttentions: [[SpatialSelfAttention?]]
    let normOut: GroupNorm
    let convOut: Conv2d
    var cache: Cache?

    public init(config: UNetConfig, seed: UInt64 = 1337, device: any ComputeDevice) throws {
        try config.validate()
        self.config = config
        self.device = device
        schedule = try DDPMSchedule(kind: config.schedule, timesteps: config.timesteps)
        let f = ParameterFactory.allocating(device.allocator), c0 = config.sinusoidFeatures, t = config.timeFeatures
        sinusoid = try TimestepEmbedding(dimension: c0, frequencyShift: 0, flipSinToCos: true)
        timeLinear1 = try Linear(name: "time_embedding.linear_1", inFeatures: c0, outFeatures: t, bias: true, parameters: f, device: device)
        timeLinear2 = try Linear(name: "time_embedding.linear_2", inFeatures: t, outFeatures: t, bias: true, parameters: f, device: device)
        convIn = try Conv2d(name: "conv_in", inChannels: config.inChannels, outChannels: c0, kernelSize: 3, padding: 1,
                            bias: true, parameters: f, device: device)
        let layout = config.layout
        // Each block, then its attention: the creation order of UNetConfig.parameterSpecs.
        func build(_ b: UNetConfig.Block) throws -> (ResidualBlock, SpatialSelfAttention?) {
            let block = try ResidualBlock(name: b.name, inChannels: b.inChannels, outChannels: b.outChannels, timeFeatures: t,
                                          groups: config.normGroups, parameters: f, device: device)
            let attention = try b.attention.map {
                try SpatialSelfAttention(name: $0, channels: b.outChannels, groups: config.normGroups, parameters: f, device: device)
            }
            return (block, attention)
        }
        let down = try layout.down.map { try $0.map(build) }, mid = try layout.mid.map(build), up = try layout.up.map { try $0.map(build) }
        downBlocks = down.map { $0.map(\.0) }
        downAttentions = down.map { $0.map(\.1) }
        midBlocks = mid.map(\.0)
        midAttentions = mid.map(\.1)
        upBlocks = up.map { $0.map(\.0) }
        upAttentions = up.map { $0.map(\.1) }
        normOut = try GroupNorm(name: "conv_norm_out", channels: c0, groups: config.normGroups, parameters: f, device: device)
        convOut = try Conv2d(name: "conv_out", inChannels: c0, outChannels: config.inChannels, kernelSize: 3, padding: 1,
                             bias: true, parameters: f, device: device)
        let body = (down.flatMap { $0 } + mid + up.flatMap { $0 }).flatMap { $0.0.parameters + ($0.1?.parameters ?? []) }
        parameters = ParameterSet(timeLinear1.parameters + timeLinear2.parameters + convIn.parameters
                                  + body + normOut.parameters + convOut.parameters)
        initialize(seed: seed)
    }

    /// PyTorch's defaults: U(±1/√fan_in) for linear and convolution weights and biases,
    /// GroupNorm gain 1 and bias 0.
    public func initialize(seed: UInt64) {
        var rng = SeededRandom(seed: seed)
        for layer in [timeLinear1, timeLinear2] {
            let bound = 1 / Float(layer.inFeatures).squareRoot()
            for p in layer.parameters {
                for i in 0..<p.count { p.value.data[i] = (rng.nextUnitFloat() * 2 - 1) * bound }
            }
        }
        convIn.initialize(&rng)
        for block in downBlocks.flatMap({ $0 }) + midBlocks + upBlocks.flatMap({ $0 }) { block.initialize(&rng) }
        for attention in (downAttentions.flatMap { $0 } + midAttentions + upAttentions.flatMap { $0 }).compactMap({ $0 }) {
            attention.initialize(&rng)
        }
        normOut.weight.value.fill(1)
        normOut.bias.value.zero()
        convOut.initialize(&rng)
        for p in parameters.parameters { p.gradient.zero() }
    }

    // MARK: Noise

    /// Timestep and noise for each image of `pixels` (values in [0, 1], as the batch holds
    /// them), from `seed` and the image's own pixels (see the type's comment).
    public func sampleNoise(pixels: [Float], batch b: Int, seed: UInt64) -> (timesteps: [Int], noise: [Float]) {
        let n = config.pixelsPerSample
        var timesteps: [Int] = [], noise = [Float](repeating: 0, count: b * n)
        pixels.withUnsafeBufferPointer { p in
            noise.withUnsafeMutableBufferPointer { e in
                guard let p = p.baseAddress, let e = e.baseAddress, pixels.count >= b * n else { return }
                for image in 0..<b { timesteps.append(drawNoise(image: p + image * n, into: e + image * n, seed: seed)) }
            }
        }
        return (timesteps, noise)
    }

    /// Writes one image's noise (pixelsPerSample values) and returns its timestep.
    private func drawNoise(image: UnsafePointer<Float>, into noise: UnsafeMutablePointer<Float>, seed: UInt64) -> Int {
        let n = config.pixelsPerSample
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325 // FNV-1a over the pixels' bit patterns
        for i in 0..<n { hash = (hash ^ UInt64(image[i].bitPattern)) &* 0x0000_0100_0000_01B3 }
        var rng = SeededRandom(seed: seed, stream: hash)
        let t = rng.nextIndex(below: schedule.timesteps)
        for i in 0..<n { noise[i] = rng.nextGaussian() }
        return t
    }

    /// The cache for `b` images, made (once per batch size and mode) when needed.
    private func cache(batch b: Int) throws -> Cache {
        if let cache, cache.batch != b || cache.recomputesBlocks != recomputesBlocks {
            self.cache = nil  // freed before the new one is allocated
        }
        let c = try cache ?? Cache(model: self, batch: b, recomputesBlocks: recomputesBlocks)
        cache = c
        return c
    }

    /// A batch of [0, 1] pixels as noised inputs x_t, with its noise and timesteps, written
    /// straight into the cache (no per-step arrays).
    private func noisedBatch(_ batch: ModelBatch, seed: UInt64) throws -> Cache {
        guard case let .features(inputs, _, b) = batch else {
            throw ModelError.batchShape("a U-Net takes image rows (features), not token batches")
        }
        let n = config.pixelsPerSample
        guard b > 0, inputs.count == b * n else {
            throw ModelError.batchShape("expected \(b) images of \(config.inChannels)×\(config.imageSize)×\(config.imageSize) pixels, got \(inputs.count) values")
        }
        let c = try cache(batch: b)
        inputs.withUnsafeBufferPointer { p in
            guard let p = p.baseAddress else { return }
            for image in 0..<b {
                let pixels = p + image * n, noise = c.noise.data + image * n, x = c.input.data + image * n
                let t = drawNoise(image: pixels, into: noise, seed: seed)
                c.timesteps[image] = Float(t)
                for i in 0..<n { x[i] = 2 * pixels[i] - 1 }
                schedule.noise(x, noise, into: x, count: n, timestep: t) // elementwise, so in place is safe
            }
        }
        return c
    }

    // MARK: TrainableModel

    public func forwardBackward(_ batch: ModelBatch, lossScale: Float = 1) throws -> Float {
        let c = try noisedBatch(batch, seed: trainingSeed)
        try forward(c)
        let loss = meanSquaredError(c)
        try backward(c, lossScale: lossScale)
        try device.checkHealthy()  // a failed GPU kernel leaves garbage: never return it
        return Float(loss)
    }

    /// Loss only. Accuracy has no meaning here: `correct` is 0, `predictions` the images.
    public func evaluate(_ batch: ModelBatch) throws -> Evaluation {
        let c = try noisedBatch(batch, seed: evaluationSeed)
        try forward(c)
        return Evaluation(loss: meanSquaredError(c), correct: 0, predictions: c.batch)
    }

    /// 2 FLOPs per multiply-add forward, twice that backward.
    public func trainingFLOPs(_ batch: ModelBatch) -> Double {
        6 * config.multiplyAddsPerSample * Double(batch.sampleCount)
    }

    // MARK: Denoising loss with given timesteps and noise

    /// Mean over every pixel of (ε̂ − ε)², for clean images x₀ in [−1, 1] [b, C, S, S],
    /// one timestep per image and noise ε of the images' shape.
    public func denoisingLoss(cleanImages: [Float], timesteps: [Int], noise: [Float], batch b: Int) throws -> Double {
        let c = try noised(cleanImages: cleanImages, timesteps: timesteps, noise: noise, batch: b)
        try forward(c)
        return meanSquaredError(c)
    }

    /// `denoisingLoss`, then its gradient (× lossScale) accumulated into the parameters.
    public func denoisingForwardBackward(cleanImages: [Float], timesteps: [Int], noise: [Float], batch b: Int,
                                         lossScale: Float = 1) throws -> Float {
        let c = try noised(cleanImages: cleanImages, timesteps: timesteps, noise: noise, batch: b)
        try forward(c)
        let loss = meanSquaredError(c)
        try backward(c, lossScale: lossScale)
        try device.checkHealthy()  // a failed GPU kernel leaves garbage: never return it
        return Float(loss)
    }

    // MARK: Inference

    /// The predicted noise ε̂(x_t, t) for `b` noised images x_t (in the [−1, 1] space the
    /// model denoises in, [b, C, S, S]), one timestep each, written into `output`
    /// (b × pixelsPerSample values). Forward only: gradients are left as they are.
    public func predictNoise(noisy: UnsafeBufferPointer<Float>, timesteps: [Int], batch b: Int,
                             into output: UnsafeMutableBufferPointer<Float>) throws {
        let n = config.pixelsPerSample
        guard b > 0, noisy.count == b * n, output.count == b * n, timesteps.count == b,
              let source = noisy.baseAddress, let destination = output.baseAddress else {
            throw ModelError.batchShape("\(b) images need \(b * n) pixels in and out and \(b) timesteps; got \(noisy.count), \(output.count), \(timesteps.count)")
        }
        if let bad = timesteps.first(where: { $0 < 0 || $0 >= schedule.timesteps }) {
            throw ModelError.batchShape("timestep \(bad) is outside 0..<\(schedule.timesteps)")
        }
        let c = try cache(batch: b)
        c.input.data.update(from: source, count: b * n)
        for (image, t) in timesteps.enumerated() { c.timesteps[image] = Float(t) }
        try forward(c)
        try device.checkHealthy()
        destination.update(from: c.prediction.readableData, count: b * n)
    }

    private func meanSquaredError(_ c: Cache) -> Double {
        let p = c.prediction.data, e = c.noise.data
        var s = 0.0
        for i in 0..<c.noise.count {
            let d = Double(p[i] - e[i])
            s += d * d
        }
        return s / Double(c.noise.count)
    }

    private func noised(cleanImages: [Float], timesteps: [Int], noise: [Float], batch b: Int) throws -> Cache {
        let n = config.pixelsPerSample
        guard b > 0, cleanImages.count == b * n, noise.count == b * n, timesteps.count == b else {
            throw ModelError.batchShape("\(b) images need \(b * n) pixels, as many noise values and \(b) timesteps; got \(cleanImages.count), \(noise.count), \(timesteps.count)")
        }
        if let bad = timesteps.first(where: { $0 < 0 || $0 >= schedule.timesteps }) {
            throw ModelError.batchShape("timestep \(bad) is outside 0..<\(schedule.timesteps)")
        }
        let c = try cache(batch: b)
        c.noise.copy(from: noise)
        c.input.copy(from: cleanImages)
        for (image, t) in timesteps.enumerated() {
            c.timesteps[image] = Float(t)
            let x = c.input.data + image * n
            schedule.noise(x, c.noise.data + image * n, into: x, count: n, timestep: t)
        }
        return c
    }

    /// The network on the cache's noised inputs and timesteps, up to the predicted noise.
    private func forward(_ c: Cache) throws {
        let b = c.batch
        try sinusoid.forward(timesteps: c.timesteps, into: c.sinusoid)
        timeLinear1.forward(c.sinusoid, into: c.time1, rows: b)
        try SiLU.forward(c.time1, into: c.time1Activated)
        timeLinear2.forward(c.time1Activated, into: c.time2, rows: b)
        try SiLU.forward(c.time2, into: c.time)
        try convIn.forward(c.input, into: c.first.value, scratch: c.convInScratch)
        for step in c.steps {
            switch step {
            case let .block(block, kept, input, output):
                // Recomputing: the block's internals are made for it and freed after it.
                let saved = try kept ?? ResidualBlock.Activations(for: block, batch: b, height: input.side, width: input.side)
                try block.forward(input.value, time: c.time, into: output.value, saving: saved)
            case let .attention(attention, kept, input, output):
                let saved = try kept ?? SpatialSelfAttention.Activations(for: attention, batch: b, height: input.side, width: input.side)
                try attention.forward(input.value, into: output.value, saving: saved)
            case let .pool(input, output): try AveragePool2x.forward(input.value, into: output.value)
            case let .upsample(input, output): try NearestUpsample2x.forward(input.value, into: output.value)
            case let .concat(first, second, output): try ChannelConcat.forward(first.value, second.value, into: output.value)
            }
        }
        try normOut.forward(c.last.value, into: c.outNormalized, saving: c.outStats)
        try SiLU.forward(c.outNormalized, into: c.outActivated)
        try convOut.forward(c.outActivated, into: c.prediction, scratch: c.convOutScratch)
    }

    private func backward(_ c: Cache, lossScale: Float) throws {
        // ∂/∂ε̂ of mean (ε̂ − ε)² is 2(ε̂ − ε)/N.
        let scale = 2 * lossScale / Float(c.noise.count)
        let p = c.prediction.data, e = c.noise.data, d = c.dPrediction.data
        for i in 0..<c.noise.count { d[i] = scale * (p[i] - e[i]) }
        // Every node's gradient is summed from its consumers (the next layer and a skip).
        for node in c.nodes { node.gradient.zero() }
        c.dTime.zero()
        try convOut.backward(dOut: c.dPrediction, input: c.outActivated, dInput: c.dOutActivated, scratch: c.convOutScratch)
        try SiLU.backward(dOut: c.dOutActivated, input: c.outNormalized, dInput: c.dOutNormalized)
        try normOut.backward(dOut: c.dOutNormalized, input: c.last.value, saved: c.outStats, dInput: c.last.gradient,
                             accumulateInput: true)
        for step in c.steps.reversed() {
            switch step {
            case let .block(block, kept, input, output):
                let saved = try kept ?? recomputed(block, input: input, output: output, c)
                try block.backward(dOut: output.gradient, input: input.value, time: c.time, saved: saved,
                                   dInput: input.gradient, dTime: c.dTime, accumulateInput: true)
            case let .attention(attention, kept, input, output):
                let saved = try kept ?? recomputed(attention, input: input, output: output, c)
                try attention.backward(dOut: output.gradient, input: input.value, saved: saved, dInput: input.gradient,
                                       accumulateInput: true)
            case let .pool(input, output):
                try AveragePool2x.backward(dOut: output.gradient, dInput: input.gradient, accumulateInput: true)
            case let .upsample(input, output):
                try NearestUpsample2x.backward(dOut: output.gradient, dInput: input.gradient, accumulateInput: true)
            case let .concat(first, second, output):
                try ChannelConcat.backward(dOut: output.gradient, dFirst: first.gradient, dSecond: second.gradient, accumulate: true)
            }
        }
        try convIn.backward(dOut: c.first.gradient, input: c.input, dInput: nil, scratch: c.convInScratch)
        try SiLU.backward(dOut: c.dTime, input: c.time2, dInput: c.dTime2)
        timeLinear2.backward(dOut: c.dTime2, input: c.time1Activated, dInput: c.dTime1Activated, rows: c.batch)
        try SiLU.backward(dOut: c.dTime1Activated, input: c.time1, dInput: c.dTime1)
        timeLinear1.backward(dOut: c.dTime1, input: c.sinusoid, dInput: nil, rows: c.batch)
    }

    /// A block's internals made again from its kept input (checkpointing). Its output is
    /// written again too, with the values forward wrote (the same kernels on the same
    /// input), after the backward of every step that reads it.
    private func recomputed(_ block: ResidualBlock, input: Node, output: Node, _ c: Cache) throws -> ResidualBlock.Activations {
        let saved = try ResidualBlock.Activations(for: block, batch: c.batch, height: input.side, width: input.side)
        try block.forward(input.value, time: c.time, into: output.value, saving: saved)
        return saved
    }

    private func recomputed(_ attention: SpatialSelfAttention, input: Node, output: Node,
                            _ c: Cache) throws -> SpatialSelfAttention.Activations {
        let saved = try SpatialSelfAttention.Activations(for: attention, batch: c.batch, height: input.side, width: input.side)
        try attention.forward(input.value, into: output.value, saving: saved)
        return saved
    }
}
