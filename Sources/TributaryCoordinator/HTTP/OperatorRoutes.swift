import Foundation
import Hummingbird
import TributaryProtocol

extension CoordinatorServer {
    /// `POST /v1/admin/workers/{id}/ban`, for the operator's bearer token. Without an
    /// operator token in the job file the route does not exist (404).
    func addOperatorRoutes(to router: Router<WorkerRequestContext>) {
        guard let operatorHash = job.operatorTokenHash else { return }
        let job = self.job, limits = self.limits
        router.post(RouterPath(Routes.ban(":worker"))) { request, context -> Response in
            // Wrong operator tokens count like wrong join tokens: a lockout after a few.
            let address = context.clientAddress
            if let wait = limits.badJoinTokens.lockedFor(address) {
                return RequestLimits.tooMany("too many wrong tokens from this address", retryAfter: wait)
            }
            guard let token = bearer(request), WorkerToken.hash(token) == operatorHash else {
                limits.badJoinTokens.noteFailure(address)
                throw Problem(.forbidden, detail: "the operator's bearer token is required")
            }
            try await job.ban(worker: context.parameters.require("worker"))
            return Response(status: .noContent)
        }
    }
}

/// `?offset=&limit=` of a paged list: offset from 0, limit 1...`maxPage` (default `defaultPage`).
func pageParameters(_ request: Request) throws -> (offset: Int, limit: Int) {
    let query = request.uri.queryParameters
    func integer(_ key: String, default value: Int, range: ClosedRange<Int>) throws -> Int {
        guard let text = query.get(key) else { return value }
        guard let n = Int(text), range.contains(n) else {
            throw Problem(.malformedRequest, detail: "\(key) must be an integer in \(range.lowerBound)...\(range.upperBound)")
        }
        return n
    }
    return (try integer("offset", default: 0, range: 0...Int(Int32.max)),
            try integer("limit", default: Routes.defaultPage, range: 1...Routes.maxPage))
}
