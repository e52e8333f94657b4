import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import TributaryProtocol
import TributaryTensor

/// What went wrong talking to the coordinator, classified for the retry policy.
public enum ClientError: Error, CustomStringConvertible {
    /// The coordinator refused the request (a problem body).
    case refused(Problem)
    /// The network failed or the coordinator answered 5xx: worth retrying.
    case transient(String)
    /// The answer made no sense (wrong content, unparseable JSON, a redirect, too large).
    case protocolViolation(String)

    public var description: String {
        switch self {
        case let .refused(p): return "coordinator refused: \(p)"
        case let .transient(why): return "coordinator unreachable: \(why)"
        case let .protocolViolation(why): return "unexpected answer from the coordinator: \(why)"
        }
    }
}

/// The worker's side of the HTTP API: outbound requests only, so a volunteer behind a
/// home router needs no open port.
public struct CoordinatorClient: Sendable {
    public let base: String
    let http: WorkerHTTPClient
    /// Each request's limit unless the call gives its own (a request under a lease is
    /// bounded by the lease's deadline, `HeldLease.requestTimeout`).
    let timeout: TimeAmount

    public init(base: String, http: WorkerHTTPClient = .shared, timeout: TimeAmount = .seconds(60)) {
        self.base = base.hasSuffix("/") ? String(base.dropLast()) : base
        self.http = http
        self.timeout = timeout
    }

    public struct Reply: Sendable {
        public let status: Int
        public let headers: HTTPHeaders
        public let body: [UInt8]
    }

    /// One request; the answer's body is read only up to `limit` bytes (`ResponseLimit`;
    /// the JSON limit unless the request can honestly return more), a refusal's up to
    /// `ResponseLimit.json`. A larger answer, or a redirect, is a `protocolViolation`, and
    /// the connection is dropped without reading the rest.
    /// Times a `429 rate_limited` is waited out (its `Retry-After`, at most
    /// `maximumRetryAfter` seconds) and the request sent again, before it counts as refused.
    public static let rateLimitRetries = 3
    static let maximumRetryAfter = 30.0

    /// `timeout` replaces the client's for this call; `rateLimitRetries` 0 makes a 429 a plain
    /// refusal (a lease renewal cannot wait 30 s: the lease would end meanwhile).
    public func send(_ method: HTTPMethod, _ path: String, token: String? = nil, body: [UInt8]? = nil,
                     contentType: String? = nil, headers extra: [(String, String)] = [],
                     limit: Int = ResponseLimit.json, timeout: TimeAmount? = nil,
                     rateLimitRetries: Int = Self.rateLimitRetries) async throws -> Reply {
        var attempt = 0
        while true {
            do {
                return try await sendOnce(method, path, token: token, body: body, contentType: contentType,
                                          headers: extra, limit: limit, timeout: timeout ?? self.timeout)
            } catch let limited as RateLimited {
                attempt += 1
                guard attempt <= rateLimitRetries else { throw ClientError.refused(limited.problem) }
                try await Task.sleep(for: .seconds(limited.seconds))
            }
        }
    }

    /// A 429 with the wait it asked for (bounded), retried by `send`.
    struct RateLimited: Error {
        let problem: Problem
        let seconds: Double
    }

    private func sendOnce(_ method: HTTPMethod, _ path: String, token: String?, body: [UInt8]?,
                          contentType: String?, headers extra: [(String, String)], limit: Int,
                          timeout: TimeAmount) async throws -> Reply {
        var request = HTTPClientRequest(url: base + path)
        request.method = method
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        if let contentType { request.headers.add(name: "Content-Type", value: contentType) }
        for (k, v) in extra { request.headers.add(name: k, value: v) }
        if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
        let response: HTTPClientResponse
        do {
            response = try await http.client.execute(request, timeout: timeout)
        } catch {
            // Stopping is not an outage: nothing to report, nothing to retry.
            if error is CancellationError || Task.isCancelled { throw CancellationError() }
            throw ClientError.transient("\(method) \(path): \(ConnectionTrouble.describe(error))")
        }
        let status = Int(response.status.code)
        if (300..<400).contains(status) {
            let target = response.headers.first(name: "Location").map { String($0.prefix(200)) } ?? "no location"
            throw ClientError.protocolViolation("\(method) \(path): the coordinator redirected (HTTP \(status)) to \(target); "
                + "the worker follows no redirects, so set --coordinator to the URL that answers")
        }
        let cap = status >= 400 ? min(limit, ResponseLimit.json) : limit
        func tooLarge(_ size: String) -> ClientError {
            .protocolViolation("\(method) \(path): the answer (\(size)) is larger than the \(ByteCount.format(cap)) "
                + "this request can honestly return; refused unread")
        }
        // Refused before a byte of the body is read when the length is declared.
        if let declared = response.headers.first(name: "Content-Length").flatMap({ Int($0) }), declared > cap {
            throw tooLarge(ByteCount.format(declared))
        }
        let bytes: ByteBuffer
        do {
            bytes = try await response.body.collect(upTo: cap)
        } catch is NIOTooManyBytesError {
            throw tooLarge("over \(ByteCount.format(cap))")
        } catch {
            if error is CancellationError || Task.isCancelled { throw CancellationError() }
            throw ClientError.transient("\(method) \(path): \(error)")
        }
        let reply = Reply(status: status, headers: response.headers, body: Array(bytes.readableBytesView))
        if reply.status >= 500 && reply.status != 503 {
            throw ClientError.transient("\(method) \(path): HTTP \(reply.status)")
        }
        if reply.status >= 400 {
            if let problem = try? WireJSON.decoder().decode(Problem.self, from: Data(reply.body)) {
                if problem.code == .rateLimited {
                    let asked = reply.headers.first(name: "Retry-After").flatMap(Double.init) ?? 1
                    throw RateLimited(problem: problem, seconds: min(Self.maximumRetryAfter, max(0.1, asked)))
                }
                throw ClientError.refused(problem)
            }
            if reply.status == 503 { throw ClientError.transient("\(method) \(path): HTTP 503") }
            throw ClientError.protocolViolation("\(method) \(path): HTTP \(reply.status) without a problem body")
        }
        return reply
    }

    /// A JSON request and answer; the answer is read up to `limit` bytes.
    public func json<T: Decodable>(_ method: HTTPMethod, _ path: String, token: String? = nil,
                                   body: (some Encodable)? = Optional<String>.none,
                                   limit: Int = ResponseLimit.json, timeout: TimeAmount? = nil) async throws -> T {
        try await jsonReply(method, path, token: token, body: body, limit: limit, timeout: timeout).value
    }

    /// A JSON answer with the coordinator's clock reading (its `Date` header), which lease
    /// deadlines are measured against.
    func jsonReply<T: Decodable>(_ method: HTTPMethod, _ path: String, token: String? = nil,
                                 body: (some Encodable)? = Optional<String>.none,
                                 limit: Int = ResponseLimit.json, timeout: TimeAmount? = nil,
                                 rateLimitRetries: Int = Self.rateLimitRetries) async throws -> (value: T, date: Date?) {
        let data = try body.map { try WireJSON.encoder().encode($0) }.map { Array($0) }
        let reply = try await send(method, path, token: token, body: data,
                                   contentType: data == nil ? nil : "application/json", limit: limit,
                                   timeout: timeout, rateLimitRetries: rateLimitRetries)
        do {
            return (try WireJSON.decoder().decode(T.self, from: Data(reply.body)),
                    reply.headers.first(name: "Date").flatMap(HTTPDate.parse))
        } catch {
            throw ClientError.protocolViolation("\(method) \(path): \(error)")
        }
    }
}
