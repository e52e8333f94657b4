import Foundation
import XCTest
@testable import TributaryData

final class LabeledImagesTests: XCTestCase {
    /// IDX bytes for `count` images of rows × columns (pixel i of image k = (k * 50 + i) % 256).
    static func idxImages(count: Int, rows: Int, columns: Int, magic: UInt32 = 0x0000_0803) -> [UInt8] {
        var b = be32(magic) + be32(UInt32(count)) + be32(UInt32(rows)) + be32(UInt32(columns))
        for k in 0..<count { for i in 0..<(rows * columns) { b.append(UInt8((k * 50 + i) % 256)) } }
        return b
    }

    static func idxLabels(_ labels: [UInt8], magic: UInt32 = 0x0000_0801) -> [UInt8] {
        be32(magic) + be32(UInt32(labels.count)) + labels
    }

    static func be32(_ v: UInt32) -> [UInt8] {
        [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)]
    }

    func testLoadsRawAndGzippedIDX() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        var images = Self.idxImages(count: 3, rows: 2, columns: 2)
        images[16] = 255  // image 0, pixel 0 -> 1.0
        images[17] = 51   // -> 0.2
        let labels = Self.idxLabels([7, 0, 9])
        // Mixed on purpose: detection is by magic bytes, not by file name.
        let imagePath = try dir.write(try gzipCompress(images), "images-idx3-ubyte")
        let labelPath = try dir.write(labels, "labels-idx1-ubyte.gz")
        let data = try LabeledImages.loadMNIST(images: imagePath, labels: labelPath)
        XCTAssertEqual(data.count, 3)
        XCTAssertEqual(data.featureCount, 4)
        XCTAssertEqual(data.classCount, 10)
        XCTAssertEqual(data.labels, [7, 0, 9])
        XCTAssertEqual(data.pixels.count, 12)
        XCTAssertEqual(data.pixels[0], 1.0)
        XCTAssertEqual(data.pixels[1], 0.2, accuracy: 1e-7)
        XCTAssertEqual(data.pixels[2], 2.0 / 255.0)
        XCTAssertEqual(data.pixels[4], 50.0 / 255.0)   // image 1 pixel 0
        XCTAssertEqual(data.pixels[11], 103.0 / 255.0) // image 2 pixel 3
    }

    func testHeaderValidation() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let goodImages = try dir.write(Self.idxImages(count: 2, rows: 3, columns: 3), "img")
        let goodLabels = try dir.write(Self.idxLabels([1, 2]), "lab")

        // Swapped files: each magic is checked.
        assertDatasetError(.invalidFormat, [goodLabels, "0x801", "swap"]) {
            try LabeledImages.loadMNIST(images: goodLabels, labels: goodImages)
        }
        let threeLabels = try dir.write(Self.idxLabels([1, 2, 3]), "lab3")
        assertDatasetError(.invalidFormat, [threeLabels, "3 labels", "2 images"]) {
            try LabeledImages.loadMNIST(images: goodImages, labels: threeLabels)
        }
        let badLabel = try dir.write(Self.idxLabels([1, 10]), "lab10")
        assertDatasetError(.invalidFormat, [badLabel, "label 1 is 10"]) {
            try LabeledImages.loadMNIST(images: goodImages, labels: badLabel)
        }
        let extraByte = try dir.write(Self.idxImages(count: 2, rows: 3, columns: 3) + [0], "img+1")
        assertDatasetError(.invalidFormat, [extraByte, "35 bytes", "exactly 34 bytes"]) {
            try LabeledImages.loadMNIST(images: extraByte, labels: goodLabels)
        }
        let short = try dir.write(Array(Self.idxImages(count: 2, rows: 3, columns: 3).dropLast()), "img-1")
        assertDatasetError(.invalidFormat, [short, "33 bytes"]) {
            try LabeledImages.loadMNIST(images: short, labels: goodLabels)
        }
        let zeroRows = try dir.write(Self.idxImages(count: 2, rows: 0, columns: 3), "img0")
        assertDatasetError(.invalidFormat, ["must be positive"]) {
            try LabeledImages.loadMNIST(images: zeroRows, labels: goodLabels)
        }
        // A header claiming 2^32-1 images of 2^32-1 squared pixels must not overflow or allocate.
        var huge = Self.be32(0x803) + Self.be32(.max) + Self.be32(.max) + Self.be32(.max)
        huge += [0, 0, 0]
        let hugePath = try dir.write(huge, "huge")
        assertDatasetError(.invalidFormat, [hugePath, "19 bytes"]) {
            try LabeledImages.loadMNIST(images: hugePath, labels: goodLabels)
        }
        let headerOnly = try dir.write([0, 0, 8, 3, 0], "tiny")
        assertDatasetError(.invalidFormat, ["shorter than the 16-byte IDX header"]) {
            try LabeledImages.loadMNIST(images: headerOnly, labels: goodLabels)
        }
        let truncatedGzip = try dir.write(Array(try gzipCompress(Self.idxLabels([1, 2])).dropLast(4)), "lab.gz")
        assertDatasetError(.invalidFormat, [truncatedGzip, "ends before"]) {
            try LabeledImages.loadMNIST(images: goodImages, labels: truncatedGzip)
        }
        let missing = dir.file("absent.gz")
        assertDatasetError(.fileNotFound, [missing]) { try LabeledImages.loadMNIST(images: missing, labels: goodLabels) }
        // The decompression limit applies to gzipped IDX files.
        let gzImages = try dir.write(try gzipCompress(Self.idxImages(count: 2, rows: 3, columns: 3)), "img.gz")
        assertDatasetError(.tooLarge, [gzImages]) {
            try LabeledImages.loadMNIST(images: gzImages, labels: goodLabels, maxDecompressedBytes: 20)
        }
    }

    func testSubsetAndFillBatch() throws {
        let data = try LabeledImages(count: 3, featureCount: 2, classCount: 4,
                                     pixels: [0, 1, 10, 11, 20, 21], labels: [3, 1, 2])
        let (x, y) = imageBatch(data, [2, 0, 2])
        XCTAssertEqual(x, [20, 21, 0, 1, 20, 21])
        XCTAssertEqual(y, [2, 3, 2])
        let sub = data.subset([1, 2])
        XCTAssertEqual(sub.count, 2)
        XCTAssertEqual(sub.featureCount, 2)
        XCTAssertEqual(sub.classCount, 4)
        XCTAssertEqual(sub.pixels, [10, 11, 20, 21])
        XCTAssertEqual(sub.labels, [1, 2])
        XCTAssertEqual(data.subset([]).count, 0)

        assertDatasetError(.invalidArgument, ["shape mismatch"]) {
            try LabeledImages(count: 2, featureCount: 2, classCount: 4, pixels: [0, 1, 2], labels: [0, 1])
        }
        assertDatasetError(.invalidArgument, ["label 4"]) {
            try LabeledImages(count: 1, featureCount: 1, classCount: 4, pixels: [0], labels: [4])
        }
    }

    func testSeededSplit() throws {
        let n = 100
        let data = try LabeledImages(count: n, featureCount: 1, classCount: 10,
                                     pixels: (0..<n).map(Float.init), labels: (0..<n).map { Int32($0 % 10) })
        let (train, val) = data.split(validationFraction: 0.25, seed: 42)
        XCTAssertEqual(train.count, 75)
        XCTAssertEqual(val.count, 25)
        // Disjoint and together exactly the original rows; each part keeps file order.
        let all = (train.pixels + val.pixels).sorted()
        XCTAssertEqual(all, (0..<n).map(Float.init))
        XCTAssertEqual(train.pixels, train.pixels.sorted())
        XCTAssertEqual(val.pixels, val.pixels.sorted())
        for (p, l) in zip(val.pixels, val.labels) { XCTAssertEqual(Int32(Int(p) % 10), l) }
        // Deterministic for a seed, different across seeds, and not simply the tail.
        XCTAssertEqual(data.split(validationFraction: 0.25, seed: 42).validation.pixels, val.pixels)
        XCTAssertNotEqual(data.split(validationFraction: 0.25, seed: 43).validation.pixels, val.pixels)
        XCTAssertNotEqual(val.pixels, (75..<100).map(Float.init))
        XCTAssertEqual(data.split(validationFraction: 0, seed: 1).train.count, 100)
        XCTAssertEqual(data.split(validationFraction: 1, seed: 1).validation.count, 100)
    }

    func testSyntheticIsDeterministicAndLearnable() throws {
        let a = try LabeledImages.synthetic(count: 600, featureCount: 16, classCount: 5, seed: 7)
        let b = try LabeledImages.synthetic(count: 600, featureCount: 16, classCount: 5, seed: 7)
        let c = try LabeledImages.synthetic(count: 600, featureCount: 16, classCount: 5, seed: 8)
        XCTAssertEqual(a.pixels, b.pixels)
        XCTAssertEqual(a.labels, b.labels)
        XCTAssertNotEqual(a.pixels, c.pixels)
        XCTAssertEqual(a.pixels.count, 600 * 16)
        XCTAssertTrue(a.pixels.allSatisfy { $0 >= 0 && $0 <= 1 })
        XCTAssertEqual(Set(a.labels), Set(0..<5))

        // Learnable: class centroids from the first half classify the second half almost perfectly.
        let f = a.featureCount
        var centroids = [[Float]](repeating: [Float](repeating: 0, count: f), count: 5)
        var counts = [Float](repeating: 0, count: 5)
        for i in 0..<300 {
            let l = Int(a.labels[i])
            counts[l] += 1
            for j in 0..<f { centroids[l][j] += a.pixels[i * f + j] }
        }
        for l in 0..<5 { for j in 0..<f { centroids[l][j] /= max(counts[l], 1) } }
        var correct = 0
        for i in 300..<600 {
            let distances = (0..<5).map { l in
                (0..<f).reduce(Float(0)) { s, j in let d = a.pixels[i * f + j] - centroids[l][j]; return s + d * d }
            }
            if distances.firstIndex(of: distances.min() ?? 0) == Int(a.labels[i]) { correct += 1 }
        }
        XCTAssertGreaterThan(correct, 285, "nearest-centroid accuracy \(correct)/300")

        assertDatasetError(.invalidArgument) { try LabeledImages.synthetic(count: 10, featureCount: 0, classCount: 2, seed: 1) }
    }
}
