import CJPEG
import Foundation

/// An 8-bit JPEG image, decoded by libjpeg-turbo: 1 channel for a grayscale file, else 3
/// (RGB; libjpeg converts from YCbCr), interleaved, row-major from the top-left.
///
/// libjpeg's fatal errors and its warnings both end the decode (see Sources/CJPEG/shim.h):
/// a truncated file is refused instead of coming back padded with grey.
public struct JPEGImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public let channels: Int
    public let pixels: [UInt8]

    /// Images larger than this many pixels are refused from the header, before the
    /// pixels are allocated (the same bound as PNG's).
    public static let defaultMaxPixels = PNGImage.defaultMaxPixels

    /// Decodes JPEG bytes; images of more than `maxPixels` pixels are refused from the header.
    public static func decode(_ bytes: [UInt8], maxPixels: Int = defaultMaxPixels) throws(JPEGError) -> JPEGImage {
        // The start-of-image marker only: what follows is libjpeg's to judge (and to call damaged).
        guard bytes.count >= 2, bytes[0] == 0xFF, bytes[1] == 0xD8 else {
            throw .notJPEG(bytes.count < 2 ? "only \(bytes.count) bytes" : "no JPEG start-of-image marker")
        }
        var message = [CChar](repeating: 0, count: Int(JMSG_LENGTH_MAX))
        var width = 0, height = 0
        var channels: Int32 = 0
        let limit = max(0, maxPixels)
        // The header first, for the size; then the pixels into a buffer of that size.
        let header = bytes.withUnsafeBufferPointer { data in
            tributary_jpeg_decode(data.baseAddress, data.count, limit, nil, &width, &height, &channels, &message)
        }
        try check(header, message, width: width, height: height, maxPixels: limit)
        // The header check bounded width × height by maxPixels, so the product cannot overflow.
        var pixels = [UInt8](repeating: 0, count: width * height * Int(channels))
        let body = bytes.withUnsafeBufferPointer { data in
            pixels.withUnsafeMutableBufferPointer { out in
                tributary_jpeg_decode(data.baseAddress, data.count, limit, out.baseAddress, &width, &height, &channels, &message)
            }
        }
        try check(body, message, width: width, height: height, maxPixels: limit)
        return JPEGImage(width: width, height: height, channels: Int(channels), pixels: pixels)
    }

    /// Reads and decodes a JPEG file.
    public static func read(path: String, maxPixels: Int = defaultMaxPixels) throws(JPEGError) -> JPEGImage {
        let bytes: [UInt8]
        do { bytes = try readFileBytes(path, what: "JPEG image") } catch {
            throw .inFile(path: path, .cannotRead((error as? DatasetError)?.message ?? "\(error)"))
        }
        do { return try decode(bytes, maxPixels: maxPixels) } catch { throw .inFile(path: path, error) }
    }

    /// JPEG bytes of `pixels` (width × height × channels, 1 gray or 3 RGB) at `quality` 1…100.
    public static func encode(width: Int, height: Int, channels: Int, pixels: [UInt8], quality: Int = 95) throws(JPEGError) -> [UInt8] {
        guard channels == 1 || channels == 3 else { throw .encodingFailed("a JPEG holds 1 (gray) or 3 (RGB) channels, not \(channels)") }
        guard (1...65_500).contains(width), (1...65_500).contains(height), pixels.count == width * height * channels else {
            throw .encodingFailed("a \(width)×\(height)×\(channels) JPEG needs sides of 1…65500 and \(width &* height &* channels) bytes, got \(pixels.count)")
        }
        var message = [CChar](repeating: 0, count: Int(JMSG_LENGTH_MAX))
        var output: UnsafeMutablePointer<UInt8>?
        var size = 0
        let status = pixels.withUnsafeBufferPointer { p in
            tributary_jpeg_encode(p.baseAddress, UInt32(width), UInt32(height), Int32(channels), Int32(min(100, max(1, quality))),
                                  &output, &size, &message)
        }
        guard status == Int32(tributary_jpeg_ok), let output else { throw .encodingFailed(text(message)) }
        defer { free(output) }
        return Array(UnsafeBufferPointer(start: output, count: size))
    }

    private static func check(_ status: Int32, _ message: [CChar], width: Int, height: Int, maxPixels: Int) throws(JPEGError) {
        switch status {
        case Int32(tributary_jpeg_ok): return
        case Int32(tributary_jpeg_too_large): throw .tooLarge(width: width, height: height, maxPixels: maxPixels)
        default: throw .damaged(text(message))
        }
    }

    private static func text(_ message: [CChar]) -> String {
        let bytes = message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        return bytes.isEmpty ? "libjpeg gave no reason" : String(decoding: bytes, as: UTF8.self)
    }
}

/// Why a JPEG could not be read or written, with what to do about it.
public enum JPEGError: Error, Equatable, CustomStringConvertible {
    case notJPEG(String)
    case damaged(String)
    case tooLarge(width: Int, height: Int, maxPixels: Int)
    case encodingFailed(String)
    case cannotRead(String)
    /// Any of the above, found in the file at `path`.
    indirect case inFile(path: String, JPEGError)

    public var description: String {
        switch self {
        case let .notJPEG(detail): return "not a JPEG file (\(detail)); give a .jpg image"
        case let .damaged(message):
            return "JPEG file is truncated or damaged (libjpeg: \(message)); copy or export it again"
        case let .tooLarge(w, h, limit):
            return "JPEG image of \(w)×\(h) pixels is larger than the \(limit) pixels allowed; use a smaller image"
        case let .encodingFailed(message): return "libjpeg could not encode the image: \(message)"
        case let .cannotRead(reason): return "cannot read the file: \(reason)"
        case let .inFile(path, error): return "\(path): \(error)"
        }
    }
}
