import Foundation
import XCTest
@testable import TributaryData

/// Image folders: files and classes found as documented, channels converted, images resized
/// (box filter down, bilinear up) and centre-cropped with exact 8-bit results, and each bad
/// input refused with one error naming its file.
final class ImageFolderTests: XCTestCase {
    private func png(_ width: Int, _ height: Int, _ channels: Int, _ pixels: [UInt8]) throws -> [UInt8] {
        try PNGImage(width: width, height: height, channels: channels, pixels: pixels).encoded()
    }

    private func mkdir(_ dir: TemporaryDirectory, _ name: String) throws {
        try FileManager.default.createDirectory(atPath: dir.file(name), withIntermediateDirectories: true)
    }

    /// A 2×2 checkerboard: shrunk to 1×1 it is the mean, 127.5, rounded to 128; grown to 4×4
    /// it is bilinear between the pixel centres (sample points −¼ → 0, ¼, ¾, 1¼ → 1).
    func testACheckerboardShrinksToItsMeanAndGrowsBilinearly() throws {
        let board: [UInt8] = [0, 255, 255, 0]
        XCTAssertEqual(ImageResize.centreCrop(board, width: 2, height: 2, channels: 1, size: 1), [128])
        XCTAssertEqual(ImageResize.centreCrop(board, width: 2, height: 2, channels: 1, size: 4), [
            0, 64, 191, 255,
            64, 96, 159, 191,
            191, 159, 96, 64,
            255, 191, 64, 0,
        ])
        XCTAssertEqual(ImageResize.centreCrop(board, width: 2, height: 2, channels: 1, size: 2), board, "the same size is a copy")
        // 4×4 blocks of 2×2 shrink to the blocks' values exactly, per channel.
        let blocks: [UInt8] = (0..<16).flatMap { i -> [UInt8] in
            let (y, x) = (i / 4, i % 4)
            let v = UInt8((y / 2) * 100 + (x / 2) * 50)
            return [v, 255 - v]
        }
        XCTAssertEqual(ImageResize.centreCrop(blocks, width: 4, height: 4, channels: 2, size: 2), [0, 255, 50, 205, 100, 155, 150, 105])
    }

    /// 64×32, left half red and right half blue, at 16: scaled to 32×16, the centre 16 columns
    /// are source columns 16..<48, so each row is 8 red pixels then 8 blue ones.
    func testAWideImageIsScaledByItsShortSideAndCentreCropped() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let pixels = (0..<(64 * 32)).flatMap { p -> [UInt8] in p % 64 < 32 ? [255, 0, 0] : [0, 0, 255] }
        _ = try dir.write(try png(64, 32, 3, pixels), "split.png")
        let set = try ImageFolder.load(directory: dir.path, size: 16, channels: 3)
        XCTAssertEqual(set.count, 1)
        XCTAssertEqual(set.geometry, ImageGeometry(channels: 3, height: 16, width: 16))
        let row: [Float] = Array(repeating: 1, count: 8) + Array(repeating: 0, count: 8)
        let red = (0..<16).flatMap { _ in row }, blue = (0..<16).flatMap { _ in row.reversed() }
        XCTAssertEqual(Array(set.pixels[0..<256]), red, "red plane")
        XCTAssertEqual(Array(set.pixels[256..<512]), [Float](repeating: 0, count: 256), "green plane")
        XCTAssertEqual(Array(set.pixels[512..<768]), blue, "blue plane")

