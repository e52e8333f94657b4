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
