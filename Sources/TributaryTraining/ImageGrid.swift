import TributaryData

/// Tiles images into one PNG: a near-square grid (⌈√n⌉ columns) with a gap between cells.
public enum ImageGrid {
    /// The gap between cells, in pixels.
    public static let gap = 2
    /// Gap and empty-cell gray: mid-gray, distinct from both black and white digits.
    public static let gapLevel: UInt8 = 128

    /// `count` images of `channels` × `side` × `side` values (channel-major per image, as
    /// the U-Net holds them) in [−1, 1] (values outside are clamped, NaN is black), mapped
    /// to 0…255 by (x + 1)/2 · 255. One channel gives a gray PNG, three an RGB one.
    public static func render(_ images: [Float], count: Int, channels: Int, side: Int) throws(PNGError) -> PNGImage {
        guard channels == 1 || channels == 3 else { throw .unsupportedChannels(channels) }
        let n = channels * side * side
        guard count >= 1, side >= 1, images.count == count * n else { throw .pixelCount(expected: count * n, got: images.count) }
        let columns = Int(Double(count).squareRoot().rounded(.up)), rows = (count + columns - 1) / columns
        let width = columns * side + (columns - 1) * gap, height = rows * side + (rows - 1) * gap
        // Checked here so that a huge request fails before the canvas is allocated.
        let (area, overflow) = width.multipliedReportingOverflow(by: height)
        guard !overflow, area <= PNGImage.defaultMaxPixels else {
            throw .tooLarge(width: width, height: height, maxPixels: PNGImage.defaultMaxPixels)
        }
        var canvas = [UInt8](repeating: gapLevel, count: area * channels)
        images.withUnsafeBufferPointer { source in
            canvas.withUnsafeMutableBufferPointer { out in
                guard let source = source.baseAddress, let out = out.baseAddress else { return }
                for image in 0..<count {
                    let left = (image % columns) * (side + gap), top = (image / columns) * (side + gap)
                    let pixels = source + image * n
                    for c in 0..<channels {
                        let plane = pixels + c * side * side
                        for y in 0..<side {
                            let row = out + ((top + y) * width + left) * channels + c
                            for x in 0..<side { row[x * channels] = level(plane[y * side + x]) }
                        }
                    }
                }
            }
        }
        return try PNGImage(width: width, height: height, channels: channels, pixels: canvas)
    }

    /// [−1, 1] → 0…255, rounded.
    @inline(__always)
    static func level(_ x: Float) -> UInt8 {
        guard !x.isNaN else { return 0 }
        return UInt8(min(255, max(0, ((x + 1) * 127.5).rounded())))
    }
}
