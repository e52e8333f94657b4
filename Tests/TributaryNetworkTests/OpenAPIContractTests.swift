import Foundation
import Hummingbird
import NIOHTTP1
import TributaryCompression
import TributaryCoordinator
import TributaryModels
import TributaryProtocol
import TributaryTensor
import XCTest
import Yams

/// Keeps Protocol/openapi.yaml and the coordinator in step: the routes the router
/// registers, the JSON the server emits (checked against the spec's schemas), the status
/// codes, content types and headers of live answers, and the batch-body example in
/// Protocol/api.md.
final class OpenAPIContractTests: XCTestCase {
    static let packageRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func loadSpec() throws -> [String: Any] {
        let url = packageRoot.appendingPathComponent("Protocol/openapi.yaml")
        let text = try String(contentsOf: url, encoding: .utf8)
        let parsed = try XCTUnwrap(try Yams.load(yaml: text), "Protocol/openapi.yaml is empty")
        return try XCTUnwrap(ContractSpec.normalize(parsed) as? [String: Any], "the spec's top level is not a mapping")
    }

    // MARK: Document and routes

    func testSpecIsOpenAPI31AndDeclaresEveryProblemCode() throws {
        let spec = try Self.loadSpec()
        let version = try XCTUnwrap(spec["openapi"] as? String, "no openapi field")
        XCTAssertTrue(version.hasPrefix("3.1"), "openapi is \(version), expected 3.1.x")
        let servers = (spec["servers"] as? [Any])?.compactMap { ($0 as? [String: Any])?["url"] as? String } ?? []
        XCTAssertEqual(servers, ["http://127.0.0.1:8470"])
        let schemes = ContractSpec.dig(spec, "components", "securitySchemes", "bearerAuth") as? [String: Any]
        XCTAssertEqual(schemes?["type"] as? String, "http")
        XCTAssertEqual(schemes?["scheme"] as? String, "bearer")

        let declared = Set((ContractSpec.dig(spec, "components", "schemas", "ProblemCode", "enum") as? [Any] ?? []).compactMap { $0 as? String })
        let actual = Set(ProblemCode.allCases.map(\.rawValue))
        for code in actual.subtracting(declared).sorted() { XCTFail("ProblemCode.\(code) is missing from components/schemas/ProblemCode") }
        for code in declared.subtracting(actual).sorted() { XCTFail("the spec's ProblemCode '\(code)' is not a ProblemCode raw value") }

        // Every path parameter in a template is declared, and every $ref resolves.
        let checker = ContractSchemaChecker(root: spec)
        for (template, item) in ContractSpec.paths(spec) {
            for (method, operation) in item where ContractSpec.httpMethods.contains(method) {
                let names = Set(((operation["parameters"] as? [Any]) ?? []).compactMap { p -> String? in
                    guard let p = checker.resolve(p) as? [String: Any], p["in"] as? String == "path" else { return nil }
                    return p["name"] as? String
                })
                XCTAssertEqual(names, ContractSpec.placeholders(template), "\(method.uppercased()) \(template): path parameters")
            }
        }
        XCTAssertEqual(checker.unresolvedReferences(), [], "references that do not resolve")
    }

    func testSpecRoutesEqualTheRoutersRoutes() async throws {
        let spec = try Self.loadSpec()
        let dir = try temporaryDirectory("openapi-routes")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let job = try await TrainingJob.open(config: RunningCoordinator.config(directory: dir), logger: quietLogger("openapi"))
        let router = CoordinatorServer(job: job, logger: quietLogger("openapi")).router()
        XCTAssertNoThrow(try router.validate(), "the router's routes clash")
        // Hummingbird describes a `:name` capture as `{name}`, as OpenAPI does.
        let served = Set(router.routes.map { "\($0.method.rawValue) \($0.path.description)" })
        let documented = ContractSpec.operations(spec)
        XCTAssertFalse(served.isEmpty)
        for route in served.subtracting(documented).sorted() {
            XCTFail("the coordinator serves \(route), which Protocol/openapi.yaml does not document")
        }
        for route in documented.subtracting(served).sorted() {
            XCTFail("Protocol/openapi.yaml documents \(route), which the coordinator does not serve")
        }

        // The paths the worker builds with Routes are the documented templates.
        let built: [(String, String)] = [
            ("POST", Routes.register), ("GET", Routes.job), ("POST", Routes.leases), ("GET", Routes.status),
            ("GET", Routes.workers), ("GET", Routes.myCredit), ("GET", Routes.latestSamples),
            ("DELETE", Routes.lease("{lease}")), ("POST", Routes.renew("{lease}")), ("GET", Routes.batch("{lease}")),
            ("PUT", Routes.update("{lease}", shard: "{shard}")), ("POST", Routes.commit("{lease}")),
            ("GET", Routes.manifest(0).replacingOccurrences(of: "/0/", with: "/{version}/")),
            ("GET", Routes.shard(0, "{shard}").replacingOccurrences(of: "/0/", with: "/{version}/")),
            ("GET", Routes.delta(0, "{shard}").replacingOccurrences(of: "/0/", with: "/{version}/")),
        ]
        for (method, path) in built {
            XCTAssertTrue(documented.contains("\(method) \(path)"), "Routes builds \(method) \(path), which the spec does not document")
        }
        // The binary content types are the ones the spec names.
        let text = try String(contentsOf: Self.packageRoot.appendingPathComponent("Protocol/openapi.yaml"), encoding: .utf8)
        XCTAssertTrue(text.contains("\(Routes.tensorFrameType):"))
        XCTAssertTrue(text.contains("\(Routes.batchType):"))
        XCTAssertTrue(text.contains("\(Routes.deltaChainType):"))
    }

    // MARK: Schemas of constructed values

