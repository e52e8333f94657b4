import Foundation
import TributaryData
import TributaryModels
import TributaryTensor

/// A dataset as loaded, before it is cut into samples.
public enum RawDataset: Sendable {
    /// A token stream; `vocabulary` is set for character corpora (decodable text).
    case tokens([UInt16], vocabulary: CharacterVocabulary?, vocabularySize: Int)
    case images(LabeledImages)
}

/// One split cut into samples a model consumes.
public enum SampleSet: Sendable {
    case windows(TokenWindows)
    case images(LabeledImages)

    public var sampleCount: Int {
        switch self {
        case let .windows(w): return w.sampleCount
        case let .images(i): return i.count
        }
    }

    /// The batch for these sample indices, laid out as the model expects.
    public func batch(_ indices: [Int]) -> ModelBatch {
        batch(indices, epoch: 0, flip: nil)
    }

    /// The batch for these sample indices of `epoch`: with `flip`, the images whose coin
    /// comes up in that epoch are mirrored (training only; `PreparedDataset.trainingBatch`).
    public func batch(_ indices: [Int], epoch: Int, flip: RandomFlip?) -> ModelBatch {
        switch self {
        case let .windows(w):
            var x = [Int32](repeating: 0, count: indices.count * w.blockSize)
            var y = x
            x.withUnsafeMutableBufferPointer { xp in
                y.withUnsafeMutableBufferPointer { yp in
                    guard let xb = xp.baseAddress, let yb = yp.baseAddress else { return }
                    w.fillBatch(indices: indices, inputs: xb, targets: yb)
                }
            }
            return .tokens(inputs: x, targets: y, batch: indices.count, sequence: w.blockSize)
        case let .images(set):
            var x = [Float](repeating: 0, count: indices.count * set.featureCount)
            var y = [Int32](repeating: 0, count: indices.count)
            x.withUnsafeMutableBufferPointer { xp in
                y.withUnsafeMutableBufferPointer { yp in
                    guard let xb = xp.baseAddress, let yb = yp.baseAddress else { return }
                    set.fillBatch(indices: indices, inputs: xb, targets: yb, flip: flip, epoch: epoch)
                }
            }
            return .features(inputs: x, targets: y, batch: indices.count)
        }
    }
}

/// Training and validation samples with what a model needs to know about them.
public struct PreparedDataset: Sendable {
    public let name: String
    public let train: SampleSet
    public let validation: SampleSet
    public let vocabulary: CharacterVocabulary?
    /// Random horizontal flips of training images (nil: none).
    public var trainingFlip: RandomFlip? = nil

    /// The training samples at `indices` as visited in `epoch`, flipped when the job says so.
    /// The coordinator (a unit of epoch `lease.epoch`) and `Trainer` (its step's epoch)
    /// both build training batches here, so they flip the same samples.
    public func trainingBatch(_ indices: [Int], epoch: Int) -> ModelBatch {
        train.batch(indices, epoch: epoch, flip: trainingFlip)
    }
}

public enum DatasetSource {
    /// Loads `source`: `builtin:arithmetic` (generated, nothing to download), `builtin:digits`
    /// (synthetic 28×28 classes), a directory holding MNIST IDX files, CIFAR-10 binary batches
    /// (a directory holding `data_batch_N.bin` / `test_batch.bin` or `cifar-10-batches-bin`, or
    /// one such file), a folder of PNG/JPEG images (`ImageFolder`), a nanoGPT `.bin` token
    /// file, or any other file as UTF-8 text (character-level). `images`: what the model
    /// takes; an image folder is resized to it, MNIST and CIFAR-10 must match it.
    public static func load(_ source: String, images: ImageLoadOptions = ImageLoadOptions()) throws -> RawDataset {
        try images.validate()
        let raw = try loadUnchecked(source, images: images)
        if case let .images(set) = raw { try images.check(set, source: source) }
        return raw
    }

    private static func loadUnchecked(_ source: String, images: ImageLoadOptions) throws -> RawDataset {
        switch source {
        case "builtin:arithmetic":
            let text = BuiltinCorpus.arithmetic(lines: 40_000, seed: 7)
            let vocab = CharacterVocabulary(text: text)
            let ids = try vocab.encode(text)
            return .tokens(ids.map { UInt16($0) }, vocabulary: vocab, vocabularySize: vocab.size)
        case "builtin:digits":
            return .images(try LabeledImages.synthetic(count: 6000, featureCount: 784, classCount: 10, seed: 7))
        default:
            break
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: source, isDirectory: &isDirectory) else {
            throw DatasetError(.fileNotFound, path: source, "dataset not found (give a text file, a .bin token file, a directory of MNIST IDX files, CIFAR-10 batches or images, or builtin:arithmetic)")
        }
        if isDirectory.boolValue {
            return .images(try loadImageDirectory(source, images: images))
        }
        if CIFAR10.isBatchFileName((source as NSString).lastPathComponent) {
            return .images(try CIFAR10.load(files: [source]))
        }
        if source.hasSuffix(".bin") {
            let tokens = try TokenFile.load(path: source)
            let size = Int(tokens.max() ?? 0) + 1
            return .tokens(tokens, vocabulary: nil, vocabularySize: size)
        }
        let (vocab, tokens) = try CharacterCorpus.load(path: source)
        return .tokens(tokens, vocabulary: vocab, vocabularySize: vocab.size)
    }

