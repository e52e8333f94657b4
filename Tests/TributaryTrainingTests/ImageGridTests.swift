import XCTest
import TributaryData
@testable import TributaryTraining

/// Images in [−1, 1] tiled into one PNG: layout, gaps, the pixel mapping, channel order.
final class ImageGridTests: XCTestCase {
    func testTilesImagesWithGapsAndMapsValuesToBytes() throws {
        // Three 2×2 gray images: ⌈√3⌉ = 2 columns, 2 rows, 2·2 + 2 = 6 pixels square.
        let images: [Float] = [-1, 1, 0, .nan,   2, -2, 0.5, -0.5,   1, 1, 1, 1]
        let grid = try ImageGrid.render(images, count: 3, channels: 1, side: 2)
        XCTAssertEqual([grid.width, grid.height, grid.channels], [6, 6, 1])
        let g: UInt8 = 128
        XCTAssertEqual(grid.pixels, [
            0, 255, g, g, 255, 0,
            128, 0, g, g, 191, 64,
            g, g, g, g, g, g,
            g, g, g, g, g, g,
            255, 255, g, g, g, g,
            255, 255, g, g, g, g,
        ], "−1 → 0, 1 → 255, 0 → 128 (127.5 rounded), NaN → 0, clamped beyond ±1, ±0.5 → 191/64")
    }

    func testRGBImagesInterleaveTheirChannelPlanes() throws {
        // One 1×1 RGB image, channel-major: R = 1, G = −1, B = 0.
        let grid = try ImageGrid.render([1, -1, 0], count: 1, channels: 3, side: 1)
        XCTAssertEqual([grid.width, grid.height, grid.channels], [1, 1, 3])
        XCTAssertEqual(grid.pixels, [255, 0, 128])
    }

    func testLayoutIsNearSquareAndBounded() throws {
        XCTAssertEqual(try ImageGrid.layout(count: 64, side: 28).columns, 8)
        XCTAssertEqual(try ImageGrid.layout(count: 64, side: 28).width, 8 * 28 + 7 * 2)
        XCTAssertEqual(try ImageGrid.layout(count: 65, side: 28).columns, 9)
        XCTAssertEqual(try ImageGrid.layout(count: 65, side: 28).height, 8 * 28 + 7 * 2, "9 columns need only 8 rows")
        XCTAssertThrowsError(try ImageGrid.layout(count: 1024, side: 4096)) { error in
            guard case .tooLarge = error as? PNGError else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try ImageGrid.layout(count: 0, side: 28))
        XCTAssertThrowsError(try ImageGrid.render([0, 0], count: 1, channels: 2, side: 1))
        XCTAssertThrowsError(try ImageGrid.render([0, 0], count: 1, channels: 1, side: 1))
    }
}
