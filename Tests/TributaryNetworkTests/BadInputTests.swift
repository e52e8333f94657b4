import Foundation
import TributaryCompression
import TributaryCoordinator
import TributaryProtocol
import TributaryTensor
import XCTest

/// Every refusal: the right status, a problem body with its code, and the global model,
/// the round and the ledger untouched.
final class BadInputTests: XCTestCase {
    var dir = ""
    var coordinator: EmbeddedCoordinator?

    override func setUp() async throws {
        ComputeThreads.set(1)
        dir = try temporaryDirectory("badinput")
        coordinator = try await RunningCoordinator.start(RunningCoordinator.config(directory: "\(dir)/c") { c in
            c.rounds.unitsPerRound = 2
            c.rounds.maxStaleness = 0
        })
    }

    override func tearDown() async throws {
        await coordinator?.stop()
        try? FileManager.default.removeItem(atPath: dir)
    }

    func frame(_ values: [Float]) throws -> [UInt8] {
        try values.withUnsafeBufferPointer { try TensorFrame.encode($0, codec: .fp32, zstdLevel: 3) }
    }

    func expectProblem(_ reply: RawClient.Reply, _ status: Int, _ code: ProblemCode,
                       file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(reply.status, status, String(decoding: reply.body, as: UTF8.self), file: file, line: line)
        XCTAssertEqual(reply.headers["Content-Type"].first, Problem.contentType, file: file, line: line)
        XCTAssertEqual(reply.problem?.code, code, String(decoding: reply.body, as: UTF8.self), file: file, line: line)
        XCTAssertEqual(reply.problem?.status, status, file: file, line: line)
    }

