import Foundation
import XCTest
@testable import TributaryData

/// JPEG through libjpeg-turbo, with fixtures encoded here by the same library: flat colours
/// come back within the codec's rounding, and a truncated, damaged or oversized file gives a
/// typed error instead of a grey-padded image (or libjpeg's exit()).
final class JPEGImageTests: XCTestCase {
    private func flat(_ width: Int, _ height: Int, _ colour: [UInt8]) -> [UInt8] {
        (0..<(width * height)).flatMap { _ in colour }
    }

    func testFlatColoursDecodeWithinTwoLevels() throws {
        let bytes = try JPEGImage.encode(width: 24, height: 16, channels: 3, pixels: flat(24, 16, [200, 100, 50]))
        XCTAssertEqual(Array(bytes.prefix(3)), [0xFF, 0xD8, 0xFF])
        let image = try JPEGImage.decode(bytes)
        XCTAssertEqual([image.width, image.height, image.channels], [24, 16, 3])
        XCTAssertEqual(image.pixels.count, 24 * 16 * 3)
        for (i, v) in image.pixels.enumerated() {
            XCTAssertLessThanOrEqual(abs(Int(v) - [200, 100, 50][i % 3]), 2, "value \(i)")
        }
        let gray = try JPEGImage.decode(JPEGImage.encode(width: 9, height: 5, channels: 1, pixels: flat(9, 5, [77])))
        XCTAssertEqual([gray.width, gray.height, gray.channels], [9, 5, 1], "a grayscale file stays one channel")
        XCTAssertTrue(gray.pixels.allSatisfy { abs(Int($0) - 77) <= 2 }, "\(gray.pixels)")
    }

    func testLeftAndRightHalvesStayApart() throws {
        // 16×8: left half black, right half white; JPEG's 8×8 blocks keep the edge exact enough.
        let pixels = (0..<(16 * 8)).map { UInt8($0 % 16 < 8 ? 0 : 255) }
        let image = try JPEGImage.decode(JPEGImage.encode(width: 16, height: 8, channels: 1, pixels: pixels, quality: 100))
        XCTAssertEqual(image.pixels.count, 128)
        for y in 0..<8 {
            XCTAssertLessThanOrEqual(image.pixels[y * 16 + 0], 2, "row \(y), left edge")
            XCTAssertGreaterThanOrEqual(image.pixels[y * 16 + 15], 253, "row \(y), right edge")
        }
    }

    func testATruncatedFileIsRefused() throws {
        let bytes = try JPEGImage.encode(width: 32, height: 32, channels: 3, pixels: (0..<(32 * 32 * 3)).map { UInt8($0 % 251) })
        for keep in [bytes.count / 2, bytes.count - 2, 200] {
            XCTAssertThrowsError(try JPEGImage.decode(Array(bytes.prefix(keep)))) { error in
                guard case .damaged = error as? JPEGError else { return XCTFail("\(keep) bytes: \(error)") }
                XCTAssertTrue("\(error)".contains("truncated or damaged"), "\(error)")
            }
        }
    }

    func testDamagedAndForeignBytesAreRefused() throws {
        var bytes = try JPEGImage.encode(width: 16, height: 16, channels: 3, pixels: flat(16, 16, [10, 20, 30]))
        // Garbage over the quantisation tables' marker segment right after SOI.
        for i in 2..<40 { bytes[i] = 0x5A }
        XCTAssertThrowsError(try JPEGImage.decode(bytes)) { error in
            guard case .damaged = error as? JPEGError else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try JPEGImage.decode(Array("GIF89a".utf8))) { error in
            guard case .notJPEG = error as? JPEGError else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try JPEGImage.decode([0xFF, 0xD8])) { error in
            guard case .damaged = error as? JPEGError else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try JPEGImage.decode([0xFF])) { error in
            guard case .notJPEG = error as? JPEGError else { return XCTFail("\(error)") }
        }
    }

    func testAnImageOverThePixelBoundIsRefusedFromItsHeader() throws {
        let bytes = try JPEGImage.encode(width: 20, height: 10, channels: 1, pixels: flat(20, 10, [128]))
        XCTAssertEqual(try JPEGImage.decode(bytes, maxPixels: 200).width, 20, "exactly the bound is allowed")
        XCTAssertThrowsError(try JPEGImage.decode(bytes, maxPixels: 199)) { error in
            XCTAssertEqual(error as? JPEGError, .tooLarge(width: 20, height: 10, maxPixels: 199))
            XCTAssertTrue("\(error)".contains("larger than the 199 pixels allowed"), "\(error)")
        }
    }

    func testReadNamesTheFile() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let path = try dir.write(Array(try JPEGImage.encode(width: 8, height: 8, channels: 1, pixels: flat(8, 8, [9])).prefix(100)), "cut.jpg")
        XCTAssertThrowsError(try JPEGImage.read(path: path)) { error in
            XCTAssertTrue("\(error)".hasPrefix("\(path): JPEG file is truncated or damaged"), "\(error)")
        }
    }
}
