import Foundation
import Logging
import TributaryCheckpoint
import TributaryCompression
import TributaryLedger
import TributaryProtocol
import XCTest
@testable import TributaryCoordinator

/// A job on a temporary directory, driven without HTTP, with synthetic updates seeded per
/// unit: two jobs fed the same commits in the same order must hold the same bits. Holds no
/// tests of its own.
class JobTestCase: XCTestCase {
    var dirs: [String] = []

    override func tearDown() {
        for d in dirs { try? FileManager.default.removeItem(atPath: d) }
        dirs = []
    }

    func config(checkpointEvery: Int, rounds: Int = 100) -> JobConfig {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tributary-recovery-\(UUID().uuidString)").path
        dirs.append(dir)
        var c = JobConfig()
        c.model.nLayer = 1
        c.model.nHead = 2
        c.model.nEmbd = 16
        c.model.blockSize = 16
        c.units.samplesPerUnit = 4
        c.rounds.unitsPerRound = 2
        c.optimizer.totalRounds = rounds
        c.storage.dataDirectory = dir
        c.storage.checkpointEveryRounds = checkpointEvery
        c.storage.validationEveryRounds = 1000
        c.auth.joinToken = "join"
        // Most job tests push synthetic updates that differ per worker; ReplicationTests turn it on.
        c.validation.replication = .off
        return c
    }

    func open(_ c: JobConfig, now: @escaping @Sendable () -> Date = { Date() }) async throws -> TrainingJob {
        var logger = Logger(label: "test.recovery")
        logger.logLevel = .critical
        return try await TrainingJob.open(config: c, logger: logger, now: now)
    }

    /// Leases a unit for `worker` and commits a seeded synthetic update for it.
    @discardableResult
    func doUnit(_ job: TrainingJob, _ worker: String) async throws -> CommitReceipt {
        let grant = try await job.lease(worker: worker)
        return try await deliver(job, worker, grant)
    }

    func deliver(_ job: TrainingJob, _ worker: String, _ grant: LeaseGrant) async throws -> CommitReceipt {
        for shard in job.layout.shards {
            let seed = Float(grant.epoch * 1000 + grant.unitIndex) + Float(shard.name.count)
            let values = (0..<shard.elementCount).map { 0.01 * sin(seed + Float($0) * 0.37) }
            let body = try values.withUnsafeBufferPointer { try TensorFrame.encode($0, codec: .fp32, zstdLevel: 1) }
            _ = try await job.receiveUpdate(lease: grant.leaseId, worker: worker, shard: shard.name, body: body)
        }
        return try await job.commit(lease: grant.leaseId, worker: worker,
                                    CommitRequest(samples: 4, loss: 2 + Double(grant.unitIndex) * 0.01))
    }

    func register(_ job: TrainingJob, _ n: Int) async throws -> [String] {
        var ids: [String] = []
        for i in 0..<n { ids.append(try await job.register(RegisterRequest(joinToken: "join", name: "w\(i)")).workerId) }
        return ids
    }

    /// Runs `units` units alternating between the workers (one lease at a time each).
    func run(_ job: TrainingJob, _ workers: [String], units: Int, from first: Int = 0) async throws {
        for i in first..<(first + units) { try await doUnit(job, workers[i % workers.count]) }
    }

    func credits(_ job: TrainingJob) async throws -> [String: Int] {
        Dictionary(uniqueKeysWithValues: try await job.workers().workers.map { ($0.id, $0.samples) })
    }

    func assertSameBits(_ a: [String: [Float]], _ b: [String: [Float]], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.keys.sorted(), b.keys.sorted(), file: file, line: line)
        var differing = 0
        for (name, values) in a {
            guard let other = b[name], other.count == values.count else { differing += 1; continue }
            for (x, y) in zip(values, other) where x.bitPattern != y.bitPattern { differing += 1 }
        }
        XCTAssertEqual(differing, 0, "values differing in bits", file: file, line: line)
    }

    /// Once space is back and the retry is due, the checkpoint of `version` is written, status
    /// clears, and the ledger holds rounds 1...version once each.
    func assertCheckpointRetried(_ job: TrainingJob, _ clock: TestClock, config c: JobConfig, version: Int,
                                 file: StaticString = #filePath, line: UInt = #line) async throws {
        clock.advance(10)
        try await job.tick()
        XCTAssertEqual(job.status().checkpointFailing, false, file: file, line: line)
        XCTAssertEqual(job.status().checkpointedVersion, version, file: file, line: line)
        let ledger = try Ledger(path: "\(c.storage.dataDirectory)/ledger.sqlite")
        XCTAssertEqual(try ledger.rounds(limit: 100).map(\.round), Array(1...version), "each round once", file: file, line: line)
    }
}

/// A clock the test moves by hand.
final class TestClock: @unchecked Sendable {
    private let lock = NSLock()
    private var t = Date()
    var now: Date { lock.withLock { t } }
    func advance(_ seconds: TimeInterval) { lock.withLock { t = t.addingTimeInterval(seconds) } }
}
