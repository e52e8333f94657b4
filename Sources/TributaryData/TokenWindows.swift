/// A GPT training view of a token stream: sample i is the window
/// tokens[i*blockSize ..< i*blockSize + blockSize + 1]; inputs are its first blockSize tokens
/// and targets the same shifted by one. Windows do not overlap (consecutive ones share one token).
public struct TokenWindows: Sendable {
    public let tokens: [UInt16]
    public let blockSize: Int

    public init(tokens: [UInt16], blockSize: Int) throws {
        guard blockSize > 0 else {
            throw DatasetError(.invalidArgument, "block_size must be positive, got \(blockSize)")
        }
        guard tokens.count > blockSize else {
            throw DatasetError(.invalidArgument,
                               "block_size \(blockSize) is larger than the data: one sample needs \(blockSize + 1) tokens but there are \(tokens.count); use a smaller block_size or more data")
        }
        self.tokens = tokens
        self.blockSize = blockSize
    }

    /// Number of whole non-overlapping windows.
    public var sampleCount: Int { (tokens.count - 1) / blockSize }

    /// Writes the windows at `indices` as Int32 rows of `blockSize`: `inputs` and `targets` are each
    /// [indices.count, blockSize] row-major, in buffers the caller owns.
    public func fillBatch(indices: [Int], inputs: UnsafeMutablePointer<Int32>, targets: UnsafeMutablePointer<Int32>) {
        let t = blockSize
        let samples = sampleCount
        tokens.withUnsafeBufferPointer { src in
            guard let base = src.baseAddress else { return }
            for (row, index) in indices.enumerated() {
                precondition(index >= 0 && index < samples, "window index \(index) is outside 0..<\(samples)")
                let window = base + index * t
                let x = inputs + row * t, y = targets + row * t
                for j in 0..<t {
                    x[j] = Int32(window[j])
                    y[j] = Int32(window[j + 1])
                }
            }
        }
    }
}

/// Train/validation splits.
public enum DatasetSplit {
    /// The contiguous tail is validation, as nanoGPT's prepare scripts do
    /// (`train = data[:int(n * 0.9)]` for a fraction of 0.1). The fraction is clamped to [0, 1].
    public static func tokens(_ tokens: [UInt16], validationFraction: Double) -> (train: [UInt16], validation: [UInt16]) {
        let fraction = validationFraction.isNaN ? 0 : min(1, max(0, validationFraction))
        let trainCount = min(tokens.count, max(0, Int(Double(tokens.count) * (1 - fraction))))
        return (Array(tokens[..<trainCount]), Array(tokens[trainCount...]))
    }
}
