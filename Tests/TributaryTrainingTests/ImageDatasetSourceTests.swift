import Foundation
import XCTest
import TributaryData
import TributaryModels
import TributaryTensor
@testable import TributaryTraining

/// `DatasetSource` for the image formats: CIFAR-10 and image folders found by what a path
/// holds, sized by what the model takes (or refused with one line when they cannot be), and
/// random flips carried from `prepare` into the training batches only.
final class ImageDatasetSourceTests: XCTestCase {
    override func setUp() { ComputeThreads.set(2) }

    private func write(_ bytes: [UInt8], _ path: String) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    /// `count` CIFAR-10 records: label i % 10, pixel j = (i + j) mod 256.
    private func cifarRecords(_ count: Int) -> [UInt8] {
        (0..<count).flatMap { i in [UInt8(i % 10)] + (0..<3072).map { UInt8(truncatingIfNeeded: i + $0) } }
    }

    func testAnImageFolderWithTwoClassesFeedsAUNet() throws {
        let dir = try ScratchDirectory("images")
        defer { dir.cleanup() }
        for i in 0..<4 {
            let rgb = (0..<(12 * 10)).flatMap { p -> [UInt8] in [UInt8(p % 12 * 20), UInt8(i * 40), 90] }
            try write(try PNGImage(width: 12, height: 10, channels: 3, pixels: rgb).encoded(), dir.file("circle/c\(i).png"))
            let gray = [UInt8](repeating: UInt8(60 + i * 30), count: 10 * 14)
            try write(try JPEGImage.encode(width: 10, height: 14, channels: 1, pixels: gray), dir.file("square/s\(i).jpg"))
        }
        let unet = UNetConfig(imageSize: 8, inChannels: 3, baseChannels: 4, channelMultipliers: [1, 2], blocksPerLevel: 1,
                              normGroups: 2, timesteps: 100, schedule: .cosine)
        let raw = try DatasetSource.load(dir.path, images: ImageLoadOptions(size: unet.imageSize, channels: unet.inChannels))
        guard case let .images(set) = raw else { return XCTFail("an image folder loads as images") }
        XCTAssertEqual(set.count, 8)
        XCTAssertEqual(set.classCount, 2)
        XCTAssertEqual(set.labels, [0, 0, 0, 0, 1, 1, 1, 1])
        XCTAssertEqual(set.geometry, ImageGeometry(channels: 3, height: 8, width: 8))
        XCTAssertEqual(set.featureCount, unet.pixelsPerSample)
        // The grayscale JPEGs became three equal planes.
        let s0 = Array(set.pixels[(4 * 192)..<(5 * 192)])
        XCTAssertEqual(Array(s0[0..<64]), Array(s0[64..<128]))
        XCTAssertLessThanOrEqual(abs(s0[0] * 255 - 60), 2)

        let data = try DatasetSource.prepare(raw, name: dir.path, blockSize: nil, validationFraction: 0.25, seed: 5, randomFlip: true)
        XCTAssertEqual(data.train.sampleCount, 6)
        XCTAssertEqual(data.trainingFlip, RandomFlip(seed: 5))
        let trainer = try Trainer(spec: ModelSpec(unet), data: data, options: trainingOptions(steps: 2, batchSize: 2, learningRate: 1e-3))
        let batch = data.trainingBatch([0, 1], epoch: 0)
        guard case let .features(inputs, _, count) = batch else { return XCTFail("a U-Net reads features") }
        XCTAssertEqual(count, 2)
        XCTAssertEqual(inputs.count, 2 * 192, "a U-Net batch is images × size² × channels wide")
        for _ in 0..<2 {
            let report = try trainer.trainStep()
            XCTAssertTrue(report.loss.isFinite && report.loss > 0, "\(report.loss)")
        }
    }

    func testTrainingBatchesFlipByEpochAndValidationBatchesNever() throws {
        let pixels = (0..<(20 * 12)).map { Float($0 % 97) / 255 }
        let set = try LabeledImages(count: 20, featureCount: 12, classCount: 1, pixels: pixels, labels: [Int32](repeating: 0, count: 20),
                                    geometry: ImageGeometry(channels: 1, height: 3, width: 4))
        let data = try DatasetSource.prepare(.images(set), name: "flips", blockSize: nil, validationFraction: 0.2, seed: 9, randomFlip: true)
        let indices = Array(0..<data.train.sampleCount)
        let flip = RandomFlip(seed: 9)
        for epoch in 0..<3 {
            guard case let .features(flipped, _, _) = data.trainingBatch(indices, epoch: epoch),
                  case let .features(plain, _, _) = data.train.batch(indices) else { return XCTFail("features") }
            for i in indices {
                let row = Array(plain[(i * 12)..<((i + 1) * 12)])
                let mirrored = (0..<3).flatMap { y in row[(y * 4)..<(y * 4 + 4)].reversed() }
                XCTAssertEqual(Array(flipped[(i * 12)..<((i + 1) * 12)]), flip.isFlipped(sample: i, epoch: epoch) ? mirrored : row,
                               "sample \(i), epoch \(epoch)")
            }
        }
        XCTAssertNotEqual(indices.filter { flip.isFlipped(sample: $0, epoch: 0) }, indices.filter { flip.isFlipped(sample: $0, epoch: 1) })
        // Validation goes through `validation.batch`, which takes no flip; without the option nothing flips.
        let plainData = try DatasetSource.prepare(.images(set), name: "flips", blockSize: nil, validationFraction: 0.2, seed: 9)
        XCTAssertNil(plainData.trainingFlip)
        guard case let .features(a, _, _) = plainData.trainingBatch(indices, epoch: 1),
              case let .features(b, _, _) = plainData.train.batch(indices) else { return XCTFail("features") }
        XCTAssertEqual(a, b)
    }

