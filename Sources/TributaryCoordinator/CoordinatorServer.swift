import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdHTTP2
import Logging
import NIOCore
import NIOSSL
import ServiceLifecycle
import TributaryProtocol

/// The coordinator's HTTP surface (Protocol/openapi.yaml): parses requests, calls the
/// job, maps answers and refusals to responses. No training logic lives here.
public struct CoordinatorServer: Sendable {
    public let job: TrainingJob
    public let logger: Logger

    public init(job: TrainingJob, logger: Logger) {
        self.job = job
        self.logger = logger
    }

    /// Largest JSON body accepted (control messages are small).
    static let jsonLimit = 64 * 1024

    public func router() -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: ProblemMiddleware(logger: logger))
        let job = self.job

        router.post(RouterPath(Routes.register)) { request, _ -> Response in
            let body: RegisterRequest = try await decodeJSON(request)
            return try json(await job.register(body), status: .created)
        }
        router.get(RouterPath(Routes.job)) { _, _ -> Response in
            try json(await job.jobDescription)
        }
        router.post(RouterPath(Routes.leases)) { request, _ -> Response in
            let worker = try await job.authenticate(bearer: bearer(request))
            do {
                return try json(await job.lease(worker: worker), status: .created)
            } catch let p as Problem where p.code == .noWork {
                var response = p.httpResponse()
                response.headers[.retryAfter] = "1"
                return response
            }
        }
        router.post("/v1/leases/:lease/renew") { request, context -> Response in
            let worker = try await job.authenticate(bearer: bearer(request))
            return try json(await job.renew(lease: context.parameters.require("lease"), worker: worker))
        }
        router.delete("/v1/leases/:lease") { request, context -> Response in
            let worker = try await job.authenticate(bearer: bearer(request))
            try await job.release(lease: context.parameters.require("lease"), worker: worker)
            return Response(status: .noContent)
        }
        router.get("/v1/leases/:lease/batch") { request, context -> Response in
            let worker = try await job.authenticate(bearer: bearer(request))
            let body = try await job.batch(lease: context.parameters.require("lease"), worker: worker)
            return binary(body, type: Routes.batchType)
        }
        router.put("/v1/leases/:lease/updates/:shard") { request, context -> Response in
            let worker = try await job.authenticate(bearer: bearer(request))
            let shard = try context.parameters.require("shard")
            guard let limit = await job.updateBodyLimit(shard: shard) else {
                await job.noteRejection("unknown_shard", worker: worker)
                throw Problem(.unknownShard, status: 404, detail: "no shard '\(shard)'")
            }
            let buffer: ByteBuffer
            do {
                buffer = try await request.body.collect(upTo: limit)
            } catch is NIOTooManyBytesError {
                await job.noteRejection("payload_too_large", worker: worker)
                throw Problem(.payloadTooLarge, status: 413,
                              detail: "an update of shard '\(shard)' is at most \(limit) bytes")
            }
            let receipt = try await job.receiveUpdate(lease: context.parameters.require("lease"), worker: worker,
                                                      shard: shard, body: Array(buffer.readableBytesView))
            return try json(receipt, status: .accepted)
        }
        router.post("/v1/leases/:lease/commit") { request, context -> Response in
            let worker = try await job.authenticate(bearer: bearer(request))
            let body: CommitRequest = try await decodeJSON(request)
            return try json(await job.commit(lease: context.parameters.require("lease"), worker: worker, body))
        }
        router.get("/v1/versions/:version/manifest") { request, context -> Response in
            let version = try versionParameter(context)
            let manifest = try await job.manifest(version: version)
            var response = try json(manifest)
            // A version number can be republished with other parameters after a crash
            // rolls the job back to its checkpoint, so caches must revalidate (ETag).
            let etag = "\"" + WorkerToken.hash(String(decoding: try WireJSON.encoder().encode(manifest), as: UTF8.self)) + "\""
            if matches(request, etag) { return Response(status: .notModified, headers: [.eTag: etag, .cacheControl: "no-cache"]) }
            response.headers[.eTag] = etag
            response.headers[.cacheControl] = "no-cache"
            return response
        }
        router.get("/v1/versions/:version/shards/:shard") { request, context -> Response in
            let version = try versionParameter(context)
            let shard = try await job.shard(version: version, name: context.parameters.require("shard"))
            let etag = "\"\(shard.hash)\""
            if matches(request, etag) {
                return Response(status: .notModified, headers: [.eTag: etag, .cacheControl: "no-cache"])
            }
            await job.noteBytesOut(shard.body.count)
            var response = binary(shard.body, type: Routes.tensorFrameType)
            response.headers[.eTag] = etag
            response.headers[.cacheControl] = "no-cache"
            return response
        }
        router.get(RouterPath(Routes.status)) { _, _ -> Response in
            try json(await job.status())
        }
        router.get("/") { _, _ -> Response in
            // The dashboard: one self-contained page (no CDN, works offline) that polls /v1/status.
            Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-cache",
                                            .contentSecurityPolicy: DashboardPage.contentSecurityPolicy],
                     body: .init(byteBuffer: ByteBuffer(string: DashboardPage.html)))
        }
        router.get(RouterPath(Routes.workers)) { _, _ -> Response in
            try json(await job.workers())
        }
        router.get("/metrics") { _, _ -> Response in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                     body: .init(byteBuffer: ByteBuffer(bytes: job.metrics.exposition())))
        }
        return router
    }

    /// Serves until SIGINT/SIGTERM (or `shutdown.trigger()`), then checkpoints.
    public func run(host: String, port: Int, tls: (certificate: String, key: String)?,
                    shutdown: CoordinatorShutdown? = nil,
                    onListening: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        let server: HTTPServerBuilder
        if let tls {
            let chain = try NIOSSLCertificate.fromPEMFile(tls.certificate).map { NIOSSLCertificateSource.certificate($0) }
            let key = try NIOSSLPrivateKey(file: tls.key, format: .pem)
            var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
            configuration.applicationProtocols = ["h2", "http/1.1"]
            server = try .http2Upgrade(tlsConfiguration: configuration)
        } else {
            server = .http1()
        }
        let app = Application(router: router(), server: server,
                              configuration: .init(address: .hostname(host, port: port), serverName: "tributary"),
                              onServerRunning: { channel in await onListening(channel.localAddress?.port ?? port) },
                              logger: logger)
        let group = ServiceGroup(configuration: .init(services: [app, JobTicker(job: job, logger: logger)],
                                                      gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        await shutdown?.attach(group)
        try await group.run()
        try await job.writeCheckpoint()
        logger.info("coordinator stopped; checkpoint written")
    }
}

/// Stops a running coordinator gracefully from inside the process (tests, embedding).
public actor CoordinatorShutdown {
    private var group: ServiceGroup?
    private var requested = false

    public init() {}

    func attach(_ g: ServiceGroup) async {
        group = g
        if requested { await g.triggerGracefulShutdown() }
    }

    public func trigger() async {
        requested = true
        await group?.triggerGracefulShutdown()
    }
}

/// Expires leases and closes rounds whose deadline passed, twice a second.
struct JobTicker: Service {
    let job: TrainingJob
    let logger: Logger

    func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                try await Task.sleep(for: .milliseconds(500))
            } catch {
                return
            }
            do { try await job.tick() } catch {
                logger.error("periodic job work failed", metadata: ["error": "\(error)"])
            }
        }
    }
}

