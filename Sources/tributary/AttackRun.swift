import Foundation
import NIOHTTP1
import Synchronization
import TributaryCoordinator
import TributaryProtocol
import TributaryWorker
#if canImport(Glibc)
import Glibc
#endif

/// One running attack of `bench attacks`: socket-level attacks run on threads of their
/// own (their calls block), HTTP-level ones as tasks.
final class AttackRun: Sendable {
    private let stopped = Atomic<Bool>(false)
    private let threadsRunning = Atomic<Int>(0)
    private let tasks = Mutex<[Task<Void, Never>]>([])
    let port: Int
    let client: CoordinatorClient

    private init(port: Int, base: String) {
        self.port = port
        client = CoordinatorClient(base: base, timeout: .seconds(5))
    }

    static func start(_ scenario: AttackScenario, against coordinator: EmbeddedCoordinator,
                      joinToken: String) async throws -> AttackRun {
        let run = AttackRun(port: coordinator.port, base: coordinator.url)
        Self.raiseFileLimit()
        switch scenario {
        case .clean, .cleanSync: break
        case .squat: try await run.squat(joinToken)
        case .workerList: try await run.pollWorkerList(joinToken)
        case .idleConnections: run.thread { run.holdIdleConnections(1_100, from: "127.0.0.2") }
        case .stalledUploads:
            let sybil: RegisterResponse = try await run.client.json(.POST, Routes.register,
                                                                    body: RegisterRequest(joinToken: joinToken, name: "sybil"))
            run.thread { run.holdStalledUploads(1_000, token: sybil.token, from: "127.0.0.3") }
        case .flood:
            // The attack run's rates: h2load at 1,500 requests/s, 5,000 join tokens in 9 s.
            for _ in 0..<8 { run.thread { run.requestStatusForever(from: "127.0.0.4", perSecond: 1_500 / 8) } }
            run.thread { run.guessJoinTokens(from: "127.0.0.5", perSecond: 550) }
        }
        return run
    }

    var isStopped: Bool { stopped.load(ordering: .relaxed) }

    func stop() async {
        stopped.store(true, ordering: .relaxed)
        for task in tasks.withLock({ $0 }) { task.cancel() }
        while threadsRunning.load(ordering: .relaxed) > 0 { try? await Task.sleep(for: .milliseconds(50)) }
    }

    private func thread(_ body: @escaping @Sendable () -> Void) {
        threadsRunning.add(1, ordering: .relaxed)
        Thread { [self] in
            body()
            threadsRunning.subtract(1, ordering: .relaxed)
        }.start()
    }

    private func task(_ body: @escaping @Sendable () async -> Void) {
        let t = Task { await body() }
        tasks.withLock { $0.append(t) }
    }

    /// The process holds the attacker's sockets too: its file limit must not be what fails.
    private static func raiseFileLimit() {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
        limit.rlim_cur = min(limit.rlim_max, 65_536)
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }

    // MARK: Finding 2

    private func squat(_ joinToken: String) async throws {
        let me: RegisterResponse = try await client.json(.POST, Routes.register, body: RegisterRequest(joinToken: joinToken, name: "mallory"))
        let client = self.client
        task {
            var held: String?
            while !Task.isCancelled {
                if let lease = held {
                    if (try? await client.send(.POST, Routes.renew(lease), token: me.token)) == nil { held = nil }
                    _ = try? await client.send(.POST, Routes.leases, token: me.token)   // and asks for more
                } else {
                    let grant: LeaseGrant? = try? await client.json(.POST, Routes.leases, token: me.token, body: [String: String]())
                    held = grant?.leaseId
                }
                try? await Task.sleep(for: .milliseconds(500))
            }
        }
    }

    // MARK: Finding 4

    private func pollWorkerList(_ joinToken: String) async throws {
        let client = self.client
        var token = ""
        try await withThrowingTaskGroup(of: String.self) { group in
            for part in 0..<16 {
                group.addTask {
                    var last = ""
                    for i in 0..<125 {
                        let r: RegisterResponse = try await client.json(.POST, Routes.register,
                                                                        body: RegisterRequest(joinToken: joinToken, name: "sybil-\(part)-\(i)"))
                        last = r.token
                    }
                    return last
                }
            }
            for try await t in group { token = t }
        }
        let sybil = token
        for _ in 0..<4 {
            task { while !Task.isCancelled { _ = try? await client.send(.GET, Routes.workers, token: sybil) } }
        }
    }

    // MARK: Findings 7, 8, 9 (sockets)

    /// Sleeps until `slot` of a schedule of `perSecond` events that began at `start`.
    private func pace(_ slot: Int, perSecond: Double, since start: Date) {
        let due = start.addingTimeInterval(Double(slot) / perSecond)
        let wait = due.timeIntervalSinceNow
        if wait > 0 { Thread.sleep(forTimeInterval: wait) }
    }

    /// Reconnections are paced too (200/s): the attacker shares this machine's cores with
    /// the coordinator, and an unpaced loop would measure its own CPU, not the coordinator's.
    static let reconnectsPerSecond = 200.0

    private func holdIdleConnections(_ count: Int, from source: String) {
        var open: [RawConnection] = []
        var slot = 0
        let start = Date()
        while !isStopped {
            open.removeAll { $0.isClosed }
            while open.count < count, !isStopped, let c = RawConnection(port: port, from: source) {
                open.append(c)
                slot += 1
                pace(slot, perSecond: Self.reconnectsPerSecond, since: start)
            }
            Thread.sleep(forTimeInterval: 0.2)
        }
    }

    private func holdStalledUploads(_ count: Int, token: String, from source: String) {
        var open: [RawConnection] = []
        var n = 0
        let start = Date()
        while !isStopped {
            open.removeAll { $0.isClosed }
            while open.count < count, !isStopped, let c = RawConnection(port: port, from: source) {
                n += 1
                _ = c.send("PUT \(Routes.update("l-made-up-\(n)", shard: "embeddings")) HTTP/1.1\r\nHost: x\r\n"
                           + "Authorization: Bearer \(token)\r\nContent-Type: \(Routes.tensorFrameType)\r\n"
                           + "Content-Length: 262144\r\n\r\nTRBF")
                open.append(c)
                pace(n, perSecond: Self.reconnectsPerSecond, since: start)
            }
            Thread.sleep(forTimeInterval: 0.2)
        }
    }

    private func requestStatusForever(from source: String, perSecond: Double) {
        let start = Date()
        var slot = 0
        while !isStopped {
            slot += 1
            pace(slot, perSecond: perSecond, since: start)
            guard let c = RawConnection(port: port, from: source) else { continue }
            _ = c.send("GET \(Routes.status) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            while c.receive() != nil {}
        }
    }

    private func guessJoinTokens(from source: String, perSecond: Double) {
        var n = 0
        let start = Date()
        while !isStopped {
            pace(n + 1, perSecond: perSecond, since: start)
            guard let c = RawConnection(port: port, from: source) else { continue }
            n += 1
            let body = #"{"join_token":"guess-\#(n)"}"#
            _ = c.send("POST \(Routes.register) HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
                       + "Content-Length: \(body.utf8.count)\r\n\r\n\(body)")
            while c.receive() != nil {}
        }
    }
}
