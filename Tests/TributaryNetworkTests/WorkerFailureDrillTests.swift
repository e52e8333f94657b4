import Foundation
import TributaryLedger
import TributaryProtocol
import XCTest

/// Issue 14, leases that follow the worker, drilled with real processes: a worker killed,
/// or stopped for 90 s, while it holds a lease. The job runs on the default lease (10 s)
/// and a sync round deadline of 120 s, so a round whose unit is stuck with a dead worker is
/// freed by the lease machinery (expiry, or a backup lease for the straggler), never by
/// its deadline. Delay is measured from the ledger's round records: a round's excess is
/// its duration minus the median round duration of the run.
final class WorkerFailureDrillTests: ProcessTestCase {
    static let leaseSeconds = 10.0
    static let roundDeadline = 120.0

    var ledgerPath: String { "\(dir)/coordinator/ledger.sqlite" }

    /// Three workers; one is SIGKILLed while it holds a lease. Its round closes within 15 s
    /// of the kill (the lease ends at most 10 s after its last renewal; idle workers poll at
    /// most every 2 s), the job completes, and every unit counts once.
    func testAWorkerKilledHoldingALeaseDelaysItsRoundAtMost15Seconds() async throws {
        let rounds = 40
        let job = try writeJob(rounds: rounds, checkpointEvery: 1000, leaseSeconds: Self.leaseSeconds,
                               deadlineSeconds: Self.roundDeadline)
        let (_, port) = try await startCoordinator(job)
        let workers = try (0..<3).map { try startWorker($0, port: port, environment: $0 == 0 ? Self.debugLog : [:]) }
        _ = try await waitFor(port, timeout: 120) { $0.version >= 8 }  // rounds have a typical duration by now
        let ledger = try Ledger(path: ledgerPath)
        let victim = try workerID(0)
        let (held, stoppedAt) = try await stopHoldingALease(workers[0], index: 0, ledger: ledger)
        kill(workers[0].processIdentifier, SIGKILL)
        workers[0].waitUntilExit()

        let final = try await waitFor(port, timeout: 120) { $0.complete }
        XCTAssertEqual(final.version, rounds)
        try assertLedgerConsistent(rounds: rounds, unitsPerRound: 3)
        let times = try RoundTimes(ledger)
        let redone = try XCTUnwrap(try ledger.update(epoch: held.epoch, unitIndex: held.unitIndex), "the unit was redone")
        let round = try XCTUnwrap(times.records.first { $0.round == redone.round })
        let excess = times.excess(of: round)
        let closedAfterKill = round.closedAt.timeIntervalSince(stoppedAt)
        let freedBy = try ledger.lease(id: held.id)?.state
        print(String(format: "killed worker: its round %d closed %.2f s after the kill, excess %.2f s over the median round (%.3f s); "
                     + "its lease ended %@; %d rounds in %.1f s", round.round, closedAfterKill, excess, times.median,
                     freedBy.map { "\($0)" } ?? "?", rounds, times.total))
        XCTAssertNotEqual(redone.workerId, victim, "another worker did the unit")
        XCTAssertLessThanOrEqual(excess, 15)
        XCTAssertLessThanOrEqual(closedAfterKill, 15)
        XCTAssertTrue(freedBy == .expired || freedBy == .released, "the dead worker's lease ended: \(String(describing: freedBy))")
    }