    func testEveryBadRequestIsRefusedAndChangesNothing() async throws {
        let c = try XCTUnwrap(coordinator)
        let raw = RawClient(base: c.url)
        let before = await c.job.parameterValues()

        // Authentication.
        expectProblem(try await raw.json(.POST, Routes.register, RegisterRequest(joinToken: "wrong")), 403, .forbidden)
        expectProblem(try await raw.request(.POST, Routes.leases), 401, .unauthorized)
        expectProblem(try await raw.request(.POST, Routes.leases, token: "trb_forged"), 403, .forbidden)
        expectProblem(try await raw.request(.POST, Routes.register, body: Array("{not json".utf8)), 400, .malformedRequest)
        expectProblem(try await raw.request(.POST, Routes.register, body: Array("{\"name\": 3}".utf8)), 400, .malformedRequest)
        expectProblem(try await raw.request(.GET, "/v1/no-such-thing"), 404, .notFound)

        let me = try await raw.register()
        let t = me.token
        let lease = try await raw.request(.POST, Routes.leases, token: t).json(LeaseGrant.self)
        let manifest = try await raw.request(.GET, Routes.manifest(lease.version), token: t).json(Manifest.self)
        let first = try XCTUnwrap(manifest.shards.first)

        // Leases and versions that do not exist.
        expectProblem(try await raw.request(.PUT, Routes.update("l-nope", shard: first.name), token: t, body: try frame([1])), 404, .notFound)
        expectProblem(try await raw.request(.GET, Routes.manifest(99)), 404, .notFound)
        expectProblem(try await raw.request(.GET, "/v1/versions/abc/manifest"), 400, .malformedRequest)

        // Bodies: wrong shard, wrong size, truncated, oversized, NaN, corrupt checksum.
        let n = first.elementCount
        let good = try frame((0..<n).map { Float($0 % 7) * 1e-3 })
        let put = { (shard: String, body: [UInt8]) in
            try await raw.request(.PUT, Routes.update(lease.leaseId, shard: shard), token: t, body: body)
        }
        expectProblem(try await put("block.99", good), 404, .unknownShard)
        expectProblem(try await put(first.name, try frame([Float](repeating: 0, count: n - 1))), 422, .invalidUpdate)
        expectProblem(try await put(first.name, Array(good.prefix(good.count - 5))), 422, .invalidUpdate)
        let limit = TensorFrame.maximumBodySize(elementCount: n, codec: .fp32)
        expectProblem(try await put(first.name, [UInt8](repeating: 7, count: limit + 1)), 413, .payloadTooLarge)
        // The encoder refuses NaN, so build the frame by hand: raw payload, valid CRC.
        var nanFrame = try (0..<n).map { Float($0) * 1e-4 }.withUnsafeBufferPointer {
            try TensorFrame.encode($0, codec: .fp32, zstdLevel: nil)
        }
        let nanBits = Float.nan.bitPattern
        for k in 0..<4 { nanFrame[32 + 4 * (n / 2) + k] = UInt8(truncatingIfNeeded: nanBits >> (8 * k)) }
        let crc = crc32(Array(nanFrame[32...]))
        for k in 0..<4 { nanFrame[24 + k] = UInt8(truncatingIfNeeded: crc >> (8 * k)) }
        expectProblem(try await put(first.name, nanFrame), 422, .invalidUpdate)
        let nanReply = try await put(first.name, nanFrame)
        XCTAssertTrue(nanReply.problem?.detail.contains("NaN") ?? false, nanReply.problem?.detail ?? "")
        var flipped = good
        flipped[flipped.count - 1] ^= 0xFF
        expectProblem(try await put(first.name, flipped), 422, .invalidUpdate)

        // Commit before every shard arrived, and with a bad sample count.
        do {
            let reply = try await put(first.name, good)
            XCTAssertEqual(reply.status, 202, String(decoding: reply.body, as: UTF8.self))
        }
        expectProblem(try await raw.json(.POST, Routes.commit(lease.leaseId), token: t, CommitRequest(samples: 4, loss: 1)), 409, .incompleteUpdate)
        for shard in manifest.shards.dropFirst() {
            do {
                let reply = try await put(shard.name, try frame([Float](repeating: 1e-3 * Float(1 + lease.unitIndex), count: shard.elementCount)))
                XCTAssertEqual(reply.status, 202, String(decoding: reply.body, as: UTF8.self))
            }
        }
        expectProblem(try await raw.json(.POST, Routes.commit(lease.leaseId), token: t, CommitRequest(samples: 999, loss: 1)), 400, .malformedRequest)
        expectProblem(try await raw.request(.POST, Routes.commit(lease.leaseId), token: t, body: Array("[]".utf8)), 400, .malformedRequest)

        // Someone else's lease.
        let other = try await raw.register(name: "other")
        expectProblem(try await raw.json(.POST, Routes.commit(lease.leaseId), token: other.token, CommitRequest(samples: 4, loss: 1)), 409, .leaseNotActive)

        // Nothing so far reached the model or the round.
        var status = c.job.status()
        XCTAssertEqual(status.updatesAccepted, 0)
        XCTAssertEqual(status.version, 0)
        let afterRefusals = await c.job.parameterValues()
        XCTAssertEqual(afterRefusals, before)
        XCTAssertGreaterThanOrEqual(status.updatesRejected.values.reduce(0, +), 8)

        // A good commit is accepted once; its worker's replay gets the same receipt (issue 14:
        // idempotent), anyone else's is refused, and the update counts once.
        let receipt = try await raw.json(.POST, Routes.commit(lease.leaseId), token: t, CommitRequest(samples: 4, loss: 1.5))
        XCTAssertEqual(receipt.status, 200, String(decoding: receipt.body, as: UTF8.self))
        let replay = try await raw.json(.POST, Routes.commit(lease.leaseId), token: t, CommitRequest(samples: 4, loss: 1.5))
        XCTAssertEqual(replay.status, 200)
        XCTAssertEqual(try replay.json(CommitReceipt.self), try receipt.json(CommitReceipt.self))
        expectProblem(try await raw.json(.POST, Routes.commit(lease.leaseId), token: other.token, CommitRequest(samples: 4, loss: 1.5)),
                      409, .leaseNotActive)
        status = c.job.status()
        XCTAssertEqual(status.updatesAccepted, 1)
        XCTAssertEqual(status.version, 0, "the round needs two units")
    }

