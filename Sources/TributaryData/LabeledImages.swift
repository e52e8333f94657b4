import TributaryTensor

/// A classification data set held in memory: `count` rows of `featureCount` floats plus a label each.
public struct LabeledImages: Sendable {
    public let count: Int
    public let featureCount: Int
    public let classCount: Int
    /// Row-major [count, featureCount]; MNIST pixels are scaled to [0, 1].
    public let pixels: [Float]
    /// Class ids in 0..<classCount.
    public let labels: [Int32]
    /// What a row is as an image (nil: a plain feature vector, e.g. the synthetic data),
    /// needed to flip images; `geometry.valueCount == featureCount`.
    public let geometry: ImageGeometry?

    /// Wraps existing arrays, checking that their sizes and labels agree with the shape.
    public init(count: Int, featureCount: Int, classCount: Int, pixels: [Float], labels: [Int32],
                geometry: ImageGeometry? = nil) throws {
        guard count >= 0, featureCount > 0, classCount > 0 else {
            throw DatasetError(.invalidArgument,
                               "labeled data needs count >= 0, featureCount > 0 and classCount > 0 (got \(count), \(featureCount), \(classCount))")
        }
        let (total, overflow) = count.multipliedReportingOverflow(by: featureCount)
        guard !overflow, pixels.count == total, labels.count == count else {
            throw DatasetError(.invalidArgument,
                               "labeled data shape mismatch: \(count) × \(featureCount) needs \(count) labels and that many features, got \(labels.count) labels and \(pixels.count) values")
        }
        if let bad = labels.first(where: { $0 < 0 || Int($0) >= classCount }) {
            throw DatasetError(.invalidArgument, "label \(bad) is outside 0..<\(classCount)")
        }
        if let geometry, geometry.valueCount != featureCount {
            throw DatasetError(.invalidArgument, "images of \(geometry) do not make rows of \(featureCount) values")
        }
        self.init(unchecked: count, featureCount, classCount, pixels, labels, geometry: geometry)
    }

    init(unchecked count: Int, _ featureCount: Int, _ classCount: Int, _ pixels: [Float], _ labels: [Int32],
         geometry: ImageGeometry? = nil) {
        self.count = count
        self.featureCount = featureCount
        self.classCount = classCount
        self.pixels = pixels
        self.labels = labels
        self.geometry = geometry
    }

    /// The rows at `indices`, in that order (indices must be in 0..<count; repeats allowed).
    public func subset(_ indices: [Int]) -> LabeledImages {
        let n = indices.count
        var outPixels = [Float](repeating: 0, count: n * featureCount)
        var outLabels = [Int32](repeating: 0, count: n)
        outPixels.withUnsafeMutableBufferPointer { px in
            outLabels.withUnsafeMutableBufferPointer { lb in
                if let pxBase = px.baseAddress, let lbBase = lb.baseAddress {
                    fillBatch(indices: indices, inputs: pxBase, targets: lbBase)
                }
            }
        }
        return LabeledImages(unchecked: n, featureCount, classCount, outPixels, outLabels, geometry: geometry)
    }

    /// Copies the rows at `indices` into `inputs` ([indices.count, featureCount], row-major) and their
    /// labels into `targets` ([indices.count]). The caller owns buffers of at least that size.
    /// With `flip`, a row whose coin comes up in `epoch` (`RandomFlip.isFlipped`, decided by the
    /// sample's index here) is copied mirrored left-right; that needs a `geometry`, which
    /// `RandomFlip`'s callers check first (`DatasetSource.prepare`).
    public func fillBatch(indices: [Int], inputs: UnsafeMutablePointer<Float>, targets: UnsafeMutablePointer<Int32>,
                          flip: RandomFlip? = nil, epoch: Int = 0) {
        let f = featureCount
        precondition(flip == nil || geometry != nil, "random flips need images of a known geometry")
        let planes = geometry.map { $0.channels * $0.height } ?? 0, width = geometry?.width ?? 0
        pixels.withUnsafeBufferPointer { src in
            labels.withUnsafeBufferPointer { lab in
                guard let srcBase = src.baseAddress else { return }
                for (row, index) in indices.enumerated() {
                    precondition(index >= 0 && index < count, "sample index \(index) is outside 0..<\(count)")
                    let out = inputs + row * f, from = srcBase + index * f
                    targets[row] = lab[index]
                    guard let flip, flip.isFlipped(sample: index, epoch: epoch) else {
                        out.update(from: from, count: f)
                        continue
                    }
                    // Every row of every channel plane reversed.
                    for line in 0..<planes {
                        let o = out + line * width, s = from + line * width
                        for x in 0..<width { o[x] = s[width - 1 - x] }
                    }
                }
            }
        }
    }

