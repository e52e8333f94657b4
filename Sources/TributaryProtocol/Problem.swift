import Foundation

/// An RFC 9457 problem body (`application/problem+json`), the answer to every refused
/// request. `code` is the stable, machine-readable reason a client branches on.
public struct Problem: Codable, Sendable, Equatable, Error, CustomStringConvertible {
    public var type: String
    public var title: String
    public var status: Int
    public var detail: String
    public var code: ProblemCode

    /// A problem with the status its code always has (`ProblemCode.status`).
    public init(_ code: ProblemCode, detail: String) {
        self.init(code, status: code.status, detail: detail)
    }

    public init(_ code: ProblemCode, status: Int, detail: String) {
        self.code = code
        self.status = status
        self.detail = detail
        type = "https://tributary.invalid/problems/\(code.rawValue)"
        title = code.title
    }

    public var description: String { "\(status) \(code.rawValue): \(detail)" }

    public static let contentType = "application/problem+json"

    enum CodingKeys: String, CodingKey { case type, title, status, detail, code }
}

/// Why a request was refused.
public enum ProblemCode: String, Codable, Sendable, CaseIterable {
    case unauthorized = "unauthorized"           // 401: no or malformed credentials
    case forbidden = "forbidden"              // 403: wrong join token or bearer token
    case notFound = "not_found"               // 404: no such route, lease, version or shard
    case malformedRequest = "malformed_request"       // 400: unparseable JSON, missing fields, bad values
    case leaseExpired = "lease_expired"           // 410: the lease ran out (the unit went back to the queue)
    case leaseNotActive = "lease_not_active"         // 409: released, committed, or someone else's
    case staleVersion = "stale_version"           // 409: computed on a version older than the staleness bound
    case versionGone = "version_gone"            // 410: a parameter version no longer served
    case unknownShard = "unknown_shard"           // 404: a shard name not in the manifest
    case invalidUpdate = "invalid_update"          // 422: wrong size, bad checksum, non-finite values, bad codec
    case incompleteUpdate = "incomplete_update"       // 409: commit before every shard was pushed
    case duplicateUpdate = "duplicate_update"        // 409: the unit's result was already accepted
    case payloadTooLarge = "payload_too_large"        // 413: body larger than the manifest allows
    case noWork = "no_work"                 // 503: nothing to lease now; retry after the Retry-After delay
    case jobComplete = "job_complete"       // 410: the job has run all its rounds; stop
    case tooManyLeases = "too_many_leases"        // 409: the worker already holds leases.max_per_worker leases
    case leaseLifetimeExceeded = "lease_lifetime_exceeded"  // 409: renewals cannot carry a lease past leases.max_lifetime_seconds
    case roundDeadlineReached = "round_deadline_reached"    // 409: renewals cannot carry a sync lease past its round's deadline
    case updateNormOutOfRange = "update_norm_out_of_range"  // 422: the update's norm is far beyond the round's typical norm
    case rateLimited = "rate_limited"             // 429: too many requests (or wrong join tokens) from this address; wait Retry-After
    case workerBanned = "worker_banned"           // 403: the operator banned this worker; do not register again
    case requestTimeout = "request_timeout"       // 408: the body did not arrive in time
    case internalError = "internal_error"          // 500
    case replayedUpdate = "replayed_update"        // 422: the same update body was already accepted for another unit
    case storageUnavailable = "storage_unavailable"  // 503: the coordinator cannot write its ledger or update log (disk full?); retry after Retry-After
    case jobFailed = "job_failed"                 // 503: the job stopped on an error its operator must fix; retry much later
    case deltaUnavailable = "delta_unavailable"   // 409: no delta chain between those versions is served (or it is not smaller); fetch the full shard

    /// The HTTP status each refusal is sent with: the one table from reasons to statuses.
    public var status: Int {
        switch self {
        case .unauthorized: return 401
        case .forbidden: return 403
        case .notFound, .unknownShard: return 404
        case .malformedRequest: return 400
        case .leaseExpired, .versionGone, .jobComplete: return 410
        case .leaseNotActive, .staleVersion, .incompleteUpdate, .duplicateUpdate, .tooManyLeases,
             .leaseLifetimeExceeded, .roundDeadlineReached, .deltaUnavailable: return 409
        case .invalidUpdate, .updateNormOutOfRange, .replayedUpdate: return 422
        case .rateLimited: return 429
        case .requestTimeout: return 408
        case .workerBanned: return 403
        case .payloadTooLarge: return 413
        case .noWork, .storageUnavailable, .jobFailed: return 503
        case .internalError: return 500
        }
    }

    public var title: String {
        switch self {
        case .unauthorized: return "Authentication required"
        case .forbidden: return "Credentials refused"
        case .notFound: return "Not found"
        case .malformedRequest: return "Malformed request"
        case .leaseExpired: return "Lease expired"
        case .leaseNotActive: return "Lease not active"
        case .staleVersion: return "Update computed on a stale version"
        case .versionGone: return "Parameter version no longer served"
        case .unknownShard: return "Unknown shard"
        case .invalidUpdate: return "Invalid update"
        case .incompleteUpdate: return "Update incomplete"
        case .duplicateUpdate: return "Unit already done"
        case .payloadTooLarge: return "Body too large"
        case .noWork: return "No work available"
        case .jobComplete: return "Job complete"
        case .internalError: return "Internal error"
        case .tooManyLeases: return "Lease limit reached"
        case .leaseLifetimeExceeded: return "Lease lifetime reached"
        case .roundDeadlineReached: return "Round deadline reached"
        case .updateNormOutOfRange: return "Update norm out of range"
        case .rateLimited: return "Too many requests"
        case .workerBanned: return "Worker banned"
        case .requestTimeout: return "Request timed out"
        case .storageUnavailable: return "Storage unavailable"
        case .replayedUpdate: return "Update replayed"
        case .jobFailed: return "Job failed"
        case .deltaUnavailable: return "Delta chain unavailable"
        }
    }
}
