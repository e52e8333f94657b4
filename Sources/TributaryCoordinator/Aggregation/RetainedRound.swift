import TributaryCompression
import TributaryProtocol

/// A round's updates kept encoded (they are small), decoded one shard at a time into an
/// n × shard matrix when a robust rule needs them side by side. Memory: the encoded bodies
/// plus one matrix of the largest shard (n × elements × 4 bytes).
struct RetainedRound {
    private(set) var updates: [RoundUpdate] = []
    private var matrix: [Float] = []

    var count: Int { updates.count }

    mutating func add(_ update: RoundUpdate) { updates.append(update) }

    mutating func reset() {
        updates.removeAll(keepingCapacity: true)
    }

    /// Calls `body` with the round's values of `shard`: row i (of `count`) holds update i's
    /// `shard.elementCount` values. A body that fails to decode (impossible after the job's
    /// checks on arrival) decodes as zeros: one update cannot stop a round.
    mutating func withShardMatrix<T>(_ shard: ShardLayout.Shard,
                                     _ body: (UnsafeMutableBufferPointer<Float>) -> T) -> T {
        let n = updates.count, c = shard.elementCount
        if matrix.count < n * c { matrix = [Float](repeating: 0, count: n * c) }
        let updates = self.updates
        return matrix.withUnsafeMutableBufferPointer { m -> T in
            guard let base = m.baseAddress else { return body(m) }
            for (i, u) in updates.enumerated() {
                let row = UnsafeMutableBufferPointer(start: base + i * c, count: c)
                let ok: Bool = (u.bodies[shard.name] ?? []).withUnsafeBytes { raw in
                    do {
                        try TensorFrame.decode(raw, expectedCount: c, into: row)
                        return true
                    } catch {
                        return false
                    }
                }
                if !ok { row.update(repeating: 0) }
            }
            return body(UnsafeMutableBufferPointer(start: base, count: n * c))
        }
    }
}
