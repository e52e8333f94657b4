import TributaryCompression
import TributaryProtocol
import TributaryTensor

/// Today's rule, for trusted clusters: Σ wᵢgᵢ / Σ wᵢ, kept as a running weighted sum per
/// shard so no update needs to be held (memory: one fp32 copy of the model, plus a
/// scratch buffer of the largest shard).
public final class WeightedMeanAggregator: RoundAggregator {
    public let name = "mean"
    public private(set) var updateCount = 0
    public private(set) var totalWeight = 0.0
    private let layout: ShardLayout
    private var sums: [String: Tensor] = [:]
    private var scratch: [Float]

    public init(layout: ShardLayout) throws {
        self.layout = layout
        for shard in layout.shards { sums[shard.name] = try Tensor(shape: [shard.elementCount]) }
        scratch = [Float](repeating: 0, count: layout.shards.map(\.elementCount).max() ?? 0)
    }

    public func add(_ update: RoundUpdate) throws(FrameError) {
        // The job validated every body on arrival and checked that all shards are there,
        // so a failure here (which would leave earlier shards added) cannot come from input.
        for shard in layout.shards {
            guard let body = update.bodies[shard.name], let sum = sums[shard.name] else { continue }
            var failure: FrameError?
            body.withUnsafeBytes { raw in
                scratch.withUnsafeMutableBufferPointer { s in
                    guard let base = s.baseAddress else { return }
                    do throws(FrameError) {
                        try TensorFrame.accumulate(raw, expectedCount: shard.elementCount, scale: Float(update.weight),
                                                   into: UnsafeMutableBufferPointer(start: sum.data, count: shard.elementCount),
                                                   scratch: UnsafeMutableBufferPointer(start: base, count: shard.elementCount))
                    } catch { failure = error }
                }
            }
            if let failure { throw failure }
        }
        updateCount += 1
        totalWeight += update.weight
    }

    public func gradient(of shard: ShardLayout.Shard, into out: UnsafeMutableBufferPointer<Float>) -> Bool {
        guard updateCount > 0, totalWeight > 0, let sum = sums[shard.name], out.count == shard.elementCount,
              let dst = out.baseAddress else { return false }
        let inverse = Float(1 / totalWeight)
        let src = sum.data
        for i in 0..<shard.elementCount { dst[i] = src[i] * inverse }
        return true
    }

    public func reset() {
        updateCount = 0
        totalWeight = 0
        for t in sums.values { t.zero() }
    }
}
