import TributaryTensor

/// The DDPM U-Net family (`model_type: unet`), held whole on workers, cut into one shard
/// group per U-Net level.
extension UNetConfig: ModelFamily {
    public static let modelType = "unet"

    public var summary: String {
        "U-Net \(imageSize)×\(imageSize)×\(inChannels), base \(baseChannels) × \(channelMultipliers), \(blocksPerLevel) block(s) per level, \(schedule.rawValue) schedule over \(timesteps) steps, \(parameterCount.formatted()) parameters"
    }

    public func build(seed: UInt64, device: any ComputeDevice) throws -> any TrainableModel {
        try UNet(config: self, seed: seed, device: device)
    }

    /// `stem` (time embedding MLP, conv_in), `down.i` per level, `mid`, `up.k` per level
    /// from the bottom, `head` (conv_norm_out, conv_out): contiguous runs of the model's
    /// parameter order, so a shard body is one slice of it.
    public var shardGroups: [ModelShardGroup] {
        guard (try? validate()) != nil else { return [] }
        let specs = parameterSpecs
        var groups: [ModelShardGroup] = []
        var taken = 0
        func group(_ name: String, _ count: Int) {
            let end = min(specs.count, taken + count)
            groups.append(ModelShardGroup(name: name, parameters: Array(specs[taken..<end])))
            taken = end
        }
        func count(_ blocks: [Block]) -> Int { blocks.reduce(0) { $0 + parameterSpecs(of: $1).count } }
        let layout = self.layout
        group("stem", 6) // linear_1, linear_2 and conv_in: a weight and a bias each
        for (i, level) in layout.down.enumerated() { group("down.\(i)", count(level)) }
        group("mid", count(layout.mid))
        for (k, level) in layout.up.enumerated() { group("up.\(k)", count(level)) }
        group("head", specs.count - taken)
        return groups
    }

    /// Image rows; the label column the batch format carries is ignored by the U-Net (10
    /// classes, like the image datasets, so random benchmark batches look like theirs).
    public var sampleShape: ModelSampleShape { .features(count: pixelsPerSample, classes: 10) }

    /// The whole model resident, per micro-batch size with every activation kept and with
    /// the residual blocks (and attentions) recomputed in backward.
    public func executionCandidates(_ inputs: ExecutionPlanningInputs) -> [ExecutionCandidate] {
        guard (try? validate()) != nil else { return [] }
        let perSample = UNet.activationBytes(config: self, batch: 1)
        guard perSample > 0, CheckedSize.fits(inputs.unitSamples, of: perSample) else { return [] }
        let recomputed = { UNet.activationBytes(config: self, batch: $0, recomputingBlocks: true) }
        return ModelExecution.residentCandidates(parameterCount: parameterCount, shardGroups: shardGroups, inputs: inputs,
                                                 recomputedActivationBytes: recomputed) {
            UNet.activationBytes(config: self, batch: $0)
        }
    }

    /// 6 FLOPs per multiply-add and image (forward 2, backward 4), 8 with blocks
    /// recomputed (their forward again: a third more), less efficient on small
    /// micro-batches. So a plan keeps activations where they fit, and recomputes rather
    /// than halve a micro-batch of a few images.
    public func estimatedCost(of execution: ModelExecution, _ inputs: ExecutionPlanningInputs) -> Double {
        guard case let .residentModel(m, recomputes) = execution else { return .infinity }
        let rows = Double(min(m, inputs.unitSamples))
        return (recomputes ? 8 : 6) * multiplyAddsPerSample * Double(inputs.unitSamples) * (1 + 8 / rows)
    }
}
