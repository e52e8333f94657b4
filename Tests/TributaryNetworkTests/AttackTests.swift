import Foundation
import NIOHTTP1
import TributaryCompression
import TributaryCoordinator
import TributaryProtocol
import TributaryTensor
import XCTest

/// Issue 12: each attack the attack run found, reproduced, with the safe outcome asserted.
final class AttackTests: XCTestCase {
    override func setUp() { ComputeThreads.set(1) }

    /// Finding 2: a worker that takes a unit and renews its lease forever. Before, rounds
    /// waited for it (10.7 → 0.007 rounds/s); now it holds one lease, its renewals stop at
    /// the lifetime, and a backup lease lets the round close: honest training keeps its rate.
    func testASquattingWorkerCannotHoldTheRoundHostage() async throws {
        func roundsPerSecond(squatter: Bool) async throws -> (rate: Double, refusals: [ProblemCode]) {
            let (c, dir) = try await RunningCoordinator.startInTemporaryDirectory("squat") {
                $0.optimizer.totalRounds = 12
                $0.leases.durationSeconds = 3
                $0.leases.maxLifetimeSeconds = 6
            }
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let raw = RawClient(base: c.url)
            var refusals: [ProblemCode] = []
            var renewals: Task<[ProblemCode], Never>?
            if squatter {
                let mallory = try await raw.register(name: "mallory")
                let grant = try await raw.request(.POST, Routes.leases, token: mallory.token, body: Array("{}".utf8))
                XCTAssertEqual(grant.status, 201)
                let lease = try grant.json(LeaseGrant.self)
                let second = try await raw.request(.POST, Routes.leases, token: mallory.token, body: Array("{}".utf8))
                refusals.append(second.problem?.code ?? .internalError)
                renewals = Task { () -> [ProblemCode] in
                    var seen: [ProblemCode] = []
                    while !Task.isCancelled {
                        let r = try? await raw.request(.POST, Routes.renew(lease.leaseId), token: mallory.token)
                        if let code = r?.problem?.code { seen.append(code) }
                        try? await Task.sleep(for: .milliseconds(500))
                    }
                    return seen
                }
                try await Task.sleep(for: .milliseconds(100))
            }
            let started = Date()
            try await RunningCoordinator.runWorkers(3, against: c, directory: dir)
            let seconds = Date().timeIntervalSince(started)
            renewals?.cancel()
            if let renewals { refusals += await renewals.value }
            await c.stop()
            return (12 / seconds, refusals)
        }
        let clean = try await roundsPerSecond(squatter: false)
        let attacked = try await roundsPerSecond(squatter: true)
        print("squatting: clean \(clean.rate) rounds/s, with a squatter \(attacked.rate) rounds/s")
        XCTAssertEqual(attacked.refusals.first, .tooManyLeases, "a second lease for the squatter is refused")
        XCTAssertTrue(attacked.refusals.contains(.leaseLifetimeExceeded) || attacked.refusals.contains(.roundDeadlineReached)
                      || attacked.refusals.contains(.leaseNotActive)
                      || attacked.refusals.contains(.notFound) || attacked.refusals.contains(.leaseExpired),
                      "renewals stop working: \(attacked.refusals)")
        XCTAssertGreaterThan(attacked.rate, clean.rate / 4, "training keeps most of its rate (before: 1/1500 of it)")
    }

    /// Finding 3: one update of 3e38 in every coordinate made the round's gradient
    /// non-finite, so the round's honest units were thrown away. Now it is refused and the
    /// round closes on the honest units alone.
    func testAnUpdateOfHugeValuesIsRefusedAndTheHonestUnitsCount() async throws {
        let (c, dir) = try await RunningCoordinator.startInTemporaryDirectory("huge") {
            $0.rounds.unitsPerRound = 2
            $0.optimizer.totalRounds = 3
        }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let raw = RawClient(base: c.url)
        let mallory = try await raw.register(name: "mallory")
        let grant = try await raw.request(.POST, Routes.leases, token: mallory.token, body: Array("{}".utf8)).json(LeaseGrant.self)
        for shard in c.job.layout.shards {
            let values = [Float](repeating: 3e38, count: shard.elementCount)
            let body = try values.withUnsafeBufferPointer { try TensorFrame.encode($0, codec: .fp32, zstdLevel: 1) }
            let put = try await raw.request(.PUT, Routes.update(grant.leaseId, shard: shard.name), token: mallory.token,
                                            body: body, headers: [("Content-Type", Routes.tensorFrameType)])
            XCTAssertEqual(put.status, 202, "each shard on its own is a valid frame of finite values")
        }
        let commit = try await raw.json(.POST, Routes.commit(grant.leaseId), token: mallory.token,
                                        CommitRequest(samples: grant.sampleCount, loss: 2))
        XCTAssertEqual(commit.status, 422)
        XCTAssertEqual(commit.problem?.code, .updateNormOutOfRange)
        // Honest workers finish the round (and more): every parameter stays finite.
        try await RunningCoordinator.runWorkers(2, against: c, directory: dir)
        let status = c.job.status()
        XCTAssertGreaterThanOrEqual(status.version, 3)
        let parameters = await c.job.parameterValues()
        XCTAssertTrue(parameters.values.allSatisfy { $0.allSatisfy(\.isFinite) })
        XCTAssertEqual(status.updatesRejected["update_norm_out_of_range"], 1)
        await c.stop()
    }
}
