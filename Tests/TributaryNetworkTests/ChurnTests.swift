import Foundation
import TributaryCompression
import TributaryCoordinator
import TributaryLedger
import TributaryProtocol
import TributaryTensor
import TributaryWorker
import Synchronization
import XCTest

final class ChurnTests: XCTestCase {
    override func setUp() { ComputeThreads.set(1) }

    func testAbandonedLeaseExpiresAndItsUnitIsRedoneOnceByAnotherWorker() async throws {
        let dir = try temporaryDirectory("churn")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let coordinator = try await RunningCoordinator.start(RunningCoordinator.config(directory: "\(dir)/c") { c in
            c.rounds.unitsPerRound = 1
            c.leases.durationSeconds = 1
            c.optimizer.totalRounds = 2
        })
        let raw = RawClient(base: coordinator.url)
        // A worker leases the round's unit, pushes one shard of garbage-free data, and vanishes.
        let ghost = try await raw.register(name: "ghost")
        let lease = try await raw.request(.POST, Routes.leases, token: ghost.token).json(LeaseGrant.self)
        let manifest = try await raw.request(.GET, Routes.manifest(0)).json(Manifest.self)
        let shard = try XCTUnwrap(manifest.shards.first)
        let body = try [Float](repeating: 5, count: shard.elementCount).withUnsafeBufferPointer {
            try TensorFrame.encode($0, codec: .fp32, zstdLevel: 3)
        }
        let pushed = try await raw.request(.PUT, Routes.update(lease.leaseId, shard: shard.name), token: ghost.token, body: body)
        XCTAssertEqual(pushed.status, 202)
        // While the lease lives, the unit is not handed to anyone else (sync: 503).
        let other = try await raw.register(name: "other")
        let busy = try await raw.request(.POST, Routes.leases, token: other.token)
        XCTAssertEqual(busy.status, 503)

        try await Task.sleep(for: .milliseconds(1800))
        var status = coordinator.job.status()
        XCTAssertEqual(status.units.expired, 1, "the ghost's lease ran out")
        XCTAssertEqual(status.version, 0)

        // A real worker picks the same unit up and completes it.
        let options = WorkerOptions(coordinator: coordinator.url, joinToken: RunningCoordinator.joinToken, name: "real",
                                    dataDirectory: "\(dir)/worker", maxUnits: 1)
        let daemon = WorkerDaemon(options: options, logger: quietLogger("test.worker"))
        try await daemon.run()
        status = coordinator.job.status()
        XCTAssertEqual(status.version, 1)
        XCTAssertEqual(status.updatesAccepted, 1)

        // The ghost's late commit is refused: its lease is gone.
        for s in manifest.shards.dropFirst() {
            _ = try await raw.request(.PUT, Routes.update(lease.leaseId, shard: s.name), token: ghost.token, body: body)
        }
        let late = try await raw.json(.POST, Routes.commit(lease.leaseId), token: ghost.token, CommitRequest(samples: 4, loss: 1))
        XCTAssertEqual(late.status, 410)
        XCTAssertEqual(late.problem?.code, .leaseExpired)
        await coordinator.stop()

        let ledger = try Ledger(path: "\(dir)/c/ledger.sqlite")
        let update = try XCTUnwrap(try ledger.update(epoch: 0, unitIndex: lease.unitIndex))
        let ghostRecord = try XCTUnwrap(try ledger.worker(tokenHash: WorkerToken.hash(ghost.token)))
        XCTAssertNotEqual(update.workerId, ghostRecord.id, "the unit counts for the worker that finished it")
        XCTAssertEqual(try ledger.updates(round: 1).count, 1, "applied once")
        XCTAssertEqual(ghostRecord.acceptedUpdates, 0)
    }

    /// Issue 14: an identity file deleted while the worker runs is written again, so the
    /// next start keeps the same identity (and the volunteer's credit in one place).
    func testADeletedIdentityIsWrittenAgain() async throws {
        let (c, dir) = try await RunningCoordinator.startInTemporaryDirectory("identity") { $0.rounds.unitsPerRound = 1 }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let workerDir = "\(dir)/worker"
        let identity = "\(workerDir)/identity.json"
        let options = WorkerOptions(coordinator: c.url, joinToken: RunningCoordinator.joinToken, dataDirectory: workerDir,
                                    maxUnits: 3)
        let daemon = WorkerDaemon(options: options, logger: quietLogger("test.identity"))
        try await daemon.run { report in
            if report.unit == 0 || report.round == 1 { try? FileManager.default.removeItem(atPath: identity) }
        }
        let saved = try XCTUnwrap(FileManager.default.contents(atPath: identity), "the identity file is back")
        let id = try XCTUnwrap((try JSONSerialization.jsonObject(with: saved) as? [String: Any])?["workerId"] as? String)
        let workers = try await c.job.workers().workers
        XCTAssertEqual(workers.count, 1, "one identity")
        XCTAssertEqual(workers.first?.id, id)
        XCTAssertEqual(workers.first?.acceptedUpdates, 3, "all three units credited to it")
        await c.stop()
    }

    /// Issue 14: a commit that landed but whose answer was lost is committed again and
    /// answered with its receipt: the unit counts once and the worker's work is kept.
    func testACommitWhoseAnswerWasLostIsRepeatedAndCountsOnce() async throws {
        let (c, dir) = try await RunningCoordinator.startInTemporaryDirectory("lost-answer") { $0.rounds.unitsPerRound = 1 }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let proxy = try await LostAnswerProxy.start(to: c.url, lose: 1)
        let options = WorkerOptions(coordinator: proxy.url, joinToken: RunningCoordinator.joinToken,
                                    dataDirectory: "\(dir)/worker", maxUnits: 2)
        let reports = Mutex(0)
        try await WorkerDaemon(options: options, logger: quietLogger("test.lost")).run { _ in reports.withLock { $0 += 1 } }
        XCTAssertEqual(reports.withLock { $0 }, 2)
        XCTAssertEqual(proxy.counter.value, 3, "the first commit was sent twice")
        let status = c.job.status()
        XCTAssertEqual(status.updatesAccepted, 2, "each unit counted once")
        XCTAssertEqual(status.version, 2)
        XCTAssertEqual(status.updatesRejected.values.reduce(0, +), 0, "the repeat is not a refusal")
        await proxy.stop()
        await c.stop()
    }
}
