import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import TributaryProtocol
import TributaryTensor
import TributaryWorker

/// The worker's control socket, `<data-dir>/control.sock`: a Unix socket (only this user
/// can reach it; nothing listens on the network) answering `tributary worker pause`,
/// `resume` and `status` with plain HTTP.
enum WorkerControlSocket {
    static func path(dataDirectory: String) -> String { "\(dataDirectory)/control.sock" }

    /// A Unix socket's path fits in 107 bytes (`sun_path`).
    static func fits(_ path: String) -> Bool { path.utf8.count <= 107 }

    enum Route {
        static let status = "/v1/status"
        static let pause = "/v1/pause"
        static let resume = "/v1/resume"
    }

    /// Serves the socket until cancelled. The worker holds its data directory's lock, so a
    /// socket file left by a killed run is stale and replaced.
    static func serve(dataDirectory: String, logger: Logger,
                      status: @escaping @Sendable () -> WorkerControlStatus,
                      setPaused: @escaping @Sendable (Bool) throws -> Void) async throws {
        let socket = path(dataDirectory: dataDirectory)
        guard fits(socket) else {
            logger.warning("the data directory's path is too long for a control socket; pause and resume are unavailable",
                           metadata: ["path": "\(socket)"])
            return
        }
        unlink(socket)
        let router = Router()
        router.get(RouterPath(Route.status)) { _, _ in try reply(status()) }
        router.post(RouterPath(Route.pause)) { _, _ in
            try setPaused(true)
            return try reply(status())
        }
        router.post(RouterPath(Route.resume)) { _, _ in
            try setPaused(false)
            return try reply(status())
        }
        // The server's own notices (started, a connection cancelled at exit) are not the volunteer's business.
        var quiet = logger
        quiet.logLevel = .critical
        let app = Application(router: router, configuration: .init(address: .unixDomainSocket(path: socket)),
                              onServerRunning: { _ in chmod(socket, 0o600) }, logger: quiet)
        defer { unlink(socket) }
        try await app.run()
    }

    private static func reply(_ status: WorkerControlStatus) throws -> Response {
        let body = try WireJSON.encoder().encode(status)
        return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }

    /// Asks the worker running on `dataDirectory`; a one-line error when none is.
    static func ask(dataDirectory: String, method: NIOHTTP1.HTTPMethod, route: String) async throws -> WorkerControlStatus {
        let socket = path(dataDirectory: dataDirectory)
        guard FileManager.default.fileExists(atPath: socket),
              let url = URL(httpURLWithSocketPath: socket, uri: route) else {
            throw CLIError("no worker is running on \(dataDirectory) (no control socket there); start one with tributary worker --data-dir \(dataDirectory)")
        }
        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = method
        do {
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
            let body = try await response.body.collect(upTo: 1 << 20)
            guard response.status == .ok else { throw CLIError("the worker answered \(response.status.code)") }
            return try WireJSON.decoder().decode(WorkerControlStatus.self, from: Data(buffer: body))
        } catch let error as CLIError {
            throw error
        } catch is DecodingError {
            throw CLIError("the worker on \(dataDirectory) answered something this version does not understand")
        } catch {
            throw CLIError("no worker is running on \(dataDirectory) (its control socket does not answer)")
        }
    }

    /// The status in lines for a person.
    static func describe(_ s: WorkerControlStatus, now: Date = Date()) -> [String] {
        var lines = ["\(s.state) · coordinator \(s.coordinator)"]
        lines += s.holds.map { "  \($0)" }
        if let u = s.unit {
            lines.append("unit \(u.unit) (\(ProgressReporter.count(u.samples, "sample"))): \(u.phrase), "
                         + "\(ProgressReporter.duration(now.timeIntervalSince(u.startedAt))) so far")
        }
        let t = s.session
        lines.append("this run: \(t.work) in \(ProgressReporter.duration(t.seconds))")
        return lines
    }
}
