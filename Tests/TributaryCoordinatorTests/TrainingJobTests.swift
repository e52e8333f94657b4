import Foundation
import Logging
import TributaryProtocol
import TributaryCheckpoint
import XCTest
@testable import TributaryCoordinator

/// The job actor without HTTP: its events run one at a time, across the ledger's
/// suspension points, while status and downloads never wait for it.
final class TrainingJobTests: JobTestCase {
    func openJob() async throws -> (TrainingJob, String) {
        let c = config(checkpointEvery: 50)
        var logger = Logger(label: "test.job")
        logger.logLevel = .warning
        return (try await TrainingJob.open(config: c, logger: logger), c.storage.dataDirectory)
    }

    func testEventsWaitForTheRunningOneButStatusAndDownloadsDoNot() async throws {
        let (job, dir) = try await openJob()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let busy = Task { try await job.exclusively { try await Task.sleep(for: .milliseconds(1500)); return 1 } }
        try await Task.sleep(for: .milliseconds(200))

        let clock = ContinuousClock()
        let quick = clock.now
        XCTAssertEqual(job.status().version, 0)
        XCTAssertEqual(try job.publisher.manifest(version: 0).shards.count, job.layout.shards.count)
        XCTAssertLessThan(clock.now - quick, .milliseconds(300), "status and manifests do not wait for a running event")

        let waited = clock.now
        let registration = try await job.register(RegisterRequest(joinToken: "join", name: "w"))
        XCTAssertGreaterThan(clock.now - waited, .milliseconds(800), "an event waits until the running one ends")
        let finished = try await busy.value
        XCTAssertEqual(finished, 1)

        let worker = try await job.authenticate(bearer: registration.token)
        XCTAssertEqual(worker, registration.workerId)
        await job.close()
    }

    func testRefusalsAreTypedAndCounted() async throws {
        let (job, dir) = try await openJob()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            _ = try await job.register(RegisterRequest(joinToken: "wrong", name: nil))
            XCTFail("a wrong join token is refused")
        } catch let error as JobError {
            XCTAssertEqual(error, .badJoinToken)
            XCTAssertEqual(error.problemCode.status, 403)
        }
        do {
            _ = try await job.authenticate(bearer: "trb_nobody")
            XCTFail("an unknown token is refused")
        } catch {
            XCTAssertEqual(error, .unknownBearerToken)
        }
        let reg = try await job.register(RegisterRequest(joinToken: "join", name: "w"))
        let a = try await job.lease(worker: reg.workerId)
        do {
            _ = try await job.lease(worker: reg.workerId)
            XCTFail("one lease per worker by default")
        } catch let error as JobError {
            XCTAssertEqual(error, .tooManyLeases(held: 1, limit: 1))
            XCTAssertEqual(error.problemCode.status, 409)
        }
        let second = try await job.register(RegisterRequest(joinToken: "join", name: "w2"))
        let third = try await job.register(RegisterRequest(joinToken: "join", name: "w3"))
        _ = try await job.lease(worker: second.workerId)
        do {
            _ = try await job.lease(worker: third.workerId)
            XCTFail("a sync round leases only its units")
        } catch let error as JobError {
            XCTAssertEqual(error, .noWork)
            XCTAssertEqual(error.problemCode.status, 503)
        }
        do {
            _ = try await job.commit(lease: a.leaseId, worker: reg.workerId, CommitRequest(samples: 4, loss: 1))
            XCTFail("a commit before the shards arrive is refused")
        } catch let error as JobError {
            XCTAssertEqual(error, .incompleteUpdate(missing: job.layout.shards.map(\.name)))
        }
        let rejected = job.status().updatesRejected
        XCTAssertEqual(rejected["bad_join_token"], 1)
        XCTAssertEqual(rejected["bad_token"], 1)
        await job.close()
    }

    func testWorkerNamesLoseControlCharacters() async throws {
        let (job, dir) = try await openJob()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let evil = try await job.register(RegisterRequest(joinToken: "join", name: "ev\u{0}il\u{1B}[2J\n"))
        let blank = try await job.register(RegisterRequest(joinToken: "join", name: "\u{0}\u{7}"))
        let names = Dictionary(uniqueKeysWithValues: try await job.workers().workers.map { ($0.id, $0.name) })
        XCTAssertEqual(names[evil.workerId], "evil[2J")
        XCTAssertEqual(names[blank.workerId], blank.workerId, "a name of control characters only becomes the id")
        await job.close()
    }

    /// Issue 14: two coordinators on one data directory would write one ledger; the
    /// second refuses, and the directory is free again once the first closes.
    func testASecondCoordinatorOnTheSameDirectoryRefuses() async throws {
        let (job, dir) = try await openJob()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            _ = try await TrainingJob.open(config: job.config, logger: Logger(label: "test.second"))
            XCTFail("the data directory is locked")
        } catch let failure as DirectoryLock.Failure {
            XCTAssertTrue(failure.description.contains("coordinator.lock"), failure.description)
        }
        await job.close()
        let reopened = try await TrainingJob.open(config: job.config, logger: Logger(label: "test.reopen"))
        await reopened.close()
    }

    func testWeakJoinTokensAreNamed() {
        XCTAssertNotNil(JobConfig.weakJoinTokenReason("change-me"))
        XCTAssertNotNil(JobConfig.weakJoinTokenReason("short-token"))
        XCTAssertNil(JobConfig.weakJoinTokenReason("p7Vq-2mXr9LkT4sW8zHb"))
    }
}