    /// Fully populated values: every key is declared, every declared key is emitted.
    func testEveryJSONTypeMatchesItsSchemaExhaustively() throws {
        let checker = ContractSchemaChecker(root: try Self.loadSpec())
        let gpt = ModelSpec.gpt(GPTConfig(vocabSize: 65, blockSize: 16, nLayer: 2, nHead: 2, nEmbd: 32, bias: false))
        let mlp = ModelSpec.mlp(MLPConfig(inputFeatures: 784, hidden: [128, 64], classes: 10))
        let local = LocalSteps(steps: 4, optimizer: "adamw", lr: 3e-4, minLr: 3e-5, warmupSteps: 40, decaySteps: 4000,
                               beta1: 0.9, beta2: 0.95, weightDecay: 0.1, momentum: 0.9, nesterov: false, gradClip: 1)
        let job = JobDescription(name: "demo", model: gpt, samplesPerUnit: 8, microBatchSize: 4, updateCodec: "fp32", zstdLevel: 3,
                                 localSteps: local, initSeed: 1337)
        let date = Date(timeIntervalSince1970: 1_750_000_000.25)
        let slot = TensorSlot(name: "transformer.wte.weight", shape: [65, 32], offset: 0)
        let descriptor = ShardDescriptor(name: "embeddings", tensors: [slot], elementCount: 2080, byteSize: 8352,
                                         contentHash: String(repeating: "ab", count: 32), deltaByteSize: 2200)
        var status = StatusReport(
            job: "demo", model: "GPT", parameters: 1000, shards: 3, mode: "sync", version: 4, round: 5, epoch: 0,
            totalRounds: 100, complete: false, checkpointedVersion: 0,
            trainingLoss: [.init(round: 1, value: 3.5)], validationLoss: [.init(round: 1, value: 3.6)],
            workers: .init(active: 1, seenRecently: 2, total: 3),
            units: .init(done: 4, leased: 1, pending: 10, expired: 2, perEpoch: 15),
            samplesPerSecond: 12.5, tokensPerSecond: 200, bytesIn: 10, denseBytesIn: 40, bytesOut: 20, updatesAccepted: 4,
            updatesRejected: ["invalid_update": 2, "bad_token": 1], lastRoundSeconds: 1.25, uptimeSeconds: 30,
            etaSeconds: 90)
        status.checkpointFailing = true
        status.storageError = "update log: write failed (No space left on device)"
        status.failed = "10 rounds in a row had a non-finite gradient"
        var replication = ReplicationStatus()
        replication.replicas = 12
        replication.replicaSamples = 96
        replication.confirmed = 9
        replication.disputes = 3
        replication.replaced = 2
        replication.unresolved = 1
        replication.refutedReplicas = 1
        replication.banned = 1
        replication.voidedByBan = 1
        status.replication = replication
        let values: [(String, any Encodable)] = [
            ("RegisterRequest", RegisterRequest(joinToken: "j", name: "n", threads: 4, memoryBudgetBytes: 1 << 30)),
            ("RegisterResponse", RegisterResponse(workerId: "w-1", token: "trb_x", job: job)),
            ("JobDescription", JobDescription(name: "mnist", model: mlp, samplesPerUnit: 64, microBatchSize: 64,
                                              updateCodec: "fp32", zstdLevel: 3,
                                              localSteps: LocalSteps(steps: 8, optimizer: "sgd", lr: 0.1, minLr: 0,
                                                                     warmupSteps: 0, decaySteps: 0, beta1: 0.9, beta2: 0.999,
                                                                     weightDecay: 0, momentum: 0.9, nesterov: true, gradClip: 0),
                                              initSeed: 7)),
            ("LocalSteps", local),
            ("ModelSpec", gpt), ("ModelSpec", mlp),
            ("GPTModelSpec", gpt), ("MLPModelSpec", mlp),
            ("LeaseGrant", LeaseGrant(leaseId: "l-1", epoch: 0, unitIndex: 3, sampleStart: 24, sampleCount: 8,
                                      microBatchSize: 4, version: 2, deadline: date, shards: ["embeddings", "block.0", "head"])),
            ("LeaseRenewal", LeaseRenewal(leaseId: "l-1", deadline: date)),
            ("CommitRequest", CommitRequest(samples: 8, loss: 2.75)),
            ("CommitReceipt", CommitReceipt(accepted: true, round: 3, weight: 4.5, baseVersion: 1, currentVersion: 2)),
            ("ShardReceipt", ShardReceipt(shard: "head", bytes: 180)),
            ("Manifest", Manifest(version: 2, shards: [descriptor], deltaCodec: "int8:256")),
            ("ShardDescriptor", descriptor),
            ("TensorSlot", slot),
            ("StatusReport", status),
            ("WorkerSummary", WorkerSummary(id: "w-1", name: "n", samples: 96, flops: 1e9, acceptedUpdates: 12,
                                            rejectedUpdates: 1, lastSeen: date, active: true, banned: true,
                                            reputation: WorkerReputationSummary(agreements: 7, disagreements: 1,
                                                                                consecutiveAgreements: 5, trusted: true))),
            ("Problem", Problem(.noWork, status: 503, detail: "retry shortly")),
            ("WorkerCredit", WorkerCredit(worker: WorkerSummary(id: "w-1", name: "n", samples: 12_800, flops: 4.1e12,
                                                                acceptedUpdates: 50, rejectedUpdates: 0, lastSeen: date,
                                                                active: true, banned: true,
                                                                reputation: WorkerReputationSummary(agreements: 7, disagreements: 1,
                                                                                                    consecutiveAgreements: 5,
                                                                                                    trusted: true)),
                                          rank: 2, volunteers: 5, jobSamples: 41_000, share: 12_800.0 / 41_000)),
        ]
        for (name, value) in values {
            let json = try ContractJSON.encode(value)
            XCTAssertEqual(checker.check(json, schemaNamed: name, exhaustive: true), [], "\(name): \(json)")
        }
        // Every problem code is a valid Problem.
        for code in ProblemCode.allCases {
            let json = try ContractJSON.encode(Problem(code, status: 400, detail: "d"))
            XCTAssertEqual(checker.check(json, schemaNamed: "Problem", exhaustive: true), [], code.rawValue)
        }
        // The optional fields may be left out, and the checker does catch mistakes.
        let sparse = try ContractJSON.encode(RegisterRequest(joinToken: "j"))
        XCTAssertEqual(checker.check(sparse, schemaNamed: "RegisterRequest"), [])
        let plainJob = JobDescription(name: "demo", model: gpt, samplesPerUnit: 8, microBatchSize: 4, updateCodec: "fp32", zstdLevel: 3)
        XCTAssertEqual(checker.check(try ContractJSON.encode(plainJob), schemaNamed: "JobDescription"), [])
        let fullShards = Manifest(version: 0, shards: [ShardDescriptor(name: "head", tensors: [slot], elementCount: 2080, byteSize: 8352,
                                                                       contentHash: String(repeating: "cd", count: 32))])
        XCTAssertEqual(checker.check(try ContractJSON.encode(fullShards), schemaNamed: "Manifest"), [])
        var localStatus = status
        localStatus.mode = "local"
        XCTAssertEqual(checker.check(try ContractJSON.encode(localStatus), schemaNamed: "StatusReport"), [])
        var wrongOptimizer = local
        wrongOptimizer.optimizer = "lion"
        XCTAssertFalse(checker.check(try ContractJSON.encode(wrongOptimizer), schemaNamed: "LocalSteps").isEmpty)
        XCTAssertFalse(checker.check(.object(["join_token": .integer(3)]), schemaNamed: "RegisterRequest").isEmpty)
        XCTAssertFalse(checker.check(.object(["samples": .integer(3)]), schemaNamed: "CommitRequest").isEmpty)
        XCTAssertFalse(checker.check(.object(["lease_id": .string("l"), "deadline": .string("soon")]), schemaNamed: "LeaseRenewal").isEmpty)
        guard case var .object(fields) = try ContractJSON.encode(ShardReceipt(shard: "head", bytes: 1)) else { return XCTFail() }
        fields["undeclared"] = .bool(true)
        XCTAssertFalse(checker.check(.object(fields), schemaNamed: "ShardReceipt").isEmpty)
        guard case var .object(problem) = try ContractJSON.encode(Problem(.noWork, status: 503, detail: "d")) else { return XCTFail() }
        problem["code"] = .string("no_such_code")
        XCTAssertFalse(checker.check(.object(problem), schemaNamed: "Problem").isEmpty)
    }

