import TributaryCompression
import TributaryProtocol

/// One accepted unit's update as a round combines it: every shard's encoded body (a
/// tensor frame, already validated on arrival) and the update's weight.
public struct RoundUpdate: Sendable {
    public let workerID: String
    /// samples / (1 + staleness).
    public let weight: Double
    public let samples: Int
    public let bodies: [String: [UInt8]]
}

/// A rule for combining a round's updates into one gradient. The job hands each accepted
/// update to `add`, then asks for the round's gradient shard by shard and `reset`s for the
/// next round. Bodies are small (they are compressed), so a rule that needs the whole
/// round (a median, a clipped center) may keep them and decode them in `gradient`.
/// Owned by the job actor and used from it only.
public protocol RoundAggregator: AnyObject {
    /// A short name for logs and status ("mean").
    var name: String { get }
    /// Updates added since the last reset.
    var updateCount: Int { get }
    /// Adds one update. The job has checked that every shard's body is present and passed
    /// `TensorFrame` validation on arrival, so errors here are not expected from input.
    func add(_ update: RoundUpdate) throws(FrameError)
    /// Writes the round's combined gradient for `shard` (its flat layout) into `out`;
    /// false when the round holds nothing to combine.
    func gradient(of shard: ShardLayout.Shard, into out: UnsafeMutableBufferPointer<Float>) -> Bool
    /// Forgets the round.
    func reset()
}
