import Foundation

/// A folder of PNG and JPEG images as labelled, square images of one size: every `.png`,
/// `.jpg` or `.jpeg` file (any case) under the folder, recursively, in order of path. When
/// the folder's top level holds subfolders, each is a class (labels 0, 1, … in order of
/// name) and every image must lie in one; otherwise every image has label 0. Names that
/// start with a dot are skipped. Each image is converted to the channels asked for (1:
/// luminance, 3: RGB; alpha dropped), scaled so its short side is `size` and centre-cropped
/// to `size` × `size` (`ImageResize`), then stored channel-major as k / 255.
public enum ImageFolder {
    public static let extensions: Set<String> = ["png", "jpg", "jpeg"]

    /// The image files under `directory`, sorted by path, each with its class; and the class names.
    public static func listing(directory: String) throws -> (files: [(path: String, label: Int)], classes: [String]) {
        let manager = FileManager.default
        func isDirectory(_ path: String) -> Bool {
            var flag: ObjCBool = false
            return manager.fileExists(atPath: path, isDirectory: &flag) && flag.boolValue
        }
        guard isDirectory(directory) else {
            throw DatasetError(.fileNotFound, path: directory, "image folder does not exist or is not a directory; check the path")
        }
        let top: [String]
        do { top = try manager.contentsOfDirectory(atPath: directory) } catch {
            throw DatasetError(.unreadable, path: directory, "cannot list the image folder; check its permissions")
        }
        let classes = top.filter { !$0.hasPrefix(".") && isDirectory("\(directory)/\($0)") }.sorted()
        var found: [String] = []
        guard let walker = manager.enumerator(atPath: directory) else {
            throw DatasetError(.unreadable, path: directory, "cannot list the image folder; check its permissions")
        }
        while let relative = walker.nextObject() as? String {
            let name = (relative as NSString).lastPathComponent
            if name.hasPrefix(".") {
                if isDirectory("\(directory)/\(relative)") { walker.skipDescendants() }
                continue
            }
            // Also inside a hidden folder, should the enumerator have gone into it anyway.
            if relative.split(separator: "/").contains(where: { $0.hasPrefix(".") }) { continue }
            guard extensions.contains((name as NSString).pathExtension.lowercased()),
                  !isDirectory("\(directory)/\(relative)") else { continue }
            found.append(relative)
        }
        found.sort()
        let label = Dictionary(uniqueKeysWithValues: classes.enumerated().map { ($1, $0) })
        var files: [(path: String, label: Int)] = []
        files.reserveCapacity(found.count)
        for relative in found {
            guard !classes.isEmpty else { files.append((path: "\(directory)/\(relative)", label: 0)); continue }
            let parts = relative.split(separator: "/", maxSplits: 1)
            guard parts.count == 2, let id = label[String(parts[0])] else {
                throw DatasetError(.invalidFormat, path: "\(directory)/\(relative)",
                                   "image lies beside the class folders (\(classes.prefix(3).joined(separator: ", "))…) of \(directory); move it into the folder of its class")
            }
            files.append((path: "\(directory)/\(relative)", label: id))
        }
        return (files, classes)
    }