    // MARK: Live answers

    /// Walks the whole protocol against a running coordinator; every answer's status must be
    /// declared for its operation, with its content type, headers and (for JSON) schema.
    func testLiveAnswersMatchTheSpec() async throws {
        ComputeThreads.set(1)
        let dir = try temporaryDirectory("openapi-live")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let clock = ContractClock()
        let c = try await RunningCoordinator.start(RunningCoordinator.config(directory: "\(dir)/c") { c in
            c.rounds.unitsPerRound = 2
            c.rounds.maxStaleness = 0
            // Compressed downloads: manifests carry delta fields and the delta route serves chains.
            c.compression.downloadCodec = "int8"
        }, now: { clock.now() })
        let contract = ContractLiveClient(spec: try Self.loadSpec(), raw: RawClient(base: c.url))
        do {
            try await walkProtocol(contract, clock: clock)
        } catch {
            XCTFail("\(error)")
        }
        await c.stop()

        let missed = ContractSpec.operations(contract.spec).subtracting(contract.covered)
        XCTAssertEqual(missed, [], "operations this test never called: add a live check for each")
    }

    private func walkProtocol(_ api: ContractLiveClient, clock: ContractClock) async throws {
        // Public routes.
        let status0 = try await api.call(.GET, Routes.status, expect: 200).json(StatusReport.self)
        XCTAssertEqual(status0.version, 0)
        _ = try await api.call(.GET, Routes.job, expect: 200).json(JobDescription.self)

        // Registration.
        try await api.call(.POST, Routes.register, json: RegisterRequest(joinToken: "wrong"), expect: 403, code: .forbidden)
        try await api.call(.POST, Routes.register, body: Array("{not json".utf8), expect: 400, code: .malformedRequest)
        let me = try await api.call(.POST, Routes.register,
                                    json: RegisterRequest(joinToken: RunningCoordinator.joinToken, name: "contract", threads: 1,
                                                          memoryBudgetBytes: 1 << 30), expect: 201).json(RegisterResponse.self)
        let t = me.token

        // Leasing.
        try await api.call(.POST, Routes.leases, expect: 401, code: .unauthorized)
        try await api.call(.POST, Routes.leases, token: "trb_forged", expect: 403, code: .forbidden)
        let l1 = try await api.call(.POST, Routes.leases, token: t, expect: 201).json(LeaseGrant.self)
        _ = try await api.call(.POST, Routes.renew(l1.leaseId), token: t, expect: 200).json(LeaseRenewal.self)
        try await api.call(.POST, Routes.renew("l-no-such-lease"), token: t, expect: 404, code: .notFound)

        // Parameters: manifest, shards, ETag and 304.
        let manifest = try await api.call(.GET, Routes.manifest(l1.version), expect: 200).json(Manifest.self)
        XCTAssertEqual(manifest.shards.map(\.name), l1.shards)
        try await api.call(.GET, Routes.manifest(99), expect: 404, code: .notFound)
        try await api.call(.GET, "/v1/versions/abc/manifest", expect: 400, code: .malformedRequest)
        let first = try XCTUnwrap(manifest.shards.first)
        let shard = try await api.call(.GET, Routes.shard(l1.version, first.name), expect: 200)
        XCTAssertEqual(shard.headers["ETag"].first, "\"\(first.contentHash)\"")
        XCTAssertEqual(shard.body.count, first.byteSize)
        try await api.call(.GET, Routes.shard(l1.version, first.name), headers: [("If-None-Match", "\"\(first.contentHash)\"")],
                           expect: 304)
        try await api.call(.GET, Routes.shard(l1.version, "block.99"), expect: 404, code: .unknownShard)
        XCTAssertNotNil(manifest.deltaCodec, "the harness job publishes deltas")

        // Delta chains: refused before the first delta exists; `from` is required.
        let deltaPath = Routes.delta(l1.version, first.name)
        try await api.call(.GET, deltaPath + "?from=0", expect: 409, code: .deltaUnavailable)
        try await api.call(.GET, deltaPath, token: t, expect: 400, code: .malformedRequest)
        try await api.call(.GET, deltaPath + "?from=-1", token: t, expect: 400, code: .malformedRequest)
        try await api.call(.GET, Routes.delta(99, first.name) + "?from=0", token: t, expect: 404, code: .notFound)
        try await api.call(.GET, Routes.delta(l1.version, "block.99") + "?from=0", token: t, expect: 404, code: .unknownShard)

        // The batch body: the layout Protocol/api.md describes (token windows for a GPT).
        let batch = try await api.call(.GET, Routes.batch(l1.leaseId), token: t, expect: 200)
        let job = me.job
        guard case let .gpt(g) = job.model else { return XCTFail("the harness job is a GPT") }
        let tokenBytes = g.vocabSize <= 256 ? 1 : g.vocabSize <= 65_536 ? 2 : 4
        XCTAssertEqual(Array(batch.body.prefix(8)), Array("TRBB".utf8) + [1, 2, UInt8(tokenBytes), 0])
        XCTAssertEqual(batch.body.count, 16 + tokenBytes * l1.sampleCount * (g.blockSize + 1))
        XCTAssertNoThrow(try BatchBody.decode(batch.body, maxBatch: l1.sampleCount, width: g.blockSize))

        // Updates: refusals, then every shard.
        let frames = try manifest.shards.map { s in
            try [Float](repeating: 1e-3, count: s.elementCount).withUnsafeBufferPointer {
                try TensorFrame.encode($0, codec: .fp32, zstdLevel: job.zstdLevel)
            }
        }
        try await api.call(.PUT, Routes.update(l1.leaseId, shard: "block.99"), token: t, body: frames[0], expect: 404, code: .unknownShard)
        try await api.call(.PUT, Routes.update("l-no-such-lease", shard: first.name), token: t, body: frames[0], expect: 404, code: .notFound)
        try await api.call(.PUT, Routes.update(l1.leaseId, shard: first.name), token: t, body: Array(frames[0].dropLast(3)),
                           expect: 422, code: .invalidUpdate)
        let limit = TensorFrame.maximumBodySize(elementCount: first.elementCount, codec: .fp32)
        try await api.call(.PUT, Routes.update(l1.leaseId, shard: first.name), token: t,
                           body: [UInt8](repeating: 0, count: limit + 1), expect: 413, code: .payloadTooLarge)
        _ = try await api.call(.PUT, Routes.update(l1.leaseId, shard: first.name), token: t, body: frames[0], expect: 202)
            .json(ShardReceipt.self)
        try await api.call(.POST, Routes.commit(l1.leaseId), token: t, json: CommitRequest(samples: l1.sampleCount, loss: 1),
                           expect: 409, code: .incompleteUpdate)
        try await pushAll(api, lease: l1.leaseId, token: t, manifest: manifest, frames: frames)
        try await api.call(.POST, Routes.commit(l1.leaseId), token: t, json: CommitRequest(samples: 999, loss: 1),
                           expect: 400, code: .malformedRequest)
        let receipt = try await api.call(.POST, Routes.commit(l1.leaseId), token: t,
                                         json: CommitRequest(samples: l1.sampleCount, loss: 1.5), expect: 200).json(CommitReceipt.self)
        XCTAssertTrue(receipt.accepted)
        let replayed = try await api.call(.POST, Routes.commit(l1.leaseId), token: t,
                                          json: CommitRequest(samples: l1.sampleCount, loss: 1.5), expect: 200).json(CommitReceipt.self)
        XCTAssertEqual(replayed, receipt, "a repeated commit gets the same receipt")

        // Release, then the round barrier: 503 noWork with Retry-After.
        let l2 = try await api.call(.POST, Routes.leases, token: t, expect: 201).json(LeaseGrant.self)
        try await api.call(.DELETE, Routes.lease(l2.leaseId), token: t, expect: 204)
        try await api.call(.DELETE, Routes.lease(l2.leaseId), token: t, expect: 409, code: .leaseNotActive)
        try await api.call(.GET, Routes.batch(l2.leaseId), token: t, expect: 409, code: .leaseNotActive)
        let l3 = try await api.call(.POST, Routes.leases, token: t, expect: 201).json(LeaseGrant.self)
        try await api.call(.POST, Routes.leases, token: t, expect: 409, code: .tooManyLeases)
        let other = try await api.call(.POST, Routes.register, json: RegisterRequest(joinToken: RunningCoordinator.joinToken),
                                       expect: 201).json(RegisterResponse.self)
        try await api.call(.POST, Routes.leases, token: other.token, expect: 503, code: .noWork)

        // The second unit closes the round: version 0 is then gone (staleness bound 0).
        // Other values than l1's: the same bytes for another unit would be a replay.
        let frames3 = try manifest.shards.map { s in
            try [Float](repeating: 2e-3, count: s.elementCount).withUnsafeBufferPointer {
                try TensorFrame.encode($0, codec: .fp32, zstdLevel: job.zstdLevel)
            }
        }
        try await pushAll(api, lease: l3.leaseId, token: t, manifest: manifest, frames: frames3)
        let closing = try await api.call(.POST, Routes.commit(l3.leaseId), token: t,
                                         json: CommitRequest(samples: l3.sampleCount, loss: 1.25), expect: 200).json(CommitReceipt.self)
        XCTAssertEqual(closing.currentVersion, 1)
        try await api.call(.GET, Routes.manifest(0), expect: 410, code: .versionGone)
        try await api.call(.GET, Routes.shard(0, first.name), expect: 410, code: .versionGone)
        try await api.call(.GET, Routes.delta(0, first.name) + "?from=0", token: t, expect: 410, code: .versionGone)

        // Version 1 as a chain of one delta from version 0: applied to version 0's body it
        // rebuilds version 1's body byte for byte (Protocol/frames.md, "Parameter deltas").
        let manifest1 = try await api.call(.GET, Routes.manifest(1), token: t, expect: 200).json(Manifest.self)
        let first1 = try XCTUnwrap(manifest1.shard(named: first.name))
        let deltaSize = try XCTUnwrap(first1.deltaByteSize, "version 1 has a delta")
        let chain = try await api.call(.GET, Routes.delta(1, first.name) + "?from=0", expect: 200)
        XCTAssertEqual(chain.headers["Content-Type"].first, Routes.deltaChainType)
        XCTAssertEqual(chain.body.count, DeltaChain.headerSize + 8 + deltaSize)
        var values = [Float](repeating: 0, count: first.elementCount)
        try shard.body.withUnsafeBytes { raw in
            try values.withUnsafeMutableBufferPointer { try TensorFrame.decode(raw, expectedCount: first.elementCount, into: $0) }
        }
        var scratch = [Float](repeating: 0, count: first.elementCount)
        let ranges = try chain.body.withUnsafeBytes { try DeltaChain.deltas(in: $0, from: 0, to: 1) }
        for range in ranges {
            let frame = Array(chain.body[range])
            try frame.withUnsafeBytes { raw in
                try values.withUnsafeMutableBufferPointer { v in
                    try scratch.withUnsafeMutableBufferPointer { try ParameterDelta.apply(raw, to: v, scratch: $0) }
                }
            }
        }
        let rebuilt = try values.withUnsafeBufferPointer { try TensorFrame.encode($0, codec: .fp32, zstdLevel: nil) }
        let full1 = try await api.call(.GET, Routes.shard(1, first.name), token: t, expect: 200)
        XCTAssertEqual(rebuilt, full1.body, "a rebuilt shard is the full body")
        XCTAssertEqual(full1.headers["ETag"].first, "\"\(first1.contentHash)\"")
        let status1 = try await api.call(.GET, Routes.status, expect: 200).json(StatusReport.self)
        XCTAssertEqual(status1.version, 1)
        XCTAssertFalse(status1.updatesRejected.isEmpty)
        // Every validated upload counts (also those whose lease was later refused).
        XCTAssertGreaterThanOrEqual(status1.denseBytesIn, 4 * status1.parameters * status1.updatesAccepted)
        XCTAssertEqual(status1.denseBytesIn % 4, 0)

        // Volunteers' credit (never their tokens) and the Prometheus exposition.
        let workers = try await api.call(.GET, Routes.workers, expect: 200)
        let list = try workers.json(WorkerList.self)
        XCTAssertEqual(list.workers.reduce(0) { $0 + $1.acceptedUpdates }, status1.updatesAccepted)
        XCTAssertFalse(String(decoding: workers.body, as: UTF8.self).contains(t), "a bearer token never appears")
        // A worker's own credit: its line of the list and its rank among the two registered.
        try await api.call(.GET, Routes.myCredit, expect: 401, code: .unauthorized)
        try await api.call(.GET, Routes.myCredit, token: "trb_forged", expect: 403, code: .forbidden)
        let credit = try await api.call(.GET, Routes.myCredit, token: t, expect: 200).json(WorkerCredit.self)
        let mine = try XCTUnwrap(list.workers.first { $0.id == me.workerId })
        XCTAssertEqual([credit.worker.id, credit.worker.name], [me.workerId, "contract"])
        XCTAssertEqual([credit.worker.samples, credit.worker.acceptedUpdates], [mine.samples, 2])
        XCTAssertEqual([credit.rank, credit.volunteers, credit.jobSamples], [1, 2, mine.samples])
        XCTAssertEqual(credit.share, 1)
        // A GPT job draws no sample grid (SampleGridRouteTests has a U-Net's).
        try await api.call(.GET, Routes.latestSamples, expect: 404, code: .notFound)
        let page = String(decoding: try await api.call(.GET, "/", expect: 200).body, as: UTF8.self)
        XCTAssertTrue(page.contains("<html"), "the dashboard page")
        let metrics = String(decoding: try await api.call(.GET, "/metrics", expect: 200).body, as: UTF8.self)
        XCTAssertTrue(metrics.contains("tributary_updates_accepted_total \(status1.updatesAccepted)"), metrics)
        XCTAssertTrue(metrics.contains("tributary_parameter_version 1"), metrics)
        XCTAssertTrue(metrics.contains("tributary_round_duration_seconds_bucket"), metrics)
        XCTAssertTrue(metrics.contains("tributary_updates_rejected_total{reason="), metrics)
        // Prometheus' conventions (what `promtool check metrics` checks): counters end in _total.
        let counters = metrics.split(separator: "\n").filter { $0.hasPrefix("# TYPE ") && $0.hasSuffix(" counter") }
        XCTAssertGreaterThan(counters.count, 8)
        for line in counters { XCTAssertTrue(line.split(separator: " ")[2].hasSuffix("_total"), String(line)) }
        XCTAssertTrue(metrics.contains("tributary_build_info{version=\"\(TributaryRelease.version)\"} 1"), metrics)
        try await api.call(.HEAD, "/metrics", expect: 200)

        // A lease that ran out.
        let l4 = try await api.call(.POST, Routes.leases, token: t, expect: 201).json(LeaseGrant.self)
        clock.advance(by: 100_000)
        try await api.call(.POST, Routes.renew(l4.leaseId), token: t, expect: 410, code: .leaseExpired)

        // The operator bans a worker: its token stops working at once.
        try await api.call(.POST, Routes.ban(other.workerId), token: "not-the-operator", expect: 403, code: .forbidden)
        try await api.call(.POST, Routes.ban("w-nobody"), token: RunningCoordinator.operatorToken, expect: 404, code: .notFound)
        try await api.call(.POST, Routes.ban(other.workerId), token: RunningCoordinator.operatorToken, expect: 204)
        try await api.call(.POST, Routes.leases, token: other.token, expect: 403, code: .workerBanned)
        let listed = try await api.call(.GET, Routes.workers, expect: 200).json(WorkerList.self)
        XCTAssertEqual(listed.workers.first { $0.id == other.workerId }?.banned, true)

        // Unknown routes, and a known path with a method it does not serve.
        try await api.call(.GET, "/v1/no-such-route", expect: 404, code: .notFound)
        try await api.call(.GET, Routes.leases, token: t, expect: 404, code: .notFound)
    }