/// Turns every error into an RFC 9457 problem body.
struct ProblemMiddleware<Context: RequestContext>: RouterMiddleware {
    let logger: Logger

    func handle(_ request: Request, context: Context,
                next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
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
            logger.error("request failed", metadata: ["path": "\(request.uri.path)", "error": "\(error)"])
            return Problem(.internalError, status: 500, detail: "internal error").httpResponse()
        }
    }
}

extension Problem {
    func httpResponse() -> Response {
        let data = (try? WireJSON.encoder().encode(self)) ?? Data()
        return Response(status: .init(code: status),
                        headers: [.contentType: Problem.contentType],
                        body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response {
    let data = try WireJSON.encoder().encode(value)
    return Response(status: status, headers: [.contentType: "application/json"],
                    body: .init(byteBuffer: ByteBuffer(bytes: data)))
}

func binary(_ bytes: [UInt8], type: String) -> Response {
    Response(status: .ok, headers: [.contentType: type], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
}

func decodeJSON<T: Decodable>(_ request: Request) async throws -> T {
    let buffer: ByteBuffer
    do {
        buffer = try await request.body.collect(upTo: CoordinatorServer.jsonLimit)
    } catch is NIOTooManyBytesError {
        throw Problem(.payloadTooLarge, status: 413, detail: "JSON bodies are at most \(CoordinatorServer.jsonLimit) bytes")
    }
    do {
        return try WireJSON.decoder().decode(T.self, from: Data(buffer.readableBytesView))
    } catch let error as DecodingError {
        throw Problem(.malformedRequest, status: 400, detail: "invalid \(T.self): \(describe(error))")
    } catch {
        throw Problem(.malformedRequest, status: 400, detail: "invalid JSON")
    }
}

func describe(_ error: DecodingError) -> String {
    switch error {
    case let .keyNotFound(key, _): return "missing field '\(key.stringValue)'"
    case let .typeMismatch(_, ctx), let .valueNotFound(_, ctx), let .dataCorrupted(ctx):
        let path = ctx.codingPath.map(\.stringValue).joined(separator: ".")
        return path.isEmpty ? ctx.debugDescription : "field '\(path)': \(ctx.debugDescription)"
    @unknown default: return "\(error)"
    }
}

/// If-None-Match against an ETag (strong or weak form, lists, and `*`).
func matches(_ request: Request, _ etag: String) -> Bool {
    guard let header = request.headers[.ifNoneMatch] else { return false }
    return header.split(separator: ",").contains { item in
        let t = item.trimmingCharacters(in: .whitespaces)
        return t == "*" || t == etag || t == "W/" + etag
    }
}

func bearer(_ request: Request) -> String? {
    guard let value = request.headers[.authorization] else { return nil }
    let parts = value.split(separator: " ", maxSplits: 1)
    guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
    return String(parts[1]).trimmingCharacters(in: .whitespaces)
}

func versionParameter(_ context: some RequestContext) throws -> Int {
    let text = try context.parameters.require("version")
    guard let v = Int(text), v >= 0 else {
        throw Problem(.malformedRequest, status: 400, detail: "version must be a non-negative integer (got \(text))")
    }
    return v
}
