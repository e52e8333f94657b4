import Foundation
import TributaryCompression
import TributaryProtocol

/// Centered clipping (Karimireddy, He & Jaggi, 2021): start from a robust center (the
/// coordinate-wise median), then a few times move it by the mean of the updates' offsets
/// from it, each offset clipped to radius τ:
///
///     v ← v + (1/n) Σᵢ (gᵢ − v) · min(1, τ / ‖gᵢ − v‖)
///
/// Norms are over the whole update (every shard), so an attacker cannot hide a large change
/// in one shard. τ is `radiusFactor` × the median distance of the updates from the start:
/// honest updates (the majority) lie within it and pass whole, so on a clean round the
/// result is close to the mean; an outlier moves the center by at most τ/n per iteration.
/// Updates count equally. Memory: the encoded updates, one shard's n × elements matrix,
/// and one fp32 copy of the model (the center).
public final class CenteredClipAggregator: RoundAggregator {
    public let name = "centered_clip"
    public let iterations: Int
    public let radiusFactor: Double
    private let layout: ShardLayout
    private var round = RetainedRound()
    private var center: [String: [Float]] = [:]
    private var computed = false
    /// The last round's clipping radius and how many updates were clipped (for logs, tests).
    public private(set) var lastRadius = 0.0
    public private(set) var lastClipped = 0

    public var updateCount: Int { round.count }

    public init(layout: ShardLayout, iterations: Int = 3, radiusFactor: Double = 1.0) {
        self.layout = layout
        self.iterations = max(1, iterations)
        self.radiusFactor = radiusFactor
    }

    public func add(_ update: RoundUpdate) throws(FrameError) {
        round.add(update)
        computed = false
    }

    public func reset() {
        round.reset()
        computed = false
        lastClipped = 0
    }

    public func gradient(of shard: ShardLayout.Shard, into out: UnsafeMutableBufferPointer<Float>) -> Bool {
        guard round.count > 0, out.count == shard.elementCount, let dst = out.baseAddress else { return false }
        if !computed { computeCenter() }
        guard let v = center[shard.name], v.count == shard.elementCount else { return false }
        v.withUnsafeBufferPointer { src in
            if let base = src.baseAddress { dst.update(from: base, count: shard.elementCount) }
        }
        return true
    }

    private func computeCenter() {
        let n = round.count
        // The start: the coordinate-wise median of every shard.
        let median = CoordinateWiseAggregator(rule: .median)
        for u in round.updates { try? median.add(u) }
        for shard in layout.shards {
            var start = [Float](repeating: 0, count: shard.elementCount)
            _ = start.withUnsafeMutableBufferPointer { median.gradient(of: shard, into: $0) }
            center[shard.name] = start
        }
        var radius = 0.0
        var clipped = 0
        for iteration in 0..<iterations {
            let distances = distancesFromCenter()
            if iteration == 0 {
                let sorted = distances.sorted()
                radius = radiusFactor * sorted[n / 2]
            }
            guard radius > 0 else { break }  // at least half the updates sit on the center
            let scales = distances.map { $0 > radius ? radius / $0 : 1.0 }
            clipped = scales.filter { $0 < 1 }.count
            moveCenter(scales: scales.map { Float($0 / Double(n)) })
        }
        lastRadius = radius
        lastClipped = clipped
        computed = true
    }

    /// ‖gᵢ − v‖ over all shards, in Double.
    private func distancesFromCenter() -> [Double] {
        let n = round.count
        var squares = [Double](repeating: 0, count: n)
        for shard in layout.shards {
            let c = shard.elementCount
            guard let v = center[shard.name] else { continue }
            round.withShardMatrix(shard) { m in
                v.withUnsafeBufferPointer { vp in
                    for i in 0..<n {
                        var s = 0.0
                        for j in 0..<c {
                            let d = Double(m[i * c + j] - vp[j])
                            s += d * d
                        }
                        squares[i] += s
                    }
                }
            }
        }
        return squares.map { $0.squareRoot() }
    }

    /// v ← v + Σᵢ wᵢ (gᵢ − v), shard by shard.
    private func moveCenter(scales: [Float]) {
        let n = round.count
        for shard in layout.shards {
            let c = shard.elementCount
            guard var v = center[shard.name] else { continue }
            round.withShardMatrix(shard) { m in
                v.withUnsafeMutableBufferPointer { vp in
                    for j in 0..<c {
                        let old = vp[j]
                        var delta: Float = 0
                        for i in 0..<n { delta += scales[i] * (m[i * c + j] - old) }
                        vp[j] = old + delta
                    }
                }
            }
            center[shard.name] = v
        }
    }
}
