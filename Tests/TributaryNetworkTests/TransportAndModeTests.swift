import AsyncHTTPClient
import Foundation
import NIOCore
import NIOSSL
import TributaryCompression
import TributaryCoordinator
import TributaryProtocol
import TributaryTensor
import TributaryTraining
import XCTest

final class TransportAndModeTests: XCTestCase {
    override func setUp() { ComputeThreads.set(1) }

    /// With a certificate configured the coordinator speaks TLS and negotiates HTTP/2
    /// through ALPN; HTTP/1.1 clients are still served.
    func testHTTP2OverTLS() async throws {
        let dir = try temporaryDirectory("tls")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let openssl = Process()
        openssl.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        openssl.arguments = ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                             "-keyout", "\(dir)/key.pem", "-out", "\(dir)/cert.pem", "-days", "1", "-subj", "/CN=127.0.0.1",
                             "-addext", "subjectAltName=IP:127.0.0.1"]
        openssl.standardOutput = FileHandle.nullDevice
        openssl.standardError = FileHandle.nullDevice
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl") else { throw XCTSkip("openssl is not installed") }
        try openssl.run()
        openssl.waitUntilExit()
        XCTAssertEqual(openssl.terminationStatus, 0)

        let config = RunningCoordinator.config(directory: "\(dir)/c") { $0.limits.handshakeTimeoutSeconds = 1 }
        let job = try await TrainingJob.open(config: config, logger: quietLogger("test.tls"))
        let server = CoordinatorServer(job: job, logger: quietLogger("test.tls"))
        let shutdown = CoordinatorShutdown()
        let (ports, continuation) = AsyncStream<Int>.makeStream()
        let task = Task {
            try await server.run(host: "127.0.0.1", port: 0, tls: (certificate: "\(dir)/cert.pem", key: "\(dir)/key.pem"),
                                 shutdown: shutdown) { continuation.yield($0) }
        }
        var port = 0
        for await p in ports { port = p; break }

        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .file("\(dir)/cert.pem")
        for (version, expected) in [(HTTPClient.Configuration.HTTPVersion.automatic, 2), (.http1Only, 1)] {
            var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
            configuration.httpVersion = version
            let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
            let response = try await client.execute(HTTPClientRequest(url: "https://127.0.0.1:\(port)\(Routes.status)"), timeout: .seconds(10))
            let body = try await response.body.collect(upTo: 1 << 20)
            XCTAssertEqual(response.status.code, 200)
            XCTAssertEqual(response.version.major, expected, "negotiated HTTP/\(response.version.major)")
            let status = try WireJSON.decoder().decode(StatusReport.self, from: Data(body.readableBytesView))
            XCTAssertEqual(status.job, "test")
            try await client.shutdown()
        }
        // Old protocol versions and CBC suites are refused at the handshake.
        var legacy = tls
        legacy.maximumTLSVersion = .tlsv11
        var cbc = tls
        cbc.maximumTLSVersion = .tlsv12
        cbc.cipherSuiteValues = [.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, .TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA]
        var modern = tls
        modern.maximumTLSVersion = .tlsv12
        modern.cipherSuiteValues = [.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]
        for (name, clientTLS, accepted) in [("TLS 1.1", legacy, false), ("TLS 1.2 CBC", cbc, false), ("TLS 1.2 GCM", modern, true)] {
            let client = HTTPClient(eventLoopGroupProvider: .singleton,
                                    configuration: HTTPClient.Configuration(tlsConfiguration: clientTLS))
            do {
                let response = try await client.execute(HTTPClientRequest(url: "https://127.0.0.1:\(port)\(Routes.status)"),
                                                        timeout: .seconds(10))
                XCTAssertTrue(accepted, "\(name) must be refused")
                XCTAssertEqual(response.status.code, 200)
            } catch {
                XCTAssertFalse(accepted, "\(name) must be accepted: \(error)")
            }
            try await client.shutdown()
        }
        // A connection that never finishes its handshake is closed (issue 12, finding 7).
        let silent = try RawSocket(port: port)
        let started = Date()
        XCTAssertTrue(silent.receive(within: 5).closed, "a stalled handshake is cut off")
        XCTAssertLessThan(Date().timeIntervalSince(started), 3)
        await shutdown.trigger()
        _ = try? await task.value
    }

    /// Async mode: every accepted update is a step of its own; an update computed on a
    /// version older than the staleness bound is refused (409 stale_version) and its unit
    /// goes back to the queue.
    func testAsyncModeAppliesEachUpdateAndRefusesStaleOnes() async throws {
        let dir = try temporaryDirectory("async")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let coordinator = try await RunningCoordinator.start(RunningCoordinator.config(directory: "\(dir)/c") { c in
            c.rounds.mode = .async
            c.rounds.maxStaleness = 1
            c.leases.maxPerWorker = 3
        })
        let raw = RawClient(base: coordinator.url)
        let me = try await raw.register()
        // Three leases on version 0 (async mode leases ahead).
        var grants: [LeaseGrant] = []
        for _ in 0..<3 { grants.append(try await raw.request(.POST, Routes.leases, token: me.token).json(LeaseGrant.self)) }
        XCTAssertEqual(Set(grants.map(\.unitIndex)).count, 3, "distinct units")
        XCTAssertTrue(grants.allSatisfy { $0.version == 0 })
        let manifest = try await raw.request(.GET, Routes.manifest(0)).json(Manifest.self)
        func push(_ g: LeaseGrant) async throws {
            for s in manifest.shards {
                // Each unit's own values: the same bytes for another unit would be a replay.
                let body = try [Float](repeating: 1e-3 * Float(1 + g.unitIndex), count: s.elementCount).withUnsafeBufferPointer {
                    try TensorFrame.encode($0, codec: .fp32, zstdLevel: 3)
                }
                let r = try await raw.request(.PUT, Routes.update(g.leaseId, shard: s.name), token: me.token, body: body)
                XCTAssertEqual(r.status, 202)
            }
        }
        for g in grants { try await push(g) }
        let commit = { (g: LeaseGrant) in
            try await raw.json(.POST, Routes.commit(g.leaseId), token: me.token, CommitRequest(samples: 4, loss: 2))
        }
        // Fresh: weight = samples; applied at once (version 0 → 1).
        let first = try await commit(grants[0]).json(CommitReceipt.self)
        XCTAssertEqual(first.weight, 4)
        XCTAssertEqual(first.currentVersion, 1)
        // One version old: accepted at half weight (samples / (1 + 1)), version 1 → 2.
        let second = try await commit(grants[1]).json(CommitReceipt.self)
        XCTAssertEqual(second.weight, 2)
        XCTAssertEqual(second.currentVersion, 2)
        // Two versions old, bound 1: refused, nothing applied, unit leased again later.
        let third = try await commit(grants[2])
        XCTAssertEqual(third.status, 409)
        XCTAssertEqual(third.problem?.code, .staleVersion)
        let status = coordinator.job.status()
        XCTAssertEqual(status.version, 2)
        XCTAssertEqual(status.updatesAccepted, 2)
        XCTAssertEqual(status.updatesRejected["stale_version"], 1)
        let again = try await raw.request(.POST, Routes.leases, token: me.token).json(LeaseGrant.self)
        XCTAssertEqual(again.unitIndex, grants[2].unitIndex, "the refused unit is leased again first")
        XCTAssertEqual(again.version, 2)
        await coordinator.stop()
    }
}

