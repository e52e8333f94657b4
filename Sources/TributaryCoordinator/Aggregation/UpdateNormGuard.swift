import Foundation

/// Refuses an update whose L2 norm is out of all proportion: one worker sending 3e38 in
/// every coordinate must not make the round's gradient non-finite (which would throw the
/// honest units of the round away), nor outweigh them by sheer size. Robust rules that
/// also bound smaller attacks belong to the aggregator; this is the floor under all of them.
public struct UpdateNormGuard: Sendable {
    /// Refused whatever the history: beyond this an fp32 sum of squares (the optimizer's
    /// clipping, Adam's second moment) is no longer finite.
    public static let absoluteBound = 1e18
    /// Accepted norms remembered for the typical norm.
    static let window = 64
    /// Norms needed before the relative bound applies (before that only the absolute one).
    static let minimumHistory = 3

    /// Refused beyond this multiple of the median recent norm.
    public let ratio: Double
    private(set) var recent: [Double] = []

    public init(ratio: Double) { self.ratio = ratio }

    public enum Verdict: Equatable, Sendable {
        case accept
        case refuse(bound: Double, typical: Double?)
    }

    /// The median of the recently accepted norms (nil: too few yet).
    public var typicalNorm: Double? {
        guard recent.count >= Self.minimumHistory else { return nil }
        let sorted = recent.sorted()
        return sorted[sorted.count / 2]
    }

    public func check(norm: Double) -> Verdict {
        let typical = typicalNorm
        let bound = min(Self.absoluteBound, typical.map { ratio * $0 } ?? .infinity)
        guard norm.isFinite, norm <= bound else { return .refuse(bound: bound, typical: typical) }
        return .accept
    }

    public mutating func noteAccepted(norm: Double) {
        guard norm.isFinite else { return }
        recent.append(norm)
        if recent.count > Self.window { recent.removeFirst() }
    }
}

/// Large norms refused per unit, by worker: an honest unit can have a gradient far beyond the
/// typical norm (a loss spike), and refusing it from every worker would hold its sync round
/// until the deadline. A large norm is let in when it is corroborated:
/// - a second, different worker reports a norm within `tolerance` of an earlier refusal for
///   the same unit; or
/// - the job is stalled on it: the unit's agreeing norm has been refused `stallRefusals`
///   times (from any worker, the same one included) with no update accepted anywhere in the
///   job meanwhile. A job whose only worker hits a loss spike would otherwise refuse it
///   forever; while other workers' updates are accepted, a lone large norm stays out.
/// Either way the aggregation rule still bounds its effect. Bounded: the oldest units are
/// forgotten.
struct LargeNormWitnesses: Sendable {
    static let tolerance = 0.05
    static let capacity = 1024
    static let stallRefusals = 3
    private struct Refusal {
        let worker: String
        let norm: Double
        /// `accepted` when it was refused.
        let acceptedBefore: Int
    }
    private var byUnit: [String: [Refusal]] = [:]
    private var order: [String] = []
    /// Updates accepted in the job so far (by this process).
    private var accepted = 0

    /// Whether `norm` for `unit` is corroborated (see the type); otherwise notes its refusal.
    mutating func corroborates(unit: String, worker: String, norm: Double) -> Bool {
        let agreeing = (byUnit[unit] ?? []).filter { abs($0.norm - norm) <= Self.tolerance * max($0.norm, norm) }
        if agreeing.contains(where: { $0.worker != worker }) { return true }
        if agreeing.filter({ $0.acceptedBefore == accepted }).count >= Self.stallRefusals - 1 { return true }
        if byUnit[unit] == nil {
            order.append(unit)
            if order.count > Self.capacity { byUnit[order.removeFirst()] = nil }
        }
        byUnit[unit, default: []].append(Refusal(worker: worker, norm: norm, acceptedBefore: accepted))
        return false
    }

    /// An update was accepted (any unit): the job is not stalled.
    mutating func noteAccepted(unit: String) {
        accepted += 1
        byUnit[unit] = nil
    }
}