        // A tall image likewise, in the other direction; as one channel, red is luminance 76.
        let tall = try TemporaryDirectory()
        defer { tall.cleanup() }
        let tallPixels = (0..<(32 * 64)).flatMap { p -> [UInt8] in p / 32 < 32 ? [255, 0, 0] : [0, 0, 255] }
        _ = try tall.write(try png(32, 64, 3, tallPixels), "tall.png")
        let gray = try ImageFolder.load(directory: tall.path, size: 16, channels: 1)
        XCTAssertEqual(gray.pixels, (0..<256).map { Float($0 / 16 < 8 ? 76 : 29) / 255 }, "(19595·255 + 2¹⁵) >> 16 = 76, blue 29")
    }

    func testEveryPixelIsAWholeEighthBitValue() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        // 7×5 → 3: weights of 5/3 source pixels, sums that are not whole before rounding.
        let pixels = (0..<(7 * 5 * 3)).map { UInt8(truncatingIfNeeded: $0 &* 97 &+ 13) }
        _ = try dir.write(try png(7, 5, 3, pixels), "odd.png")
        let set = try ImageFolder.load(directory: dir.path, size: 3, channels: 3)
        XCTAssertEqual(set.pixels.count, 27)
        for v in set.pixels { XCTAssertEqual(v, Float((v * 255).rounded()) / 255, "\(v) is k/255") }
    }

    func testClassesAreTheTopLevelFoldersAndFilesAreFoundRecursivelyInPathOrder() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        try mkdir(dir, "dog/sub")
        try mkdir(dir, "cat")
        try mkdir(dir, ".cache")
        func grayPNG(_ v: UInt8) throws -> [UInt8] { try png(2, 2, 1, [v, v, v, v]) }
        _ = try dir.write(try grayPNG(10), "dog/x.PNG")
        _ = try dir.write(try JPEGImage.encode(width: 8, height: 8, channels: 1, pixels: [UInt8](repeating: 200, count: 64)), "dog/sub/y.jpeg")
        _ = try dir.write(try grayPNG(30), "cat/b.png")
        _ = try dir.write(try JPEGImage.encode(width: 8, height: 8, channels: 3, pixels: [UInt8](repeating: 40, count: 192)), "cat/a.JPG")
        _ = try dir.write(Array("not an image".utf8), "cat/notes.txt")
        _ = try dir.write(Array("hidden".utf8), "cat/.hidden.png")
        _ = try dir.write(try grayPNG(1), ".cache/z.png")
        let (files, classes) = try ImageFolder.listing(directory: dir.path)
        XCTAssertEqual(classes, ["cat", "dog"])
        XCTAssertEqual(files.map { $0.path }, ["cat/a.JPG", "cat/b.png", "dog/sub/y.jpeg", "dog/x.PNG"].map { dir.file($0) })
        XCTAssertEqual(files.map { $0.label }, [0, 0, 1, 1])
        let set = try ImageFolder.load(directory: dir.path, size: 2, channels: 1)
        XCTAssertEqual(set.classCount, 2)
        XCTAssertEqual(set.labels, [0, 0, 1, 1])
        XCTAssertEqual(set.pixels[4], Float(30) / 255, "cat/b.png")
        XCTAssertEqual(set.pixels[12], Float(10) / 255, "dog/x.PNG")
        XCTAssertLessThanOrEqual(abs(set.pixels[8] * 255 - 200), 2, "dog/sub/y.jpeg")

        // No subfolders: one class.
        let flat = try TemporaryDirectory()
        defer { flat.cleanup() }
        _ = try flat.write(try png(1, 1, 4, [9, 8, 7, 0]), "a.png")
        _ = try flat.write(try png(1, 1, 2, [50, 255]), "b.png")
        let one = try ImageFolder.load(directory: flat.path, size: 1, channels: 3)
        XCTAssertEqual(one.classCount, 1)
        XCTAssertEqual(one.labels, [0, 0])
        XCTAssertEqual(one.pixels, [9, 8, 7, 50, 50, 50].map { Float($0) / 255 }, "alpha dropped, gray repeated")
    }

    func testAnImageBesideClassFoldersIsRefused() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        try mkdir(dir, "cat")
        _ = try dir.write(try png(1, 1, 1, [0]), "cat/a.png")
        let loose = try dir.write(try png(1, 1, 1, [0]), "loose.png")
        assertDatasetError(.invalidFormat, [loose, "beside the class folders", "move it"]) {
            try ImageFolder.load(directory: dir.path, size: 4, channels: 1)
        }
    }

    func testBadImagesAreRefusedWithTheirFile() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        assertDatasetError(.empty, [dir.path, "no .png, .jpg or .jpeg images"]) {
            try ImageFolder.load(directory: dir.path, size: 4, channels: 1)
        }
        let image = try png(4, 4, 3, [UInt8](repeating: 90, count: 48))
        let cut = try dir.write(Array(image.dropLast(20)), "a-cut.png")
        assertDatasetError(.invalidFormat, [cut, "PNG file is truncated"]) { try ImageFolder.load(directory: dir.path, size: 4, channels: 1) }
        try FileManager.default.removeItem(atPath: cut)

        let jpeg = try JPEGImage.encode(width: 16, height: 16, channels: 3, pixels: [UInt8](repeating: 90, count: 768))
        let cutJPEG = try dir.write(Array(jpeg.prefix(jpeg.count / 2)), "b-cut.jpg")
        assertDatasetError(.invalidFormat, [cutJPEG, "JPEG file is truncated or damaged"]) { try ImageFolder.load(directory: dir.path, size: 4, channels: 1) }
        try FileManager.default.removeItem(atPath: cutJPEG)

        let text = try dir.write(Array("hello".utf8), "c-text.jpeg")
        assertDatasetError(.invalidFormat, [text, "neither a PNG nor a JPEG"]) { try ImageFolder.load(directory: dir.path, size: 4, channels: 1) }
        try FileManager.default.removeItem(atPath: text)

        let big = try dir.write(image, "d-big.png")
        assertDatasetError(.tooLarge, [big, "4×4 pixels is larger than the 15 pixels allowed"]) {
            try ImageFolder.load(directory: dir.path, size: 4, channels: 1, maxPixels: 15)
        }
        _ = try dir.write(jpeg, "e-big.jpg")
        XCTAssertEqual(try ImageFolder.load(directory: dir.path, size: 4, channels: 1, maxPixels: 256).count, 2)
        assertDatasetError(.tooLarge, [dir.file("e-big.jpg"), "16×16 pixels is larger than the 100 pixels allowed"]) {
            try ImageFolder.load(directory: dir.path, size: 4, channels: 1, maxPixels: 100)
        }
        assertDatasetError(.invalidArgument, ["1 (grayscale) or 3 (RGB)"]) { try ImageFolder.load(directory: dir.path, size: 4, channels: 2) }
        assertDatasetError(.fileNotFound, [dir.file("missing")]) { try ImageFolder.load(directory: dir.file("missing"), size: 4, channels: 1) }
    }
}
