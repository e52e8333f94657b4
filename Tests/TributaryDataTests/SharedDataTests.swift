import XCTest
@testable import TributaryData

/// Checks against the real data sets in shared/data; skipped where they are absent.
final class SharedDataTests: XCTestCase {
    func testTinyShakespeare() throws {
        let path = try sharedDataFile("tinyshakespeare/input.txt")
        let (vocab, tokens) = try CharacterCorpus.load(path: path)
        XCTAssertEqual(vocab.size, 65)
        XCTAssertEqual(vocab.symbols.joined(),
                       "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
        XCTAssertEqual(tokens.count, 1_115_394)
        // The ids nanoGPT's prepare.py prints for the opening "First Citizen".
        let first: [Int32] = [18, 47, 56, 57, 58, 1, 15, 47, 58, 47, 64, 43, 52]
        XCTAssertEqual(tokens.prefix(13).map(Int32.init), first)
        XCTAssertEqual(try vocab.encode("First Citizen"), first)
        XCTAssertEqual(vocab.decode(first), "First Citizen")
        XCTAssertEqual(vocab.decode(tokens.prefix(200).map(Int32.init)).prefix(14), "First Citizen:")
        // nanoGPT's 90/10 split of this file: 1,003,854 train and 111,540 validation tokens.
        let (train, val) = DatasetSplit.tokens(tokens, validationFraction: 0.1)
        XCTAssertEqual(train.count, 1_003_854)
        XCTAssertEqual(val.count, 111_540)
        let windows = try TokenWindows(tokens: train, blockSize: 256)
        XCTAssertEqual(windows.sampleCount, (1_003_854 - 1) / 256)
    }

    func testMNISTTestSet() throws {
        let images = try sharedDataFile("mnist/t10k-images-idx3-ubyte.gz")
        let labels = try sharedDataFile("mnist/t10k-labels-idx1-ubyte.gz")
        let data = try LabeledImages.loadMNIST(images: images, labels: labels)
        XCTAssertEqual(data.count, 10_000)
        XCTAssertEqual(data.featureCount, 784)
        XCTAssertEqual(data.classCount, 10)
        XCTAssertEqual(data.pixels.count, 7_840_000)
        var histogram = [Int](repeating: 0, count: 10)
        for l in data.labels { histogram[Int(l)] += 1 }
        XCTAssertEqual(histogram.reduce(0, +), 10_000)
        // The published class counts of the MNIST test set.
        XCTAssertEqual(histogram, [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])
        XCTAssertEqual(Array(data.labels.prefix(5)), [7, 2, 1, 0, 4])
        XCTAssertEqual(data.pixels.min(), 0)
        XCTAssertEqual(data.pixels.max(), 1)
        // Every pixel is k/255 for an integer k.
        XCTAssertTrue(data.pixels.allSatisfy { abs(($0 * 255).rounded() - $0 * 255) < 1e-3 })
    }
}