    private func pushAll(_ api: ContractLiveClient, lease: String, token: String, manifest: Manifest, frames: [[UInt8]]) async throws {
        for (s, body) in zip(manifest.shards, frames) {
            try await api.call(.PUT, Routes.update(lease, shard: s.name), token: token, body: body, expect: 202)
        }
    }

    // MARK: The batch body in Protocol/api.md

    /// The hex examples in the guide (fenced ```hex blocks, in order) are what BatchBody writes.
    func testBatchBodyExamplesInTheGuide() throws {
        let text = try String(contentsOf: Self.packageRoot.appendingPathComponent("Protocol/api.md"), encoding: .utf8)
        let blocks = Self.hexBlocks(text)
        XCTAssertEqual(blocks.count, 4, "expected four ```hex blocks (tokens, features, token windows, 8-bit images) in Protocol/api.md")
        guard blocks.count == 4 else { return }
        let tokens = ModelBatch.tokens(inputs: [5, 7, 1, 3, 4, 6], targets: [7, 1, 2, 4, 6, 8], batch: 2, sequence: 3)
        XCTAssertEqual(blocks[0], BatchBody.encode(tokens))
        let features = ModelBatch.features(inputs: [1, -2, 0.5, 0], targets: [3, 0], batch: 2)
        XCTAssertEqual(blocks[1], BatchBody.encode(features))
        XCTAssertEqual(blocks[2], BatchBody.encodeWindows(tokens, vocabularySize: 65))
        XCTAssertNoThrow(try BatchBody.decode(blocks[0], maxBatch: 2, width: 3))
        XCTAssertNoThrow(try BatchBody.decode(blocks[1], maxBatch: 2, width: 2))
        // The windows decode to the kind 0 example's tokens.
        guard case let .tokens(inputs, targets, batch, sequence) = try BatchBody.decode(blocks[2], maxBatch: 2, width: 3) else {
            return XCTFail("kind 2 decodes to tokens")
        }
        XCTAssertEqual(inputs, [5, 7, 1, 3, 4, 6])
        XCTAssertEqual(targets, [7, 1, 2, 4, 6, 8])
        XCTAssertEqual([batch, sequence], [2, 3])
        // Kind 3: the pixels' bytes, and back to the same floats.
        let pixels = ModelBatch.features(inputs: [0, 1, 128.0 / 255, 0.2, 1, 1, 0, 0], targets: [7, 2], batch: 2)
        XCTAssertEqual(blocks[3], BatchBody.encodePixels(pixels))
        XCTAssertEqual(try BatchBody.decode(blocks[3], maxBatch: 2, width: 4), pixels)
        XCTAssertNil(BatchBody.encodePixels(features), "-2 is no pixel: the kind 1 example stays kind 1")
    }

