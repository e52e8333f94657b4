import Foundation
import NIOHTTP1
import TributaryCoordinator
import TributaryProtocol
import TributaryTensor
import XCTest

/// Issue 12, findings 4, 7, 8 and 9: what a stranger can make the coordinator hold or do
/// is bounded, and the refusals say when to come back.
final class AttackLimitsTests: XCTestCase {
    override func setUp() { ComputeThreads.set(1) }

    /// Finding 9: 10,000 Sybils at 589/s, 5,000 join-token guesses in 9 s. Now one address
    /// registers its burst and then waits; after `bad_join_tokens` wrong tokens it is
    /// locked out, and even the right token is not compared until the lockout ends.
    func testRegistrationIsRateLimitedAndWrongJoinTokensLockTheAddressOut() async throws {
        let (c, dir) = try await RunningCoordinator.startInTemporaryDirectory("sybil") {
            $0.limits.registrationBurst = 5
            $0.limits.registrationsPerMinute = 1
            $0.limits.badJoinTokens = 3
        }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let raw = RawClient(base: c.url)
        var statuses: [Int] = []
        for i in 0..<12 {
            let reply = try await raw.json(.POST, Routes.register, RegisterRequest(joinToken: RunningCoordinator.joinToken, name: "s\(i)"))
            statuses.append(reply.status)
            if reply.status == 429 {
                XCTAssertEqual(reply.problem?.code, .rateLimited)
                XCTAssertGreaterThanOrEqual(Int(reply.headers["Retry-After"].first ?? "") ?? 0, 1)
            }
        }
        XCTAssertEqual(statuses.filter { $0 == 201 }.count, 5, "the burst, then nothing: \(statuses)")
        XCTAssertEqual(statuses.filter { $0 == 429 }.count, 7)
        XCTAssertEqual(c.job.status().workers.total, 5)

        // Another coordinator, for the lockout on its own.
        let (d, dir2) = try await RunningCoordinator.startInTemporaryDirectory("guess") { $0.limits.badJoinTokens = 3; $0.limits.lockoutSeconds = 60 }
        defer { try? FileManager.default.removeItem(atPath: dir2) }
        let guesser = RawClient(base: d.url)
        for i in 0..<3 {
            let wrong = try await guesser.json(.POST, Routes.register, RegisterRequest(joinToken: "guess-\(i)"))
            XCTAssertEqual(wrong.status, 403)
        }
        let right = try await guesser.json(.POST, Routes.register, RegisterRequest(joinToken: RunningCoordinator.joinToken))
        XCTAssertEqual(right.status, 429, "locked out: the right token is not even compared")
        XCTAssertGreaterThan(Int(right.headers["Retry-After"].first ?? "") ?? 0, 50)
        XCTAssertEqual(d.job.status().workers.total, 0)
        await c.stop()
        await d.stop()
    }

    /// Finding 9 (public routes): h2load at 1,500 req/s on /v1/status. Requests without a
    /// token are limited per address; a worker's requests for what it needs (the job, the
    /// parameters) are not, but its monitoring requests are.
    func testPublicRoutesAreRateLimitedPerAddressButWorkersAreNot() async throws {
        let (c, dir) = try await RunningCoordinator.startInTemporaryDirectory("flood") { $0.limits.publicBurst = 10; $0.limits.publicRequestsPerSecond = 2 }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let raw = RawClient(base: c.url)
        var anonymous: [Int] = []
        for _ in 0..<30 { anonymous.append(try await raw.request(.GET, Routes.status).status) }
        XCTAssertLessThanOrEqual(anonymous.filter { $0 == 200 }.count, 12, "about the burst: \(anonymous)")
        XCTAssertGreaterThanOrEqual(anonymous.filter { $0 == 429 }.count, 18)
        let me = try await raw.register()
        var worker: [Int] = []
        for _ in 0..<30 { worker.append(try await raw.request(.GET, Routes.job, token: me.token).status) }
        XCTAssertEqual(worker, Array(repeating: 200, count: 30))
        var polling: [Int] = []
        for _ in 0..<30 { polling.append(try await raw.request(.GET, Routes.workers, token: me.token).status) }
        XCTAssertGreaterThanOrEqual(polling.filter { $0 == 429 }.count, 20, "a token does not buy a flood: \(polling)")
        let forged = try await raw.request(.GET, Routes.job, token: "trb_forged")
        XCTAssertEqual(forged.status, 403, "a token that is not a worker's is refused, not rate-limited")
        await c.stop()
    }

