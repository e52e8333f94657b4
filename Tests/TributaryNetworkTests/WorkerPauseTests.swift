import Foundation
import TributaryCoordinator
import TributaryProtocol
import TributaryTensor
import TributaryWorker
import XCTest

/// The volunteer takes the machine back (`worker pause`, or `--only-when-idle` seeing them
/// return): the unit in hand is given back within a second, mid-compute, nothing of it is
/// committed, nothing is leased while the gate is closed, and work resumes when it opens.
final class WorkerPauseTests: XCTestCase {
    override func setUp() { ComputeThreads.set(1) }

    func testClosingTheGateMidUnitGivesTheUnitBackAtOnceAndOpeningItResumes() async throws {
        let dir = try temporaryDirectory("pause")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let coordinator = try await RunningCoordinator.start(RunningCoordinator.config(directory: "\(dir)/c") { c in
            // A unit of 4 blocks × 1,024 micro-batches: long enough to be caught in the middle.
            c.units.samplesPerUnit = 1024
            c.units.microBatch = 1
            c.model.nLayer = 4
            c.model.nEmbd = 64
            c.model.blockSize = 64
            c.rounds.unitsPerRound = 1
            c.leases.durationSeconds = 30  // an interrupted unit must be given back, not left to expire
        })
        let options = WorkerOptions(coordinator: coordinator.url, joinToken: RunningCoordinator.joinToken, name: "laptop",
                                    dataDirectory: "\(dir)/worker")
        let daemon = WorkerDaemon(options: options, logger: quietLogger("test.worker"))
        let running = Task { try await daemon.run() }
        defer { running.cancel() }

        // Wait until the worker is a few micro-batches into a unit.
        var caught: UnitProgress.Snapshot?
        for _ in 0..<3000 {
            if let s = daemon.progress.snapshot, s.phase == .computing, s.done >= 1, s.done <= s.total - 3 { caught = s; break }
            try await Task.sleep(for: .milliseconds(10))
        }
        let inUnit = try XCTUnwrap(caught, "the worker never got into a unit's compute")
        // Streamed (block by block over the unit: 4 forward, the head, 4 backward) or micro-batch by micro-batch.
        XCTAssertEqual(inUnit.total, inUnit.stepName == "block pass" ? 9 : 1024, "\(inUnit)")
        let before = coordinator.job.status()
        XCTAssertEqual(before.units.leased, 1)

        let closed = Date()
        daemon.gate.set(.machineInUse, reason: "the machine was used 0 s ago (idle after 180 s)")
        var given: Date?
        for _ in 0..<500 {
            if coordinator.job.status().units.leased == 0 { given = Date(); break }
            try await Task.sleep(for: .milliseconds(10))
        }
        let back = try XCTUnwrap(given, "the unit was not given back")
        XCTAssertLessThan(back.timeIntervalSince(closed), 1.0, "given back within a second, not at the lease's end (30 s)")
        XCTAssertNil(daemon.progress.snapshot, "no unit in hand")
        // While closed: nothing leased, nothing committed.
        try await Task.sleep(for: .seconds(1.5))
        let paused = coordinator.job.status()
        XCTAssertEqual(paused.units.leased, 0)
        XCTAssertEqual(paused.version, before.version)
        XCTAssertEqual(paused.updatesAccepted, before.updatesAccepted)
        XCTAssertEqual(paused.units.expired, 0, "released, not expired")

        daemon.gate.set(.machineInUse, reason: nil)
        var resumed = false
        for _ in 0..<600 {
            if coordinator.job.status().version > before.version { resumed = true; break }
            try await Task.sleep(for: .milliseconds(100))
        }
        XCTAssertTrue(resumed, "work resumed once the gate opened")
        await daemon.requestStop()
        running.cancel()
        _ = await running.result
        await coordinator.stop()
    }
}
