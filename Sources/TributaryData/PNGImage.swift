import CPNG
import Foundation

/// An 8-bit image with interleaved channels (1 gray, 2 gray + alpha, 3 RGB, 4 RGBA),
/// row-major from the top-left, and its PNG encoding through libpng's simplified API.
///
/// Reading gives every PNG as 8 bits per channel: palette images become RGB (RGBA with a
/// transparency chunk), low bit depths are widened, and 16-bit images are converted by
/// libpng, which takes 16-bit samples as linear light (unless a gAMA chunk says
/// otherwise) and encodes them with sRGB's gamma (1/2.2), so 16-bit 0.5 reads as 186,
/// not 128. A file without its IEND chunk is refused as truncated, even when libpng could
/// decode the pixels before the cut.
public struct PNGImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public let channels: Int
    public var pixels: [UInt8]

    /// Images larger than this many pixels are refused before any buffer is allocated
    /// (64 Mi pixels: 256 MiB as RGBA).
    public static let defaultMaxPixels = 1 << 26

    public init(width: Int, height: Int, channels: Int, pixels: [UInt8]) throws(PNGError) {
        guard (1...4).contains(channels) else { throw .unsupportedChannels(channels) }
        guard width >= 1, height >= 1, width <= Int(UInt32.max), height <= Int(UInt32.max) else {
            throw .badDimensions(width: width, height: height)
        }
        let (area, o1) = width.multipliedReportingOverflow(by: height)
        let (count, o2) = area.multipliedReportingOverflow(by: channels)
        guard !o1, !o2, area <= Self.defaultMaxPixels else {
            throw .tooLarge(width: width, height: height, maxPixels: Self.defaultMaxPixels)
        }
        guard pixels.count == count else { throw .pixelCount(expected: count, got: pixels.count) }
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }

    /// The 8-bit libpng format of `channels` interleaved channels.
    private static func format(channels: Int) -> UInt32 {
        switch channels {
        case 1: return tributary_png_format_gray
        case 2: return tributary_png_format_ga
        case 3: return tributary_png_format_rgb
        default: return tributary_png_format_rgba
        }
    }

    // MARK: Writing

    /// The PNG file's bytes.
    public func encoded() throws(PNGError) -> [UInt8] {
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        image.width = UInt32(width)
        image.height = UInt32(height)
        image.format = Self.format(channels: channels)
        // Two calls: the first measures, the second writes into a buffer of that size.
        var size = 0
        let measured = pixels.withUnsafeBytes { p in
            png_image_write_to_memory(&image, nil, &size, 0, p.baseAddress, 0, nil)
        }
        guard measured != 0, size > 0 else { throw .encodingFailed(Self.message(&image)) }
        var out = [UInt8](repeating: 0, count: size)
        let written = out.withUnsafeMutableBytes { o in
            pixels.withUnsafeBytes { p in png_image_write_to_memory(&image, o.baseAddress, &size, 0, p.baseAddress, 0, nil) }
        }
        guard written != 0 else { throw .encodingFailed(Self.message(&image)) }
        return Array(out.prefix(size))
    }

    /// Writes the PNG to `path`, atomically (a temporary file renamed over it).
    public func write(to path: String) throws(PNGError) {
        let bytes = try encoded()
        do {
            try Data(bytes).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw .cannotWrite(path: path, reason: Self.reason(error))
        }
    }

    // MARK: Reading

    private static let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
    /// The IEND chunk every complete PNG ends with: length 0, type, CRC.
    private static let trailer: [UInt8] = [0, 0, 0, 0, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82]

    /// Decodes PNG bytes; images of more than `maxPixels` pixels are refused from the header.
    public static func decode(_ bytes: [UInt8], maxPixels: Int = defaultMaxPixels) throws(PNGError) -> PNGImage {
        guard bytes.count >= signature.count, Array(bytes.prefix(signature.count)) == signature else {
            throw .notPNG(bytes.count < signature.count ? "only \(bytes.count) bytes" : "no PNG signature")
        }
        let complete = Self.hasTrailer(bytes)
        let result: Result<PNGImage, PNGError> = bytes.withUnsafeBytes { raw in
            var image = png_image()
            image.version = UInt32(PNG_IMAGE_VERSION)
            guard png_image_begin_read_from_memory(&image, raw.baseAddress, raw.count) != 0 else {
                let message = Self.message(&image)
                return .failure(complete ? .damaged(message) : .truncated("no IEND chunk; libpng: \(message)"))
            }
            let width = Int(image.width), height = Int(image.height)
            // Keep alpha and colour; drop the palette and 16-bit flags so libpng expands
            // palettes and converts 16-bit samples to 8 bits.
            let fileFormat = image.format
            let channels = (fileFormat & PNG_FORMAT_FLAG_COLOR != 0 ? 3 : 1) + (fileFormat & PNG_FORMAT_FLAG_ALPHA != 0 ? 1 : 0)
            let (area, overflow) = width.multipliedReportingOverflow(by: height)
            guard !overflow, area <= maxPixels else {
                png_image_free(&image)
                return .failure(.tooLarge(width: width, height: height, maxPixels: maxPixels))
            }
            image.format = Self.format(channels: channels)
            var pixels = [UInt8](repeating: 0, count: area * channels)
            let finished = pixels.withUnsafeMutableBytes { p in
                png_image_finish_read(&image, nil, p.baseAddress, 0, nil)
            }
            guard finished != 0 else {
                let message = Self.message(&image)
                return .failure(complete ? .damaged(message) : .truncated("no IEND chunk; libpng: \(message)"))
            }
            // libpng stops after the image data; the end of the file is checked here.
            guard complete else { return .failure(.truncated("the file ends before its IEND chunk")) }
            return Result { () throws(PNGError) in try PNGImage(width: width, height: height, channels: channels, pixels: pixels) }
        }
        return try result.get()
    }

    /// Whether the IEND chunk is there (at the end, or before bytes some tools append).
    private static func hasTrailer(_ bytes: [UInt8]) -> Bool {
        let t = trailer.count
        guard bytes.count >= signature.count + t else { return false }
        return bytes.withUnsafeBufferPointer { p in
            var end = p.count
            while end >= signature.count + t {
                if p[end - 1] == trailer[t - 1], Array(p[(end - t)..<end]) == trailer { return true }
                end -= 1
            }
            return false
        }
    }

    /// Reads a PNG file (at most `maxBytes` of it: a larger file is refused before reading).
    public static func read(path: String, maxPixels: Int = defaultMaxPixels, maxBytes: Int = 1 << 30) throws(PNGError) -> PNGImage {
        let size: Int
        do {
            let attributes = try FileManager.default.attributesOfItem(atPath: path)
            size = (attributes[.size] as? NSNumber)?.intValue ?? 0
        } catch {
            throw .cannotRead(path: path, reason: reason(error))
        }
        guard size <= maxBytes else { throw .cannotRead(path: path, reason: "\(size) bytes is more than the \(maxBytes) allowed") }
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw .cannotRead(path: path, reason: reason(error))
        }
        do { return try decode([UInt8](data), maxPixels: maxPixels) } catch {
            throw error.at(path)
        }
    }

    /// libpng's message (a NUL-terminated char[64] inside the png_image).
    private static func message(_ image: inout png_image) -> String {
        let text = withUnsafeBytes(of: &image.message) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        return text.isEmpty ? "libpng gave no reason" : text
    }

    private static func reason(_ error: any Error) -> String {
        if let underlying = (error as NSError).userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(Int32(underlying.code)))
        }
        return (error as NSError).localizedDescription
    }
}