    /// A seeded, reproducible split: `validationFraction` of the rows (rounded down) chosen by a
    /// `SeededRandom` permutation go to validation, the rest to training; each part keeps file order.
    public func split(validationFraction: Double, seed: UInt64) -> (train: LabeledImages, validation: LabeledImages) {
        let fraction = validationFraction.isNaN ? 0 : min(1, max(0, validationFraction))
        let validationCount = min(count, Int(Double(count) * fraction))
        var rng = SeededRandom(seed: seed)
        let order = rng.permutation(count: count)
        let validation = order[..<validationCount].sorted()
        let train = order[validationCount...].sorted()
        return (subset(train), subset(validation))
    }

    /// A learnable toy problem for tests and demos without files: each class has a random prototype
    /// in [0,1]^featureCount and samples are prototype + Gaussian noise (σ = 0.15), clamped to [0, 1].
    public static func synthetic(count: Int, featureCount: Int, classCount: Int, seed: UInt64) throws -> LabeledImages {
        guard count >= 0, featureCount > 0, classCount > 0 else {
            throw DatasetError(.invalidArgument,
                               "synthetic data needs count >= 0, featureCount > 0 and classCount > 0 (got \(count), \(featureCount), \(classCount))")
        }
        guard classCount <= Int(Int32.max), !count.multipliedReportingOverflow(by: featureCount).overflow,
              !classCount.multipliedReportingOverflow(by: featureCount).overflow else {
            throw DatasetError(.tooLarge, "synthetic data of \(count) × \(featureCount) (\(classCount) classes) is too large")
        }
        var protoRng = SeededRandom(seed: seed, stream: 0)
        var prototypes = [Float](repeating: 0, count: classCount * featureCount)
        for i in 0..<prototypes.count { prototypes[i] = protoRng.nextUnitFloat() }
        var rng = SeededRandom(seed: seed, stream: 1)
        var pixels = [Float](repeating: 0, count: count * featureCount)
        var labels = [Int32](repeating: 0, count: count)
        pixels.withUnsafeMutableBufferPointer { px in
            prototypes.withUnsafeBufferPointer { proto in
                for i in 0..<count {
                    let label = rng.nextIndex(below: classCount)
                    labels[i] = Int32(label)
                    for j in 0..<featureCount {
                        let v = proto[label * featureCount + j] + 0.15 * rng.nextGaussian()
                        px[i * featureCount + j] = min(1, max(0, v))
                    }
                }
            }
        }
        return LabeledImages(unchecked: count, featureCount, classCount, pixels, labels)
    }
}

// MARK: - MNIST (IDX format)

extension LabeledImages {
    /// Decompressed IDX files larger than this are refused (the MNIST training images are 47 MB).
    public static let defaultMaxDecompressedBytes = 1 << 30

    /// Loads an MNIST-style pair of IDX files (`*-images-idx3-ubyte`, `*-labels-idx1-ubyte`), each
    /// raw or gzipped (detected by the 1f 8b magic, not by the file name). Pixels become value / 255.
    public static func loadMNIST(images: String, labels: String,
                                 maxDecompressedBytes: Int = defaultMaxDecompressedBytes) throws -> LabeledImages {
        let imageBytes = try readIDXFile(images, what: "MNIST images", maxBytes: maxDecompressedBytes)
        let labelBytes = try readIDXFile(labels, what: "MNIST labels", maxBytes: maxDecompressedBytes)
        let imageSet: (count: Int, rows: Int, columns: Int)
        do {
            imageSet = try parseIDXImagesHeader(imageBytes)
        } catch let error as DatasetError {
            throw error.at(images)
        }
        let labelValues: [Int32]
        do {
            labelValues = try parseIDXLabels(labelBytes, classCount: 10)
        } catch let error as DatasetError {
            throw error.at(labels)
        }
        guard labelValues.count == imageSet.count else {
            throw DatasetError(.invalidFormat, path: labels,
                               "has \(labelValues.count) labels but \(images) has \(imageSet.count) images; use the matching pair of files")
        }
        let featureCount = imageSet.rows * imageSet.columns
        let total = imageSet.count * featureCount  // checked against the byte length in the header parser
        let pixels = [Float](unsafeUninitializedCapacity: total) { out, initialized in
            imageBytes.withUnsafeBufferPointer { src in
                // The header parser guaranteed 16 + total bytes.
                guard let base = src.baseAddress else { return }
                let body = base + 16
                // k / 255 exactly as torchvision's ToTensor divides, via a table instead of a division per pixel.
                let table = (0..<256).map { Float($0) / 255 }
                table.withUnsafeBufferPointer { scale in
                    for i in 0..<total { out[i] = scale[Int(body[i])] }
                }
                initialized = total
            }
        }
        return LabeledImages(unchecked: imageSet.count, featureCount, 10, pixels, labelValues,
                             geometry: ImageGeometry(channels: 1, height: imageSet.rows, width: imageSet.columns))
    }