    /// Three workers; one is SIGSTOPped for 90 s while it holds a lease, while the other two
    /// train on. The rounds delayed past the polling jitter (more than 1 s over the median)
    /// add up to at most 20 s over the whole run; when the stopped worker resumes, its stale
    /// lease is refused, it drops the unit, leases again and commits units; every unit
    /// recorded is counted once.
    ///
    /// Σ max(0, duration − median) over all rounds is printed too, but it measures the
    /// polling more than the failure: rounds are paced by idle workers' polls (0.25–2 s
    /// apart), so in an undisturbed run of 179 rounds it came to 24.8 s (round 1, the
    /// workers' start, 2.7 s of it) while no round but the first took more than 0.62 s over
    /// the median; over the ~300 rounds of this drill it cannot stay under 20 s.
    func testAWorkerStoppedFor90SecondsDelaysTheJobAtMost20Seconds() async throws {
        let rounds = Self.stopDrillRounds
        let job = try writeJob(rounds: rounds, checkpointEvery: 1000, leaseSeconds: Self.leaseSeconds,
                               deadlineSeconds: Self.roundDeadline)
        let (coordinator, port) = try await startCoordinator(job)
        let workers = try (0..<3).map { try startWorker($0, port: port, environment: $0 == 0 ? Self.debugLog : [:]) }
        _ = try await waitFor(port, timeout: 120) { $0.version >= 4 }
        let ledger = try Ledger(path: ledgerPath)
        let victim = try workerID(0)
        let (held, stoppedAt) = try await stopHoldingALease(workers[0], index: 0, ledger: ledger)
        let versionAtStop = await status(port)?.version ?? -1
        let logBefore = workerLog(0).utf8.count

        try await Task.sleep(for: .seconds(90))
        let atResume = await status(port)
        kill(workers[0].processIdentifier, SIGCONT)
        let resumedAt = Date()
        XCTAssertEqual(atResume?.complete, false, "the job must still run when the worker resumes; make it longer")
        // The job is sized never to end here: once the resumed worker committed twice (or a
        // minute passed) the coordinator stops, and the rounds recorded so far are measured.
        func committedSinceResume() throws -> [UpdateRecord] {
            try ledger.rounds(limit: 10_000).flatMap { try ledger.updates(round: $0.round) }
                .filter { $0.workerId == victim && $0.acceptedAt > resumedAt }
        }
        let until = Date().addingTimeInterval(60)
        while Date() < until, try committedSinceResume().count < 2 { try await Task.sleep(for: .milliseconds(500)) }
        kill(coordinator.processIdentifier, SIGTERM)
        coordinator.waitUntilExit()
        let recorded = try XCTUnwrap(try ledger.lastRound()).round
        try assertLedgerConsistent(rounds: recorded, unitsPerRound: 3)

        let times = try RoundTimes(ledger)
        let afterResume = try committedSinceResume()
        let resumedLog = String(workerLog(0).utf8.dropFirst(logBefore)) ?? ""
        // Whichever request on the stale lease came first after the resume (a renewal, a
        // pending upload, or the release once a request timed out), the coordinator refused it.
        let refusals = ["lease_not_active", "lease_expired", "not_found"]
        let dropped = resumedLog.split(separator: "\n").filter { line in
            line.contains(held.id) && refusals.contains { line.contains("reason=\($0)") }
        }
        let stale = try ledger.lease(id: held.id)
        let delayed = times.records.filter { times.excess(of: $0) > Self.pollingJitter }
        print(String(format: "stopped worker: %d rounds in %.1f s, median round %.3f s; delayed rounds (> %.0f s over the median) "
                     + "%@, %.2f s in all; Σ max(0, duration − median) %.2f s; stopped at v%d, resumed %.1f s later at v%d; "
                     + "its lease ended %@; %d units committed after resuming",
                     recorded, times.total, times.median, Self.pollingJitter,
                     delayed.map { String(format: "%d: +%.2f", $0.round, times.excess(of: $0)) }.joined(separator: ", "),
                     delayed.map { times.excess(of: $0) }.reduce(0, +), times.totalExcess, versionAtStop,
                     resumedAt.timeIntervalSince(stoppedAt), atResume?.version ?? -1,
                     stale.map { "\($0.state)" } ?? "?", afterResume.count))
        for line in dropped.prefix(3) { print("  resumed worker: \(line)") }
        XCTAssertLessThanOrEqual(delayed.map { times.excess(of: $0) }.reduce(0, +), 20)
        XCTAssertTrue(stale?.state == .expired || stale?.state == .released, "the stale lease ended while the worker was stopped")
        XCTAssertFalse(dropped.isEmpty, "the resumed worker's stale lease was refused: \(resumedLog.prefix(3000))")
        XCTAssertGreaterThanOrEqual(afterResume.count, 1, "the resumed worker leased again and committed")
    }

    /// A worker killed while holding a lease and started again on the same data directory
    /// gives that lease back first: its unit (and the round) need not wait for the lease to
    /// expire, although no other worker is there to take a backup lease.
    func testAWorkerRestartedOnItsDataDirectoryGivesItsOldLeaseBack() async throws {
        let lease = 30.0  // far longer than the restart: only the give-back can free the unit in time
        let job = try writeJob(rounds: 30, checkpointEvery: 1000, leaseSeconds: lease, deadlineSeconds: Self.roundDeadline)
        let (_, port) = try await startCoordinator(job)
        let worker = try startWorker(0, port: port, environment: Self.debugLog)
        _ = try await waitFor(port, timeout: 120) { $0.version >= 2 }
        let ledger = try Ledger(path: ledgerPath)
        let (held, _) = try await stopHoldingALease(worker, index: 0, ledger: ledger)
        let versionAtKill = await status(port)?.version ?? -1
        kill(worker.processIdentifier, SIGKILL)
        worker.waitUntilExit()
        let restarted = Date()
        _ = try startWorker(0, port: port)
        _ = try await waitFor(port, timeout: 60) { $0.version > versionAtKill }
        let freedAfter = Date().timeIntervalSince(restarted)
        print(String(format: "restarted worker: its old lease %@, the round closed %.2f s after the restart (lease %.0f s)",
                     (try ledger.lease(id: held.id)?.state).map { "\($0)" } ?? "?", freedAfter, lease))
        XCTAssertEqual(try ledger.lease(id: held.id)?.state, .released, "the restarted worker gave its old lease back")
        XCTAssertLessThan(freedAfter, 10, "the round did not wait for the old lease to expire")
    }

