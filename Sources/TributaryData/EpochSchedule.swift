import Foundation
import TributaryTensor

/// The deterministic order in which samples are visited: epoch e is the permutation
/// `SeededRandom(seed: seed, stream: e).permutation(count: sampleCount)`, cut into batches of
/// `batchSize` with the incomplete tail dropped. Any process holding the same three numbers
/// computes the same batch for a step, which is what lets workers agree on data without sending it.
public struct EpochSchedule: Sendable {
    public let sampleCount: Int
    public let batchSize: Int
    public let seed: UInt64
    private let cache = PermutationCache()

    public init(sampleCount: Int, batchSize: Int, seed: UInt64) throws {
        guard batchSize > 0 else {
            throw DatasetError(.invalidArgument, "batch size must be positive, got \(batchSize)")
        }
        guard sampleCount >= batchSize else {
            throw DatasetError(.invalidArgument,
                               "batch size \(batchSize) is larger than the \(sampleCount) samples, so an epoch has no complete batch; use a smaller batch size or more data")
        }
        self.sampleCount = sampleCount
        self.batchSize = batchSize
        self.seed = seed
    }

    /// Complete batches per epoch (the last incomplete batch is dropped).
    public var batchesPerEpoch: Int { sampleCount / batchSize }

    /// Sample indices of batch `index` (0..<batchesPerEpoch) of `epoch` (>= 0).
    public func batch(epoch: Int, index: Int) -> [Int] {
        precondition(epoch >= 0, "epoch must be non-negative, got \(epoch)")
        precondition(index >= 0 && index < batchesPerEpoch, "batch index \(index) is outside 0..<\(batchesPerEpoch)")
        let order = permutation(epoch: epoch)
        return Array(order[index * batchSize ..< (index + 1) * batchSize])
    }

    /// The batch for global step `step` (>= 0): epoch step / batchesPerEpoch, index step % batchesPerEpoch.
    public func batch(step: Int) -> [Int] {
        precondition(step >= 0, "step must be non-negative, got \(step)")
        let (epoch, index) = step.quotientAndRemainder(dividingBy: batchesPerEpoch)
        return batch(epoch: epoch, index: index)
    }

    /// The full visiting order of `epoch`.
    public func permutation(epoch: Int) -> [Int] {
        cache.permutation(epoch: epoch) {
            var rng = SeededRandom(seed: seed, stream: UInt64(epoch))
            return rng.permutation(count: sampleCount)
        }
    }
}

/// Holds the most recent epoch's permutation so consecutive batches do not recompute it.
/// Shared by copies of a schedule; safe because the content is a pure function of the epoch.
private final class PermutationCache: @unchecked Sendable {
    private let lock = NSLock()
    private var epoch = -1
    private var order: [Int] = []

    func permutation(epoch: Int, make: () -> [Int]) -> [Int] {
        lock.lock()
        if self.epoch == epoch {
            let hit = order
            lock.unlock()
            return hit
        }
        lock.unlock()
        // Computed outside the lock so concurrent readers of the cached epoch are not blocked.
        let fresh = make()
        lock.lock()
        self.epoch = epoch
        order = fresh
        lock.unlock()
        return fresh
    }
}
