import Foundation
import TributaryModels
import TributaryOptim
import TributaryTensor

/// The model configurations of ../shared/reference/peers.md (and the U-Net of
/// Deploy/jobs/mnist-unet.yaml), measured the way their PyTorch scripts measure them: zero
/// gradients, forward, loss, backward, optimizer step, a fresh random batch every step, the
/// median over timed steps after warm-up.
public struct ComputeBenchmark {
    public struct Configuration: Sendable {
        public let name: String
        public let spec: ModelSpec
        public let batch: Int

        public static let all: [Configuration] = [
            Configuration(name: "mlp", spec: .mlp(MLPConfig(inputFeatures: 784, hidden: [512, 512], classes: 10)), batch: 128),
            Configuration(name: "gpt-tiny", spec: .gpt(GPTConfig(vocabSize: 65, blockSize: 128, nLayer: 4, nHead: 4, nEmbd: 128)), batch: 32),
            Configuration(name: "gpt-small", spec: .gpt(GPTConfig(vocabSize: 65, blockSize: 256, nLayer: 6, nHead: 6, nEmbd: 384)), batch: 8),
            // GPT-2 small's shape (124M parameters): for GPUs (Deploy/gpu/measure.sh).
            Configuration(name: "gpt2-small", spec: .gpt(GPTConfig(vocabSize: 50257, blockSize: 1024, nLayer: 12, nHead: 12, nEmbd: 768)),
                          batch: 4),
            // Deploy/jobs/mnist-unet.yaml's U-Net, one unit (samples_per_unit 32) per step;
            // its PyTorch peer is Deploy/bench/pytorch_unet_peer.py.
            Configuration(name: "unet-mnist",
                          spec: ModelSpec(UNetConfig(imageSize: 28, inChannels: 1, baseChannels: 16, channelMultipliers: [1, 2, 2],
                                                     blocksPerLevel: 1, normGroups: 8, timesteps: 1000, schedule: .linear)),
                          batch: 32),
        ]

        /// Whether this is an image model (a U-Net): [0, 1] pixel batches, images/s, the U-Net peer.
        public var isImageModel: Bool { spec.family is UNetConfig }

        public static func named(_ name: String) -> Configuration? { all.first { $0.name == name } }
    }

    public struct Result: Sendable {
        public let configuration: String
        public let optimizer: String
        public let parameters: Int
        public let flopsPerStep: Double
        public let milliseconds: [Double]
        public let unitsPerStep: Int
        public let unitName: String
        public let finalLoss: Float
        public let peakTensorBytes: Int
        /// A GPU's peak device memory (nil on the CPU).
        public let peakDeviceBytes: Int?

        public var median: Double {
            let s = milliseconds.sorted()
            guard !s.isEmpty else { return .nan }
            return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
        }
        public var minimum: Double { milliseconds.min() ?? .nan }
        public var maximum: Double { milliseconds.max() ?? .nan }
        public var throughput: Double { Double(unitsPerStep) / (median / 1000) }
        public var gflops: Double { flopsPerStep / (median / 1000) / 1e9 }
    }

    /// Times `steps` steps after `warmup` steps.
    /// `device`: where the model computes (nil: the CPU); the optimizer runs on the host.
    public static func run(_ cfg: Configuration, optimizer kind: String, warmup: Int, steps: Int,
                           seed: UInt64 = 0, device: (any ComputeDevice)? = nil,
                           progress: (Int, Double) -> Void = { _, _ in }) throws -> Result {
        let allocator = TensorAllocator(budgetBytes: nil)
        let model = try device.map { try cfg.spec.build(seed: seed, device: $0) } ?? cfg.spec.build(seed: seed, allocator: allocator)
        let optimizer: any Optimizer = kind == "sgd"
            ? try SGD(parameters: model.parameters, momentum: 0.9, allocator: allocator)
            : try AdamW(parameters: model.parameters, beta1: 0.9, beta2: 0.999, weightDecay: 0.01, allocator: allocator)
        let lr: Float = kind == "sgd" ? 1e-2 : 3e-4
        var rng = SeededRandom(seed: seed ^ 0xB37C)
        // Distinct random batches, generated before timing (a repeated batch is memorised
        // and the timings drift into denormal arithmetic).
        let batches: [ModelBatch] = (0..<(warmup + steps)).map { _ in randomBatch(cfg, &rng) }
        var times: [Double] = []
        var loss: Float = 0
        for (i, batch) in batches.enumerated() {
            let t0 = DispatchTime.now().uptimeNanoseconds
            // A worker sets the step's noise seed per unit; here per step.
            (model as? any StochasticTrainingModel)?.trainingSeed = UInt64(i)
            model.parameters.zeroGradients()
            loss = try model.forwardBackward(batch, lossScale: 1)
            optimizer.step(model.parameters, learningRate: lr)
            let ms = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
            if i >= warmup { times.append(ms) }
            progress(i + 1, ms)
        }
        let probe = batches[0]
        let units: Int, unitName: String
        if cfg.spec.sampleShape.sequenceLength != nil {
            units = probe.predictionCount; unitName = "tokens/s"
        } else if cfg.isImageModel {
            units = probe.sampleCount; unitName = "images/s"
        } else {
            units = probe.sampleCount; unitName = "samples/s"
        }
        return Result(configuration: cfg.name, optimizer: kind, parameters: model.parameters.scalarCount,
                      flopsPerStep: model.trainingFLOPs(probe), milliseconds: times, unitsPerStep: units,
                      unitName: unitName, finalLoss: loss,
                      peakTensorBytes: (device?.allocator.peakBytes ?? 0) + allocator.peakBytes,
                      peakDeviceBytes: device?.deviceMemoryPeakBytes)
    }

    /// Random rows of the configuration's shape; for image models uniform pixels in [0, 1]
    /// (what image datasets hand a U-Net), not the Gaussian features of the MLP's rows.
    public static func randomBatch(_ cfg: Configuration, _ rng: inout SeededRandom) -> ModelBatch {
        let batch = cfg.spec.sampleShape.randomBatch(samples: cfg.batch, using: &rng)
        guard cfg.isImageModel, case let .features(inputs, targets, b) = batch else { return batch }
        return .features(inputs: inputs.map { _ in rng.nextUnitFloat() }, targets: targets, batch: b)
    }
}