/// Why a PNG could not be read or written, with what to do about it.
public enum PNGError: Error, Equatable, CustomStringConvertible {
    case notPNG(String)
    case truncated(String)
    case damaged(String)
    case tooLarge(width: Int, height: Int, maxPixels: Int)
    case badDimensions(width: Int, height: Int)
    case unsupportedChannels(Int)
    case pixelCount(expected: Int, got: Int)
    case encodingFailed(String)
    case cannotRead(path: String, reason: String)
    case cannotWrite(path: String, reason: String)
    /// Any of the above, found in the file at `path`.
    indirect case inFile(path: String, PNGError)

    func at(_ path: String) -> PNGError {
        if case .inFile = self { return self }
        return .inFile(path: path, self)
    }

    public var description: String {
        switch self {
        case let .notPNG(detail): return "not a PNG file (\(detail)); give a .png image"
        case let .truncated(message):
            return "PNG file is truncated (\(message)); copy or render it again"
        case let .damaged(message): return "PNG file is damaged (libpng: \(message)); copy or render it again"
        case let .tooLarge(w, h, limit):
            return "PNG image of \(w)×\(h) pixels is larger than the \(limit) pixels allowed; use a smaller image"
        case let .badDimensions(w, h): return "an image needs a width and height of at least 1 (got \(w)×\(h))"
        case let .unsupportedChannels(c): return "a PNG holds 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA) channels, not \(c)"
        case let .pixelCount(expected, got): return "image needs \(expected) pixel values, got \(got)"
        case let .encodingFailed(message): return "libpng could not encode the image: \(message)"
        case let .cannotRead(path, reason): return "cannot read \(path): \(reason)"
        case let .cannotWrite(path, reason): return "cannot write \(path): \(reason); choose a writable path"
        case let .inFile(path, error): return "\(path): \(error)"
        }
    }
}