final class BoundedSeriesTests: XCTestCase {
    /// A long job's loss history stays bounded, keeps its first and latest points, and
    /// keeps the recent half at full resolution.
    func testLossHistoryIsDownsampledNotTruncated() {
        var series = BoundedSeries(capacity: 64)
        for r in 1...10_000 { series.append(.init(round: r, value: Double(r))) }
        let rounds = series.points.map(\.round)
        XCTAssertLessThanOrEqual(rounds.count, 64)
        XCTAssertEqual(rounds.first, 1, "the start of training is kept")
        XCTAssertEqual(rounds.last, 10_000, "the latest point is kept")
        XCTAssertEqual(rounds, rounds.sorted(), "in order")
        let tail = Array(rounds.suffix(16))
        XCTAssertEqual(tail, Array((10_000 - 15)...10_000), "recent points at full resolution")
    }
}

final class JobConfigTests: XCTestCase {
    /// AdamW's β₁ on the coordinator: `beta1` for dense codecs and top-k from 0.2; 0 for
    /// smaller top-k fractions; `sparse_beta1` when given, for every top-k fraction.
    func testTopKJobsRunAdamWWithSparseBeta1() throws {
        let base = "auth: {join_token: t}\n"
        func beta1(_ yaml: String) throws -> Float { try JobConfig.parse(base + yaml).adamBeta1 }
        XCTAssertEqual(try beta1(""), 0.9, "fp32: the job's beta1")
        XCTAssertEqual(try beta1("compression: {codec: int8:256}"), 0.9, "dense codecs keep beta1")
        XCTAssertEqual(try beta1("compression: {codec: topk:0.01}"), 0, "small top-k fractions: no momentum")
        XCTAssertEqual(try beta1("compression: {codec: TopK:0.003:int8}"), 0)
        XCTAssertEqual(try beta1("compression: {codec: topk:0.199}"), 0)
        XCTAssertEqual(try beta1("compression: {codec: topk:0.2}"), 0.9, "from 0.2 on: beta1")
        XCTAssertEqual(try beta1("compression: {codec: topk:0.3}\noptimizer: {beta1: 0.8}"), 0.8)
        XCTAssertEqual(try beta1("compression: {codec: topk:0.1}\noptimizer: {beta1: 0.8, sparse_beta1: 0.5}"), 0.5)
        XCTAssertEqual(try beta1("compression: {codec: topk:0.01}\noptimizer: {sparse_beta1: 0.9}"), 0.9)
        XCTAssertEqual(try beta1("optimizer: {beta1: 0.8, sparse_beta1: 0.5}"), 0.8, "sparse_beta1 only concerns top-k")
        XCTAssertNil(try JobConfig.parse(JobConfig.example).optimizer.sparseBeta1, "the example leaves the automatic choice")
        func bound(_ yaml: String) throws -> Float? { try JobConfig.parse(base + yaml).adamUpdateBound }
        XCTAssertEqual(try bound("compression: {codec: topk:0.01}"), 2, "top-k: bounded at 2 by default")
        XCTAssertEqual(try bound("compression: {codec: topk:0.1}\noptimizer: {sparse_update_bound: 3.5}"), 3.5)
        XCTAssertNil(try bound("compression: {codec: int8:256}\noptimizer: {sparse_update_bound: 3}"), "dense codecs: no bound")
    }