    func testRandomFlipIsRefusedWithoutImages() throws {
        for source in ["builtin:digits", "builtin:arithmetic"] {
            let raw = try DatasetSource.load(source)
            XCTAssertThrowsError(try DatasetSource.prepare(raw, name: source, blockSize: 8, validationFraction: 0.1, seed: 1, randomFlip: true)) { error in
                XCTAssertTrue("\(error)".contains("random_flip (--random-flip) off"), "\(error)")
            }
        }
    }

    func testCIFARIsFoundByFileNamesAndOtherBinFilesStayTokens() throws {
        let dir = try ScratchDirectory("cifar")
        defer { dir.cleanup() }
        try write(cifarRecords(3), dir.file("cifar-10-batches-bin/data_batch_1.bin"))
        try write(cifarRecords(2), dir.file("cifar-10-batches-bin/test_batch.bin"))
        for source in [dir.path, dir.file("cifar-10-batches-bin"), dir.file("cifar-10-batches-bin/data_batch_1.bin")] {
            guard case let .images(set) = try DatasetSource.load(source) else { return XCTFail("\(source) holds CIFAR-10") }
            XCTAssertEqual(set.count, 3, source)
            XCTAssertEqual(set.geometry, ImageGeometry(channels: 3, height: 32, width: 32))
            XCTAssertEqual(set.pixels[3072 + 5], Float(6) / 255)
            XCTAssertEqual(set.labels, [0, 1, 2])
        }
        guard case let .images(test) = try DatasetSource.load(dir.file("cifar-10-batches-bin/test_batch.bin")) else { return XCTFail("test batch") }
        XCTAssertEqual(test.count, 2)
        // The same 3073-byte records in a file of another name are nanoGPT tokens.
        try write(cifarRecords(2), dir.file("train.bin"))
        guard case let .tokens(tokens, _, _) = try DatasetSource.load(dir.file("train.bin")) else { return XCTFail("train.bin holds tokens") }
        XCTAssertEqual(tokens.count, 3073)
        // A U-Net of CIFAR's geometry loads it; one of another is refused in one line that says what to set.
        XCTAssertNoThrow(try DatasetSource.load(dir.path, images: ImageLoadOptions(size: 32, channels: 3)))
        XCTAssertThrowsError(try DatasetSource.load(dir.path, images: ImageLoadOptions(size: 28, channels: 1))) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("the dataset's images are 32×32×3 but the model expects 28×28×1; set"), text)
            XCTAssertTrue(text.contains("model.image_size") && text.contains("--image-size"), text)
            XCTAssertFalse(text.contains("\n"), text)
        }
        XCTAssertThrowsError(try DatasetSource.load(dir.path, images: ImageLoadOptions(channels: 1))) { error in
            XCTAssertTrue("\(error)".contains("32×32×3 but the model expects 32×32×1"), "\(error)")
        }
        XCTAssertThrowsError(try DatasetSource.load("builtin:digits", images: ImageLoadOptions(size: 32, channels: 1))) { error in
            XCTAssertTrue("\(error)".contains("784 values but the model expects 32×32×1"), "\(error)")
        }
    }

    func testATruncatedCIFARFileAndAnEmptyDirectoryAreOneClearError() throws {
        let dir = try ScratchDirectory("cifar-bad")
        defer { dir.cleanup() }
        XCTAssertThrowsError(try DatasetSource.load(dir.path)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.hasPrefix("\(dir.path): directory holds no MNIST"), text)
            XCTAssertTrue(text.contains("CIFAR-10") && text.contains(".png, .jpg or .jpeg"), text)
        }
        try write(Array(cifarRecords(2).dropLast(1000)), dir.file("data_batch_1.bin"))
        XCTAssertThrowsError(try DatasetSource.load(dir.path)) { error in
            XCTAssertTrue("\(error)".hasPrefix("\(dir.file("data_batch_1.bin")): CIFAR-10 batch file is 5146 bytes, not a whole number"), "\(error)")
        }
    }
}
