import ArgumentParser
import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Synchronization
import TributaryCompression
import TributaryCoordinator
import TributaryProtocol
import TributaryTensor

struct CoordinatorBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coordinator",
        abstract: "Many simulated workers on loopback against a real coordinator: ingest rate, round latency, call latencies.")

    @Option(help: "Simulated workers (concurrent clients).") var workers = 200
    @Option(help: "How long to run, seconds.") var seconds = 20.0
    @Option(name: .customLong("units-per-round")) var unitsPerRound = 32
    @Option(name: .customLong("n-embd"), help: "Width of the benchmark GPT (2 layers).") var nEmbd = 64
    @Option(help: "The ledger: sqlite (a file in a temporary directory) or a postgres:// URL of an empty database.")
    var ledger = "sqlite"
    @Option(help: "The aggregation rule: mean, centered_clip, trimmed_mean, median.") var rule = "centered_clip"

    func run() async throws {
        guard (1...2000).contains(workers), seconds > 0, seconds <= 600 else {
            throw ValidationError("--workers must lie in 1...2000 and --seconds in (0, 600]")
        }
        ComputeThreads.set(ComputeThreads.count)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tributary-bench-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var config = JobConfig()
        config.name = "bench"
        config.validation.replication = .off  // simulated workers send one frozen update: ingest, not validation
        config.model.nLayer = 2
        config.model.nHead = 4
        config.model.nEmbd = nEmbd
        config.model.blockSize = 32
        config.units.samplesPerUnit = 4
        config.optimizer.totalRounds = 1_000_000
        config.rounds.unitsPerRound = unitsPerRound
        config.rounds.maxStaleness = 1
        config.leases.durationSeconds = 30
        config.storage.dataDirectory = dir
        config.storage.ledger = ledger
        config.storage.checkpointEveryRounds = 1_000_000
        config.storage.validationEveryRounds = 1_000_000
        config.auth.joinToken = "bench"
        // Every simulated worker sends the same frozen update: it would be refused as a replay.
        config.aggregation.refuseReplays = false
        guard let chosen = AggregationRule(rawValue: rule) else {
            throw ValidationError("--rule must be one of \(AggregationRule.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        config.aggregation.rule = chosen
        // Every simulated worker comes from 127.0.0.1: the per-address limits would
        // measure themselves, not the coordinator.
        config.limits.registrationBurst = workers
        config.limits.maxConnectionsPerAddress = workers + 64
        config.limits.maxConcurrentUploads = workers
        config.limits.connectionBurst = 4 * workers
        var logger = Logger(label: "bench.coordinator")
        logger.logLevel = .warning
        let coordinator = try await EmbeddedCoordinator.start(config, logger: logger)
        let job = coordinator.job
        let base = coordinator.url

        var clientConfig = HTTPClient.Configuration()
        clientConfig.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = workers + 8
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: clientConfig)
        let manifest: Manifest = try await Self.json(http, .GET, base + Routes.manifest(0))
        // One update body per shard, encoded once: the benchmark measures the coordinator.
        var bodies: [(String, [UInt8])] = []
        var rng = SeededRandom(seed: 1)
        for shard in manifest.shards {
            let values = (0..<shard.elementCount).map { _ in rng.nextGaussian() * 1e-3 }
            bodies.append((shard.name, try values.withUnsafeBufferPointer { try TensorFrame.encode($0, codec: .fp32, zstdLevel: 3) }))
        }
        let updateBytes = bodies.reduce(0) { $0 + $1.1.count }
        let frozenBodies = bodies
        print("# coordinator bench: \(workers) simulated workers, \(Int(seconds)) s, GPT 2×\(nEmbd) (\(manifest.shards.reduce(0) { $0 + $1.elementCount }.formatted()) parameters, \(ByteCount.format(updateBytes)) per update), \(unitsPerRound) units per round, \(ComputeThreads.count) threads, ledger \(ledger.hasPrefix("postgres") ? "PostgreSQL" : "SQLite")")

        let stats = BenchStats()
        let end = Date().addingTimeInterval(seconds)
        let startVersion = job.status().version
        let started = Date()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<workers {
                group.addTask {
                    let reg: RegisterResponse = try await Self.json(http, .POST, base + Routes.register,
                                                                    body: RegisterRequest(joinToken: "bench", name: "sim-\(i)"))
                    let token = reg.token
                    while Date() < end {
                        let t0 = DispatchTime.now().uptimeNanoseconds
                        let lease = try await Self.send(http, .POST, base + Routes.leases, token: token)
                        stats.record(.lease, DispatchTime.now().uptimeNanoseconds - t0)
                        guard lease.status == 201, let grant = try? WireJSON.decoder().decode(LeaseGrant.self, from: Data(lease.body)) else {
                            try await Task.sleep(for: .milliseconds(20))
                            continue
                        }
                        var ok = true
                        for (name, body) in frozenBodies {
                            let r = try await Self.send(http, .PUT, base + Routes.update(grant.leaseId, shard: name), token: token, body: body)
                            if r.status != 202 { ok = false; break }
                        }
                        guard ok else { continue }
                        let c0 = DispatchTime.now().uptimeNanoseconds
                        let commit = try await Self.send(http, .POST, base + Routes.commit(grant.leaseId), token: token,
                                                         body: Array(try WireJSON.encoder().encode(CommitRequest(samples: 4, loss: 2.0))))
                        stats.record(.commit, DispatchTime.now().uptimeNanoseconds - c0)
                        if commit.status == 200 { stats.accepted(bytes: updateBytes) }
                    }
                }
            }
            group.addTask {
                while Date() < end {
                    let t0 = DispatchTime.now().uptimeNanoseconds
                    _ = try await Self.send(http, .GET, base + Routes.status)
                    stats.record(.status, DispatchTime.now().uptimeNanoseconds - t0)
                    try await Task.sleep(for: .milliseconds(20))
                }
            }
            try await group.waitForAll()
        }
        let elapsed = Date().timeIntervalSince(started)
        let final = job.status()
        let durability = await job.durability
        await coordinator.stop()
        try await http.shutdown()

        let rounds = final.version - startVersion
        let s = stats.snapshot()
        print(String(format: "updates ingested: %d in %.1f s = %.1f updates/s", s.accepted, elapsed, Double(s.accepted) / elapsed))
        print(String(format: "update data combined: %.1f MB/s", Double(s.acceptedBytes) / elapsed / 1e6))
        print(String(format: "rounds closed: %d, %.3f s per round (%d units each)", rounds, rounds > 0 ? elapsed / Double(rounds) : .nan, unitsPerRound))
        print(String(format: "lease calls: %d, p50 %.2f ms, p99 %.2f ms", s.lease.count, s.percentile(.lease, 0.5), s.percentile(.lease, 0.99)))
        print(String(format: "status calls under load: %d, p50 %.2f ms, p99 %.2f ms", s.status.count, s.percentile(.status, 0.5), s.percentile(.status, 0.99)))
        print(String(format: "commit calls: %d, p50 %.2f ms, p99 %.2f ms", s.commit.count, s.percentile(.commit, 0.5), s.percentile(.commit, 0.99)))
        let n = Double(max(1, durability.updates))
        print(String(format: "update log: %.3f ms per accepted update (append + fsync), ledger %.3f ms per update; log/ledger %.2fx; %.1f KiB per round",
                     1000 * durability.logSeconds / n, 1000 * durability.ledgerSeconds / n,
                     durability.logSeconds / max(1e-12, durability.ledgerSeconds),
                     Double(durability.logBytes) / 1024 / Double(max(1, rounds))))
    }

    struct Reply: Sendable {
        let status: Int
        let body: [UInt8]
    }

    static func send(_ http: HTTPClient, _ method: HTTPMethod, _ url: String, token: String? = nil, body: [UInt8]? = nil) async throws -> Reply {
        var r = HTTPClientRequest(url: url)
        r.method = method
        if let token { r.headers.add(name: "Authorization", value: "Bearer \(token)") }
        if let body { r.body = .bytes(ByteBuffer(bytes: body)) }
        let response = try await http.execute(r, timeout: .seconds(60))
        let bytes = try await response.body.collect(upTo: 1 << 26)
        return Reply(status: Int(response.status.code), body: Array(bytes.readableBytesView))
    }

    static func json<T: Decodable>(_ http: HTTPClient, _ method: HTTPMethod, _ url: String, body: (some Encodable)? = Optional<String>.none) async throws -> T {
        let data = try body.map { Array(try WireJSON.encoder().encode($0)) }
        let reply = try await send(http, method, url, body: data)
        guard reply.status < 300 else { throw CLIError("\(method) \(url): HTTP \(reply.status) \(String(decoding: reply.body, as: UTF8.self))") }
        return try WireJSON.decoder().decode(T.self, from: Data(reply.body))
    }
}

