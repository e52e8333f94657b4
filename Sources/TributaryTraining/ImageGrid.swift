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
        // The layout first: it bounds count × side², so the products below cannot overflow.
        let (columns, width, height) = try layout(count: count, side: side)
        let n = channels * side * side
        guard images.count == count * n else { throw .pixelCount(expected: count * n, got: images.count) }
        var canvas = [UInt8](repeating: gapLevel, count: width * height * channels)
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

    /// The grid of `count` images of side `side`: its columns and its size in pixels, refused
    /// past `PNGImage.defaultMaxPixels` (callers check before drawing the images at all).
    public static func layout(count: Int, side: Int) throws(PNGError) -> (columns: Int, width: Int, height: Int) {
        guard count >= 1 else { throw .badDimensions(width: 0, height: 0) }
        guard side >= 1, side <= 1 << 20 else { throw .badDimensions(width: side, height: side) }
        let columns = Int(Double(count).squareRoot().rounded(.up)), rows = (count + columns - 1) / columns
        let (w, o1) = columns.multipliedReportingOverflow(by: side + gap), (h, o2) = rows.multipliedReportingOverflow(by: side + gap)
        let width = w - gap, height = h - gap
        let (area, o3) = width.multipliedReportingOverflow(by: height)
        guard !o1, !o2, !o3, area <= PNGImage.defaultMaxPixels else {
            throw .tooLarge(width: width, height: height, maxPixels: PNGImage.defaultMaxPixels)
        }
        return (columns, width, height)
    }

    /// [−1, 1] → 0…255, rounded.
    @inline(__always)
    static func level(_ x: Float) -> UInt8 {
        guard !x.isNaN else { return 0 }
        return UInt8(min(255, max(0, ((x + 1) * 127.5).rounded())))
    }
}
