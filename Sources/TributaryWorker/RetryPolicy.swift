import Foundation

/// How long a worker waits after a failed or refused request (issue 12, finding 13: a
/// hostile coordinator's refusals made it loop without pause). Both waits start over only
/// after a committed unit.
public struct RetryPolicy: Sendable {
    /// Every failure or refusal, whatever its status: 125–250 ms at first, doubling to 15–30 s.
    public var base: Duration
    public var cap: Duration
    /// "No work" polls (a round waiting on other workers): 0.25–0.5 s at first, doubling to
    /// 1–2 s, so a worker resumes within 2 s of a round closing but never polls in a loop.
    public var idleBase: Duration
    public var idleCap: Duration

    public init(base: Duration = .milliseconds(250), cap: Duration = .seconds(30),
                idleBase: Duration = .milliseconds(500), idleCap: Duration = .seconds(2)) {
        self.base = base
        self.cap = cap
        self.idleBase = idleBase
        self.idleCap = idleCap
    }
}

/// Exponential back-off with jitter: the n-th wait in a row is min(cap, base·2ⁿ) scaled
/// by a random factor in [0.5, 1], so workers refused together do not return together.
struct Backoff {
    let base: Double
    let cap: Double
    private var attempt = 0

    init(base: Duration, cap: Duration) {
        self.base = Self.seconds(base)
        self.cap = max(Self.seconds(cap), self.base)
    }

    mutating func reset() { attempt = 0 }

    mutating func next() -> Duration {
        let ceiling = min(cap, base * pow(2, Double(attempt)))
        attempt = min(attempt + 1, 62)
        return .seconds(Double.random(in: 0.5...1.0) * ceiling)
    }

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }
}