    /// Finding 4: 10,000 workers made /v1/workers a 1.6 MB answer rebuilt from the ledger per
    /// request. Now it is paged (at most 1,000 per page) from a copy at most 2 s old, and a
    /// private job (`auth.public_read: false`) shows it, its status and its model only to
    /// workers and the viewer.
    func testWorkerListIsPagedAndAPrivateJobNeedsAToken() async throws {
        let (c, dir) = try await RunningCoordinator.startInTemporaryDirectory("workers") {
            $0.limits.registrationBurst = 300
            $0.auth.publicRead = false
            $0.auth.viewerToken = "viewer-token-for-tests"
        }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let raw = RawClient(base: c.url)
        var tokens: [String] = []
        for i in 0..<250 { tokens.append(try await raw.register(name: "v\(i)").token) }
        let viewer = "viewer-token-for-tests"
        let first = try await raw.request(.GET, Routes.workers, token: viewer).json(WorkerList.self)
        XCTAssertEqual(first.workers.count, Routes.defaultPage)
        XCTAssertEqual(first.total, 250)
        XCTAssertEqual(first.nextOffset, 100)
        let last = try await raw.request(.GET, Routes.workers + "?offset=200&limit=100", token: tokens[0]).json(WorkerList.self)
        XCTAssertEqual(last.workers.map(\.name), (200..<250).map { "v\($0)" })
        XCTAssertNil(last.nextOffset)
        let reply1 = try await raw.request(.GET, Routes.workers + "?limit=100000", token: viewer)
        XCTAssertEqual(reply1.status, 400)
        for path in [Routes.workers, Routes.status, Routes.job, Routes.manifest(0), "/metrics"] {
            let anonymous = try await raw.request(.GET, path)
            XCTAssertEqual(anonymous.status, 401, path)
            XCTAssertEqual(anonymous.problem?.code, .unauthorized, path)
            let reply2 = try await raw.request(.GET, path, token: viewer)
            XCTAssertEqual(reply2.status, 200, path)
        }
        let reply3 = try await raw.request(.GET, "/")
        XCTAssertEqual(reply3.status, 200, "the page itself holds no data")
        await c.stop()
    }

