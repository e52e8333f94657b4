import AsyncHTTPClient
import Foundation
import NIOCore
import TributaryProtocol

/// `tributary status`'s requests: the status report, and the worker list page by page.
extension StatusCommand {
    /// Worker pages asked for at most (1,000 workers each): beyond, the table ranks these.
    static let maximumWorkerPages = 100

    /// The coordinator's base URL for what the user typed: scheme optional, trailing
    /// slashes and an existing `/v1/status` tolerated.
    static func coordinatorBase(_ text: String) throws -> String {
        var s = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !s.isEmpty else { throw CLIError("no coordinator URL given (for example http://127.0.0.1:8080)") }
        if !s.contains("://") { s = "http://" + s }
        while s.hasSuffix("/") { s.removeLast() }
        if s.hasSuffix(Routes.status) { s.removeLast(Routes.status.count) }
        while s.hasSuffix("/") { s.removeLast() }
        guard let u = URL(string: s), let scheme = u.scheme?.lowercased(), scheme == "http" || scheme == "https",
              let host = u.host, !host.isEmpty, u.query == nil, u.fragment == nil else {
            throw CLIError("'\(text)' is not the http(s) URL of a coordinator (for example http://127.0.0.1:8080)")
        }
        return s
    }

    /// The status endpoint for what the user typed.
    static func statusURL(_ text: String) throws -> String { try coordinatorBase(text) + Routes.status }

    /// A client that reports an unreachable coordinator at once instead of retrying the
    /// connection until the deadline (`--watch` retries on its own schedule).
    static func makeClient() -> HTTPClient {
        var pool = HTTPClient.Configuration.ConnectionPool()
        pool.retryConnectionEstablishment = false
        let configuration = HTTPClient.Configuration(timeout: .init(connect: .seconds(5), read: .seconds(10)),
                                                     connectionPool: pool)
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    static func fetchStatus(_ base: String, client: HTTPClient, token: String? = nil) async throws -> StatusReport {
        try await fetch(base + Routes.status, client: client, token: token)
    }

    /// The status report at `endpoint` (a full `…/v1/status` URL).
    static func fetch(_ endpoint: String, client: HTTPClient, token: String? = nil) async throws -> StatusReport {
        try await getJSON(endpoint, as: StatusReport.self, what: "a status report", client: client, token: token)
    }

    /// Every page of `GET /v1/workers` (up to `maximumWorkerPages`); a coordinator that
    /// does not list its workers, or a failed page, makes the listing unavailable, with why.
    static func fetchWorkers(_ base: String, client: HTTPClient, token: String? = nil) async -> WorkerListing {
        var all: [WorkerSummary] = []
        var offset = 0
        for _ in 0..<maximumWorkerPages {
            let page: WorkerList
            let endpoint = base + Routes.workers + "?offset=\(offset)&limit=\(Routes.maxPage)"
            do {
                page = try await getJSON(endpoint, as: WorkerList.self, what: "a worker list", client: client, token: token,
                                         notFound: "this coordinator serves none")
            } catch let error as CLIError {
                return .unavailable(error.description.replacingOccurrences(of: endpoint, with: "the coordinator"))
            } catch {
                return .unavailable(oneLine(error))
            }
            all += page.workers
            guard let next = page.nextOffset, next > offset else { break }
            offset = next
        }
        return .workers(all)
    }

    /// `endpoint`'s JSON answer; `notFound` is the error's text for a 404 (nil: the answer's).
    static func getJSON<T: Decodable>(_ endpoint: String, as type: T.Type, what: String, client: HTTPClient,
                                      token: String?, notFound: String? = nil) async throws -> T {
        var request = HTTPClientRequest(url: endpoint)
        request.headers.add(name: "Accept", value: "application/json")
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        let response: HTTPClientResponse
        let data: Data
        do {
            response = try await client.execute(request, timeout: .seconds(15))
            data = Data(try await response.body.collect(upTo: 32 << 20).readableBytesView)
        } catch {
            throw CLIError("cannot reach \(endpoint): \(transport(error))")
        }
        if response.status.code == 404, let notFound { throw CLIError(notFound) }
        guard response.status.code == 200 else {
            let detail = (try? JSONDecoder().decode(ProblemDetail.self, from: data))?.detail.map { ": " + oneLine($0) } ?? ""
            throw CLIError("\(endpoint) answered HTTP \(response.status.code) \(response.status.reasonPhrase)\(detail)")
        }
        do {
            return try WireJSON.decoder().decode(T.self, from: data)
        } catch let error as DecodingError {
            throw CLIError("\(endpoint) did not answer with \(what): \(describe(error))")
        } catch {
            throw CLIError("\(endpoint) did not answer with \(what): \(oneLine(error))")
        }
    }

    private static func describe(_ error: DecodingError) -> String {
        switch error {
        case let .keyNotFound(key, ctx):
            let path = (ctx.codingPath + [key]).map(\.stringValue).joined(separator: ".")
            return "missing field '\(path)'"
        case let .typeMismatch(_, ctx), let .valueNotFound(_, ctx), let .dataCorrupted(ctx):
            let path = ctx.codingPath.map(\.stringValue).joined(separator: ".")
            let what = ctx.underlyingError == nil ? ctx.debugDescription : "invalid JSON"
            return path.isEmpty ? what : "field '\(path)': \(what)"
        @unknown default:
            return oneLine(error)
        }
    }

    private static func transport(_ error: Error) -> String {
        if let e = error as? HTTPClientError {
            if e == .connectTimeout { return "connection timed out" }
            if e == .readTimeout || e == .deadlineExceeded { return "no answer in time" }
            if e == .remoteConnectionClosed { return "the connection was closed" }
        }
        if error is NIOTooManyBytesError { return "the reply is larger than 32 MiB" }
        let text = String(describing: error)
        for known in ["Connection refused", "Network is unreachable", "No route to host", "Connection reset by peer"]
        where text.contains(known) {
            return known.lowercased()
        }
        return oneLine(text)
    }

    private static func oneLine(_ error: Error) -> String { oneLine(String(describing: error)) }

    private static func oneLine(_ text: String) -> String {
        let flat = text.split(whereSeparator: \.isNewline).joined(separator: " ")
        return flat.count > 240 ? String(flat.prefix(239)) + "…" : flat
    }
}

/// The `detail` of a refusal's problem body, when there is one.
private struct ProblemDetail: Decodable {
    var detail: String?
}
