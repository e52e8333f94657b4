import TributaryCompression
import TributaryProtocol
import TributaryTensor

/// Async mode's robustness: each accepted update is a round of its own, so no rule can
/// weigh it against its peers. It is clipped instead against a running reference: the
/// centered-clipping center of the last `capacity` accepted updates. An update farther from
/// that center than `radiusFactor` × the window's median distance from it is pulled in to
/// that distance, so one hostile update moves the model by about as much as an honest one
/// (a bound on how far, not on which way: sync rounds with replication reach further).
///
/// The window holds accepted updates as they arrived (encoded), so it is a function of the
/// ledger's order alone: recovery refills it from the update log and replays bit for bit.
final class RunningReferenceClip {
    /// Updates the reference is taken over; recovery needs this many rounds of log before
    /// a checkpoint.
    static let capacity = 8
    /// Below this many updates there is no reference yet (the first rounds pass unclipped).
    static let minimumWindow = 3

    let radiusFactor: Double
    private let layout: ShardLayout
    private let center: CenteredClipAggregator
    private var window: [RoundUpdate] = []
    /// Updates clipped so far (status and tests).
    private(set) var clipped = 0

    init(layout: ShardLayout, iterations: Int, radiusFactor: Double) {
        self.layout = layout
        self.radiusFactor = radiusFactor
        center = CenteredClipAggregator(layout: layout, iterations: iterations, radiusFactor: 1)
    }

    var count: Int { window.count }

    /// Appends an accepted update (after it was applied), forgetting the oldest.
    func note(_ update: RoundUpdate) {
        window.append(update)
        if window.count > Self.capacity { window.removeFirst(window.count - Self.capacity) }
    }

    func reset() { window.removeAll() }

    /// Pulls `gradient` (every shard, flat) in toward the reference when it lies too far;
    /// returns the factor its offset was scaled by (1: untouched).
    @discardableResult
    func clip(_ gradient: inout [String: [Float]]) -> Double {
        guard window.count >= Self.minimumWindow else { return 1 }
        center.reset()
        for u in window { try? center.add(u) }
        var reference: [String: [Float]] = [:]
        var squares = 0.0
        for shard in layout.shards {
            guard let g = gradient[shard.name], g.count == shard.elementCount else { return 1 }
            var r = [Float](repeating: 0, count: shard.elementCount)
            guard r.withUnsafeMutableBufferPointer({ center.gradient(of: shard, into: $0) }) else { return 1 }
            squares += g.withUnsafeBufferPointer { gp in
                r.withUnsafeBufferPointer { rp in
                    guard let a = gp.baseAddress, let b = rp.baseAddress else { return 0 }
                    return ElementwiseKernels.squaredDistance(a, b, count: g.count)
                }
            }
            reference[shard.name] = r
        }
        let distance = squares.squareRoot()
        let radius = radiusFactor * center.lastRadius
        guard radius > 0, distance > radius, distance.isFinite else { return 1 }
        let scale = Float(radius / distance)
        for shard in layout.shards {
            guard let r = reference[shard.name], var g = gradient[shard.name] else { continue }
            for j in 0..<g.count { g[j] = r[j] + scale * (g[j] - r[j]) }
            gradient[shard.name] = g
        }
        clipped += 1
        return Double(scale)
    }
}
