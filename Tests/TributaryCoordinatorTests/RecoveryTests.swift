import Foundation
import Logging
import TributaryCheckpoint
import TributaryCompression
import TributaryLedger
import TributaryProtocol
import XCTest
@testable import TributaryCoordinator

/// Issue 14 at the job's level (no HTTP): a coordinator that stops without a word comes
/// back with every acknowledged update, bit for bit; a damaged checkpoint is skipped for an
/// older one and the log replays from there; a checkpoint that cannot be written leaves the
/// round closed exactly once. Updates are synthetic (seeded per unit), so two jobs fed the
/// same commits in the same order must hold the same bits.
final class RecoveryTests: JobTestCase {

    func testAStopWithoutAWordLosesNoAcknowledgedUpdateAndReplaysBitForBit() async throws {
        let c = config(checkpointEvery: 3)
        var job = try await open(c)
        let workers = try await register(job, 2)
        try await run(job, workers, units: 15)  // 7 rounds closed, 1 unit of round 8 accepted
        let v1 = await job.version
        XCTAssertEqual(v1, 7)
        let before = await job.parameterValues()
        let creditsBefore = try await credits(job)
        XCTAssertEqual(creditsBefore.values.reduce(0, +), 15 * 4)
        await job.close()  // no shutdown checkpoint: as after kill -9 (the newest on disk is version 6)

        job = try await open(c)
        let v2 = await job.version
        XCTAssertEqual(v2, 7, "round 7 (after the last checkpoint) is replayed, not redone")
        let v3 = await job.parameterValues()
        assertSameBits(v3, before)
        let creditsAfter = try await credits(job)
        XCTAssertEqual(creditsAfter, creditsBefore, "no credit taken back")
        XCTAssertEqual(job.status().checkpointedVersion, 7, "the replayed state was checkpointed at once")

        // The open round kept its accepted unit: one more closes it, exactly as without the stop.
        let twin = try await open(config(checkpointEvery: 3))
        let twinWorkers = try await register(twin, 2)
        try await run(twin, twinWorkers, units: 15)
        try await run(job, workers, units: 5, from: 15)
        try await run(twin, twinWorkers, units: 5, from: 15)
        let v4 = await job.version
        XCTAssertEqual(v4, 10)
        let v5 = await twin.version
        XCTAssertEqual(v5, 10)
        let v6 = await job.parameterValues()
        let v7 = await twin.parameterValues()
        assertSameBits(v6, v7)
        let ledger = try Ledger(path: "\(c.storage.dataDirectory)/ledger.sqlite")
        XCTAssertEqual(try ledger.rounds(limit: 100).map(\.round), Array(1...10), "each round recorded once")
        XCTAssertEqual(try (1...10).map { try ledger.updates(round: $0).count }, Array(repeating: 2, count: 10))
        await job.close()
        await twin.close()
    }

    func testADamagedNewestCheckpointIsSkippedForAnOlderOneAndTheLogReplays() async throws {
        for damage in ["truncated", "one flipped bit"] {
            let c = config(checkpointEvery: 3)
            var job = try await open(c)
            let workers = try await register(job, 2)
            try await run(job, workers, units: 14)  // 7 rounds; checkpoints 0, 3, 6
            let before = await job.parameterValues()
            await job.close()
            let newest = "\(c.storage.dataDirectory)/checkpoints/step-00000006"
            let file = "\(newest)/model.safetensors"
            var bytes = try XCTUnwrap(FileManager.default.contents(atPath: file))
            if damage == "truncated" {
                bytes = bytes.prefix(bytes.count / 2)
            } else {
                // The last weight's exponent: 9e36-sized values would load as finite numbers.
                bytes[bytes.count - 1] ^= 0x40
            }
            try bytes.write(to: URL(fileURLWithPath: file))

            job = try await open(c)
            let v8 = await job.version
            XCTAssertEqual(v8, 7, damage)
            let v9 = await job.parameterValues()
            assertSameBits(v9, before)
            XCTAssertFalse(FileManager.default.fileExists(atPath: newest), "\(damage): the damaged checkpoint is moved aside")
            let aside = try FileManager.default.contentsOfDirectory(atPath: "\(c.storage.dataDirectory)/checkpoints")
                .filter { $0.hasPrefix("step-00000006.corrupt-") }
            XCTAssertEqual(aside.count, 1, "\(damage): kept for the operator")
            XCTAssertThrowsError(try LoadedCheckpoint.read("\(c.storage.dataDirectory)/checkpoints/\(aside[0])"))
            await job.close()
        }
    }

