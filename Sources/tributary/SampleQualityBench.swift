import ArgumentParser
import Foundation
import TributaryCheckpoint
import TributaryData
import TributaryModels
import TributaryTensor
import TributaryTraining

/// `tributary bench samples`: how many of a U-Net's images a classifier recognises. The
/// share of images it assigns a class with probability above `--threshold`, for generated
/// images and for real held-out ones next to them, and the classes it sees (a generator
/// that draws only ones scores well on confidence and badly on spread).
struct SampleQualityBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "samples",
        abstract: "A U-Net's images judged by a classifier (train --model mlp): the share recognised with confidence, next to real images'.")

    @Option(help: "The U-Net's checkpoint (or a coordinator's data directory).") var unet: String
    @Option(help: "The classifier's checkpoint (an MLP trained with tributary train on the same images).") var classifier: String
    @Option(help: "The images the classifier judges as the real reference: an MNIST directory or builtin:digits.") var data: String
    @Option(help: "Images of each kind.") var images = 256
    @Option(help: "DDIM steps per image.") var steps = 50
    @Option(help: "A class probability above this counts as recognised.") var threshold: Float = 0.9
    @Option(help: "Sampling seed.") var seed: UInt64 = 1
    @Option(name: .customLong("val-fraction"), help: "The held-out share train used (the real images are taken from it).")
    var valFraction = 0.1
    @Option(name: .customLong("data-seed"), help: "The seed train split the data with.") var dataSeed: UInt64 = 1337
    @OptionGroup var compute: ComputeOptions

    struct Judgement {
        var recognised = 0
        var perClass: [Int]
        var meanTop: Double = 0
    }

    func run() throws {
        try compute.apply()
        guard (1...SampleCommand.maxImages).contains(images) else { throw CLIError("--images must be 1…\(SampleCommand.maxImages)") }
        guard threshold > 0, threshold < 1 else { throw CLIError("--threshold must lie between 0 and 1") }
        let unetCheckpoint = try LoadedCheckpoint.read(SampleCommand.checkpointPath(unet))
        guard let unetConfig = unetCheckpoint.config.model.family as? UNetConfig else {
            throw CLIError("--unet \(unetCheckpoint.path) holds no U-Net")
        }
        let classifierCheckpoint = try LoadedCheckpoint.read(SampleCommand.checkpointPath(classifier))
        guard let mlpConfig = classifierCheckpoint.config.model.family as? MLPConfig else {
            throw CLIError("--classifier \(classifierCheckpoint.path) holds no MLP classifier")
        }
        guard mlpConfig.inputFeatures == unetConfig.pixelsPerSample else {
            throw CLIError("the classifier takes \(mlpConfig.inputFeatures) pixels, the U-Net draws \(unetConfig.pixelsPerSample)")
        }
        let generator = try UNet(config: unetConfig, device: CPUDevice(allocator: .shared))
        try unetCheckpoint.loadWeights(into: generator.parameters)
        let judge = try MLPClassifier(config: mlpConfig)
        try classifierCheckpoint.loadWeights(into: judge.parameters)

        let start = Date()
        let drawn = try DiffusionSampler.sample(generator, method: .ddim(steps: min(steps, unetConfig.timesteps)), count: images,
                                                seed: seed, batchSize: 64)
        let sampleSeconds = Date().timeIntervalSince(start)
        // The U-Net denoises in [−1, 1]; the classifier was trained on pixels in [0, 1].
        let generated = drawn.map { min(1, max(0, ($0 + 1) / 2)) }
        let real = try realImages(count: images, unet: unetConfig)
        print("generator: \(unetConfig.summary) (step \(unetCheckpoint.config.step))")
        print("judge: \(mlpConfig.summary) (step \(classifierCheckpoint.config.step))")
        print(String(format: "%d images by DDIM in %d steps, seed %llu, in %.1f s; recognised: top class probability above %.2f",
                     images, min(steps, unetConfig.timesteps), seed, sampleSeconds, threshold))
        print()
        print("| images | count | recognised | mean top probability | images per class |")
        print("|---|---|---|---|---|")
        for (name, pixels) in [("generated", generated), ("real, held out", real.pixels)] {
            let j = try judgeAll(judge, pixels, count: pixels.count / unetConfig.pixelsPerSample, classes: mlpConfig.classes)
            let n = pixels.count / unetConfig.pixelsPerSample
            print(String(format: "| %@ | %d | %.1f%% | %.3f | %@ |", name, n, 100 * Double(j.recognised) / Double(max(1, n)), j.meanTop,
                         j.perClass.map(String.init).joined(separator: " ")))
        }
    }

    private func judgeAll(_ model: MLPClassifier, _ pixels: [Float], count: Int, classes: Int) throws -> Judgement {
        var j = Judgement(perClass: [Int](repeating: 0, count: classes))
        guard count > 0 else { return j }
        let probabilities = try model.classProbabilities(pixels, batch: count)
        var topSum = 0.0
        for i in 0..<count {
            let row = probabilities[(i * classes)..<((i + 1) * classes)]
            guard let top = row.max(), let best = row.firstIndex(of: top) else { continue }
            j.perClass[best - i * classes] += 1
            topSum += Double(top)
            if top > threshold { j.recognised += 1 }
        }
        j.meanTop = topSum / Double(count)
        return j
    }

    /// Real images the classifier did not train on: the validation split `train` held out.
    private func realImages(count: Int, unet: UNetConfig) throws -> LabeledImages {
        // An image folder is resized to what the U-Net draws; MNIST and CIFAR-10 must match it.
        let raw = try DatasetSource.load(data, images: ImageLoadOptions(size: unet.imageSize, channels: unet.inChannels))
        guard case let .images(set) = raw, set.featureCount == unet.pixelsPerSample else {
            throw CLIError("--data \(data) holds no images of \(unet.pixelsPerSample) pixels")
        }
        let held = set.split(validationFraction: valFraction, seed: dataSeed).validation
        return held.subset(Array(0..<min(count, held.count)))
    }
}