    /// Relative paths in a job file are the file's: the coordinator finds its data and
    /// state beside it from any current directory, and says where it looked when it cannot.
    func testRelativePathsAreTakenFromTheJobFilesDirectory() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tributary-jobdir-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: "\(dir)/jobs", withIntermediateDirectories: true)
        try """
            data: {source: ../corpus.txt}
            storage: {data_directory: state, ledger: "sqlite:ledgers/job.sqlite"}
            auth: {join_token_file: secrets/join, viewer_token_file: /etc/absolute-stays}
            """.write(toFile: "\(dir)/jobs/job.yaml", atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(atPath: "\(dir)/jobs/secrets", withIntermediateDirectories: true)
        let c = try JobConfig.load(path: "\(dir)/jobs/job.yaml")
        XCTAssertEqual(c.data.source, "\(dir)/corpus.txt")
        XCTAssertEqual(c.storage.dataDirectory, "\(dir)/jobs/state")
        XCTAssertEqual(c.storage.ledger, "sqlite:\(dir)/jobs/ledgers/job.sqlite")
        XCTAssertEqual(c.auth.joinTokenFile, "\(dir)/jobs/secrets/join")
        XCTAssertEqual(c.auth.viewerTokenFile, "/etc/absolute-stays")
        XCTAssertEqual(try JobConfig.parse("data: {source: builtin:arithmetic}", baseDirectory: dir).data.source, "builtin:arithmetic")
        XCTAssertThrowsError(try JobConfig.load(path: "\(dir)/jobs/missing.yaml")) { error in
            XCTAssertTrue("\(error)".contains("looked at \(dir)/jobs/missing.yaml"), "\(error)")
        }
    }

    func testJobFilesAreValidatedWithClearErrors() throws {
        let ok = try JobConfig.parse("name: x\nmodel: {n_layer: 2}\nauth: {join_token: t}\n")
        XCTAssertEqual(ok.model.nLayer, 2)
        XCTAssertEqual(ok.model.nHead, 4, "defaults fill what the file leaves out")
        XCTAssertEqual(try JobConfig.parse(JobConfig.example).rounds.unitsPerRound, 4, "the example written by `coordinator init` is valid")
        let local = try JobConfig.parse("rounds: {mode: local}\nlocal: {steps: 4}\noptimizer: {lr: 0.002, warmup_rounds: 3, total_rounds: 50}\n")
        XCTAssertEqual(local.optimizerSettings, OptimizerSettings(kind: .sgd, schedule: .constant(0.7), weightDecay: 0, momentum: 0.9,
                                                                  nesterov: true, gradClip: 0), "DiLoCo's outer optimizer")
        let inner = try XCTUnwrap(local.localStepsDescription)
        XCTAssertEqual([inner.steps, inner.warmupSteps, inner.decaySteps], [4, 12, 200], "the inner schedule in inner steps")
        XCTAssertEqual(inner.optimizer, "adamw")
        XCTAssertEqual(inner.lr, 0.002)
        XCTAssertNil(try JobConfig.parse("name: x").localStepsDescription)
        let cases: [(String, String)] = [
            ("model: {n_layers: 2}", "unknown key 'model.n_layers'; did you mean 'model.n_layer'?"),
            ("rounds: {unit_per_round: 2}", "unknown key 'rounds.unit_per_round'; did you mean 'rounds.units_per_round'?"),
            ("rounds: {units_per_round: 2.5}", "job file: rounds.units_per_round must be a whole number (got 2.5)"),
            ("rounds: {deadline_seconds: soon}", "job file: rounds.deadline_seconds must be a number (got soon)"),
            ("nonsense_section: {a: 1}", "unknown key 'nonsense_section'"),
            ("storage: {validation_every_rounds: 0}", "validation_every_rounds must be positive"),
            ("rounds: {mode: eventually}", "rounds.mode must be sync, async, local"),
            ("compression: {download_codec: fp32}", "fp32 deltas are no smaller than full shards; use none"),
            ("compression: {download_codec: zip}", "compression.download_codec"),
            ("rounds: {mode: local}\nlocal: {steps: 3}", "must be a multiple of local.steps (3)"),
            ("rounds: {mode: local}\nlocal: {steps: 4}\nvalidation: {replication: all}", "replication: all cannot check local steps"),
            ("rounds: {mode: local}\nlocal: {steps: 4, outer_momentum: 1}", "local.outer_momentum lie in [0, 1)"),
            ("rounds: {mode: local}\nlocal: {steps: 4}\nunits: {samples_per_unit: 8, micro_batch: 4}", "divide the samples of one inner step (2)"),
            ("compression: {codec: gzip}", "compression.codec"),
            ("server: {listen: nowhere}", "server.listen must be HOST:PORT"),
            ("rounds: {min_units: 9, units_per_round: 4}", "min_units"),
            ("units: {samples_per_unit: 8, micro_batch: 3}", "micro_batch"),
            ("- a\n- b", "top level must be a mapping"),
            ("model: {n_layer: [1, 2]}", "model.n_layer"),
            ("optimizer: {sparse_beta1: 1.0}", "optimizer.sparse_beta1 must lie in [0, 1)"),
            ("optimizer: {sparse_beta1: -0.1}", "optimizer.sparse_beta1 must lie in [0, 1)"),
            ("optimizer: {sparse_update_bound: 0}", "optimizer.sparse_update_bound must be a positive number"),
        ]
        for (yaml, expected) in cases {
            XCTAssertThrowsError(try JobConfig.parse(yaml)) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(yaml): \(error)")
            }
        }
    }
}