    /// Finding 7: 1,100 idle connections under a 1,024 file limit made /v1/status time out.
    /// Now one address holds at most `max_connections_per_address`, and a connection that
    /// sends no request is closed after the idle timeout.
    func testIdleConnectionsAreCappedPerAddressAndClosed() async throws {
        let (c, dir) = try await RunningCoordinator.startInTemporaryDirectory("idle") {
            $0.limits.maxConnectionsPerAddress = 6
            $0.limits.idleTimeoutSeconds = 1
        }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let idle = try (0..<6).map { _ in try RawSocket(port: c.port) }
        try await Task.sleep(for: .milliseconds(200))
        let seventh = try RawSocket(port: c.port)
        seventh.send("GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
        let refused = seventh.receive(within: 2)
        XCTAssertTrue(refused.closed && refused.bytes.isEmpty,
                      "the seventh connection is closed unanswered: \(String(decoding: refused.bytes, as: UTF8.self))")
        // After the idle timeout the six are closed by the server, and the address is served again.
        let closed = idle.map { $0.receive(within: 3).closed }
        XCTAssertEqual(closed, Array(repeating: true, count: 6))
        try await Task.sleep(for: .milliseconds(200))
        let reply4 = try await RawClient(base: c.url).request(.GET, Routes.status)
        XCTAssertEqual(reply4.status, 200)
        // A request head sent one byte at a time (slowloris) is cut off by the same timeout.
        let slow = try RawSocket(port: c.port)
        let started = Date()
        var cut = false
        for byte in Array("GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Slow: ".utf8) + Array(repeating: UInt8(ascii: "a"), count: 40) {
            slow.send([byte])
            if slow.receive(within: 0.1).closed { cut = true; break }
        }
        XCTAssertTrue(cut, "a trickled request head is closed")
        XCTAssertLessThan(Date().timeIntervalSince(started), 3.5)
        await c.stop()
    }

    /// Finding 9 (connections): a client opening connections as fast as it can is cut off
    /// at accept, before any TLS or HTTP work.
    func testNewConnectionsAreRateLimitedPerAddress() async throws {
        let (c, dir) = try await RunningCoordinator.startInTemporaryDirectory("connect-flood") { $0.limits.connectionBurst = 10; $0.limits.connectionsPerSecond = 1 }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var served = 0
        for _ in 0..<30 {
            let s = try RawSocket(port: c.port)
            s.send("GET \(Routes.status) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            if String(decoding: s.receive(within: 2).bytes, as: UTF8.self).hasPrefix("HTTP/1.1") { served += 1 }
        }
        XCTAssertLessThanOrEqual(served, 12, "about the burst is served")
        XCTAssertGreaterThanOrEqual(served, 9)
        await c.stop()
    }

    /// Finding 8: update bodies were read before the lease was checked (1,000 stalled uploads
    /// with made-up lease ids: +240 MiB). Now a made-up lease is refused before its body is
    /// read, and one worker reads at most two uploads at a time.
    func testUploadsAreRefusedBeforeTheirBodyIsReadAndBoundedInNumber() async throws {
        let (c, dir) = try await RunningCoordinator.startInTemporaryDirectory("uploads")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let raw = RawClient(base: c.url)
        let me = try await raw.register()
        let shard = try XCTUnwrap(c.job.layout.shards.first)
        let limit = try XCTUnwrap(c.job.updateBodyLimit(shard: shard.name))
        func stalledUpload(lease: String) -> RawSocket? {
            guard let s = try? RawSocket(port: c.port) else { return nil }
            s.send("PUT \(Routes.update(lease, shard: shard.name)) HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(me.token)\r\n"
                   + "Content-Type: \(Routes.tensorFrameType)\r\nContent-Length: \(limit)\r\n\r\nTRBF")
            return s
        }
        var answered = 0
        for i in 0..<50 {
            let s = try XCTUnwrap(stalledUpload(lease: "l-made-up-\(i)"))
            let head = String(decoding: s.receive(within: 2).bytes, as: UTF8.self)
            if head.hasPrefix("HTTP/1.1 404") { answered += 1 }
        }
        XCTAssertEqual(answered, 50, "each made-up lease is refused without waiting for its body")
        // A real lease: two stalled uploads are read, the third is refused at once.
        let grant = try await raw.request(.POST, Routes.leases, token: me.token).json(LeaseGrant.self)
        var stalled = [try XCTUnwrap(stalledUpload(lease: grant.leaseId)), try XCTUnwrap(stalledUpload(lease: grant.leaseId))]
        try await Task.sleep(for: .milliseconds(300))
        let third = try XCTUnwrap(stalledUpload(lease: grant.leaseId))
        let reply = String(decoding: third.receive(within: 2).bytes, as: UTF8.self)
        XCTAssertTrue(reply.hasPrefix("HTTP/1.1 429"), reply)
        XCTAssertTrue(reply.lowercased().contains("retry-after"), reply)
        stalled.removeAll()  // hung up: the server stops reading them
        await c.stop()
    }

    /// The operator's ban: the token stops working at once and stays stopped after a restart.
    func testABanStopsTheTokenAtOnceAndSurvivesARestart() async throws {
        let dir = try temporaryDirectory("ban")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = RunningCoordinator.config(directory: dir)
        var c = try await RunningCoordinator.start(config)
        var raw = RawClient(base: c.url)
        let mallory = try await raw.register(name: "mallory")
        let grant = try await raw.request(.POST, Routes.leases, token: mallory.token)
        XCTAssertEqual(grant.status, 201)
        XCTAssertEqual(c.job.status().units.leased, 1)
        let reply5 = try await raw.request(.POST, Routes.ban(mallory.workerId), token: RunningCoordinator.operatorToken)
        XCTAssertEqual(reply5.status, 204)
        XCTAssertEqual(c.job.status().units.leased, 0, "the banned worker's lease ended")
        let reply6 = try await raw.request(.POST, Routes.leases, token: mallory.token)
        XCTAssertEqual(reply6.problem?.code, .workerBanned)
        await c.stop()
        c = try await RunningCoordinator.start(config)
        raw = RawClient(base: c.url)
        let reply7 = try await raw.request(.POST, Routes.leases, token: mallory.token)
        XCTAssertEqual(reply7.problem?.code, .workerBanned)
        await c.stop()
    }
}