    func testACheckpointThatCannotBeWrittenLeavesItsRoundAppliedOnceAndIsRetried() async throws {
        let clock = TestClock()
        let c = config(checkpointEvery: 3)
        let job = try await open(c, now: { clock.now })
        let twin = try await open(config(checkpointEvery: 3))
        let workers = try await register(job, 2), twinWorkers = try await register(twin, 2)
        try await run(job, workers, units: 4)
        try await run(twin, twinWorkers, units: 4)

        // The checkpoint folder becomes unwritable (a file where it should be).
        let folder = "\(c.storage.dataDirectory)/checkpoints"
        try FileManager.default.moveItem(atPath: folder, toPath: folder + ".away")
        FileManager.default.createFile(atPath: folder, contents: Data("in the way".utf8))
        try await run(job, workers, units: 2)  // round 3 closes; its checkpoint fails
        let v10 = await job.version
        XCTAssertEqual(v10, 3)
        XCTAssertEqual(job.status().checkpointFailing, true)
        XCTAssertEqual(job.status().checkpointedVersion, 0)
        try await job.tick()  // too early for a retry
        try await run(job, workers, units: 2)  // round 4 goes on
        try await run(twin, twinWorkers, units: 4)
        let v11 = await job.parameterValues()
        let v12 = await twin.parameterValues()
        assertSameBits(v11, v12)

        // Space returns: the next retry writes the checkpoint of the current version.
        try FileManager.default.removeItem(atPath: folder)
        try FileManager.default.moveItem(atPath: folder + ".away", toPath: folder)
        try await assertCheckpointRetried(job, clock, config: c, version: 4)
        await job.close()
        await twin.close()
    }

    func testTheLogIsPrunedBehindTheOldestKeptCheckpoint() async throws {
        let c = config(checkpointEvery: 2)
        let job = try await open(c)
        let workers = try await register(job, 2)
        try await run(job, workers, units: 20)  // 10 rounds; checkpoints 6, 8, 10 are kept
        let rounds = try UpdateLog(directory: "\(c.storage.dataDirectory)/update-log").rounds()
        XCTAssertEqual(rounds, [7, 8, 9, 10], "segments after the oldest kept checkpoint (6) only")
        await job.close()
    }

    func testAWeightsFileWithoutHashesButNonFiniteLossIsNeverUsed() async throws {
        let c = config(checkpointEvery: 3)
        var job = try await open(c)
        let workers = try await register(job, 2)
        try await run(job, workers, units: 8)  // 4 rounds; checkpoints 0, 3
        let before = await job.parameterValues()
        await job.close()
        // A checkpoint from before hashes existed, with one weight blown up to 9e36.
        let newest = "\(c.storage.dataDirectory)/checkpoints/step-00000003"
        try FileManager.default.removeItem(atPath: "\(newest)/\(CheckpointIntegrity.sumsFile)")
        let loaded = try LoadedCheckpoint.read(newest)
        let entries = try loaded.weights.entries.map { e -> SafeTensorsEntry in
            var v = try e.floats()
            v[0] = 9e36
            return SafeTensorsEntry(name: e.name, shape: e.shape, floats: v)
        }
        try SafeTensorsFile(entries: entries, metadata: loaded.weights.metadata).write(to: "\(newest)/model.safetensors")

        job = try await open(c)
        let v13 = await job.version
        XCTAssertEqual(v13, 4)
        let v14 = await job.parameterValues()
        assertSameBits(v14, before)
        XCTAssertFalse(FileManager.default.fileExists(atPath: newest))
        await job.close()
    }

    /// SIGTERM's path: a checkpoint of the closed rounds, then the process ends. The open
    /// round's accepted update is in the log and comes back: nothing is redone.
    func testAGracefulStopKeepsTheOpenRoundsAcceptedUpdates() async throws {
        let c = config(checkpointEvery: 50)
        var job = try await open(c)
        let workers = try await register(job, 2)
        try await run(job, workers, units: 5)  // rounds 1, 2 and one unit of round 3
        try await job.writeCheckpoint()
        await job.close()
        job = try await open(c)
        let version = await job.version
        XCTAssertEqual(version, 2)
        XCTAssertEqual(job.status().units.done, 5, "the open round's accepted unit stays done")
        let receipt = try await doUnit(job, workers[1])
        XCTAssertEqual(receipt.round, 3)
        let closed = await job.version
        XCTAssertEqual(closed, 3, "one more unit closes round 3: its first one still counts")
        let twin = try await open(config(checkpointEvery: 50))
        let twinWorkers = try await register(twin, 2)
        try await run(twin, twinWorkers, units: 6)
        let got = await job.parameterValues(), expected = await twin.parameterValues()
        assertSameBits(got, expected)
        await job.close()
        await twin.close()
    }
}
