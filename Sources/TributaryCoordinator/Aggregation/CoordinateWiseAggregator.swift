import TributaryCompression
import TributaryProtocol

/// Coordinate-wise robust rules (Yin et al., 2018): each coordinate of the round's gradient
/// is the median, or the mean after dropping the largest and smallest `trim` fraction, of
/// that coordinate across the round's updates. A minority of arbitrary updates cannot move a
/// coordinate past the honest values' range. Updates count equally (a sync round's units
/// carry equal weights). Memory: the encoded updates plus one shard's n × elements matrix.
public final class CoordinateWiseAggregator: RoundAggregator {
    public enum Rule: Sendable, Equatable {
        case median
        /// Drop ⌊trim · n⌋ values from each end (trim in [0, 0.5)).
        case trimmedMean(trim: Double)
    }

    public let rule: Rule
    public var name: String {
        switch rule {
        case .median: return "median"
        case .trimmedMean: return "trimmed_mean"
        }
    }
    public var updateCount: Int { round.count }
    private var round = RetainedRound()
    private var column: [Float] = []

    public init(rule: Rule) {
        self.rule = rule
    }

    public func add(_ update: RoundUpdate) throws(FrameError) { round.add(update) }

    public func reset() { round.reset() }

    public func gradient(of shard: ShardLayout.Shard, into out: UnsafeMutableBufferPointer<Float>) -> Bool {
        let n = round.count, c = shard.elementCount
        guard n > 0, out.count == c, let dst = out.baseAddress else { return false }
        if column.count < n { column = [Float](repeating: 0, count: n) }
        let drop: Int
        switch rule {
        case .median: drop = (n - 1) / 2
        case let .trimmedMean(trim): drop = min((n - 1) / 2, Int(trim * Double(n)))
        }
        let isMedian = rule == .median
        round.withShardMatrix(shard) { m in
            guard let rows = m.baseAddress else { return }
            column.withUnsafeMutableBufferPointer { col in
                for j in 0..<c {
                    for i in 0..<n { col[i] = rows[i * c + j] }
                    Self.insertionSort(col, count: n)
                    if isMedian {
                        dst[j] = n % 2 == 1 ? col[n / 2] : 0.5 * (col[n / 2 - 1] + col[n / 2])
                    } else {
                        var sum: Float = 0
                        for i in drop..<(n - drop) { sum += col[i] }
                        dst[j] = sum / Float(n - 2 * drop)
                    }
                }
            }
        }
        return true
    }

    /// Rounds hold tens of updates: insertion sort beats a general sort's overhead there.
    @inline(__always)
    static func insertionSort(_ a: UnsafeMutableBufferPointer<Float>, count n: Int) {
        guard n > 1 else { return }
        for i in 1..<n {
            let x = a[i]
            var k = i - 1
            while k >= 0 && a[k] > x {
                a[k + 1] = a[k]
                k -= 1
            }
            a[k + 1] = x
        }
    }
}
