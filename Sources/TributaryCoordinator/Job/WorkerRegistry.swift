import Crypto
import Foundation
import NIOConcurrencyHelpers

/// Who the registered workers are, by the hash of their bearer token, and when each was
/// last seen. Requests authenticate here without waiting for the job. Tokens themselves
/// are never kept: only their SHA-256, as in the ledger.
public final class WorkerRegistry: Sendable {
    private struct State {
        var idsByTokenHash: [String: String] = [:]
        var lastSeen: [String: Date] = [:]
        /// Banned workers' token hashes (answered `worker_banned`, not "unknown", so that
        /// an honest client stops instead of registering again) and ids.
        var bannedTokenHashes: Set<String> = []
        var bannedIDs: Set<String> = []
    }

    private let state = NIOLockedValueBox(State())

    init() {}

    func add(id: String, tokenHash: String, seen: Date?) {
        state.withLockedValue {
            $0.idsByTokenHash[tokenHash] = id
            if let seen { $0.lastSeen[id] = seen }
        }
    }

    /// The worker a token belongs to (nil: none), noting it as seen now.
    func worker(token: String, at now: Date) -> String? {
        let hash = WorkerToken.hash(token)
        return state.withLockedValue {
            guard let id = $0.idsByTokenHash[hash] else { return nil }
            $0.lastSeen[id] = now
            return id
        }
    }

    func lastSeen(_ id: String) -> Date? { state.withLockedValue { $0.lastSeen[id] } }

    /// Whether `token` belonged to a worker the operator banned.
    func isBanned(token: String) -> Bool {
        let hash = WorkerToken.hash(token)
        return state.withLockedValue { $0.bannedTokenHashes.contains(hash) }
    }

    /// Stops `id`'s token from working, at once.
    func ban(id: String) {
        state.withLockedValue { s in
            for (hash, owner) in s.idsByTokenHash where owner == id {
                s.idsByTokenHash[hash] = nil
                s.bannedTokenHashes.insert(hash)
            }
            s.bannedIDs.insert(id)
        }
    }

    public var bannedIDs: Set<String> { state.withLockedValue { $0.bannedIDs } }

    /// Registered workers with a working token (a ban removes one): O(1), for per-request checks.
    var registered: Int { state.withLockedValue { $0.idsByTokenHash.count } }

    /// Registered workers, and those seen within `window` seconds of `now`.
    func counts(at now: Date, window: TimeInterval = 300) -> (total: Int, seenRecently: Int) {
        state.withLockedValue { s in
            (s.idsByTokenHash.count, s.lastSeen.values.filter { now.timeIntervalSince($0) < window }.count)
        }
    }
}

/// Bearer tokens are stored only as their SHA-256 (hex): a stolen ledger cannot be used
/// to impersonate a volunteer.
public enum WorkerToken {
    public static func hash(_ token: String) -> String {
        SHA256.hash(data: Data(token.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// A new bearer token: 32 random bytes, base64url without padding.
    static func make() -> String {
        var rng = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) }
        return "trb_" + Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}
