import Foundation
import TributaryCheckpoint
import TributaryLedger
import TributaryProtocol
import XCTest

/// Issue 14's drill with real processes: the coordinator is killed with SIGKILL ten times
/// while a worker trains, and restarted on the same port each time. Nothing the worker was
/// told was accepted may be lost, no credit may go down, no round may be applied twice, and
/// the final model must equal, bit for bit, an undisturbed run's. One worker keeps the
/// round composition (which units, in which order) the same in both runs, so the two
/// models must agree exactly.
final class CoordinatorKillDrillTests: ProcessTestCase {
    static let rounds = 150

    func testTenKillsOfTheCoordinatorLoseNothingAcknowledgedAndEndBitwiseEqualToAnUndisturbedRun() async throws {
        let job = try writeJob(rounds: Self.rounds, checkpointEvery: 4, leaseSeconds: 3)

        // The undisturbed run first.
        var (coordinator, port) = try await startCoordinator(job)
        _ = try startWorker(0, port: port)
        _ = try await waitFor(port, timeout: 180) { $0.complete }
        kill(coordinator.processIdentifier, SIGTERM)
        coordinator.waitUntilExit()
        let reference = try finalWeights()
        try stopChildrenAndClear()

        // The same job, its coordinator killed ten times.
        (coordinator, port) = try await startCoordinator(job)
        _ = try startWorker(0, port: port)
        var kills = 0, lastVersion = 0
        var creditDrops: [String] = []
        var roundsLost = 0
        let started = Date()
        while kills < 10 {
            XCTAssertLessThan(Date().timeIntervalSince(started), 240, "the drill takes too long")
            let before = try await waitFor(port, timeout: 120) { $0.version >= lastVersion + 5 || $0.complete }
            guard !before.complete else { break }
            let creditBefore = await credit(port)
            // Somewhere inside a unit's life: between 0 and 400 ms after the status read.
            try await Task.sleep(for: .milliseconds(UInt64(kills * 37 % 400)))
            let versionAtKill = await status(port)?.version ?? before.version
            kill(coordinator.processIdentifier, SIGKILL)
            coordinator.waitUntilExit()
            kills += 1
            (coordinator, port) = try await startCoordinator(job, listen: "127.0.0.1:\(port)")
            let resumed = try await waitFor(port, timeout: 60) { _ in true }
            if resumed.version < versionAtKill { roundsLost += versionAtKill - resumed.version }
            let creditAfter = await credit(port)
            if creditAfter < creditBefore { creditDrops.append("kill \(kills): \(creditBefore) → \(creditAfter) samples") }
            lastVersion = resumed.version
        }
        XCTAssertEqual(kills, 10, "the job must last through ten kills")
        XCTAssertEqual(roundsLost, 0, "closed rounds redone after a restart")
        XCTAssertEqual(creditDrops, [], "credit went down")
        let final = try await waitFor(port, timeout: 180) { $0.complete }
        XCTAssertEqual(final.version, Self.rounds)
        kill(coordinator.processIdentifier, SIGTERM)
        coordinator.waitUntilExit()

        // Every unit the worker heard "accepted" for is in the ledger, once.
        try assertLedgerConsistent(rounds: Self.rounds, unitsPerRound: 3)
        let ledger = try Ledger(path: "\(dir)/coordinator/ledger.sqlite")
        let acknowledged = try acknowledgedUnits()
        XCTAssertEqual(Set(acknowledged.map { "\($0.0)/\($0.1)" }).count, acknowledged.count,
                       "a unit acknowledged twice was done twice")
        var lost = 0
        for (epoch, unit) in acknowledged where try ledger.update(epoch: epoch, unitIndex: unit) == nil { lost += 1 }
        XCTAssertEqual(lost, 0, "acknowledged updates lost")
        let total = try (1...Self.rounds).reduce(0) { $0 + (try ledger.updates(round: $1).count) }
        XCTAssertEqual(total, Self.rounds * 3)

        // The model: bit for bit the undisturbed run's.
        let drilled = try finalWeights()
        XCTAssertEqual(drilled.keys.sorted(), reference.keys.sorted())
        var differing = 0
        for (name, bytes) in reference where drilled[name] != bytes { differing += 1 }
        XCTAssertEqual(differing, 0, "tensors that differ from the undisturbed run's")
        let log = (0..<children.count).compactMap { try? String(contentsOfFile: "\(dir)/coordinator-\($0).log", encoding: .utf8) }
            .joined()
        let replays = log.split(separator: "\n").filter { $0.contains("resumed") }.count
        print("kill drill: 10 kills, \(acknowledged.count) acknowledged units, 0 lost, \(replays) restarts replayed the log")
    }

    /// The worker's credit in samples, from `/v1/workers`.
    func credit(_ port: Int) async -> Int {
        guard let reply = try? await RawClient(base: "http://127.0.0.1:\(port)").request(.GET, Routes.workers),
              let list = try? reply.json(WorkerList.self) else { return 0 }
        return list.workers.reduce(0) { $0 + $1.samples }
    }

    /// (epoch, unit) of every unit the worker printed as committed.
    func acknowledgedUnits() throws -> [(Int, Int)] {
        let text = try String(contentsOfFile: "\(dir)/worker-0.log", encoding: .utf8)
        return text.split(separator: "\n").compactMap { line -> (Int, Int)? in
            // "unit 12 (epoch 0, v4): loss …"
            guard line.hasPrefix("unit "), let open = line.firstIndex(of: "("), let comma = line.firstIndex(of: ",") else { return nil }
            guard let unit = Int(line[line.index(line.startIndex, offsetBy: 5)..<open].trimmingCharacters(in: .whitespaces)),
                  let epoch = Int(line[line.index(open, offsetBy: 7)..<comma]) else { return nil }
            return (epoch, unit)
        }
    }

    /// The final checkpoint's tensors, as raw bytes by name.
    func finalWeights() throws -> [String: [UInt8]] {
        let path = "\(dir)/coordinator/checkpoints/\(CheckpointStore.stepDirectoryName(Self.rounds))/model.safetensors"
        let file = try SafeTensorsFile.read(path: path)
        return Dictionary(uniqueKeysWithValues: file.entries.map { ($0.name, $0.bytes) })
    }

    func stopChildrenAndClear() throws {
        for c in children where c.isRunning { kill(c.processIdentifier, SIGKILL) }
        for c in children { c.waitUntilExit() }
        children = []
        for sub in ["coordinator", "worker-0"] { try? FileManager.default.removeItem(atPath: "\(dir)/\(sub)") }
        try? FileManager.default.removeItem(atPath: "\(dir)/worker-0.log")
    }
}
