import Foundation
import XCTest
@testable import TributaryData

/// Seeded random horizontal flips: the coins are a function of (seed, epoch, sample) only,
/// about half come up, and a flipped row is exactly the mirrored image, plane by plane.
final class RandomFlipTests: XCTestCase {
    /// `count` images of 2 channels × 2 rows × 3 columns; value (i, c, y, x) = i·100 + c·10 + y·3 + x.
    private func images(_ count: Int) throws -> LabeledImages {
        func value(_ i: Int, _ v: Int) -> Float {
            let (c, y, x) = (v / 6, (v % 6) / 3, v % 3)
            return Float(i * 100 + c * 10 + y * 3 + x)
        }
        let pixels: [Float] = (0..<count).flatMap { i in (0..<12).map { value(i, $0) } }
        return try LabeledImages(count: count, featureCount: 12, classCount: 3, pixels: pixels,
                                 labels: (0..<count).map { Int32($0 % 3) }, geometry: ImageGeometry(channels: 2, height: 2, width: 3))
    }

    /// `fillBatch` with a flip into fresh arrays (pre-filled with -1 so unwritten slots show).
    private func batch(_ set: LabeledImages, _ indices: [Int], flip: RandomFlip, epoch: Int) -> (inputs: [Float], targets: [Int32]) {
        let n = indices.count * set.featureCount
        let x = UnsafeMutablePointer<Float>.allocate(capacity: n), y = UnsafeMutablePointer<Int32>.allocate(capacity: indices.count)
        defer { x.deallocate(); y.deallocate() }
        x.initialize(repeating: -1, count: n)
        y.initialize(repeating: -1, count: indices.count)
        set.fillBatch(indices: indices, inputs: x, targets: y, flip: flip, epoch: epoch)
        return (Array(UnsafeBufferPointer(start: x, count: n)), Array(UnsafeBufferPointer(start: y, count: indices.count)))
    }

    private func flipped(_ flip: RandomFlip, epoch: Int, count: Int) -> [Int] {
        (0..<count).filter { flip.isFlipped(sample: $0, epoch: epoch) }
    }

    func testTheCoinsDependOnSeedEpochAndSampleOnlyAndAboutHalfComeUp() {
        let flip = RandomFlip(seed: 1337)
        let epoch0 = flipped(flip, epoch: 0, count: 1000)
        XCTAssertEqual(flipped(RandomFlip(seed: 1337), epoch: 0, count: 1000), epoch0, "same seed and epoch, same flips")
        XCTAssertTrue((450...550).contains(epoch0.count), "\(epoch0.count) of 1000 flipped")
        let epoch1 = flipped(flip, epoch: 1, count: 1000)
        XCTAssertTrue((450...550).contains(epoch1.count), "\(epoch1.count) of 1000 flipped")
        // Independent coins agree on about half the samples; one shared stream would agree on all.
        let agree = Set(epoch0).symmetricDifference(epoch1).count
        XCTAssertTrue((400...600).contains(agree), "epochs 0 and 1 differ on \(agree) of 1000 samples")
        let otherSeed = flipped(RandomFlip(seed: 1338), epoch: 0, count: 1000)
        XCTAssertTrue((400...600).contains(Set(epoch0).symmetricDifference(otherSeed).count), "another seed, other flips")
        XCTAssertNotEqual(RandomFlip.flipStream(epoch: 0, sample: 1), RandomFlip.flipStream(epoch: 1, sample: 0))
        XCTAssertNotEqual(RandomFlip.flipStream(epoch: 0, sample: 0), 0, "not the epoch permutation's stream 0")
    }

    func testAFlippedRowIsTheMirroredImageAndTheRestAreCopies() throws {
        let set = try images(40)
        let flip = RandomFlip(seed: 7)
        let indices = Array((0..<40).reversed()) + [3, 3]
        for epoch in [0, 5] {
            let (x, y) = batch(set, indices, flip: flip, epoch: epoch)
            var mirrored = 0
            for (row, i) in indices.enumerated() {
                XCTAssertEqual(y[row], Int32(i % 3))
                let expected: [Float] = (0..<12).map { v in
                    let (c, y, x) = (v / 6, (v % 6) / 3, v % 3)
                    let sx = flip.isFlipped(sample: i, epoch: epoch) ? 2 - x : x
                    return Float(i * 100 + c * 10 + y * 3 + sx)
                }
                XCTAssertEqual(Array(x[(row * 12)..<((row + 1) * 12)]), expected, "sample \(i), epoch \(epoch)")
                if flip.isFlipped(sample: i, epoch: epoch) { mirrored += 1 }
            }
            XCTAssertTrue(mirrored > 5 && mirrored < indices.count - 5, "some of each: \(mirrored)")
        }
        // Sample 0, spelled out for whichever epoch flips it: row (0 1 2) becomes (2 1 0).
        let epoch = try XCTUnwrap((0..<64).first { flip.isFlipped(sample: 0, epoch: $0) })
        XCTAssertEqual(batch(set, [0], flip: flip, epoch: epoch).inputs, [2, 1, 0, 5, 4, 3, 12, 11, 10, 15, 14, 13])
        XCTAssertEqual(imageBatch(set, [0]).inputs, [0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15], "no flip asked, none made")
    }

    func testGeometryIsKeptBySplitsAndMustMatchTheRows() throws {
        let set = try images(10)
        let (train, validation) = set.split(validationFraction: 0.3, seed: 1)
        XCTAssertEqual(train.geometry, set.geometry)
        XCTAssertEqual(validation.geometry, set.geometry)
        assertDatasetError(.invalidArgument, ["2×2×2", "12 values"]) {
            try LabeledImages(count: 1, featureCount: 12, classCount: 1, pixels: [Float](repeating: 0, count: 12), labels: [0],
                              geometry: ImageGeometry(channels: 2, height: 2, width: 2))
        }
        XCTAssertNil(try LabeledImages.synthetic(count: 2, featureCount: 4, classCount: 2, seed: 1).geometry, "synthetic rows are no images")
    }
}
