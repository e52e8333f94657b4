import Foundation
import NIOConcurrencyHelpers

/// Token buckets per client address: `rate` requests per second refilling up to `burst`.
/// The table is bounded: past `maxAddresses`, buckets that refilled completely (idle
/// clients) are dropped first, and if that is not enough, every address is forgotten
/// (a flood of spoofed-looking addresses must not grow memory).
final class AddressRateLimiter: Sendable {
    private struct Bucket {
        var tokens: Double
        var updated: Date
    }

    let rate: Double
    let burst: Double
    let maxAddresses: Int
    private let buckets = NIOLockedValueBox([String: Bucket]())

    init(rate: Double, burst: Int, maxAddresses: Int = 100_000) {
        self.rate = rate
        self.burst = Double(burst)
        self.maxAddresses = maxAddresses
    }

    /// Takes one token for `key`: nil when allowed, else the seconds until one is available.
    func take(_ key: String, now: Date = Date()) -> Double? {
        buckets.withLockedValue { table in
            var bucket = table[key] ?? Bucket(tokens: burst, updated: now)
            let elapsed = max(0, now.timeIntervalSince(bucket.updated))
            bucket.tokens = min(burst, bucket.tokens + elapsed * rate)
            bucket.updated = now
            defer {
                table[key] = bucket
                if table.count > maxAddresses { prune(&table, now: now) }
            }
            guard bucket.tokens >= 1 else { return (1 - bucket.tokens) / rate }
            bucket.tokens -= 1
            return nil
        }
    }

    private func prune(_ table: inout [String: Bucket], now: Date) {
        table = table.filter { $0.value.tokens + now.timeIntervalSince($0.value.updated) * rate < burst }
        if table.count > maxAddresses { table = [:] }
    }
}

/// Wrong join tokens per address: after `limit` of them within `window` seconds, the
/// address is locked out of registration for `lockout` seconds, whatever it sends (a
/// guessed token that arrives during the lockout is not even compared).
final class FailureLockout: Sendable {
    private struct Entry {
        var failures: [Date] = []
        var lockedUntil: Date?
    }

    let limit: Int
    let window: TimeInterval
    let lockout: TimeInterval
    private let entries = NIOLockedValueBox([String: Entry]())

    init(limit: Int, window: TimeInterval = 600, lockout: TimeInterval) {
        self.limit = limit
        self.window = window
        self.lockout = lockout
    }

    /// Seconds left of `key`'s lockout (nil: not locked out).
    func lockedFor(_ key: String, now: Date = Date()) -> Double? {
        entries.withLockedValue { table in
            guard let until = table[key]?.lockedUntil else { return nil }
            let left = until.timeIntervalSince(now)
            if left <= 0 { table[key] = nil; return nil }
            return left
        }
    }

    /// Records a wrong token from `key`; returns the lockout it triggered, if any.
    @discardableResult
    func noteFailure(_ key: String, now: Date = Date()) -> Double? {
        entries.withLockedValue { table in
            if table.count > 100_000 { table = table.filter { $0.value.lockedUntil != nil } }
            var entry = table[key] ?? Entry()
            entry.failures = entry.failures.filter { now.timeIntervalSince($0) < window } + [now]
            defer { table[key] = entry }
            guard entry.failures.count >= limit else { return nil }
            entry.failures = []
            entry.lockedUntil = now.addingTimeInterval(lockout)
            return lockout
        }
    }
}