/// Latency samples and counters shared by the simulated workers.
final class BenchStats: Sendable {
    enum Call { case lease, status, commit }
    struct Snapshot {
        var lease: [UInt64] = []
        var status: [UInt64] = []
        var commit: [UInt64] = []
        var accepted = 0
        var acceptedBytes = 0

        func percentile(_ call: Call, _ q: Double) -> Double {
            let values = (call == .lease ? lease : call == .status ? status : commit).sorted()
            guard !values.isEmpty else { return .nan }
            return Double(values[min(values.count - 1, Int(q * Double(values.count)))]) / 1e6
        }
    }
    private let state = Mutex(Snapshot())

    func record(_ call: Call, _ nanoseconds: UInt64) {
        state.withLock { s in
            // Bounded: a long run keeps the first million samples of each kind.
            if call == .lease, s.lease.count < 1_000_000 { s.lease.append(nanoseconds) }
            if call == .status, s.status.count < 1_000_000 { s.status.append(nanoseconds) }
            if call == .commit, s.commit.count < 1_000_000 { s.commit.append(nanoseconds) }
        }
    }

    func accepted(bytes: Int) { state.withLock { $0.accepted += 1; $0.acceptedBytes += bytes } }
    func snapshot() -> Snapshot { state.withLock { $0 } }
}
