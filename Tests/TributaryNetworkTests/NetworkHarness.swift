import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import TributaryCoordinator
import TributaryProtocol
import TributaryTensor
import TributaryWorker
import XCTest

/// Test defaults around the embedded coordinator.
enum RunningCoordinator {
    static let joinToken = "test-join-token"
    static let operatorToken = "test-operator-token"

    /// A small GPT job on the built-in arithmetic corpus; `adjust` changes the defaults.
    static func config(directory: String, _ adjust: (inout JobConfig) -> Void = { _ in }) -> JobConfig {
        var c = JobConfig()
        c.name = "test"
        c.model.nLayer = 1
        c.model.nHead = 2
        c.model.nEmbd = 16
        c.model.blockSize = 16
        c.data.source = "builtin:arithmetic"
        c.units.samplesPerUnit = 4
        c.optimizer.lr = 3e-3
        c.optimizer.warmupRounds = 2
        c.optimizer.totalRounds = 1000
        c.rounds.unitsPerRound = 3
        c.rounds.deadlineSeconds = 600
        c.server.listen = "127.0.0.1:0"
        c.storage.dataDirectory = directory
        c.storage.checkpointEveryRounds = 5
        c.storage.validationEveryRounds = 1000
        c.auth.joinToken = joinToken
        c.auth.operatorToken = operatorToken
        // These tests predate replication and test other things; ReplicationNetworkTests turn it on.
        c.validation.replication = .off
        adjust(&c)
        return c
    }

    /// Runs `count` workers (named `prefix`0, 1, …, data in `directory`/worker-N) until the
    /// coordinator's job is complete.
    static func runWorkers(_ count: Int, against coordinator: EmbeddedCoordinator, directory: String,
                           prefix: String = "w") async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<count {
                let options = WorkerOptions(coordinator: coordinator.url, joinToken: joinToken,
                                            name: "\(prefix)\(i)", dataDirectory: "\(directory)/worker-\(i)")
                let daemon = WorkerDaemon(options: options, logger: quietLogger("test.worker"))
                group.addTask { try await daemon.run() }   // returns when the job is complete
            }
            try await group.waitForAll()
        }
    }

    /// A coordinator on the test job (changed by `adjust`) in a new temporary directory,
    /// which the caller removes.
    static func startInTemporaryDirectory(_ label: String, _ adjust: (inout JobConfig) -> Void = { _ in }) async throws
        -> (EmbeddedCoordinator, String) {
        let dir = try temporaryDirectory(label)
        return (try await start(config(directory: dir, adjust)), dir)
    }

    static func start(_ config: JobConfig, port: Int = 0, now: @escaping @Sendable () -> Date = { Date() }) async throws -> EmbeddedCoordinator {
        var logger = Logger(label: "test.coordinator")
        logger.logLevel = .warning
        return try await EmbeddedCoordinator.start(config, logger: logger, port: port, now: now)
    }
}

/// Raw HTTP for tests that speak the protocol by hand (to send what a worker never would).
struct RawClient {
    let base: String

    struct Reply {
        let status: Int
        let body: [UInt8]
        let headers: HTTPHeaders
        var problem: Problem? { try? WireJSON.decoder().decode(Problem.self, from: Data(body)) }
        func json<T: Decodable>(_ type: T.Type) throws -> T { try WireJSON.decoder().decode(T.self, from: Data(body)) }
    }

    func request(_ method: HTTPMethod, _ path: String, token: String? = nil, body: [UInt8]? = nil,
                 headers: [(String, String)] = []) async throws -> Reply {
        var r = HTTPClientRequest(url: base + path)
        r.method = method
        if let token { r.headers.add(name: "Authorization", value: "Bearer \(token)") }
        for (k, v) in headers { r.headers.add(name: k, value: v) }
        if let body { r.body = .bytes(ByteBuffer(bytes: body)) }
        let response = try await HTTPClient.shared.execute(r, timeout: .seconds(30))
        let bytes = try await response.body.collect(upTo: 1 << 28)
        return Reply(status: Int(response.status.code), body: Array(bytes.readableBytesView), headers: response.headers)
    }

    func json<T: Encodable>(_ method: HTTPMethod, _ path: String, token: String? = nil, _ value: T) async throws -> Reply {
        try await request(method, path, token: token, body: Array(try WireJSON.encoder().encode(value)),
                          headers: [("Content-Type", "application/json")])
    }

    func register(name: String = "raw") async throws -> RegisterResponse {
        try await json(.POST, Routes.register, RegisterRequest(joinToken: RunningCoordinator.joinToken, name: name))
            .json(RegisterResponse.self)
    }
}

func temporaryDirectory(_ label: String) throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("tributary-\(label)-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

func quietLogger(_ label: String) -> Logger {
    var l = Logger(label: label)
    l.logLevel = .warning
    return l
}
