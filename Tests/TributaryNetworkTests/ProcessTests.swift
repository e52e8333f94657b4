import Foundation
import TributaryLedger
import TributaryProtocol
import XCTest

/// A coordinator and workers as real processes: training, a killed worker and coordinator,
/// a budget too small, SIGTERM.
final class ProcessTests: ProcessTestCase {
    func testCoordinatorAndThreeWorkerProcessesTrainFourEpochs() async throws {
        let rounds = 56 // four epochs of 14 rounds
        let job = try writeJob(rounds: rounds, checkpointEvery: 7)
        let (_, port) = try await startCoordinator(job)
        for i in 0..<3 { _ = try startWorker(i, port: port) }
        let final = try await waitFor(port, timeout: 240) { $0.complete }
        XCTAssertEqual(final.version, rounds)
        XCTAssertEqual(final.units.perEpoch, 42)
        XCTAssertEqual(final.epoch, 4, "four whole epochs done")
        XCTAssertEqual(final.updatesAccepted, rounds * 3)
        XCTAssertEqual(final.workers.total, 3)
        XCTAssertGreaterThan(final.bytesIn, 0)
        let losses = final.trainingLoss.map(\.value)
        let early = losses.prefix(3).reduce(0, +) / 3, late = losses.suffix(3).reduce(0, +) / 3
        print("process e2e: training loss \(early) → \(late) over \(rounds) rounds")
        XCTAssertLessThan(late, early - 0.2, "loss falls (measured 2.57 → 2.29)")
        try assertLedgerConsistent(rounds: rounds, unitsPerRound: 3)
        // Every unit of each epoch exactly once.
        let ledger = try Ledger(path: "\(dir)/coordinator/ledger.sqlite")
        for e in 0..<4 {
            let counts = try ledger.unitCounts(epoch: e)
            XCTAssertEqual(counts[.done], 42, "epoch \(e)")
            for u in 0..<42 { XCTAssertNotNil(try ledger.update(epoch: e, unitIndex: u), "epoch \(e) unit \(u)") }
        }
    }

    func testKilledWorkerAndKilledCoordinatorLoseNothingAcknowledged() async throws {
        let rounds = 24
        let job = try writeJob(rounds: rounds, checkpointEvery: 4, leaseSeconds: 2)
        let (coordinator, port) = try await startCoordinator(job)
        let w0 = try startWorker(0, port: port)
        _ = try startWorker(1, port: port)
        _ = try startWorker(2, port: port)

        // A worker dies without a word, most likely holding a lease.
        _ = try await waitFor(port, timeout: 120) { $0.version >= 3 }
        kill(w0.processIdentifier, SIGKILL)
        w0.waitUntilExit()

        // The coordinator dies mid-run (no checkpoint on the way out) and comes back on the same port.
        let before = try await waitFor(port, timeout: 120) { $0.version >= 10 }
        kill(coordinator.processIdentifier, SIGKILL)
        coordinator.waitUntilExit()
        let checkpointed = before.checkpointedVersion
        XCTAssertGreaterThanOrEqual(checkpointed, 8)
        let (_, port2) = try await startCoordinator(job, listen: "127.0.0.1:\(port)")
        XCTAssertEqual(port2, port)
        let resumed = try await waitFor(port, timeout: 30) { _ in true }
        XCTAssertGreaterThanOrEqual(resumed.version, before.version, "every round closed before the kill is replayed from the update log")
        XCTAssertLessThanOrEqual(resumed.version, before.version + 2)

        // The surviving workers reconnect by themselves and finish the job.
        let final = try await waitFor(port, timeout: 240) { $0.complete }
        XCTAssertEqual(final.version, rounds)
        XCTAssertGreaterThanOrEqual(final.units.expired, 0)
        try assertLedgerConsistent(rounds: rounds, unitsPerRound: 3)
        let log = (try? String(contentsOfFile: "\(dir)/coordinator-\(children.count - 1).log", encoding: .utf8)) ?? ""
        XCTAssertTrue(log.contains("resumed"), "the restarted coordinator says where it resumed")
        XCTAssertTrue(log.contains("replayed_rounds"), log)
    }

