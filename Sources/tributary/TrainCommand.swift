import ArgumentParser
import Foundation
import Synchronization
import TributaryCheckpoint
import TributaryData
import TributaryModels
import TributaryTensor
import TributaryTraining

struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a model in this process (no coordinator, no workers).",
        discussion: """
        DATA is a text file (character-level GPT), a nanoGPT .bin token file, a directory \
        of MNIST IDX files, of CIFAR-10 binary batches or of PNG/JPEG images (one subfolder \
        per class; MLP classifier or U-Net), or builtin:arithmetic / builtin:digits, which \
        need nothing downloaded.
        """)

    @Option(help: "Dataset: a path, or builtin:arithmetic or builtin:digits.")
    var data: String = "builtin:arithmetic"

    @Option(help: "gpt, mlp or unet (default: gpt for token data, mlp for images; unet: a DDPM denoiser of square images).")
    var model: String?

    @Option(name: .customLong("n-layer"), help: "GPT layers.") var nLayer = 4
    @Option(name: .customLong("n-head"), help: "GPT attention heads.") var nHead = 4
    @Option(name: .customLong("n-embd"), help: "GPT width.") var nEmbd = 128
    @Option(name: .customLong("block-size"), help: "GPT context length.") var blockSize = 64
    @Flag(name: .customLong("no-bias"), help: "GPT without biases in Linear and LayerNorm.") var noBias = false
    @Option(help: "MLP hidden sizes, comma-separated.") var hidden = "512,512"
    @Option(name: .customLong("base-channels"), help: "U-Net channels of the first level.") var baseChannels = 32
    @Option(name: .customLong("channel-multipliers"), help: "U-Net channel multiplier per level, comma-separated.") var channelMultipliers = "1,2,2"
    @Option(name: .customLong("attention-resolutions"), help: "U-Net image sides with self-attention, comma-separated (e.g. 7).") var attentionResolutions = ""
    @Option(name: .customLong("norm-groups"), help: "U-Net GroupNorm groups.") var normGroups = 8
    @Option(name: .customLong("image-size"), help: "Image side: an image folder is resized to it, MNIST and CIFAR-10 must match it (default: the data's own; a folder: 32).") var imageSize: Int?
    @Option(name: .customLong("in-channels"), help: "Image channels, 1 (grayscale) or 3 (RGB), likewise (default: the data's own; a folder: 3).") var inChannels: Int?
    @Flag(name: .customLong("random-flip"), help: "Mirror training images left-right at random (seeded, per epoch).") var randomFlip = false

    @Option(help: "Optimizer steps.") var steps = 500
    @Option(name: .customLong("batch-size"), help: "Samples per step (sequences or images).") var batchSize = 32
    @Option(name: .customLong("micro-batches"), help: "Split each step's batch into this many accumulated slices.") var microBatches = 1
    @Option(help: "adamw or sgd.") var optimizer = "adamw"
    @Option(help: "Peak learning rate.") var lr: Float = 1e-3
    @Option(name: .customLong("min-lr"), help: "Learning rate at the end of the cosine decay (default lr/10).") var minLR: Float?
    @Option(help: "Linear warm-up steps.") var warmup = 20
    @Option(name: .customLong("weight-decay"), help: "Decoupled weight decay (default 0.1 for adamw, 0 for sgd).") var weightDecay: Float?
    @Option(help: "SGD momentum.") var momentum: Float = 0.9
    @Flag(help: "SGD with Nesterov momentum.") var nesterov = false
    @Option(name: .customLong("grad-clip"), help: "Global gradient-norm clip (0 disables).") var gradClip: Float = 1.0
    @Option(name: .customLong("eval-interval"), help: "Validate every N steps (0: only at the end).") var evalInterval = 100
    @Option(name: .customLong("eval-batches"), help: "Validation batches per evaluation.") var evalBatches = 20
    @Option(name: .customLong("val-fraction"), help: "Share of the data held out for validation.") var valFraction = 0.1
    @Option(help: "Checkpoint directory (safetensors + JSON; nanoGPT-compatible names).") var out: String?
    @Option(name: .customLong("checkpoint-interval"), help: "Checkpoint every N steps (and always at the end).") var checkpointInterval = 0
    @Flag(help: "Continue from the latest checkpoint in --out.") var resume = false
    @Option(help: "Seed for initialisation and data order.") var seed: UInt64 = 1337
    @Option(name: .customLong("log-interval"), help: "Print a progress line every N steps when not on a terminal.") var logInterval = 10
    @OptionGroup var compute: ComputeOptions
    @OptionGroup var devices: DeviceOptions

    func run() throws {
        try compute.apply()
        _ = try devices.choice()
        if resume && out == nil { throw ValidationError("--resume needs --out, the checkpoint directory to resume from") }
        let raw = try DatasetSource.load(data, images: ImageLoadOptions(size: imageSize, channels: inChannels))
        let spec = try modelSpec(for: raw)
        try spec.validate()
        if !resume, let out, let existing = try? CheckpointStore(directory: out).latestPath() {
            throw CLIError("\(out) already holds a run (latest \(existing)); pass --resume to continue it, or choose another --out")
        }
        let blockSize = spec.sampleShape.sequenceLength
        let prepared = try DatasetSource.prepare(raw, name: data, blockSize: blockSize, validationFraction: valFraction, seed: seed,
                                                 randomFlip: randomFlip)
        var options = TrainingOptions()
        options.steps = steps
        options.batchSize = batchSize
        options.microBatches = microBatches
        options.optimizer = optimizer
        options.learningRate = lr
        options.minLearningRate = minLR
        options.warmupSteps = warmup
        options.weightDecay = weightDecay ?? (optimizer == "sgd" ? 0 : 0.1)
        options.momentum = momentum
        options.nesterov = nesterov
        options.gradClip = gradClip
        options.evalInterval = evalInterval
        options.evalBatches = evalBatches
        options.checkpointInterval = checkpointInterval
        options.seed = seed
        let device = try devices.make(memoryBudgetBytes: nil,
                                      cacheDirectory: DeviceOptions.userCacheDirectory)
        let trainer = try Trainer(spec: spec, data: prepared, options: options, device: device)
        let store = out.map { CheckpointStore(directory: $0) }
        if resume, let store {
            guard let path = try store.latestPath() else { throw CLIError("--resume: no checkpoint in \(store.directory)") }
            try trainer.restore(from: try LoadedCheckpoint.read(path))
            print("resumed from \(path) at step \(trainer.step)")
        }
        print("model: \(spec.summary)")
        print("data: \(data): \(prepared.train.sampleCount.formatted()) training samples, \(prepared.validation.sampleCount.formatted()) validation samples")
        print("optimizer: \(optimizer) lr \(lr), \(steps) steps of \(batchSize), \(ComputeThreads.count) threads, BLAS kernels \(ComputeThreads.blasCoreName)")
        if device.kind != .cpu { print("device: \(device.name)") }
        let progress = ProgressReporter(total: steps)
        let isGPT = spec.sampleShape.sequenceLength != nil
        // Accuracy means something for a classifier only (not a GPT, not a denoising U-Net).
        let isClassifier: Bool
        if case .mlp = spec { isClassifier = true } else { isClassifier = false }
        // Ctrl-C ends the step in progress and checkpoints there; a second Ctrl-C stops at once.
        let interrupted = Mutex(false)
        let signals = StopSignals { count in
            if count > 1 { Foundation.exit(130) }
            interrupted.withLock { $0 = true }
        }
        defer { signals.cancel() }
        var saved: String?
        try trainer.run(store: store, shouldStop: { interrupted.withLock { $0 } }) { event in
            switch event {
            case let .step(r, _, remaining):
                guard progress.isTerminal || r.step % max(1, logInterval) == 0 || r.step == steps else { return }
                let rate = isGPT ? ProgressReporter.rate(Double(r.predictions) / r.seconds, "tok/s")
                                 : ProgressReporter.rate(Double(r.samples) / r.seconds, "samples/s")
                let detail = String(format: "step %d loss %.4f lr %.2e%@", r.step, r.loss, r.learningRate, r.skipped ? " (skipped: non-finite)" : "")
                progress.update(done: r.step, rate: rate, eta: remaining, detail: detail)
            case let .validation(step, e):
                let acc = isClassifier ? String(format: " accuracy %.2f%%", e.accuracy * 100) : ""
                progress.line(String(format: "step %d validation loss %.4f%@", step, e.loss, acc))
            case let .checkpoint(step, path):
                saved = path
                progress.line("step \(step) checkpoint \(path)")
            }
        }
        if interrupted.withLock({ $0 }) && trainer.step < steps {
            if let out, saved != nil {
                progress.line("interrupted at step \(trainer.step) of \(steps); continue with the same command and --resume (--out \(out))")
            } else {
                progress.line("interrupted at step \(trainer.step) of \(steps); nothing was saved: give --out DIR to keep a run")
            }
            throw ExitCode(130)
        }
    }

    private func modelSpec(for raw: RawDataset) throws -> ModelSpec {
        switch raw {
        case let .tokens(_, _, vocab):
            guard model == nil || model == "gpt" else { throw ValidationError("token data trains a gpt, not \(model ?? "")") }
            return .gpt(GPTConfig(vocabSize: vocab, blockSize: blockSize, nLayer: nLayer, nHead: nHead, nEmbd: nEmbd, bias: !noBias))
        case let .images(set):
            if model == "unet" { return try unetSpec(features: set.featureCount, geometry: set.geometry) }
            guard model == nil || model == "mlp" else { throw ValidationError("image data trains an mlp or a unet, not \(model ?? "")") }
            let sizes = hidden.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard !sizes.contains(nil) else { throw ValidationError("--hidden takes comma-separated sizes, e.g. 512,512") }
            return .mlp(MLPConfig(inputFeatures: set.featureCount, hidden: sizes.compactMap { $0 }, classes: set.classCount))
        }
    }

    /// A U-Net over the data's square images: of the data's geometry, else single-channel.
    private func unetSpec(features: Int, geometry: ImageGeometry?) throws -> ModelSpec {
        let side: Int, channels: Int
        if let geometry {
            guard geometry.height == geometry.width else { throw CLIError("a unet needs square images, not \(geometry)") }
            (side, channels) = (geometry.height, geometry.channels)
        } else {
            side = Int(Double(features).squareRoot().rounded())
            channels = 1
            guard side * side == features else { throw CLIError("a unet needs square single-channel images, not \(features) pixels") }
        }
        func list(_ text: String, _ option: String) throws -> [Int] {
            let parts = text.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard !parts.contains(nil) else { throw CLIError("--\(option) takes comma-separated whole numbers") }
            return parts.compactMap { $0 }
        }
        let spec = ModelSpec(UNetConfig(imageSize: side, inChannels: channels, baseChannels: baseChannels,
                                        channelMultipliers: try list(channelMultipliers, "channel-multipliers"),
                                        normGroups: normGroups, attentionResolutions: try list(attentionResolutions, "attention-resolutions")))
        do { try spec.validate() } catch { throw CLIError("\(error)") }
        return spec
    }
}