    static func hexBlocks(_ markdown: String) -> [[UInt8]] {
        var blocks: [[UInt8]] = []
        var current: [UInt8]?
        for line in markdown.split(separator: "\n", omittingEmptySubsequences: false) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if current == nil {
                if trimmed == "```hex" { current = [] }
            } else if trimmed.hasPrefix("```") {
                blocks.append(current ?? [])
                current = nil
            } else {
                let data = trimmed.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
                for word in data.split(separator: " ") {
                    guard let byte = UInt8(word, radix: 16) else { continue }
                    current?.append(byte)
                }
            }
        }
        return blocks
    }
}

// MARK: - Live calls checked against the spec

/// Sends requests and checks every answer against the operation the spec declares for it.
final class ContractLiveClient {
    let spec: [String: Any]
    let checker: ContractSchemaChecker
    let raw: RawClient
    let templates: [String]
    private(set) var covered: Set<String> = []

    init(spec: [String: Any], raw: RawClient) {
        self.spec = spec
        self.raw = raw
        checker = ContractSchemaChecker(root: spec)
        templates = ContractSpec.paths(spec).map(\.0)
    }

    /// The spec's template for a concrete path (`/v1/leases/l-1/renew` → `/v1/leases/{lease}/renew`;
    /// a query is not part of it).
    func template(for path: String) -> String? {
        let parts = (path.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? "").split(separator: "/")
        return templates.first { t in
            let tp = t.split(separator: "/")
            return tp.count == parts.count && zip(tp, parts).allSatisfy { $0.hasPrefix("{") || $0 == $1 }
        }
    }

