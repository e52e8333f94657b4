import Foundation
import Hummingbird
import NIOConcurrencyHelpers
import NIOCore
import TributaryProtocol

/// The coordinator's per-client limits (`limits` in the job file), shared by its routes.
final class RequestLimits: Sendable {
    let registrations: AddressRateLimiter
    let badJoinTokens: FailureLockout
    let publicRequests: AddressRateLimiter
    let uploads: UploadGate
    let connections: ConnectionCounter
    let newConnections: AddressRateLimiter

    init(_ limits: JobConfig.Limits) {
        registrations = AddressRateLimiter(rate: limits.registrationsPerMinute / 60, burst: limits.registrationBurst)
        badJoinTokens = FailureLockout(limit: limits.badJoinTokens, lockout: limits.lockoutSeconds)
        publicRequests = AddressRateLimiter(rate: limits.publicRequestsPerSecond, burst: limits.publicBurst)
        uploads = UploadGate(total: limits.maxConcurrentUploads, perWorker: 2)
        connections = ConnectionCounter(perAddress: limits.maxConnectionsPerAddress)
        newConnections = AddressRateLimiter(rate: limits.connectionsPerSecond, burst: limits.connectionBurst)
    }

    /// A 429 refusal with its Retry-After (whole seconds, at least 1).
    static func tooMany(_ detail: String, retryAfter seconds: Double) -> Response {
        var response = Problem(.rateLimited, detail: detail).httpResponse()
        response.headers[.retryAfter] = String(max(1, Int(seconds.rounded(.up))))
        return response
    }
}

/// Uploads being read at once, in all and per worker: stalled uploads hold memory and a
/// connection each, so their number is bounded.
final class UploadGate: Sendable {
    let total: Int
    let perWorker: Int
    private let state = NIOLockedValueBox((total: 0, byWorker: [String: Int]()))

    init(total: Int, perWorker: Int) {
        self.total = total
        self.perWorker = perWorker
    }

    func enter(_ worker: String) -> Bool {
        state.withLockedValue { s in
            let mine = s.byWorker[worker, default: 0]
            guard s.total < total, mine < perWorker else { return false }
            s.total += 1
            s.byWorker[worker] = mine + 1
            return true
        }
    }

    func leave(_ worker: String) {
        state.withLockedValue { s in
            s.total -= 1
            let mine = s.byWorker[worker, default: 1] - 1
            s.byWorker[worker] = mine > 0 ? mine : nil
        }
    }

    var inFlight: Int { state.withLockedValue { $0.total } }
}

/// Routes anyone may read: a request with a worker's (or the viewer's) bearer token
/// passes; one without is rate-limited per address, and refused outright when the job
/// says `auth.public_read: false`. Monitoring routes (`limitTokens`) are rate-limited
/// with a token too: workers never need them often, and a token must not buy a flood.
struct PublicAccessMiddleware: RouterMiddleware {
    typealias Context = WorkerRequestContext
    let job: TrainingJob
    let limits: RequestLimits
    let publicRead: Bool
    let viewerTokenHash: String?
    var limitTokens = false

    func handle(_ request: Request, context: Context,
                next: (Request, Context) async throws -> Response) async throws -> Response {
        if limitTokens, bearer(request) != nil, let wait = limits.publicRequests.take(context.clientAddress) {
            return RequestLimits.tooMany("too many requests from this address; slow down", retryAfter: wait)
        }
        if let token = bearer(request), !token.isEmpty {
            if let viewerTokenHash, WorkerToken.hash(token) == viewerTokenHash { return try await next(request, context) }
            if job.registry.worker(token: token, at: Date()) != nil { return try await next(request, context) }
            if job.registry.isBanned(token: token) { throw JobError.workerBanned }
            throw Problem(.forbidden, detail: "unknown bearer token")
        }
        if let wait = limits.publicRequests.take(context.clientAddress) {
            return RequestLimits.tooMany("too many requests from this address; slow down", retryAfter: wait)
        }
        guard publicRead else {
            throw Problem(.unauthorized, detail: "this job is not public: send a worker's or the viewer's bearer token")
        }
        return try await next(request, context)
    }
}

/// Reads a request body of at most `limit` bytes within `seconds`.
func collectBody(_ request: Request, upTo limit: Int, within seconds: Double) async throws -> ByteBuffer {
    try await withThrowingTaskGroup(of: ByteBuffer?.self) { group in
        group.addTask { try await request.body.collect(upTo: limit) }
        group.addTask {
            try await Task.sleep(for: .seconds(seconds))
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let body = first else {
            throw Problem(.requestTimeout, detail: "the body did not arrive within \(Int(seconds)) s")
        }
        return body
    }
}
