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
    let limits: RequestLimits

    public init(job: TrainingJob, logger: Logger) {
        self.job = job
        self.logger = logger
        limits = RequestLimits(job.config.limits)
    }

    /// The TLS 1.2 suites offered: ECDHE key exchange (forward secrecy) with AES-GCM or
    /// ChaCha20-Poly1305 (AEAD); no CBC, no static RSA key exchange.
    static let tls12CipherSuites: [NIOTLSCipher] = [
        .TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, .TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        .TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, .TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        .TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, .TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ]

    /// Largest JSON body accepted (control messages are small).
    static let jsonLimit = 64 * 1024

    public func router() -> Router<WorkerRequestContext> {
        let router = Router(context: WorkerRequestContext.self)
        router.add(middleware: ProblemMiddleware(logger: logger))
        let job = self.job, limits = self.limits
        let lease = ":lease", shard = ":shard", version = ":version"

        router.post(RouterPath(Routes.register)) { request, context -> Response in
            let address = context.clientAddress
            if let wait = limits.badJoinTokens.lockedFor(address) {
                return RequestLimits.tooMany("too many wrong join tokens from this address", retryAfter: wait)
            }
            if let wait = limits.registrations.take(address) {
                return RequestLimits.tooMany("too many registrations from this address", retryAfter: wait)
            }
            let body: RegisterRequest = try await decodeJSON(request)
            do {
                return try json(await job.register(body), status: .created)
            } catch JobError.badJoinToken {
                if let lockout = limits.badJoinTokens.noteFailure(address) {
                    logger.warning("registration locked out", metadata: ["address": "\(address)", "seconds": "\(lockout)"])
                }
                throw JobError.badJoinToken
            }
        }

        // Readable by anyone (rate-limited per address), or only with a token when the job
        // says `auth.public_read: false`.
        let open = router.group().add(middleware: PublicAccessMiddleware(
            job: job, limits: limits, publicRead: job.config.auth.publicRead, viewerTokenHash: job.viewerTokenHash))
        open.get(RouterPath(Routes.job)) { _, _ -> Response in
            try json(job.jobDescription)
        }
        open.get(RouterPath(Routes.manifest(version))) { request, context -> Response in
            let manifest = try job.publisher.manifest(version: versionParameter(context))
            // A version number can be republished with other parameters after a crash
            // rolls the job back to its checkpoint, so caches must revalidate (ETag).
            let etag = "\"" + WorkerToken.hash(String(decoding: try WireJSON.encoder().encode(manifest), as: UTF8.self)) + "\""
            if matches(request, etag) { return Response(status: .notModified, headers: [.eTag: etag, .cacheControl: "no-cache"]) }
            var response = try json(manifest)
            response.headers[.eTag] = etag
            response.headers[.cacheControl] = "no-cache"
            return response
        }
        open.get(RouterPath(Routes.shard(version, shard))) { request, context -> Response in
            let found = try job.publisher.shard(version: versionParameter(context), name: context.parameters.require("shard"))
            let etag = "\"\(found.hash)\""
            if matches(request, etag) {
                return Response(status: .notModified, headers: [.eTag: etag, .cacheControl: "no-cache"])
            }
            job.stats.noteBytesOut(found.body.count)
            var response = binary(found.body, type: Routes.tensorFrameType)
            response.headers[.eTag] = etag
            response.headers[.cacheControl] = "no-cache"
            return response
        }
        open.get(RouterPath(Routes.delta(version, shard))) { request, context -> Response in
            guard let text = request.uri.queryParameters.get("from"), let from = Int(text), from >= 0 else {
                throw Problem(.malformedRequest, detail: "from must be the non-negative version whose shard you hold")
            }
            let body = try job.publisher.deltaChain(version: versionParameter(context), name: context.parameters.require("shard"),
                                                    from: from)
            job.stats.noteBytesOut(body.count)
            var response = binary(body, type: Routes.deltaChainType)
            response.headers[.cacheControl] = "no-cache"
            return response
        }
        let monitoring = router.group().add(middleware: PublicAccessMiddleware(
            job: job, limits: limits, publicRead: job.config.auth.publicRead, viewerTokenHash: job.viewerTokenHash,
            limitTokens: true))
        monitoring.get(RouterPath(Routes.status)) { _, _ -> Response in
            try json(job.status())
        }
        monitoring.get(RouterPath(Routes.workers)) { request, _ -> Response in
            let (offset, limit) = try pageParameters(request)
            return try json(await job.workerPage(offset: offset, limit: limit))
        }
        monitoring.get(RouterPath(Routes.latestSamples)) { _, _ -> Response in
            let body = try job.latestSamples()
            job.stats.noteBytesOut(body.count)
            var response = binary(body, type: "image/png")
            response.headers[.cacheControl] = "no-cache"
            return response
        }
        monitoring.get("/metrics") { _, _ -> Response in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                     body: .init(byteBuffer: ByteBuffer(bytes: job.metrics.exposition())))
        }
        // Scrapers and load balancers probe with HEAD.
        monitoring.head("/metrics") { _, _ -> Response in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"])
        }
        // The dashboard page itself holds no data (it asks for a viewer token when the
        // job is private), so only the rate limit applies.
        router.group().add(middleware: PublicAccessMiddleware(job: job, limits: limits, publicRead: true,
                                                              viewerTokenHash: job.viewerTokenHash))
            .get("/") { _, _ -> Response in
                // One self-contained page (no CDN, works offline) that polls /v1/status.
                Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-cache",
                                                .contentSecurityPolicy: DashboardPage.contentSecurityPolicy],
                         body: .init(byteBuffer: ByteBuffer(string: DashboardPage.html)))
            }

        // Everything under a lease, and a worker's own credit, needs a registered worker's bearer token.
        let leases = router.group().add(middleware: WorkerAuthMiddleware(job: job))
        leases.post(RouterPath(Routes.leases)) { _, context -> Response in
            do {
                return try json(await job.lease(worker: context.requireWorker()), status: .created)
            } catch JobError.noWork {
                var response = JobError.noWork.problem.httpResponse()
                response.headers[.retryAfter] = "1"
                return response
            }
        }
        // A volunteer's own credit and rank (`tributary credit`).
        leases.get(RouterPath(Routes.myCredit)) { _, context -> Response in
            try json(await job.credit(of: context.requireWorker()))
        }
        leases.post(RouterPath(Routes.renew(lease))) { _, context -> Response in
            try json(await job.renew(lease: context.parameters.require("lease"), worker: context.requireWorker()))
        }
        leases.delete(RouterPath(Routes.lease(lease))) { _, context -> Response in
            try await job.release(lease: context.parameters.require("lease"), worker: context.requireWorker())
            return Response(status: .noContent)
        }
        leases.get(RouterPath(Routes.batch(lease))) { _, context -> Response in
            let body = try await job.batch(lease: context.parameters.require("lease"), worker: context.requireWorker())
            return binary(body, type: Routes.batchType)
        }
        leases.put(RouterPath(Routes.update(lease, shard: shard))) { request, context -> Response in
            try await receiveUpdate(request, context)
        }
        leases.post(RouterPath(Routes.commit(lease))) { request, context -> Response in
            let body: CommitRequest = try await decodeJSON(request)
            return try json(await job.commit(lease: context.parameters.require("lease"), worker: context.requireWorker(), body))
        }
        addOperatorRoutes(to: router)
        return router
    }

    /// An update's body is read only after the lease was checked, by a bounded number of
    /// uploads at once, within a time its size allows.
    func receiveUpdate(_ request: Request, _ context: WorkerRequestContext) async throws -> Response {
        let worker = try context.requireWorker()
        let name = try context.parameters.require("shard")
        let leaseID = try context.parameters.require("lease")
        guard let limit = job.updateBodyLimit(shard: name) else {
            throw await job.reject(.unknownShard(name, known: []), worker: worker)
        }
        try await job.checkLease(leaseID, worker: worker)
        if let declared = request.headers[.contentLength].flatMap(Int.init), declared > limit {
            await job.noteRejection("payload_too_large", worker: worker)
            throw Problem(.payloadTooLarge, detail: "an update of shard '\(name)' is at most \(limit) bytes")
        }
        guard limits.uploads.enter(worker) else {
            return RequestLimits.tooMany("too many uploads in progress; retry shortly", retryAfter: 1)
        }
        defer { limits.uploads.leave(worker) }
        let buffer: ByteBuffer
        do {
            buffer = try await collectBody(request, upTo: limit, within: Self.uploadSeconds(bytes: limit))
        } catch is NIOTooManyBytesError {
            await job.noteRejection("payload_too_large", worker: worker)
            throw Problem(.payloadTooLarge, detail: "an update of shard '\(name)' is at most \(limit) bytes")
        }
        let receipt = try await job.receiveUpdate(lease: leaseID, worker: worker, shard: name,
                                                  body: Array(buffer.readableBytesView))
        return try json(receipt, status: .accepted)
    }

    /// Time allowed for an upload of at most `bytes`: 30 s plus 16 KiB/s, a slow home uplink.
    static func uploadSeconds(bytes: Int) -> Double { 30 + Double(bytes) / 16_384 }

    /// Serves until SIGINT/SIGTERM (or `shutdown.trigger()`), then checkpoints.
    public func run(host: String, port: Int, tls: (certificate: String, key: String)?,
                    shutdown: CoordinatorShutdown? = nil,
                    onListening: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        let server: HTTPServerBuilder
        let counter = limits.connections, rate = limits.newConnections, logger = self.logger
        let idle = Duration.seconds(job.config.limits.idleTimeoutSeconds)
        let handshake = TimeAmount.milliseconds(Int64(job.config.limits.handshakeTimeoutSeconds * 1000))
        if let tls {
            let chain = try NIOSSLCertificate.fromPEMFile(tls.certificate).map { NIOSSLCertificateSource.certificate($0) }
            let key = try NIOSSLPrivateKey(file: tls.key, format: .pem)
            var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
            configuration.applicationProtocols = ["h2", "http/1.1"]
            // TLS 1.2 at least, and for 1.2 only forward-secret AEAD suites (1.3's are all such).
            configuration.minimumTLSVersion = .tlsv12
            configuration.cipherSuiteValues = Self.tls12CipherSuites
            let tlsConfiguration = configuration
            let channel = HTTP2ChannelConfiguration(idleTimeout: idle, streamConfiguration: .init(idleTimeout: .init(idle)))
            server = HTTPServerBuilder { responder in
                GuardedChildChannel(base: try HTTP2UpgradeChannel(tlsConfiguration: tlsConfiguration, configuration: channel,
                                                                  responder: responder),
                                    counter: counter, newConnections: rate, handshakeTimeout: handshake, logger: logger)
            }
        } else {
            server = HTTPServerBuilder { responder in
                GuardedChildChannel(base: HTTP1Channel(responder: responder, configuration: .init(idleTimeout: .init(idle))),
                                    counter: counter, newConnections: rate, handshakeTimeout: nil, logger: logger)
            }
        }
        let app = Application(router: router(), server: server,
                              configuration: .init(address: .hostname(host, port: port), serverName: "tributary",
                                                   availableConnectionsDelegate: MaximumAvailableConnections(
                                                       job.config.limits.maxConnections)),
                              onServerRunning: { channel in await onListening(channel.localAddress?.port ?? port) },
                              logger: logger)
        let group = ServiceGroup(configuration: .init(services: [app, JobTicker(job: job, logger: logger)],
                                                      gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        await shutdown?.attach(group)
        try await group.run()
        if let reason = await job.failureReason { throw JobError.jobFailed(reason) }
        // Everything accepted is in the update log already: a checkpoint that cannot be
        // written now (a full disk) costs a replay at the next start, not work.
        do {
            try await job.writeCheckpoint()
            logger.info("coordinator stopped; checkpoint written")
        } catch {
            logger.error("coordinator stopped; the shutdown checkpoint failed, the update log holds every accepted update",
                         metadata: ["error": "\(error)"])
        }
    }
}
