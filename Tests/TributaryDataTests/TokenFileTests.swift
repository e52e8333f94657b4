import Foundation
import XCTest
@testable import TributaryData

final class TokenFileTests: XCTestCase {
    func testLittleEndianRoundTrip() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let path = dir.file("train.bin")
        try TokenFile.write([1, 258, 65535, 0], to: path)
        let raw = try Data(contentsOf: URL(fileURLWithPath: path))
        XCTAssertEqual(Array(raw), [0x01, 0x00, 0x02, 0x01, 0xFF, 0xFF, 0x00, 0x00])
        XCTAssertEqual(try TokenFile.load(path: path), [1, 258, 65535, 0])
    }

    func testReadsNumpyStyleBytes() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        // np.array([18, 47, 56, 1000], dtype=np.uint16).tofile(...)
        let path = try dir.write([18, 0, 47, 0, 56, 0, 0xE8, 0x03], "val.bin")
        XCTAssertEqual(try TokenFile.load(path: path), [18, 47, 56, 1000])
    }

    func testErrors() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let odd = try dir.write([1, 0, 2], "odd.bin")
        assertDatasetError(.invalidFormat, [odd, "3 bytes", "odd"]) { try TokenFile.load(path: odd) }
        let empty = try dir.write([], "empty.bin")
        assertDatasetError(.empty, [empty]) { try TokenFile.load(path: empty) }
        let missing = dir.file("missing.bin")
        assertDatasetError(.fileNotFound, [missing]) { try TokenFile.load(path: missing) }
        let unwritable = dir.file("no/such/dir/out.bin")
        assertDatasetError(.unwritable, [unwritable]) { try TokenFile.write([1], to: unwritable) }
    }
}

final class TokenWindowsTests: XCTestCase {
    func testWindowsAndBatch() throws {
        let windows = try TokenWindows(tokens: (0..<10).map(UInt16.init), blockSize: 3)
        XCTAssertEqual(windows.sampleCount, 3)  // (10 - 1) / 3
        let (inputs, targets) = tokenBatch(windows, [2, 0])
        XCTAssertEqual(inputs, [6, 7, 8, 0, 1, 2])
        XCTAssertEqual(targets, [7, 8, 9, 1, 2, 3])
    }

    func testExactlyOneWindowAndLargeIds() throws {
        let windows = try TokenWindows(tokens: [65535, 1, 40000], blockSize: 2)
        XCTAssertEqual(windows.sampleCount, 1)
        let (x, y) = tokenBatch(windows, [0])
        XCTAssertEqual(x, [65535, 1])
        XCTAssertEqual(y, [1, 40000])
    }

    func testBlockSizeLargerThanData() {
        assertDatasetError(.invalidArgument, ["block_size 8 is larger than the data", "9 tokens", "there are 8"]) {
            try TokenWindows(tokens: [UInt16](repeating: 0, count: 8), blockSize: 8)
        }
        assertDatasetError(.invalidArgument, ["block_size"]) { try TokenWindows(tokens: [1, 2, 3], blockSize: 0) }
    }

    func testTokenSplitMatchesNanoGPT() {
        let tokens = (0..<1000).map { UInt16($0) }
        let (train, val) = DatasetSplit.tokens(tokens, validationFraction: 0.1)
        XCTAssertEqual(train.count, 900)
        XCTAssertEqual(val.count, 100)
        XCTAssertEqual(train.last, 899)
        XCTAssertEqual(val.first, 900)
        // int(n * 0.9) rounds down: 15 tokens -> 13 train, 2 validation.
        let small = DatasetSplit.tokens((0..<15).map { UInt16($0) }, validationFraction: 0.1)
        XCTAssertEqual(small.train.count, 13)
        XCTAssertEqual(small.validation, [13, 14])
        XCTAssertEqual(DatasetSplit.tokens([1, 2], validationFraction: 0).validation, [])
        XCTAssertEqual(DatasetSplit.tokens([1, 2], validationFraction: 5).train, [])
    }
}