    static func readIDXFile(_ path: String, what: String, maxBytes: Int) throws -> [UInt8] {
        let raw = try readFileBytes(path, what: what)
        guard Gzip.isGzip(raw) else { return raw }
        do {
            return try Gzip.decompress(raw, maxOutputBytes: maxBytes)
        } catch let error as DatasetError {
            throw error.at(path)
        }
    }

    static func bigEndian32(_ b: [UInt8], _ at: Int) -> Int {
        Int(b[at]) << 24 | Int(b[at + 1]) << 16 | Int(b[at + 2]) << 8 | Int(b[at + 3])
    }

    /// Validates an idx3-ubyte image file and returns its dimensions; the pixels follow the 16-byte header.
    static func parseIDXImagesHeader(_ b: [UInt8]) throws -> (count: Int, rows: Int, columns: Int) {
        // The magic first: a labels file passed as images is the likeliest mistake and is short.
        if b.count >= 4, bigEndian32(b, 0) != 0x0000_0803 {
            throw DatasetError(.invalidFormat,
                               "not an MNIST image file: IDX magic is 0x\(String(bigEndian32(b, 0), radix: 16)), expected 0x803 (unsigned bytes, 3 dimensions); did you swap the images and labels files?")
        }
        guard b.count >= 16 else {
            throw DatasetError(.invalidFormat,
                               "MNIST image file is \(b.count) bytes, shorter than the 16-byte IDX header; the file is truncated, download it again")
        }
        let count = bigEndian32(b, 4), rows = bigEndian32(b, 8), columns = bigEndian32(b, 12)
        guard count > 0, rows > 0, columns > 0 else {
            throw DatasetError(.invalidFormat,
                               "MNIST image file has dimensions \(count) × \(rows) × \(columns); every dimension must be positive")
        }
        // All three are below 2^32, so the products fit in 64-bit Int only with checks.
        let (perImage, o1) = rows.multipliedReportingOverflow(by: columns)
        let (body, o2) = count.multipliedReportingOverflow(by: perImage)
        guard !o1, !o2, body <= Int.max - 16, b.count == 16 + body else {
            let needed = !o1 && !o2 && body <= Int.max - 16 ? "exactly \(16 + body) bytes" : "more bytes than can exist"
            throw DatasetError(.invalidFormat,
                               "MNIST image file is \(b.count) bytes but its header (\(count) images of \(rows) × \(columns)) needs \(needed); the file is truncated or corrupt, download it again")
        }
        return (count, rows, columns)
    }

    /// Validates an idx1-ubyte label file and returns its labels, each below `classCount`.
    static func parseIDXLabels(_ b: [UInt8], classCount: Int) throws -> [Int32] {
        if b.count >= 4, bigEndian32(b, 0) != 0x0000_0801 {
            throw DatasetError(.invalidFormat,
                               "not an MNIST label file: IDX magic is 0x\(String(bigEndian32(b, 0), radix: 16)), expected 0x801 (unsigned bytes, 1 dimension); did you swap the images and labels files?")
        }
        guard b.count >= 8 else {
            throw DatasetError(.invalidFormat,
                               "MNIST label file is \(b.count) bytes, shorter than the 8-byte IDX header; the file is truncated, download it again")
        }
        let count = bigEndian32(b, 4)
        guard count > 0, b.count - 8 == count else {
            throw DatasetError(.invalidFormat,
                               "MNIST label file is \(b.count) bytes but its header says \(count) labels, which needs exactly \(8 + count) bytes; the file is truncated or corrupt, download it again")
        }
        var labels = [Int32](repeating: 0, count: count)
        for i in 0..<count {
            let v = b[8 + i]
            guard Int(v) < classCount else {
                throw DatasetError(.invalidFormat,
                                   "MNIST label \(i) is \(v), outside 0..<\(classCount); the file is corrupt, download it again")
            }
            labels[i] = Int32(v)
        }
        return labels
    }
}