    @discardableResult
    func call(_ method: HTTPMethod, _ path: String, token: String? = nil, body: [UInt8]? = nil, json: (any Encodable)? = nil,
              headers: [(String, String)] = [], expect status: Int, code: ProblemCode? = nil,
              file: StaticString = #filePath, line: UInt = #line) async throws -> RawClient.Reply {
        let reply: RawClient.Reply
        if let json {
            reply = try await raw.request(method, path, token: token, body: Array(try WireJSON.encoder().encode(json)),
                                          headers: [("Content-Type", "application/json")] + headers)
        } else {
            reply = try await raw.request(method, path, token: token, body: body, headers: headers)
        }
        let text = String(decoding: reply.body.prefix(500), as: UTF8.self)
        let what = "\(method.rawValue) \(path)"
        XCTAssertEqual(reply.status, status, "\(what): \(text)", file: file, line: line)
        if let code {
            XCTAssertEqual(reply.problem?.code, code, "\(what): \(text)", file: file, line: line)
        }
        let operation = template(for: path).flatMap { t -> (String, [String: Any])? in
            guard let item = ContractSpec.dig(spec, "paths", t) as? [String: Any],
                  let op = item[method.rawValue.lowercased()] as? [String: Any] else { return nil }
            return (t, op)
        }
        guard let (t, op) = operation else {
            // Not an operation: the router's 404, which must still be a valid problem.
            XCTAssertEqual(reply.status, 404, "\(what) is no documented operation, yet answered \(reply.status)", file: file, line: line)
            checkProblem(reply, what: what, file: file, line: line)
            return reply
        }
        covered.insert("\(method.rawValue) \(t)")
        let key = "\(method.rawValue) \(t) → \(reply.status)"
        guard let response = (ContractSpec.dig(op, "responses", String(reply.status))).flatMap({ checker.resolve($0) }) as? [String: Any] else {
            XCTFail("\(key) is not declared in the spec's responses (request: \(what); body: \(text))", file: file, line: line)
            return reply
        }
        // Headers the spec promises, with values matching their schemas.
        for (name, header) in (response["headers"] as? [String: Any]) ?? [:] {
            guard let value = reply.headers[name].first else {
                XCTFail("\(key): header \(name) missing", file: file, line: line)
                continue
            }
            if let schema = (checker.resolve(header) as? [String: Any])?["schema"] as? [String: Any] {
                let typed: ContractJSON = (schema["type"] as? String == "integer") ? (Int64(value).map(ContractJSON.integer) ?? .string(value)) : .string(value)
                XCTAssertEqual(checker.check(typed, schema: schema, at: "header \(name)"), [], "\(key)", file: file, line: line)
            }
        }
        // Content type and body.
        let contentType = reply.headers["Content-Type"].first.map { String($0.split(separator: ";")[0]).trimmingCharacters(in: .whitespaces) }
        guard let content = response["content"] as? [String: Any] else {
            XCTAssertTrue(reply.body.isEmpty, "\(key): the spec declares no body, got \(reply.body.count) bytes", file: file, line: line)
            return reply
        }
        guard let contentType, let media = content[contentType] as? [String: Any] else {
            XCTFail("\(key): Content-Type \(contentType ?? "none") is not one of \(content.keys.sorted())", file: file, line: line)
            return reply
        }
        if contentType.hasSuffix("json"), let schema = media["schema"] as? [String: Any] {
            do {
                let value = try WireJSON.decoder().decode(ContractJSON.self, from: Data(reply.body))
                XCTAssertEqual(checker.check(value, schema: schema, at: "body"), [], "\(key): \(text)", file: file, line: line)
            } catch {
                XCTFail("\(key): the body is not JSON: \(text)", file: file, line: line)
            }
        }
        return reply
    }