    func testStaleVersionBeyondTheBoundIsRefused() async throws {
        let c = try XCTUnwrap(coordinator)
        let raw = RawClient(base: c.url)
        let a = try await raw.register(name: "a"), b = try await raw.register(name: "b")
        // Two units close round 1; a third lease taken on version 0 then goes stale.
        let la = try await raw.request(.POST, Routes.leases, token: a.token).json(LeaseGrant.self)
        let lb = try await raw.request(.POST, Routes.leases, token: b.token).json(LeaseGrant.self)
        let manifest = try await raw.request(.GET, Routes.manifest(0)).json(Manifest.self)
        for (lease, token) in [(la, a.token), (lb, b.token)] {
            for shard in manifest.shards {
                _ = try await raw.request(.PUT, Routes.update(lease.leaseId, shard: shard.name), token: token,
                                          body: try frame([Float](repeating: 1e-3 * Float(1 + lease.unitIndex), count: shard.elementCount)))
            }
        }
        // Before committing the second, a third lease on version 0 cannot exist in sync mode
        // (the round's two units are leased): the round barrier answers 503 no-work.
        let third = try await raw.register(name: "c")
        let busy = try await raw.request(.POST, Routes.leases, token: third.token)
        expectProblem(busy, 503, .noWork)
        // `a` holds a lease already: the per-worker limit answers first.
        expectProblem(try await raw.request(.POST, Routes.leases, token: a.token), 409, .tooManyLeases)
        XCTAssertEqual(busy.headers["Retry-After"].first, "1")
        do {
            let reply = try await raw.json(.POST, Routes.commit(la.leaseId), token: a.token, CommitRequest(samples: 4, loss: 1))
            XCTAssertEqual(reply.status, 200, String(decoding: reply.body, as: UTF8.self))
        }
        do {
            let reply = try await raw.json(.POST, Routes.commit(lb.leaseId), token: b.token, CommitRequest(samples: 4, loss: 1))
            XCTAssertEqual(reply.status, 200, String(decoding: reply.body, as: UTF8.self))
        }
        let v1 = c.job.status().version
        XCTAssertEqual(v1, 1)
        // Version 0 is no longer served (max staleness 0): a worker holding it is told so.
        expectProblem(try await raw.request(.GET, Routes.manifest(0)), 410, .versionGone)
        // A lease on version 1, overtaken by a round it did not join, is stale at commit.
        let lc = try await raw.request(.POST, Routes.leases, token: a.token).json(LeaseGrant.self)
        let ld = try await raw.request(.POST, Routes.leases, token: b.token).json(LeaseGrant.self)
        let m1 = try await raw.request(.GET, Routes.manifest(1)).json(Manifest.self)
        for (lease, token) in [(lc, a.token), (ld, b.token)] {
            for shard in m1.shards {
                _ = try await raw.request(.PUT, Routes.update(lease.leaseId, shard: shard.name), token: token,
                                          body: try frame([Float](repeating: 1e-3 * Float(1 + lease.unitIndex), count: shard.elementCount)))
            }
        }
        do {
            let reply = try await raw.json(.POST, Routes.commit(lc.leaseId), token: a.token, CommitRequest(samples: 4, loss: 1))
            XCTAssertEqual(reply.status, 200, String(decoding: reply.body, as: UTF8.self))
        }
        do {
            let reply = try await raw.json(.POST, Routes.commit(ld.leaseId), token: b.token, CommitRequest(samples: 4, loss: 1))
            XCTAssertEqual(reply.status, 200, String(decoding: reply.body, as: UTF8.self))
        }
        let e = try await raw.request(.POST, Routes.leases, token: a.token).json(LeaseGrant.self)
        XCTAssertEqual(e.version, 2)
    }

    func testShardsAreCacheableByETag() async throws {
        let c = try XCTUnwrap(coordinator)
        let raw = RawClient(base: c.url)
        let manifest = try await raw.request(.GET, Routes.manifest(0)).json(Manifest.self)
        let shard = try XCTUnwrap(manifest.shards.first)
        let full = try await raw.request(.GET, Routes.shard(0, shard.name))
        XCTAssertEqual(full.status, 200)
        XCTAssertEqual(full.body.count, shard.byteSize)
        XCTAssertEqual(full.headers["ETag"].first, "\"\(shard.contentHash)\"")
        let again = try await raw.request(.GET, Routes.shard(0, shard.name), headers: [("If-None-Match", "\"\(shard.contentHash)\"")])
        XCTAssertEqual(again.status, 304)
        XCTAssertTrue(again.body.isEmpty)
        var decoded = [Float](repeating: 0, count: shard.elementCount)
        try full.body.withUnsafeBytes { raw in
            try decoded.withUnsafeMutableBufferPointer { try TensorFrame.decode(raw, expectedCount: shard.elementCount, into: $0) }
        }
        let params = await c.job.parameterValues()
        let firstTensor = try XCTUnwrap(shard.tensors.first)
        XCTAssertEqual(Array(decoded[0..<firstTensor.count]), params[firstTensor.name])
    }
}


/// CRC-32 (IEEE), bit by bit: independent of the implementation under test.
func crc32(_ bytes: [UInt8]) -> UInt32 {
    var c: UInt32 = 0xFFFF_FFFF
    for b in bytes {
        c ^= UInt32(b)
        for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0xEDB8_8320 : c >> 1 }
    }
    return ~c
}