    /// Loads the folder at `size` × `size` × `channels` (see the type's description). Images of
    /// more than `maxPixels` pixels are refused before they are decoded.
    public static func load(directory: String, size: Int, channels: Int,
                            maxPixels: Int = PNGImage.defaultMaxPixels) throws -> LabeledImages {
        try ImageLoadOptions(size: size, channels: channels).validate()
        let (files, classes) = try listing(directory: directory)
        guard !files.isEmpty else {
            throw DatasetError(.empty, path: directory,
                               "holds no .png, .jpg or .jpeg images (searched recursively); put the images in it, one subfolder per class")
        }
        let geometry = ImageGeometry(channels: channels, height: size, width: size)
        let perImage = size * size * channels  // at most 1024² × 3
        guard !files.count.multipliedReportingOverflow(by: perImage).overflow else {
            throw DatasetError(.tooLarge, path: directory, "\(files.count) images of \(geometry) are more values than can be held; use fewer or smaller images")
        }
        var pixels = [Float](repeating: 0, count: files.count * perImage)
        var labels = [Int32](repeating: 0, count: files.count)
        let scale = (0..<256).map { Float($0) / 255 }
        let plane = size * size
        for (row, file) in files.enumerated() {
            let image = try decode(path: file.path, maxPixels: maxPixels)
            let converted = convert(image.pixels, pixelCount: image.width * image.height, from: image.channels, to: channels)
            let square = ImageResize.centreCrop(converted, width: image.width, height: image.height, channels: channels, size: size)
            // Interleaved (y, x, c) to channel-major (c, y, x).
            square.withUnsafeBufferPointer { src in
                pixels.withUnsafeMutableBufferPointer { dst in
                    scale.withUnsafeBufferPointer { table in
                        let out = row * perImage
                        for p in 0..<plane {
                            for c in 0..<channels { dst[out + c * plane + p] = table[Int(src[p * channels + c])] }
                        }
                    }
                }
            }
            labels[row] = Int32(file.label)
        }
        return LabeledImages(unchecked: files.count, perImage, max(1, classes.count), pixels, labels, geometry: geometry)
    }

    /// An 8-bit image, interleaved, from a PNG or JPEG file (told apart by their first bytes).
    static func decode(path: String, maxPixels: Int) throws -> (width: Int, height: Int, channels: Int, pixels: [UInt8]) {
        let bytes = try readFileBytes(path, what: "image")
        if bytes.starts(with: [0x89, 0x50, 0x4E, 0x47]) {
            do {
                let png = try PNGImage.decode(bytes, maxPixels: maxPixels)
                return (png.width, png.height, png.channels, png.pixels)
            } catch {
                if case .tooLarge = error { throw DatasetError(.tooLarge, path: path, error.description) }
                throw DatasetError(.invalidFormat, path: path, error.description)
            }
        }
        if bytes.starts(with: [0xFF, 0xD8]) {
            do {
                let jpeg = try JPEGImage.decode(bytes, maxPixels: maxPixels)
                return (jpeg.width, jpeg.height, jpeg.channels, jpeg.pixels)
            } catch {
                if case .tooLarge = error { throw DatasetError(.tooLarge, path: path, error.description) }
                throw DatasetError(.invalidFormat, path: path, error.description)
            }
        }
        throw DatasetError(.invalidFormat, path: path,
                           bytes.isEmpty ? "image file is empty; copy or export it again"
                                         : "is neither a PNG nor a JPEG file, whatever its name says; convert it or move it out of the folder")
    }

    /// `from` channels (1 gray, 2 gray + alpha, 3 RGB, 4 RGBA) to `to` (1 or 3), alpha dropped.
    /// Luminance is ITU-R 601's (0.299 R + 0.587 G + 0.114 B) in the fixed point PIL uses.
    static func convert(_ pixels: [UInt8], pixelCount: Int, from: Int, to: Int) -> [UInt8] {
        let colour = from >= 3
        if from == to { return pixels }
        var out = [UInt8](repeating: 0, count: pixelCount * to)
        pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for p in 0..<pixelCount {
                    let s = p * from
                    if to == 1 {
                        if colour {
                            let y = 19595 * UInt32(src[s]) + 38470 * UInt32(src[s + 1]) + 7471 * UInt32(src[s + 2]) + 0x8000
                            dst[p] = UInt8(truncatingIfNeeded: y >> 16)
                        } else {
                            dst[p] = src[s]
                        }
                    } else if colour {
                        dst[p * 3] = src[s]; dst[p * 3 + 1] = src[s + 1]; dst[p * 3 + 2] = src[s + 2]
                    } else {
                        dst[p * 3] = src[s]; dst[p * 3 + 1] = src[s]; dst[p * 3 + 2] = src[s]
                    }
                }
            }
        }
        return out
    }
}