    /// A worker given less memory than the job's smallest plan says so in one line and
    /// exits non-zero before it leases anything.
    func testWorkerWithTooSmallABudgetRefusesBeforeLeasing() async throws {
        let job = try writeJob(rounds: 10, checkpointEvery: 5)
        let (_, port) = try await startCoordinator(job)
        let worker = try launch(["worker", "--coordinator", "http://127.0.0.1:\(port)", "--join-token", "process-token",
                                 "--data-dir", "\(dir)/small", "--memory-budget", "64KiB"], log: "\(dir)/small.log")
        worker.waitUntilExit()
        XCTAssertNotEqual(worker.terminationStatus, 0)
        let log = (try? String(contentsOfFile: "\(dir)/small.log", encoding: .utf8)) ?? ""
        let lines = log.split(separator: "\n").filter { $0.contains("memory budget is too small") }
        XCTAssertEqual(lines.count, 1, log)
        XCTAssertTrue(lines.first?.contains("64.0 KiB") ?? false, log)
        let s = await status(port)
        XCTAssertEqual(s?.units.leased, 0)
        XCTAssertEqual(s?.units.expired, 0)
    }

    /// A second coordinator on a port in use says so in one line and exits non-zero before
    /// it creates its data directory (no ledger, no step-0 checkpoint).
    func testAPortInUseIsOneLineBeforeAnythingIsWritten() async throws {
        let job = try writeJob(rounds: 10, checkpointEvery: 5)
        let (_, port) = try await startCoordinator(job)
        let second = try launch(["coordinator", "--job", job, "--listen", "127.0.0.1:\(port)", "--data-dir", "\(dir)/second"],
                                log: "\(dir)/second.log")
        second.waitUntilExit()
        XCTAssertEqual(second.terminationStatus, 1)
        let log = (try? String(contentsOfFile: "\(dir)/second.log", encoding: .utf8)) ?? ""
        XCTAssertEqual(log.split(separator: "\n").map(String.init),
                       ["Error: port \(port) on 127.0.0.1 is already in use (another coordinator?); stop it, or choose another port with --listen HOST:PORT"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(dir)/second"), "nothing was written")
    }

    /// Ctrl-C on a worker with no unit in hand stops it at once (not after the grace
    /// period), with one line saying what this run did.
    func testAnIdleWorkerStopsAtOnceOnCtrlCWithASummary() async throws {
        let worker = try launch(["worker", "--coordinator", "http://127.0.0.1:9", "--join-token", "process-token",
                                 "--data-dir", "\(dir)/idle"], log: "\(dir)/idle.log")
        try await Task.sleep(for: .milliseconds(1500))
        let sent = Date()
        kill(worker.processIdentifier, SIGINT)
        while worker.isRunning, Date().timeIntervalSince(sent) < 10 { try await Task.sleep(for: .milliseconds(20)) }
        XCTAssertFalse(worker.isRunning)
        XCTAssertLessThan(Date().timeIntervalSince(sent), 3, "the 30 s grace period is for a unit in hand")
        XCTAssertEqual(worker.terminationStatus, 0)
        let log = (try? String(contentsOfFile: "\(dir)/idle.log", encoding: .utf8)) ?? ""
        let last = log.split(separator: "\n").last.map(String.init) ?? ""
        XCTAssertTrue(last.hasPrefix("stopped after ") && last.hasSuffix(": 0 units, 0 samples, up 0 B, down 0 B"), log)
    }

    /// Ctrl-C on `tributary train --out DIR` checkpoints the step it was at and says how to
    /// go on; `--resume` continues from exactly there.
    func testCtrlCOnTrainCheckpointsWhereItIsAndResumeContinuesThere() async throws {
        let args = ["train", "--data", "builtin:arithmetic", "--steps", "1000000", "--batch-size", "4", "--block-size", "16",
                    "--n-layer", "1", "--n-embd", "16", "--n-head", "2", "--threads", "1", "--out", "\(dir)/run"]
        let train = try launch(args, log: "\(dir)/train.log")
        let log = { (try? String(contentsOfFile: "\(self.dir)/train.log", encoding: .utf8)) ?? "" }
        while !log().contains("step 200 "), train.isRunning { try await Task.sleep(for: .milliseconds(50)) }
        kill(train.processIdentifier, SIGINT)
        train.waitUntilExit()
        XCTAssertEqual(train.terminationStatus, 130)
        let lines = log().split(separator: "\n").map(String.init)
        let last = try XCTUnwrap(lines.last)
        let step = try XCTUnwrap(Int(last.split(separator: " ")[3]), last)
        XCTAssertEqual(last, "interrupted at step \(step) of 1000000; continue with the same command and --resume (--out \(dir)/run)")
        XCTAssertGreaterThanOrEqual(step, 200)
        XCTAssertEqual(lines.dropLast().last, "step \(step) checkpoint \(dir)/run/step-\(String(format: "%08d", step))")
        let resumed = try launch(args.map { $0 == "1000000" ? "\(step + 5)" : $0 } + ["--resume"], log: "\(dir)/resume.log")
        resumed.waitUntilExit()
        XCTAssertEqual(resumed.terminationStatus, 0)
        let again = (try? String(contentsOfFile: "\(dir)/resume.log", encoding: .utf8)) ?? ""
        XCTAssertTrue(again.hasPrefix("resumed from \(dir)/run/step-\(String(format: "%08d", step)) at step \(step)\n"), again)
    }

    /// A job file whose model changed, started on the old data directory: refused in one line
    /// that says what to do, and the old job's checkpoints are left as they were (they used
    /// to be moved aside as damaged, and the job started over).
    func testAChangedModelOnAnOldDataDirectoryIsRefusedWithAHint() async throws {
        let job = try writeJob(rounds: 10, checkpointEvery: 5)
        let (coordinator, _) = try await startCoordinator(job)
        kill(coordinator.processIdentifier, SIGTERM)
        coordinator.waitUntilExit()
        let before = try FileManager.default.contentsOfDirectory(atPath: "\(dir)/coordinator/checkpoints").sorted()
        let text = try String(contentsOfFile: job, encoding: .utf8).replacingOccurrences(of: "n_embd: 16", with: "n_embd: 32")
        try text.write(toFile: job, atomically: true, encoding: .utf8)
        let again = try launch(["coordinator", "--job", job], log: "\(dir)/changed.log")
        again.waitUntilExit()
        XCTAssertEqual(again.terminationStatus, 1)
        let log = (try? String(contentsOfFile: "\(dir)/changed.log", encoding: .utf8)) ?? ""
        XCTAssertEqual(log.split(separator: "\n").last.map(String.init),
                       "Error: the data directory \(dir)/coordinator holds a job of another model (checkpoint 0: GPT 1 layers × 2 heads × 16 wide, "
                       + "context 16, vocabulary 13, 3,776 parameters; the job file: GPT 1 layers × 2 heads × 32 wide, context 16, vocabulary 13, "
                       + "13,696 parameters); give the changed job a new storage.data_directory (or --data-dir), or put the job file's model "
                       + "and data back to continue the old job")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: "\(dir)/coordinator/checkpoints").sorted(), before)
    }

    func testSIGTERMWritesACheckpointOfTheCurrentVersion() async throws {
        let job = try writeJob(rounds: 1000, checkpointEvery: 1000)
        let (coordinator, port) = try await startCoordinator(job)
        _ = try startWorker(0, port: port)
        let running = try await waitFor(port, timeout: 120) { $0.version >= 3 }
        XCTAssertEqual(running.checkpointedVersion, 0, "only the initial checkpoint so far")
        kill(coordinator.processIdentifier, SIGTERM)
        coordinator.waitUntilExit()
        XCTAssertEqual(coordinator.terminationStatus, 0)
        let ledger = try Ledger(path: "\(dir)/coordinator/ledger.sqlite")
        let checkpoint = try XCTUnwrap(try ledger.latestCheckpoint())
        let last = try XCTUnwrap(try ledger.lastRound())
        XCTAssertEqual(checkpoint.version, last.version, "the shutdown checkpoint holds every applied round")
        XCTAssertGreaterThanOrEqual(checkpoint.version, 3)
        XCTAssertTrue(FileManager.default.fileExists(atPath: "\(checkpoint.path)/model.safetensors"))
    }
}