    /// A directory: an MNIST IDX pair, CIFAR-10 batches (or the archive's folder inside it),
    /// else a folder of images.
    private static func loadImageDirectory(_ source: String, images: ImageLoadOptions) throws -> LabeledImages {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: source).sorted()) ?? []
        if let imageFile = names.first(where: { $0.contains("images-idx3-ubyte") }),
           let labels = names.first(where: { $0.contains("labels-idx1-ubyte") && $0.hasPrefix(imageFile.components(separatedBy: "-images").first ?? "") })
            ?? names.first(where: { $0.contains("labels-idx1-ubyte") }) {
            return try LabeledImages.loadMNIST(images: "\(source)/\(imageFile)", labels: "\(source)/\(labels)")
        }
        if let files = CIFAR10.batchFiles(inDirectory: source) { return try CIFAR10.load(files: files) }
        if names.contains(CIFAR10.archiveFolder), let files = CIFAR10.batchFiles(inDirectory: "\(source)/\(CIFAR10.archiveFolder)") {
            return try CIFAR10.load(files: files)
        }
        do {
            return try ImageFolder.load(directory: source, size: images.size ?? ImageLoadOptions.folderDefaultSize,
                                        channels: images.channels ?? ImageLoadOptions.folderDefaultChannels)
        } catch let error as DatasetError where error.kind == .empty && error.path == source {
            throw DatasetError(.empty, path: source,
                               "directory holds no MNIST *-images-idx3-ubyte[.gz] and *-labels-idx1-ubyte[.gz] pair, no CIFAR-10 data_batch_N.bin or test_batch.bin, and no .png, .jpg or .jpeg images (searched recursively); check the path")
        }
    }

    /// Splits into training and validation samples: the tail of a token stream (as
    /// nanoGPT does), a seeded random subset of images. `randomFlip`: training images are
    /// mirrored at random (`RandomFlip` with `seed`); only images of a known geometry can be.
    public static func prepare(_ raw: RawDataset, name: String, blockSize: Int?, validationFraction: Double,
                               seed: UInt64, randomFlip: Bool = false) throws -> PreparedDataset {
        guard validationFraction > 0, validationFraction < 1 else {
            throw DatasetError(.invalidArgument, "validation fraction must lie strictly between 0 and 1 (got \(validationFraction))")
        }
        switch raw {
        case let .tokens(tokens, vocabulary, _):
            if randomFlip {
                throw DatasetError(.invalidArgument, path: name, "random flips are for images, and this dataset holds tokens; turn random_flip (--random-flip) off")
            }
            guard let blockSize, blockSize > 0 else {
                throw DatasetError(.invalidFormat, path: name, "a token dataset needs a positive block size")
            }
            let (train, validation) = DatasetSplit.tokens(tokens, validationFraction: validationFraction)
            for (part, split) in [("training", train), ("validation", validation)] where split.count < blockSize + 1 {
                throw DatasetError(.invalidArgument, path: name,
                                   "block_size \(blockSize) is larger than the data: the \(part) split holds \(split.count) tokens (\(tokens.count) in all, \(Int(validationFraction * 100))% held out for validation) and one sample needs block_size + 1; use a smaller --block-size or more data")
            }
            return PreparedDataset(name: name,
                                   train: .windows(try TokenWindows(tokens: train, blockSize: blockSize)),
                                   validation: .windows(try TokenWindows(tokens: validation, blockSize: blockSize)),
                                   vocabulary: vocabulary)
        case let .images(set):
            if randomFlip, set.geometry == nil {
                throw DatasetError(.invalidArgument, path: name, "random flips need images of a known layout (MNIST, CIFAR-10, an image folder), and these samples are plain feature vectors; turn random_flip (--random-flip) off")
            }
            let (train, validation) = set.split(validationFraction: validationFraction, seed: seed)
            return PreparedDataset(name: name, train: .images(train), validation: .images(validation), vocabulary: nil,
                                   trainingFlip: randomFlip ? RandomFlip(seed: seed) : nil)
        }
    }
}

/// Small corpora generated in code, so a fresh clone trains without downloading anything.
public enum BuiltinCorpus {
    /// Lines such as "37+48=85": a language a small GPT visibly learns (the loss falls
    /// well below the uniform entropy, and samples show correct sums).
    public static func arithmetic(lines: Int, seed: UInt64) -> String {
        var rng = SeededRandom(seed: seed)
        var out = ""
        out.reserveCapacity(lines * 10)
        for _ in 0..<lines {
            let a = rng.nextIndex(below: 100), b = rng.nextIndex(below: 100)
            out += "\(a)+\(b)=\(a + b)\n"
        }
        return out
    }
}
