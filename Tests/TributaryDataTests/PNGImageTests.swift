import CPNG
import Foundation
import XCTest
@testable import TributaryData

/// PNG through libpng's simplified API: exact round trips, files written by libpng in other
/// formats (16-bit, palette) converted as documented, and typed errors for bad files.
final class PNGImageTests: XCTestCase {
    private func pattern(_ count: Int, seed: Int) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: ($0 &* 37 &+ seed &* 11) ^ ($0 >> 3)) }
    }

    func testRoundTripsEveryChannelCountExactly() throws {
        for channels in 1...4 {
            let image = try PNGImage(width: 13, height: 7, channels: channels, pixels: pattern(13 * 7 * channels, seed: channels))
            let bytes = try image.encoded()
            XCTAssertEqual(Array(bytes.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A], "the PNG signature")
            XCTAssertEqual(Array(bytes.suffix(8)), [0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82], "ends with IEND")
            let back = try PNGImage.decode(bytes)
            XCTAssertEqual(back, image, "\(channels) channel(s)")
        }
    }

    func testWritesAndReadsAFile() throws {
        let path = NSTemporaryDirectory() + "png-\(UUID().uuidString).png"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let image = try PNGImage(width: 3, height: 2, channels: 1, pixels: [0, 64, 128, 192, 255, 7])
        try image.write(to: path)
        XCTAssertEqual(try PNGImage.read(path: path), image)
        XCTAssertThrowsError(try image.write(to: "/nonexistent-\(UUID().uuidString)/x.png")) { error in
            guard case .cannotWrite = error as? PNGError else { return XCTFail("\(error)") }
            XCTAssertTrue("\(error)".contains("choose a writable path"), "\(error)")
        }
        XCTAssertThrowsError(try PNGImage.read(path: path + ".missing")) { error in
            guard case .cannotRead = error as? PNGError else { return XCTFail("\(error)") }
        }
    }

    /// libpng writes a 16-bit gray file (linear samples); reading converts to 8-bit with
    /// libpng's sRGB gamma 1/2.2: 0 → 0, 65535 → 255, linear 0.5 → 0.5^(1/2.2)·255 = 186.1
    /// (not 128: not a bit shift).
    func testSixteenBitIsConvertedToEightBitSRGB() throws {
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        image.width = 3
        image.height = 1
        image.format = tributary_png_format_linear_y
        let samples: [UInt16] = [0, 32768, 65535]
        let bytes = try encode(&image, samples)
        XCTAssertEqual(bytes[24], 16, "IHDR bit depth: a 16-bit file")
        let back = try PNGImage.decode(bytes)
        XCTAssertEqual(back.channels, 1)
        XCTAssertEqual(back.pixels[0], 0)
        XCTAssertEqual(back.pixels[2], 255)
        XCTAssertEqual(Double(back.pixels[1]), 186, accuracy: 1)
    }

    /// A palette file reads as RGB: each pixel is its palette entry's colour.
    func testPaletteIsExpandedToRGB() throws {
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        image.width = 4
        image.height = 2
        image.format = tributary_png_format_rgb_colormap
        image.colormap_entries = 3
        let palette: [UInt8] = [255, 0, 0, 0, 200, 0, 10, 20, 30]
        let indices: [UInt8] = [0, 1, 2, 1, 2, 2, 0, 0]
        var size = 0
        let ok = indices.withUnsafeBytes { p in
            palette.withUnsafeBytes { c in png_image_write_to_memory(&image, nil, &size, 0, p.baseAddress, 0, c.baseAddress) }
        }
        XCTAssertNotEqual(ok, 0)
        var bytes = [UInt8](repeating: 0, count: size)
        let written = bytes.withUnsafeMutableBytes { o in
            indices.withUnsafeBytes { p in
                palette.withUnsafeBytes { c in png_image_write_to_memory(&image, o.baseAddress, &size, 0, p.baseAddress, 0, c.baseAddress) }
            }
        }
        XCTAssertNotEqual(written, 0)
        XCTAssertEqual(bytes[25], 3, "IHDR colour type 3: a palette file")
        let back = try PNGImage.decode(Array(bytes.prefix(size)))
        XCTAssertEqual(back.channels, 3)
        XCTAssertEqual(back.pixels, indices.flatMap { Array(palette[(Int($0) * 3)..<(Int($0) * 3 + 3)]) })
    }

    func testRefusesNonPNGTruncatedAndDamagedFiles() throws {
        let good = try PNGImage(width: 32, height: 32, channels: 3, pixels: pattern(32 * 32 * 3, seed: 5)).encoded()
        func error(_ bytes: [UInt8]) -> PNGError? {
            do { _ = try PNGImage.decode(bytes); return nil } catch { return error }
        }
        guard case .notPNG = error([]) else { return XCTFail("empty") }
        guard case .notPNG = error(Array("GIF89a and more bytes".utf8)) else { return XCTFail("a GIF") }
        for cut in [10, 33, good.count / 2, good.count - 1] {
            guard case .truncated = error(Array(good.prefix(cut))) else { return XCTFail("cut at \(cut): \(String(describing: error(Array(good.prefix(cut)))))") }
        }
        // A flipped byte inside the image data (the IDAT chunk's CRC no longer matches).
        var damaged = good
        damaged[good.count / 2] ^= 0x5A
        guard case .damaged = error(damaged) else { return XCTFail("damaged: \(String(describing: error(damaged)))") }
        XCTAssertTrue("\(PNGError.truncated("x"))".contains("truncated"))
    }

    /// The size limit holds before allocation: a header claiming 65536 × 65536 pixels
    /// (4 Gi pixels) is refused from the header alone, and a caller's smaller limit too.
    func testRefusesImagesLargerThanTheLimit() throws {
        var header: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        let ihdr: [UInt8] = [0, 1, 0, 0, 0, 1, 0, 0, 8, 0, 0, 0, 0] // 65536 × 65536, 8-bit gray
        header += chunk("IHDR", ihdr) + chunk("IDAT", []) + chunk("IEND", [])
        XCTAssertThrowsError(try PNGImage.decode(header)) { error in
            XCTAssertEqual(error as? PNGError, .tooLarge(width: 65536, height: 65536, maxPixels: PNGImage.defaultMaxPixels))
        }
        let small = try PNGImage(width: 16, height: 16, channels: 1, pixels: pattern(256, seed: 1)).encoded()
        XCTAssertThrowsError(try PNGImage.decode(small, maxPixels: 255)) { error in
            XCTAssertEqual(error as? PNGError, .tooLarge(width: 16, height: 16, maxPixels: 255))
        }
        XCTAssertEqual(try PNGImage.decode(small, maxPixels: 256).width, 16)
        XCTAssertThrowsError(try PNGImage(width: 2, height: 2, channels: 5, pixels: []))
        XCTAssertThrowsError(try PNGImage(width: 2, height: 2, channels: 1, pixels: [1, 2, 3]))
    }

    // MARK: Helpers

    private func encode(_ image: inout png_image, _ samples: [UInt16]) throws -> [UInt8] {
        var size = 0
        let measured = samples.withUnsafeBytes { p in png_image_write_to_memory(&image, nil, &size, 0, p.baseAddress, 0, nil) }
        XCTAssertNotEqual(measured, 0)
        var bytes = [UInt8](repeating: 0, count: size)
        let written = bytes.withUnsafeMutableBytes { o in
            samples.withUnsafeBytes { p in png_image_write_to_memory(&image, o.baseAddress, &size, 0, p.baseAddress, 0, nil) }
        }
        XCTAssertNotEqual(written, 0)
        return Array(bytes.prefix(size))
    }

    /// A PNG chunk: length, type, data, CRC-32 of type and data.
    private func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
        let body = Array(type.utf8) + data
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in body {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        crc ^= 0xFFFF_FFFF
        let length = UInt32(data.count)
        return [24, 16, 8, 0].map { UInt8(truncatingIfNeeded: length >> $0) } + body + [24, 16, 8, 0].map { UInt8(truncatingIfNeeded: crc >> $0) }
    }
}
