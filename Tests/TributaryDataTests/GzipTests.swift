import Foundation
import XCTest
@testable import TributaryData

final class GzipTests: XCTestCase {
    /// Python's gzip.compress(b"hello tributary\n", mtime=0): a fixture made outside zlib's deflate here.
    static let fixture: [UInt8] = [
        0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0xcb, 0x48, 0xcd, 0xc9, 0xc9, 0x57,
        0x28, 0x29, 0xca, 0x4c, 0x2a, 0x2d, 0x49, 0x2c, 0xaa, 0xe4, 0x02, 0x00, 0x93, 0x56, 0x6b, 0x56,
        0x10, 0x00, 0x00, 0x00,
    ]

    func testKnownFixture() throws {
        XCTAssertTrue(Gzip.isGzip(Self.fixture))
        XCTAssertEqual(try Gzip.decompress(Self.fixture, maxOutputBytes: 100), Array("hello tributary\n".utf8))
        // Exactly the output size is allowed; one byte less is not.
        XCTAssertEqual(try Gzip.decompress(Self.fixture, maxOutputBytes: 16).count, 16)
        assertDatasetError(.tooLarge, ["more than 15 bytes"]) { try Gzip.decompress(Self.fixture, maxOutputBytes: 15) }
    }

    func testIsGzip() {
        XCTAssertFalse(Gzip.isGzip([]))
        XCTAssertFalse(Gzip.isGzip([0x1f]))
        XCTAssertFalse(Gzip.isGzip([0x00, 0x00, 0x08, 0x03]))
        XCTAssertTrue(Gzip.isGzip([0x1f, 0x8b]))
    }

    func testRoundTripLargerThanOneChunk() throws {
        // 1 MB of varied bytes so the output crosses several 256 KB inflate chunks.
        var rng = SystemRandomNumberGenerator()
        var data = [UInt8](repeating: 0, count: 1 << 20)
        for i in 0..<data.count { data[i] = i % 7 == 0 ? UInt8.random(in: 0...255, using: &rng) : UInt8(i % 251) }
        let compressed = try gzipCompress(data)
        XCTAssertTrue(Gzip.isGzip(compressed))
        XCTAssertLessThan(compressed.count, data.count)
        XCTAssertEqual(try Gzip.decompress(compressed, maxOutputBytes: data.count), data)
    }

    func testConcatenatedMembersAndZeroPadding() throws {
        let a = try gzipCompress(Array("first ".utf8)), b = try gzipCompress(Array("second".utf8))
        XCTAssertEqual(try Gzip.decompress(a + b, maxOutputBytes: 1000), Array("first second".utf8))
        XCTAssertEqual(try Gzip.decompress(a + [0, 0, 0, 0], maxOutputBytes: 1000), Array("first ".utf8))
        assertDatasetError(.invalidFormat, ["3 unexpected bytes"]) {
            try Gzip.decompress(a + [1, 2, 3], maxOutputBytes: 1000)
        }
    }

    func testDecompressionBombIsRefused() throws {
        let zeros = [UInt8](repeating: 0, count: 8 << 20)
        let bomb = try gzipCompress(zeros, level: 9)
        XCTAssertLessThan(bomb.count, 20_000)  // 8 MB of zeros shrinks roughly 1000:1
        assertDatasetError(.tooLarge, ["more than 1048576 bytes", "decompression bomb"]) {
            try Gzip.decompress(bomb, maxOutputBytes: 1 << 20)
        }
        XCTAssertEqual(try Gzip.decompress(bomb, maxOutputBytes: 8 << 20).count, 8 << 20)
    }

    func testEveryTruncationIsRejected() throws {
        let compressed = try gzipCompress(Array(String(repeating: "tributary data ", count: 200).utf8))
        assertDatasetError(.invalidFormat, ["ends before the end of the stream"]) {
            try Gzip.decompress(Array(compressed.dropLast(20)), maxOutputBytes: 1 << 20)
        }
        assertDatasetError(.empty) { try Gzip.decompress([], maxOutputBytes: 10) }
        // No strict prefix is a complete stream (the trailer holds CRC and length), so each must throw.
        for length in 1..<compressed.count {
            XCTAssertThrowsError(try Gzip.decompress(Array(compressed[..<length]), maxOutputBytes: 1 << 20),
                                 "prefix of \(length) bytes")
        }
    }

    func testCorruptionIsRejected() throws {
        let original = Array(String(repeating: "abcdefgh", count: 64).utf8)
        let compressed = try gzipCompress(original)
        // A flipped bit in the body is caught by inflate or the CRC-32 check, unless it is one of the
        // unused padding bits after the final block: then the output must be exactly the original.
        var rejected = 0
        for position in 10..<(compressed.count - 8) {
            var bad = compressed
            bad[position] ^= 0x10
            do {
                let output = try Gzip.decompress(bad, maxOutputBytes: 1 << 20)
                XCTAssertEqual(output, original, "flip at \(position)")
            } catch {
                XCTAssertTrue(error is DatasetError)
                rejected += 1
            }
        }
        XCTAssertGreaterThanOrEqual(rejected, compressed.count - 8 - 10 - 1)
        // Any flip in the CRC-32 / length trailer is always caught.
        for position in (compressed.count - 8)..<compressed.count {
            var bad = compressed
            bad[position] ^= 0x01
            assertDatasetError(.invalidFormat) { try Gzip.decompress(bad, maxOutputBytes: 1 << 20) }
        }
        var badHeader = compressed
        badHeader[2] = 7  // compression method other than deflate
        assertDatasetError(.invalidFormat, ["corrupt"]) { try Gzip.decompress(badHeader, maxOutputBytes: 1 << 20) }
    }
}