    /// Rounds for the 90 s drill: more than can close in it (two workers ran 2.9–3.6
    /// rounds/s while the third was stopped), so the job is still running when the worker
    /// resumes; the test stops the coordinator once the resumed worker committed.
    static let stopDrillRounds = 5000
    /// How far over the median a round may run from polling alone (measured at most 0.62 s
    /// undisturbed, round 1 aside); rounds beyond it count as delayed.
    static let pollingJitter = 1.0

    // MARK: Helpers

    /// Worker `i`'s id on the coordinator, from the identity file it wrote on registering.
    func workerID(_ i: Int) throws -> String {
        let data = try XCTUnwrap(FileManager.default.contents(atPath: "\(dir)/worker-\(i)/identity.json"))
        let object = try JSONSerialization.jsonObject(with: data) as? [String: Any]
        return try XCTUnwrap(object?["workerId"] as? String)
    }

    func workerLog(_ i: Int) -> String { (try? String(contentsOfFile: "\(dir)/worker-\(i).log", encoding: .utf8)) ?? "" }

    /// SIGSTOPs worker `i` (started with `debugLog`) at a moment it holds a lease it knows
    /// of: right after its log says "lease granted" (a unit of the tiny job is held ~25 ms),
    /// kept only if 300 ms later (requests in flight settled) the ledger still shows that
    /// lease active; otherwise the worker is resumed and watched again. Stopping on the
    /// ledger's word alone could catch the worker before it read its grant: its lease would
    /// then be no stale lease of its own. Returns the lease and when the worker stopped.
    func stopHoldingALease(_ worker: Process, index i: Int, ledger: Ledger) async throws -> (LeaseRecord, Date) {
        let path = "\(dir)/worker-\(i).log"
        var offset = UInt64((try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0)
        let giveUp = Date().addingTimeInterval(30)
        while Date() < giveUp {
            guard let granted = lastGrant(in: path, after: &offset) else {
                try await Task.sleep(for: .milliseconds(2))
                continue
            }
            kill(worker.processIdentifier, SIGSTOP)
            let stoppedAt = Date()
            try await Task.sleep(for: .milliseconds(300))
            if let lease = try ledger.lease(id: granted), lease.state == .active { return (lease, stoppedAt) }
            kill(worker.processIdentifier, SIGCONT)
        }
        XCTFail("the worker was never stopped holding a lease")
        throw XCTSkip("no lease")
    }

    /// Worker logs at debug level: each lease granted (and renewed) is a line.
    static let debugLog = ["TRIBUTARY_LOG_LEVEL": "debug"]

    /// The id of the last lease the log at `path` says was granted in its complete lines
    /// after `offset`, which moves past them.
    func lastGrant(in path: String, after offset: inout UInt64) -> String? {
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        guard (try? handle.seek(toOffset: offset)) != nil, let data = try? handle.readToEnd(),
              let end = data.lastIndex(of: UInt8(ascii: "\n")) else { return nil }
        offset += UInt64(data.distance(from: data.startIndex, to: end) + 1)
        let lines = String(decoding: data[data.startIndex..<end], as: UTF8.self).split(separator: "\n")
        guard let line = lines.last(where: { $0.hasSuffix("lease granted") }), let key = line.range(of: " lease=") else { return nil }
        return String(line[key.upperBound...].prefix { $0 != " " })
    }

    /// Round durations from the ledger, and their excess over the run's median.
    struct RoundTimes {
        let records: [RoundRecord]
        let median: Double

        init(_ ledger: Ledger) throws {
            records = try ledger.rounds(limit: 10_000).sorted { $0.round < $1.round }
            let sorted = records.map(Self.duration).sorted()
            median = sorted.isEmpty ? 0 : sorted[sorted.count / 2]
        }

        static func duration(_ r: RoundRecord) -> Double { r.closedAt.timeIntervalSince(r.openedAt) }
        func excess(of r: RoundRecord) -> Double { Self.duration(r) - median }
        var totalExcess: Double { records.map { max(0, excess(of: $0)) }.reduce(0, +) }
        var largestExcess: Double { records.map { excess(of: $0) }.max() ?? 0 }
        var total: Double {
            guard let first = records.first, let last = records.last else { return 0 }
            return last.closedAt.timeIntervalSince(first.openedAt)
        }
    }
}
