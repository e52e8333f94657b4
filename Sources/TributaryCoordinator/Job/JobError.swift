import TributaryProtocol

/// Why the job refused a request, in the job's own terms. The HTTP layer turns each into
/// a problem body (`problemCode`, whose `status` is the one table of HTTP statuses); the
/// job itself knows nothing of HTTP.
public enum JobError: Error, Equatable, CustomStringConvertible {
    case badJoinToken
    case missingBearerToken
    case unknownBearerToken
    case jobComplete(totalRounds: Int)
    case noWork
    case leaseNotFound(String)
    case leaseExpired(String)
    case leaseNotActive(String, state: String)
    case leaseOfAnotherWorker(String)
    case versionNotYet(Int, current: Int)
    case versionGone(Int, current: Int)
    case unknownShard(String, known: [String])
    case invalidUpdate(shard: String, reason: String)
    case invalidCommit(expectedSamples: Int)
    case incompleteUpdate(missing: [String])
    case staleUpdate(baseVersion: Int, current: Int, bound: Int)
    case alreadyCommitted(lease: String)
    case unitAlreadyDone(unit: Int, epoch: Int)
    case tooManyLeases(held: Int, limit: Int)
    case leaseLifetimeExceeded(String, limit: Double)
    case roundDeadlineReached(String)
    case updateNormOutOfRange(norm: Double, bound: Double, typical: Double?)
    case workerBanned
    case unknownWorker(String)
    /// The update's bodies are byte for byte an update already accepted for another unit.
    case replayedUpdate(unit: Int, epoch: Int)
    /// The ledger or the update log cannot be written (a full disk, a lost database): the
    /// request changed nothing; work resumes by itself once the storage is back.
    case storageUnavailable(String)
    /// The job stopped on an error only its operator can fix (every step non-finite).
    case jobFailed(String)
    /// No chain of deltas for this shard between the versions is served (or it would not be smaller).
    case deltaUnavailable(String, from: Int, to: Int, reason: String)
    /// No sample grid to serve: the model draws none, or no validation has run yet.
    case noSamples(String)

    public var problemCode: ProblemCode {
        switch self {
        case .badJoinToken, .unknownBearerToken: return .forbidden
        case .missingBearerToken: return .unauthorized
        case .jobComplete: return .jobComplete
        case .noWork: return .noWork
        case .leaseNotFound, .versionNotYet: return .notFound
        case .leaseExpired: return .leaseExpired
        case .leaseNotActive, .leaseOfAnotherWorker: return .leaseNotActive
        case .versionGone: return .versionGone
        case .unknownShard: return .unknownShard
        case .invalidUpdate: return .invalidUpdate
        case .invalidCommit: return .malformedRequest
        case .incompleteUpdate: return .incompleteUpdate
        case .staleUpdate: return .staleVersion
        case .alreadyCommitted, .unitAlreadyDone: return .duplicateUpdate
        case .tooManyLeases: return .tooManyLeases
        case .leaseLifetimeExceeded: return .leaseLifetimeExceeded
        case .roundDeadlineReached: return .roundDeadlineReached
        case .updateNormOutOfRange: return .updateNormOutOfRange
        case .workerBanned: return .workerBanned
        case .unknownWorker, .noSamples: return .notFound
        case .storageUnavailable: return .storageUnavailable
        case .replayedUpdate: return .replayedUpdate
        case .jobFailed: return .jobFailed
        case .deltaUnavailable: return .deltaUnavailable
        }
    }

    /// What happened and what the client should do, for the problem body's `detail`.
    public var description: String {
        switch self {
        case .badJoinToken: return "the join token is not this job's"
        case .missingBearerToken: return "send the bearer token from registration in the Authorization header"
        case .unknownBearerToken: return "unknown bearer token; register again"
        case let .jobComplete(total): return "the job is complete (\(total) rounds)"
        case .noWork: return "every unit of the round is leased; retry shortly"
        case let .leaseNotFound(id): return "no lease \(id)"
        case let .leaseExpired(id): return "lease \(id) expired; its unit went back to the queue"
        case let .leaseNotActive(id, state): return "lease \(id) is \(state)"
        case let .leaseOfAnotherWorker(id): return "lease \(id) belongs to another worker"
        case let .versionNotYet(v, current): return "version \(v) does not exist yet (current \(current))"
        case let .versionGone(v, current): return "version \(v) is no longer served (current \(current)); lease again"
        case let .unknownShard(name, known):
            return known.isEmpty ? "no shard '\(name)'" : "no shard '\(name)' (shards: \(known.joined(separator: ", ")))"
        case let .invalidUpdate(shard, reason): return "shard '\(shard)': \(reason)"
        case let .invalidCommit(samples):
            return "commit must report samples = \(samples) and a finite, non-negative loss"
        case let .incompleteUpdate(missing): return "push every shard before commit; missing: \(missing.joined(separator: ", "))"
        case let .staleUpdate(base, current, bound):
            return "computed on version \(base), current is \(current), bound is \(bound); lease again"
        case let .alreadyCommitted(id): return "lease \(id) was already committed; its update counts once"
        case let .unitAlreadyDone(unit, epoch): return "unit \(unit) of epoch \(epoch) is already done"
        case let .tooManyLeases(held, limit):
            return "this worker holds \(held) lease(s), the job's limit is \(limit); commit or release one first"
        case let .leaseLifetimeExceeded(id, limit):
            return "lease \(id) reached its lifetime (\(limit.formatted()) s); commit what you have or release it"
        case let .roundDeadlineReached(id):
            return "lease \(id) cannot outlive its round's deadline; commit now or release it"
        case let .updateNormOutOfRange(norm, bound, typical):
            let seen = typical.map { ", typical norm \(String(format: "%.3g", $0))" } ?? ""
            return "update norm \(String(format: "%.3g", norm)) exceeds the bound \(String(format: "%.3g", bound))\(seen)"
        case .workerBanned: return "the operator banned this worker; do not register again"
        case let .unknownWorker(id): return "no worker \(id)"
        case let .replayedUpdate(unit, epoch):
            return "this update is byte for byte the one accepted for unit \(unit) of epoch \(epoch); compute the gradient of your own unit"
        case let .storageUnavailable(why):
            return "the coordinator cannot store work now (\(why)); nothing was changed, retry later"
        case let .jobFailed(why): return "the job stopped: \(why)"
        case let .deltaUnavailable(name, from, to, reason):
            return "no delta chain for shard '\(name)' from version \(from) to \(to): \(reason); fetch the full shard"
        case let .noSamples(reason): return "no sample grid: \(reason)"
        }
    }

    /// The reason counted in `updates_rejected` (status and metrics), when the refusal counts.
    var rejectionReason: String? {
        switch self {
        case .badJoinToken: return "bad_join_token"
        case .unknownBearerToken: return "bad_token"
        case .unknownShard: return "unknown_shard"
        case .invalidUpdate: return "invalid_update"
        case .invalidCommit: return "invalid_commit"
        case .staleUpdate: return "stale_version"
        case .alreadyCommitted, .unitAlreadyDone: return "duplicate_update"
        case .updateNormOutOfRange: return "update_norm_out_of_range"
        case .replayedUpdate: return "replayed_update"
        default: return nil
        }
    }
}
