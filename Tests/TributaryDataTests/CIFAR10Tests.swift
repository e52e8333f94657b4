import Foundation
import XCTest
@testable import TributaryData

/// CIFAR-10's binary batches: records built here byte by byte, loaded exactly (label, then the
/// R, G and B planes as they lie in the file, / 255), files chosen and ordered by name, and a
/// clear error for a truncated file or a label above 9.
final class CIFAR10Tests: XCTestCase {
    /// `count` records with labels `labelOf(i)`; pixel j of record i is (i·7 + j·13) mod 256.
    private func records(_ count: Int, first: Int = 0, labelOf: (Int) -> UInt8 = { UInt8($0 % 10) }) -> [UInt8] {
        var bytes: [UInt8] = []
        for i in first..<(first + count) {
            bytes.append(labelOf(i))
            bytes += (0..<3072).map { UInt8(truncatingIfNeeded: i &* 7 &+ $0 &* 13) }
        }
        return bytes
    }

    func testLoadsRecordsExactlyWithTheirGeometry() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let path = try dir.write(records(3), "data_batch_1.bin")
        let set = try CIFAR10.load(files: [path])
        XCTAssertEqual(set.count, 3)
        XCTAssertEqual(set.featureCount, 3072)
        XCTAssertEqual(set.classCount, 10)
        XCTAssertEqual(set.labels, [0, 1, 2])
        XCTAssertEqual(set.geometry, ImageGeometry(channels: 3, height: 32, width: 32))
        // Record 2: red plane first (value at (y, x) is byte 1 + y·32 + x), then green, then blue.
        XCTAssertEqual(set.pixels[2 * 3072 + 0], Float(14) / 255)               // 2·7
        XCTAssertEqual(set.pixels[2 * 3072 + 1024 + 33], Float((14 + 1057 * 13) % 256) / 255)  // green (1, 1)
        for (i, v) in set.pixels.enumerated() {
            let record = i / 3072, j = i % 3072
            XCTAssertEqual(v, Float((record * 7 + j * 13) % 256) / 255)
        }
    }

    func testADirectoryLoadsTheTrainingBatchesInNumberOrderAndNotTheTestBatch() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        _ = try dir.write(records(1, first: 10, labelOf: { _ in 9 }), "data_batch_10.bin")
        _ = try dir.write(records(2, first: 0, labelOf: { _ in 1 }), "data_batch_1.bin")
        _ = try dir.write(records(1, first: 5, labelOf: { _ in 2 }), "data_batch_2.bin")
        _ = try dir.write(records(4, labelOf: { _ in 7 }), "test_batch.bin")
        _ = try dir.write([1, 2, 3], "batches.meta.txt")
        let files = try XCTUnwrap(CIFAR10.batchFiles(inDirectory: dir.path))
        XCTAssertEqual(files.map { ($0 as NSString).lastPathComponent }, ["data_batch_1.bin", "data_batch_2.bin", "data_batch_10.bin"])
        let set = try CIFAR10.load(files: files)
        XCTAssertEqual(set.labels, [1, 1, 2, 9])
        XCTAssertEqual(set.pixels[3 * 3072], Float(70) / 255, "the record of data_batch_10 comes last")

        let testOnly = try TemporaryDirectory()
        defer { testOnly.cleanup() }
        XCTAssertNil(CIFAR10.batchFiles(inDirectory: testOnly.path))
        _ = try testOnly.write(records(2, labelOf: { _ in 4 }), "test_batch.bin")
        XCTAssertEqual(try CIFAR10.load(files: XCTUnwrap(CIFAR10.batchFiles(inDirectory: testOnly.path))).labels, [4, 4])
    }

    func testBatchFileNamesAreToldApartFromTokenFiles() {
        for name in ["data_batch_1.bin", "data_batch_5.bin", "data_batch_12.bin", "test_batch.bin"] {
            XCTAssertTrue(CIFAR10.isBatchFileName(name), name)
        }
        for name in ["train.bin", "val.bin", "data_batch_.bin", "data_batch_x.bin", "data_batch_1.bin.gz", "test_batch_1.bin", "data_batch_١.bin"] {
            XCTAssertFalse(CIFAR10.isBatchFileName(name), name)
        }
    }

    func testATruncatedFileIsRefusedWithItsNameBeforeAnythingIsRead() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let good = try dir.write(records(2), "data_batch_1.bin")
        let cut = try dir.write(Array(records(2).dropLast(5)), "data_batch_2.bin")
        assertDatasetError(.invalidFormat, [cut, "6141 bytes", "3073-byte records", "truncated", "download"]) {
            try CIFAR10.load(files: [good, cut])
        }
        let empty = try dir.write([], "data_batch_3.bin")
        assertDatasetError(.invalidFormat, [empty, "0 bytes"]) { try CIFAR10.load(files: [empty]) }
        assertDatasetError(.fileNotFound, [dir.file("data_batch_4.bin")]) { try CIFAR10.load(files: [dir.file("data_batch_4.bin")]) }
    }

    func testALabelAboveNineIsRefusedWithTheRecord() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let path = try dir.write(records(3, labelOf: { $0 == 1 ? 10 : 3 }), "test_batch.bin")
        assertDatasetError(.invalidFormat, [path, "record 1", "label 10", "outside 0…9"]) { try CIFAR10.load(files: [path]) }
    }
}