struct SampleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sample", abstract: "Generate text from a GPT checkpoint, or a grid of images from a U-Net checkpoint.",
        discussion: """
        A GPT checkpoint continues --prompt. A U-Net checkpoint (train --model unet) draws \
        --images images by DDIM (--steps, deterministic after the seeded start) or DDPM \
        (every timestep) and writes them as one PNG grid to --out.
        """)

    @Option(help: "A checkpoint directory, a directory whose 'latest' names one, or a coordinator's data directory.") var checkpoint: String
    @Option(help: "Text to continue.") var prompt = "\n"
    @Option(help: "Characters to generate.") var tokens = 300
    @Option(help: "Softmax temperature (0 = greedy).") var temperature: Float = 0.8
    @Option(name: .customLong("top-k"), help: "Sample among the k most likely tokens (0 = all).") var topK = 0
    @Option(help: "Sampling seed.") var seed: UInt64 = 1
    @Option(help: "U-Net: images to draw, 1…\(Self.maxImages) (default 64).") var images: Int?
    @Option(help: "U-Net: the PNG file the image grid is written to.") var out: String?
    @Option(help: "U-Net: ddim (deterministic, --steps) or ddpm (ancestral, every timestep).") var sampler = "ddim"
    @Option(help: "U-Net: DDIM steps, evenly spaced over the model's timesteps (default 50).") var steps: Int?
    @OptionGroup var compute: ComputeOptions

    static let maxImages = 1024

    /// A checkpoint directory as given, or a coordinator's data directory, which holds its
    /// checkpoints one level down.
    static func checkpointPath(_ given: String) -> String {
        var isDirectory: ObjCBool = false
        let nested = "\(given)/checkpoints"
        return FileManager.default.fileExists(atPath: nested, isDirectory: &isDirectory) && isDirectory.boolValue
            && !FileManager.default.fileExists(atPath: "\(given)/config.json") ? nested : given
    }

    func run() throws {
        try compute.apply()
        if let images, !(1...Self.maxImages).contains(images) {
            throw CLIError("--images must be 1…\(Self.maxImages), got \(images)")
        }
        guard temperature >= 0, tokens >= 0, topK >= 0 else { throw ValidationError("temperature, tokens and top-k must not be negative") }
        let loaded = try LoadedCheckpoint.read(Self.checkpointPath(checkpoint))
        if let cfg = loaded.config.model.family as? UNetConfig {
            try sampleImages(loaded, config: cfg)
            return
        }
        guard let cfg = loaded.config.model.family as? GPTConfig else {
            let kind = loaded.config.model.modelType == "mlp" ? "an MLP" : "a \(loaded.config.model.modelType) model"
            throw CLIError("\(loaded.path) holds \(kind); only GPT checkpoints generate text and only U-Net checkpoints images")
        }
        if images != nil || out != nil {
            throw CLIError("\(loaded.path) holds a GPT, which generates text; --images and --out are for U-Net checkpoints")
        }
        guard let vocabulary = loaded.config.vocabulary else {
            throw CLIError("\(loaded.path) has no character vocabulary (trained on token ids), so its output cannot be decoded to text")
        }
        let model = try GPT(config: cfg)
        try loaded.loadWeights(into: model.parameters)
        var context = try vocabulary.encode(prompt.isEmpty ? "\n" : prompt)
        var rng = SeededRandom(seed: seed)
        print(prompt, terminator: "")
        for _ in 0..<tokens {
            let logits = try model.nextTokenLogits(context: context)
            let next = Sampling.pick(logits: logits, temperature: temperature, topK: topK, rng: &rng)
            context.append(Int32(next))
            print(vocabulary.decode([Int32(next)]), terminator: "")
            fflush(nil)
        }
        print()
    }
}
