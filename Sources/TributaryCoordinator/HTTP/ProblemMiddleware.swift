import Foundation
import Hummingbird
import Logging
import NIOCore
import TributaryProtocol

/// Turns every error into an RFC 9457 problem body.
struct ProblemMiddleware<Context: RequestContext>: RouterMiddleware {
    let logger: Logger

    func handle(_ request: Request, context: Context,
                next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as JobError {
            var response = error.problem.httpResponse()
            // Storage comes back by itself (space freed, the database restarted): ask again later.
            if case .storageUnavailable = error { response.headers[.retryAfter] = "5" }
            if case .jobFailed = error { response.headers[.retryAfter] = "60" }
            return response
        } catch let problem as Problem {
            return problem.httpResponse()
        } catch let error as HTTPError {
            let code: ProblemCode = switch error.status.code {
            case 404: .notFound
            case 413: .payloadTooLarge
            case 401: .unauthorized
            case 500...: .internalError
            default: .malformedRequest
            }
            let detail = error.body ?? (error.status.code == 404 ? "no route \(request.method) \(request.uri.path)" : error.status.reasonPhrase)
            return Problem(code, status: error.status.code, detail: detail).httpResponse()
        } catch {
            logger.error("request failed", metadata: ["path": "\(LogSafe.escape(request.uri.path))",
                                                      "error": "\(LogSafe.escape(String(describing: error)))"])
            return Problem(.internalError, detail: "internal error").httpResponse()
        }
    }
}

extension JobError {
    /// The problem body the job's refusal is sent as.
    var problem: Problem { Problem(problemCode, detail: description) }
}

extension Problem {
    func httpResponse() -> Response {
        let data = (try? WireJSON.encoder().encode(self)) ?? Data()
        return Response(status: .init(code: status),
                        headers: [.contentType: Problem.contentType],
                        body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}