    func checkProblem(_ reply: RawClient.Reply, what: String, file: StaticString, line: UInt) {
        XCTAssertEqual(reply.headers["Content-Type"].first, Problem.contentType, what, file: file, line: line)
        guard let value = try? WireJSON.decoder().decode(ContractJSON.self, from: Data(reply.body)) else {
            return XCTFail("\(what): the body is not JSON", file: file, line: line)
        }
        XCTAssertEqual(checker.check(value, schemaNamed: "Problem"), [], what, file: file, line: line)
    }
}

/// A clock the test can move forward (lease deadlines).
final class ContractClock: @unchecked Sendable {
    // Unchecked: the offset is guarded by the lock.
    private let lock = NSLock()
    private var offset: TimeInterval = 0

    func now() -> Date {
        lock.lock()
        defer { lock.unlock() }
        return Date().addingTimeInterval(offset)
    }

    func advance(by seconds: TimeInterval) {
        lock.lock()
        offset += seconds
        lock.unlock()
    }
}

// MARK: - A JSON value, as the server emits it

enum ContractJSON: Decodable, Equatable, CustomStringConvertible {
    case null
    case bool(Bool)
    case integer(Int64)
    case number(Double)
    case string(String)
    case array([ContractJSON])
    case object([String: ContractJSON])

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let i = try? c.decode(Int64.self) { self = .integer(i) }
        else if let d = try? c.decode(Double.self) { self = .number(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([ContractJSON].self) { self = .array(a) }
        else { self = .object(try c.decode([String: ContractJSON].self)) }
    }

    /// Encodes with the API's encoder and reads the result back as a JSON value.
    static func encode(_ value: any Encodable) throws -> ContractJSON {
        try JSONDecoder().decode(ContractJSON.self, from: try WireJSON.encoder().encode(value))
    }

    /// The JSON Schema type name.
    var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "boolean"
        case .integer: return "integer"
        case .number: return "number"
        case .string: return "string"
        case .array: return "array"
        case .object: return "object"
        }
    }

    var description: String {
        switch self {
        case .null: return "null"
        case let .bool(b): return "\(b)"
        case let .integer(i): return "\(i)"
        case let .number(d): return "\(d)"
        case let .string(s): return "\"\(s)\""
        case let .array(a): return "[\(a.map(\.description).joined(separator: ", "))]"
        case let .object(o): return "{\(o.keys.sorted().map { "\($0): \(o[$0]!)" }.joined(separator: ", "))}"
        }
    }
}

// MARK: - The spec as parsed YAML

enum ContractSpec {
    static let httpMethods: Set<String> = ["get", "put", "post", "delete", "options", "head", "patch", "trace"]

    /// Yams mappings have `AnyHashable` keys; the spec's keys are all strings.
    static func normalize(_ node: Any) -> Any {
        if let map = node as? [AnyHashable: Any] {
            var out: [String: Any] = [:]
            for (k, v) in map { out[(k.base as? String) ?? "\(k.base)"] = normalize(v) }
            return out
        }
        if let map = node as? [String: Any] { return map.mapValues(normalize) }
        if let list = node as? [Any] { return list.map(normalize) }
        return node
    }

    static func dig(_ node: Any, _ keys: String...) -> Any? {
        var current: Any? = node
        for k in keys { current = (current as? [String: Any])?[k] }
        return current
    }

    static func paths(_ spec: [String: Any]) -> [(String, [String: [String: Any]])] {
        let paths = spec["paths"] as? [String: Any] ?? [:]
        return paths.keys.sorted().map { t in
            let item = paths[t] as? [String: Any] ?? [:]
            return (t, item.compactMapValues { $0 as? [String: Any] })
        }
    }

    /// "METHOD /template" for every operation.
    static func operations(_ spec: [String: Any]) -> Set<String> {
        var out: Set<String> = []
        for (t, item) in paths(spec) {
            for m in item.keys where httpMethods.contains(m) { out.insert("\(m.uppercased()) \(t)") }
        }
        return out
    }

    static func placeholders(_ template: String) -> Set<String> {
        Set(template.split(separator: "/").filter { $0.hasPrefix("{") && $0.hasSuffix("}") }.map { String($0.dropFirst().dropLast()) })
    }
}

// MARK: - A small JSON Schema checker (the subset the spec uses)

/// Checks a JSON value against a schema of the spec: `$ref`, `type` (a name or a list,
/// `"null"` included), `properties` / `required` / `additionalProperties`, `items`,
/// `allOf` / `oneOf` / `anyOf`, `enum`, `const`, `pattern`, `minimum` / `maximum`, and the
/// formats `date-time` and `uri`. An object schema with a `type` is closed: a key it does
/// not declare (and no `additionalProperties` allows) is an error, so the spec must name
/// everything the server sends. `exhaustive` also requires every declared property.
struct ContractSchemaChecker {
    let root: [String: Any]

