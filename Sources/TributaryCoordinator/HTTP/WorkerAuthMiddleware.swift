import Hummingbird
import TributaryProtocol

/// The request context of the coordinator's routes: Hummingbird's core storage plus the
/// worker that `WorkerAuthMiddleware` authenticated (nil on public routes).
public struct WorkerRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public var workerID: String?
    /// The client's address as limits count it (`ClientAddress.key`).
    public let clientAddress: String

    public init(source: Source) {
        coreContext = .init(source: source)
        workerID = nil
        clientAddress = ClientAddress.key(source.channel.remoteAddress)
    }

    /// The authenticated worker; a route behind `WorkerAuthMiddleware` always has one.
    func requireWorker() throws(JobError) -> String {
        guard let workerID else { throw .missingBearerToken }
        return workerID
    }
}

/// Resolves the `Authorization: Bearer …` header to a registered worker before the route
/// runs, or refuses the request (401 without a token, 403 for an unknown one).
struct WorkerAuthMiddleware: RouterMiddleware {
    typealias Context = WorkerRequestContext
    let job: TrainingJob

    func handle(_ request: Request, context: Context,
                next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        context.workerID = try await job.authenticate(bearer: bearer(request))
        return try await next(request, context)
    }
}
