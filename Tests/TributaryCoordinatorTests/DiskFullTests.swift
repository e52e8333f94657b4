import Foundation
import Logging
import TributaryLedger
import TributaryProtocol
import XCTest
@testable import TributaryCoordinator

/// Issue 14: the coordinator's disk fills up (a real small file system, tmpfs, filled to the
/// last byte). Leases and commits are refused with `storage_unavailable` and change nothing,
/// status keeps answering, no round is applied twice, and once space returns the job goes on
/// by itself: the model then equals a twin's that saw only the requests that succeeded, and a
/// restart from the full-then-freed disk gives the same bits.
final class DiskFullTests: JobTestCase {
    var mounts: [String] = []

    override func tearDown() {
        for point in mounts.reversed() { _ = Self.run("/bin/umount", [point]) }
        if let first = mounts.first { try? FileManager.default.removeItem(atPath: first) }
        mounts = []
        super.tearDown()
    }

    @discardableResult
    static func run(_ tool: String, _ args: [String]) -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = args
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        do { try p.run() } catch { return -1 }
        p.waitUntilExit()
        return p.terminationStatus
    }

    /// A fresh tmpfs of `size` (root only; elsewhere the test cannot make a disk fill up).
    func smallFileSystem(at given: String? = nil, size: String = "8m") throws -> String {
        let point = given ?? FileManager.default.temporaryDirectory.appendingPathComponent("tributary-tmpfs-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: point, withIntermediateDirectories: true)
        guard getuid() == 0, Self.run("/bin/mount", ["-t", "tmpfs", "-o", "size=\(size)", "tmpfs", point]) == 0 else {
            try? FileManager.default.removeItem(atPath: point)
            throw XCTSkip("mounting a small tmpfs needs root (CI runs as root); without it no disk can be filled for real")
        }
        mounts.append(point)
        return point
    }

    /// Writes zeros until the file system refuses; returns the filler's path.
    func fill(_ point: String) throws -> String {
        let path = "\(point)/filler"
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        XCTAssertGreaterThanOrEqual(fd, 0)
        let chunk = [UInt8](repeating: 0, count: 4096)
        while chunk.withUnsafeBytes({ Glibc.write(fd, $0.baseAddress, $0.count) }) > 0 {}
        XCTAssertEqual(errno, ENOSPC)
        close(fd)
        return path
    }

    enum Action { case lease(Int), commit(Int) }

    /// Lease (if the worker holds none) and commit, as a worker would; records what succeeded.
    func attempt(_ job: TrainingJob, _ workers: [String], _ w: Int, held: inout [Int: LeaseGrant],
                 log: inout [Action]) async throws -> Bool {
        do {
            if held[w] == nil {
                held[w] = try await job.lease(worker: workers[w])
                log.append(.lease(w))
            }
            guard let grant = held[w] else { return false }
            _ = try await deliver(job, workers[w], grant)
            held[w] = nil
            log.append(.commit(w))
            return true
        } catch let error as JobError {
            guard case .storageUnavailable = error else { throw error }
            XCTAssertEqual(error.problemCode.status, 503)
            return false
        }
    }

    func testAFullDiskRefusesWorkWith503ChangesNothingAndTheJobResumesWhenSpaceReturns() async throws {
        let point = try smallFileSystem()
        let clock = TestClock()
        var c = config(checkpointEvery: 2)
        c.storage.dataDirectory = "\(point)/job"
        var job = try await open(c, now: { clock.now })
        let workers = try await register(job, 2)
        var held: [Int: LeaseGrant] = [:]
        var log: [Action] = []
        for i in 0..<5 {
            let ok = try await attempt(job, workers, i % 2, held: &held, log: &log)
            XCTAssertTrue(ok)
        }

        let filler = try fill(point)
        var refused = 0, sawStorageError = false
        for i in 5..<11 {
            let ok = try await attempt(job, workers, i % 2, held: &held, log: &log)
            if !ok {
                refused += 1
                sawStorageError = sawStorageError || job.status().storageError != nil
            }
            clock.advance(1)
            try await job.tick()
        }
        XCTAssertGreaterThan(refused, 0, "a full disk refuses work")
        XCTAssertTrue(sawStorageError, "status says why")
        let full = job.status()  // status keeps answering
        XCTAssertNotNil(full.storageError ?? (full.checkpointFailing == true ? "checkpoint" : nil))

        try FileManager.default.removeItem(atPath: filler)
        var i = 11
        while await job.version < 8 {
            let ok = try await attempt(job, workers, i % 2, held: &held, log: &log)
            XCTAssertTrue(ok, "work resumes")
            i += 1
            clock.advance(1)
            try await job.tick()
            XCTAssertLessThan(i, 60)
        }
        clock.advance(10)
        try await job.tick()
        XCTAssertNil(job.status().storageError)
        XCTAssertEqual(job.status().checkpointFailing, false)
        let ledger = try Ledger(path: "\(c.storage.dataDirectory)/ledger.sqlite")
        XCTAssertEqual(try ledger.rounds(limit: 100).map(\.round), Array(1...8), "each round once")

        // The twin sees only what succeeded, in the same order.
        let twin = try await open(config(checkpointEvery: 2))
        let twinWorkers = try await register(twin, 2)
        var twinHeld: [Int: LeaseGrant] = [:]
        for action in log {
            switch action {
            case let .lease(w): twinHeld[w] = try await twin.lease(worker: twinWorkers[w])
            case let .commit(w):
                let grant = try XCTUnwrap(twinHeld[w])
                _ = try await deliver(twin, twinWorkers[w], grant)
                twinHeld[w] = nil
            }
        }
        let expected = await twin.parameterValues()
        let v1 = await twin.version
        XCTAssertEqual(v1, 8)
        let got = await job.parameterValues()
        assertSameBits(got, expected)

        // And from the disk that was full: the same bits again.
        await job.close()
        job = try await open(c)
        let reopened = await job.parameterValues()
        assertSameBits(reopened, expected)
        await job.close()
        await twin.close()
        print("disk full: \(refused) of 6 attempts refused with storage_unavailable while full")
    }

    /// The checkpoint's own disk is full (a tmpfs of its own, filled) while the ledger and
    /// log still write: the commit that closes the round is accepted, the round is applied
    /// once, status shows `checkpoint_failing`, and the checkpoint is written once space returns.
    func testACheckpointOnAFullDiskLeavesTheRoundClosedOnceAndIsWrittenWhenSpaceReturns() async throws {
        let point = try smallFileSystem()
        let clock = TestClock()
        var c = config(checkpointEvery: 2)
        c.storage.dataDirectory = "\(point)/job"
        let checkpoints = try smallFileSystem(at: "\(point)/job/checkpoints", size: "1m")
        let job = try await open(c, now: { clock.now })
        let twin = try await open(config(checkpointEvery: 2))
        let workers = try await register(job, 2), twinWorkers = try await register(twin, 2)
        try await run(job, workers, units: 4)  // rounds 1, 2; checkpoint 2
        try await run(twin, twinWorkers, units: 4)
        let filler = try fill(checkpoints)
        for i in 4..<8 {  // rounds 3, 4: the checkpoint of 4 meets the full disk
            let receipt = try await doUnit(job, workers[i % 2])
            XCTAssertTrue(receipt.accepted)
        }
        try await run(twin, twinWorkers, units: 4, from: 4)
        let v = await job.version
        XCTAssertEqual(v, 4)
        XCTAssertEqual(job.status().checkpointFailing, true)
        XCTAssertEqual(job.status().checkpointedVersion, 2)
        XCTAssertNil(job.status().storageError, "the ledger and the log still write")
        let got = await job.parameterValues(), expected = await twin.parameterValues()
        assertSameBits(got, expected)  // round 4 applied once, not again at a retry
        try FileManager.default.removeItem(atPath: filler)
        try await assertCheckpointRetried(job, clock, config: c, version: 4)
        await job.close()
        await twin.close()
    }
}