    func resolve(_ node: Any) -> Any? {
        var node: Any? = node
        var hops = 0
        while let ref = (node as? [String: Any])?["$ref"] as? String, hops < 32 {
            guard ref.hasPrefix("#/") else { return nil }
            node = ref.dropFirst(2).split(separator: "/").reduce(Any?(root)) { ($0 as? [String: Any])?[String($1)] }
            hops += 1
        }
        return node
    }

    func unresolvedReferences() -> [String] {
        var bad: [String] = []
        func walk(_ node: Any) {
            if let map = node as? [String: Any] {
                if let ref = map["$ref"] as? String, resolve(map) == nil { bad.append(ref) }
                map.values.forEach(walk)
            } else if let list = node as? [Any] {
                list.forEach(walk)
            }
        }
        walk(root)
        return bad.sorted()
    }

    func check(_ value: ContractJSON, schemaNamed name: String, exhaustive: Bool = false) -> [String] {
        guard let schema = ContractSpec.dig(root, "components", "schemas", name) as? [String: Any] else {
            return ["no schema components/schemas/\(name)"]
        }
        return check(value, schema: schema, at: name, exhaustive: exhaustive)
    }

    func check(_ value: ContractJSON, schema raw: [String: Any], at path: String, exhaustive: Bool = false) -> [String] {
        guard let schema = resolve(raw) as? [String: Any] else { return ["\(path): unresolved \(raw["$ref"] ?? raw)"] }
        var errors: [String] = []

        for sub in (schema["allOf"] as? [Any]) ?? [] {
            errors += check(value, schema: sub as? [String: Any] ?? [:], at: path, exhaustive: exhaustive)
        }
        if let branches = schema["oneOf"] as? [Any] {
            let passing = branches.filter { check(value, schema: $0 as? [String: Any] ?? [:], at: path, exhaustive: exhaustive).isEmpty }
            if passing.count != 1 { errors.append("\(path): \(passing.count) oneOf branches match \(value)") }
        }
        if let branches = schema["anyOf"] as? [Any],
           !branches.contains(where: { check(value, schema: $0 as? [String: Any] ?? [:], at: path, exhaustive: exhaustive).isEmpty }) {
            errors.append("\(path): no anyOf branch matches \(value)")
        }

        let types: [String] = (schema["type"] as? String).map { [$0] } ?? (schema["type"] as? [Any])?.compactMap { $0 as? String } ?? []
        if !types.isEmpty, !types.contains(where: { Self.has(value, type: $0) }) {
            errors.append("\(path): \(value.typeName) \(value), expected \(types.joined(separator: " or "))")
            return errors
        }
        if let options = schema["enum"] as? [Any], !options.contains(where: { Self.same(value, $0) }) {
            errors.append("\(path): \(value) is not one of \(options)")
        }
        if let constant = schema["const"], !Self.same(value, constant) {
            errors.append("\(path): \(value) is not \(constant)")
        }

        switch value {
        case let .string(s):
            if let pattern = schema["pattern"] as? String {
                let matched = (try? NSRegularExpression(pattern: pattern))
                    .flatMap { $0.firstMatch(in: s, range: NSRange(s.startIndex..., in: s)) } != nil
                if !matched { errors.append("\(path): \"\(s)\" does not match \(pattern)") }
            }
            switch schema["format"] as? String {
            case "date-time":
                if (try? WireJSON.decoder().decode(Date.self, from: Data("\"\(s)\"".utf8))) == nil {
                    errors.append("\(path): \"\(s)\" is not an RFC 3339 date-time")
                }
            case "uri":
                if URL(string: s)?.scheme == nil { errors.append("\(path): \"\(s)\" is not a URI") }
            default: break
            }
        case .integer, .number:
            let x: Double = if case let .integer(i) = value { Double(i) } else if case let .number(d) = value { d } else { 0 }
            if let minimum = Self.double(schema["minimum"]), x < minimum { errors.append("\(path): \(x) < minimum \(minimum)") }
            if let maximum = Self.double(schema["maximum"]), x > maximum { errors.append("\(path): \(x) > maximum \(maximum)") }
        case let .array(items):
            if let itemSchema = schema["items"] as? [String: Any] {
                for (i, item) in items.enumerated() {
                    errors += check(item, schema: itemSchema, at: "\(path)[\(i)]", exhaustive: exhaustive)
                }
            }
        case let .object(fields):
            let properties = schema["properties"] as? [String: Any] ?? [:]
            for name in (schema["required"] as? [Any] ?? []).compactMap({ $0 as? String }) where fields[name] == nil {
                errors.append("\(path): required property \(name) missing")
            }
            let closed = types.contains("object")
            if exhaustive && closed {
                for name in properties.keys.sorted() where fields[name] == nil {
                    errors.append("\(path): declared property \(name) not emitted")
                }
            }
            for (name, field) in fields.sorted(by: { $0.key < $1.key }) {
                if let sub = properties[name] as? [String: Any] {
                    errors += check(field, schema: sub, at: "\(path).\(name)", exhaustive: exhaustive)
                } else if let extra = schema["additionalProperties"] as? [String: Any] {
                    errors += check(field, schema: extra, at: "\(path).\(name)", exhaustive: exhaustive)
                } else if closed && (schema["additionalProperties"] as? Bool) != true {
                    errors.append("\(path): property \(name) is not declared in the spec")
                }
            }
        default:
            break
        }
        return errors
    }

    static func has(_ value: ContractJSON, type: String) -> Bool {
        switch (type, value) {
        case ("number", .integer), ("number", .number), ("integer", .integer), ("string", .string),
             ("boolean", .bool), ("array", .array), ("object", .object), ("null", .null):
            return true
        case let ("integer", .number(d)):
            return d.rounded() == d
        default:
            return false
        }
    }

    static func same(_ value: ContractJSON, _ yaml: Any) -> Bool {
        switch value {
        case let .string(s): return (yaml as? String) == s
        case let .bool(b): return (yaml as? Bool) == b
        case let .integer(i): return double(yaml) == Double(i)
        case let .number(d): return double(yaml) == d
        case .null: return yaml is NSNull
        default: return false
        }
    }

    static func double(_ yaml: Any?) -> Double? {
        if let i = yaml as? Int { return Double(i) }
        if let d = yaml as? Double { return d }
        return nil
    }
}
