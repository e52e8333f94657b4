import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import NIOCore
import Synchronization

/// Forwards every request to a coordinator, but answers the first `lose` commits with a 502
/// after forwarding them: the commit landed, its answer was lost on the way back. Each
/// update upload is held `delayUpdates` before it is forwarded (a slow link), and lease
/// renewals are counted.
struct LostAnswerProxy: Sendable {
    let port: Int
    private let task: Task<Void, Error>
    let counter: CommitCounter
    let renewals: CommitCounter
    var url: String { "http://127.0.0.1:\(port)" }

    final class CommitCounter: Sendable {
        private let count = Mutex(0)
        func next() -> Int { count.withLock { $0 += 1; return $0 } }
        var value: Int { count.withLock { $0 } }
    }

    static func start(to target: String, lose: Int, delayUpdates: Duration = .zero) async throws -> LostAnswerProxy {
        let counter = CommitCounter(), renewals = CommitCounter()
        let responder = CallbackResponder<BasicRequestContext> { request, _ in
            if request.uri.path.contains("/updates/") { try await Task.sleep(for: delayUpdates) }
            if request.uri.path.hasSuffix("/renew") { _ = renewals.next() }
            var forwarded = HTTPClientRequest(url: target + request.uri.description)
            forwarded.method = .init(rawValue: request.method.rawValue)
            if let value = request.headers[.authorization] { forwarded.headers.add(name: "Authorization", value: value) }
            if let value = request.headers[.contentType] { forwarded.headers.add(name: "Content-Type", value: value) }
            forwarded.body = .bytes(try await request.body.collect(upTo: 1 << 26))
            let answer = try await HTTPClient.shared.execute(forwarded, timeout: .seconds(30))
            let body = try await answer.body.collect(upTo: 1 << 26)
            if request.uri.path.hasSuffix("/commit"), counter.next() <= lose {
                return Response(status: .badGateway)
            }
            var headers = HTTPFields()
            if let type = answer.headers.first(name: "Content-Type") { headers[.contentType] = type }
            if let wait = answer.headers.first(name: "Retry-After") { headers[.retryAfter] = wait }
            if let etag = answer.headers.first(name: "ETag") { headers[.eTag] = etag }
            return Response(status: .init(code: Int(answer.status.code)), headers: headers, body: .init(byteBuffer: body))
        }
        var logger = Logger(label: "test.proxy")
        logger.logLevel = .critical
        let (ports, continuation) = AsyncStream<Int>.makeStream()
        let app = Application(responder: responder, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                              onServerRunning: { continuation.yield($0.localAddress?.port ?? 0) }, logger: logger)
        let task = Task { try await app.runService(gracefulShutdownSignals: []) }
        var port = 0
        for await p in ports { port = p; break }
        return LostAnswerProxy(port: port, task: task, counter: counter, renewals: renewals)
    }

    func stop() async {
        task.cancel()
        _ = try? await task.value
    }
}
