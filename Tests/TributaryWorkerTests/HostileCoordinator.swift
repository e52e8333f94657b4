import Foundation
import Hummingbird
import Logging
import NIOCore
import Synchronization
import TributaryModels
import TributaryProtocol

/// A stand-in coordinator for attack tests (issue 12): `answer` decides every response,
/// and every request is logged as "METHOD /path" so a test can count what the worker sent.
struct HostileCoordinator: Sendable {
    let port: Int
    let log: RequestLog
    private let task: Task<Void, Error>
    var url: String { "http://127.0.0.1:\(port)" }

    static func start(_ answer: @escaping @Sendable (Request, RequestLog) async throws -> Response) async throws -> HostileCoordinator {
        let log = RequestLog()
        let responder = CallbackResponder<BasicRequestContext> { request, _ in
            log.record("\(request.method.rawValue) \(request.uri.path)")
            return try await answer(request, log)
        }
        var logger = Logger(label: "test.hostile")
        logger.logLevel = .critical
        let (ports, continuation) = AsyncStream<Int>.makeStream()
        let app = Application(responder: responder, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                              onServerRunning: { continuation.yield($0.localAddress?.port ?? 0) }, logger: logger)
        let task = Task { try await app.runService(gracefulShutdownSignals: []) }
        var port = 0
        for await p in ports { port = p; break }
        return HostileCoordinator(port: port, log: log, task: task)
    }

    func stop() async {
        task.cancel()
        _ = try? await task.value
    }

    // MARK: Canned answers

    static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        Response(status: status, headers: [.contentType: "application/json"],
                 body: .init(byteBuffer: ByteBuffer(bytes: try WireJSON.encoder().encode(value))))
    }

    static func problem(_ code: ProblemCode, detail: String = "hostile") throws -> Response {
        Response(status: .init(code: code.status), headers: [.contentType: Problem.contentType],
                 body: .init(byteBuffer: ByteBuffer(bytes: try WireJSON.encoder().encode(Problem(code, detail: detail)))))
    }

    /// `total` bytes of `fill` in 64 KiB writes, with a Content-Length or chunked; what
    /// was written before the worker hung up goes to `log.streamed`.
    static func stream(_ total: Int, fill: UInt8 = UInt8(ascii: " "), declareLength: Bool, log: RequestLog) -> Response {
        let chunk = ByteBuffer(bytes: [UInt8](repeating: fill, count: 64 << 10))
        let body = ResponseBody(contentLength: declareLength ? total : nil) { writer in
            var sent = 0
            defer { log.streamed(sent) }
            while sent < total {
                let n = min(chunk.readableBytes, total - sent)
                try await writer.write(chunk.getSlice(at: 0, length: n) ?? chunk)
                sent += n
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: "application/json"], body: body)
    }

    /// A tiny GPT job every hostile test registers the worker for.
    static let job = JobDescription(name: "hostile",
                                    model: .gpt(GPTConfig(vocabSize: 5, blockSize: 4, nLayer: 1, nHead: 1, nEmbd: 4)),
                                    samplesPerUnit: 2, microBatchSize: 2, updateCodec: "fp32", zstdLevel: 1)

    static func registered() throws -> Response {
        try json(RegisterResponse(workerId: "w-hostile", token: "trb_hostile", job: job))
    }

    static func grant(version: Int = 0, samples: Int = 2, leaseId: String = "l-1",
                      deadline: Date = Date().addingTimeInterval(600)) throws -> Response {
        try json(LeaseGrant(leaseId: leaseId, epoch: 0, unitIndex: 0, sampleStart: 0, sampleCount: samples,
                            microBatchSize: 2, version: version, deadline: deadline, shards: []))
    }
}

/// What a hostile coordinator saw: requests in order, and the bytes each streamed answer
/// got out before the worker stopped reading.
final class RequestLog: Sendable {
    private let lines = Mutex<[String]>([])
    private let streams = Mutex<[Int]>([])

    func record(_ line: String) { lines.withLock { $0.append(line) } }
    func streamed(_ bytes: Int) { streams.withLock { $0.append(bytes) } }

    var requests: [String] { lines.withLock { $0 } }
    var streamedBytes: [Int] { streams.withLock { $0 } }
    func count(_ line: String) -> Int { requests.filter { $0 == line }.count }
}
