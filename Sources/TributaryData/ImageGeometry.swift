import TributaryTensor

/// The shape of one image in a row of `LabeledImages`: `channels` planes of `height` × `width`
/// pixels, channel-major (all of the first channel's rows, then the next channel's), as a
/// U-Net reads it.
public struct ImageGeometry: Sendable, Equatable, CustomStringConvertible {
    public let channels: Int
    public let height: Int
    public let width: Int

    public init(channels: Int, height: Int, width: Int) {
        self.channels = channels
        self.height = height
        self.width = width
    }

    /// Values per image, or nil when a dimension is not positive or the product overflows.
    public var valueCount: Int? {
        guard channels > 0, height > 0, width > 0 else { return nil }
        let (plane, o1) = height.multipliedReportingOverflow(by: width)
        let (all, o2) = plane.multipliedReportingOverflow(by: channels)
        return o1 || o2 ? nil : all
    }

    /// "32×32×3": height × width × channels.
    public var description: String { "\(height)×\(width)×\(channels)" }
}

/// Seeded random horizontal flips of training images: in epoch `e`, training sample `i` is
/// mirrored left-right when `isFlipped(sample: i, epoch: e)`, a coin drawn from
/// `SeededRandom(seed: seed, stream: flipStream(epoch: e, sample: i))`. Every process that
/// holds the data seed flips the same samples in the same epoch (the coordinator building a
/// unit's batch and a single-process trainer alike), and a new epoch tosses new coins.
public struct RandomFlip: Sendable, Equatable {
    public let seed: UInt64

    public init(seed: UInt64) { self.seed = seed }

    /// Whether sample `sample` of the training split is mirrored in `epoch`.
    @inlinable
    public func isFlipped(sample: Int, epoch: Int) -> Bool {
        var rng = SeededRandom(seed: seed, stream: Self.flipStream(epoch: epoch, sample: sample))
        return rng.next() >> 63 == 1
    }

    /// One stream per (epoch, sample): both go through a SplitMix finaliser with a tag of
    /// their own, so no pair shares a stream with another pair or with the epoch
    /// permutations (`EpochSchedule` uses stream = epoch).
    @inlinable
    public static func flipStream(epoch: Int, sample: Int) -> UInt64 {
        var z = 0xF11B_5EED_0000_0000 ^ (UInt64(truncatingIfNeeded: epoch) &* 0x9E37_79B9_7F4A_7C15)
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z ^= UInt64(truncatingIfNeeded: sample)
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// What the model wants of image data: square images of `size` × `size` with `channels`
/// channels (1 grayscale, 3 RGB). nil: whatever the data holds; an image folder, which
/// has no size of its own, then gives `folderDefaultSize` × `folderDefaultSize` RGB.
public struct ImageLoadOptions: Sendable, Equatable {
    public var size: Int?
    public var channels: Int?

    public static let folderDefaultSize = 32
    public static let folderDefaultChannels = 3
    /// The largest image side a folder is resized to (a 1024² RGB image is 12 MB as floats).
    public static let maxSize = 1024

    public init(size: Int? = nil, channels: Int? = nil) {
        self.size = size
        self.channels = channels
    }

    /// Refuses sizes and channel counts no loader can give.
    public func validate() throws {
        if let size, !(1...Self.maxSize).contains(size) {
            throw DatasetError(.invalidArgument, "the image size must lie in 1...\(Self.maxSize) (got \(size)); set the model's image size accordingly")
        }
        if let channels, channels != 1, channels != 3 {
            throw DatasetError(.invalidArgument, "images have 1 (grayscale) or 3 (RGB) channels, not \(channels); set the model's channels to 1 or 3")
        }
    }

    /// Refuses data of a fixed geometry (MNIST, CIFAR-10) that differs from what the model
    /// expects: these files are not resized, so training could not use them.
    public func check(_ set: LabeledImages, source: String) throws {
        try validate()
        guard size != nil || channels != nil else { return }
        let fix = "set the model's image size and channels to match (model.image_size and model.in_channels in a job file, --image-size and --in-channels for tributary train) or leave them out to follow the data"
        if let geometry = set.geometry {
            let wantedSize = size ?? geometry.height, wantedChannels = channels ?? geometry.channels
            guard geometry.height == wantedSize, geometry.width == wantedSize, geometry.channels == wantedChannels else {
                throw DatasetError(.invalidArgument, path: source,
                                   "the dataset's images are \(geometry) but the model expects \(wantedSize)×\(wantedSize)×\(wantedChannels); \(fix)")
            }
        } else if let size {
            let wantedChannels = channels ?? 1
            guard size * size * wantedChannels == set.featureCount else {
                throw DatasetError(.invalidArgument, path: source,
                                   "the dataset's samples hold \(set.featureCount) values but the model expects \(size)×\(size)×\(wantedChannels); \(fix)")
            }
        }
    }
}
