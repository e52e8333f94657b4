import Foundation
import XCTest
import TributaryLedger

/// Crash recovery: roll the ledger back to the round of the checkpoint the coordinator restarts from,
/// on every store.
final class LedgerRecoveryTests: LedgerStoreTestCase {
    /// Rounds 1...5 with three updates each, over two workers, plus an open round 6 and two active
    /// leases at the time of the crash. Returns every accepted update.
    private func buildScenario(_ ledger: any LedgerStore) async throws -> [UpdateRecord] {
        var updates: [UpdateRecord] = []
        try await ledger.insertWorker(makeWorker("alice", createdAt: 1))
        try await ledger.insertWorker(makeWorker("bob", createdAt: 2))
        try await ledger.insertUnits(makeUnits(epoch: 0, count: 24))
        var unit = 0
        for round in 1...6 {
            // Round 6 was still open at the crash: one update accepted, not closed.
            let count = round == 6 ? 1 : 3
            for _ in 0..<count {
                let worker = unit % 3 == 0 ? "bob" : "alice"
                let lease = makeLease("L\(unit)", unit: unit, worker: worker, baseVersion: round - 1,
                                      issuedAt: Int64(round) * 10_000)
                try await ledger.insertLease(lease)
                // Integral flops so the sums are exact in Double.
                let update = makeUpdate(lease: lease, round: round, samples: 10 + unit, flops: Double(unit + 1) * 1e9,
                                        loss: 3.0 - Double(round) * 0.1, acceptedAt: Int64(round) * 10_000 + 500)
                try await ledger.recordAcceptedUpdate(update)
                updates.append(update)
                unit += 1
            }
            if round <= 5 {
                let mine = updates.filter { $0.round == round }
                try await ledger.recordRound(RoundRecord(
                    round: round, version: round, openedAt: at(Int64(round) * 10_000),
                    closedAt: at(Int64(round) * 10_000 + 9_000), updates: mine.count,
                    samples: mine.reduce(0) { $0 + $1.samples },
                    meanLoss: mine.reduce(0) { $0 + $1.loss } / Double(mine.count)))
            }
            if round == 3 || round == 5 {
                try await ledger.recordCheckpoint(CheckpointRecord(version: round, round: round, path: "ckpt/v\(round)",
                                                             createdAt: at(Int64(round) * 10_000 + 9_500)))
            }
        }
        // Units 16 and 17 leased, in flight at the crash; unit 18 had a lease expire normally.
        try await ledger.insertLease(makeLease("A16", unit: 16, worker: "alice", baseVersion: 5, issuedAt: 60_000))
        try await ledger.insertLease(makeLease("A17", unit: 17, worker: "bob", baseVersion: 5, issuedAt: 60_000))
        try await ledger.insertLease(makeLease("E18", unit: 18, worker: "bob", baseVersion: 5, issuedAt: 60_000))
        try await ledger.setLeaseState(id: "E18", .expired, deadline: nil)
        return updates
    }

    func testRecoveryDropsLaterRoundsRequeuesUnitsAndTakesBackCredit() async {
        await forEachStore { fixture in
            // Built through an instance that is gone before the restart.
            let crashed = try await fixture.openStore()
            let accepted = try await buildScenario(crashed)
            await crashed.close()
            XCTAssertEqual(accepted.count, 16)

            // Restart: the coordinator loads the checkpoint of round 3 (say v5's file was unreadable).
            let ledger = try await fixture.openStore()
            await expectEqual(try await ledger.unitCounts(epoch: 0), [.pending: 6, .leased: 2, .done: 16])
            let before = Dictionary(uniqueKeysWithValues: try await ledger.workers().map { ($0.id, $0) })

            let report = try await ledger.recoverAfterRestart(checkpointedRound: 3)
            // Updates of rounds 4, 5 and the open round 6: units 9...15.
            let dropped = accepted.filter { $0.round > 3 }
            XCTAssertEqual(dropped.map(\.unitIndex), Array(9...15))
            XCTAssertEqual(report, RecoveryReport(droppedUpdates: 7, requeuedUnits: 9, expiredLeases: 2,
                                                  droppedRounds: 2, droppedCheckpoints: 1))

            await expectEqual(try await ledger.updates(round: 3).count, 3)
            await expectEqual(try await ledger.updates(round: 4), [])
            await expectEqual(try await ledger.updates(round: 5), [])
            await expectEqual(try await ledger.updates(round: 6), [])
            await expectEqual(try await ledger.units(epoch: 0, state: .done).map(\.index), Array(0...8))
            await expectEqual(try await ledger.unitCounts(epoch: 0), [.pending: 15, .leased: 0, .done: 9])
            await expectEqual(try await ledger.lastRound()?.round, 3)
            await expectEqual(try await ledger.rounds(limit: 10).map(\.round), [1, 2, 3])
            await expectEqual(try await ledger.latestCheckpoint()?.round, 3)
            await expectEqual(try await ledger.lease(id: "A16")?.state, .expired)
            await expectEqual(try await ledger.lease(id: "A17")?.state, .expired)
            await expectEqual(try await ledger.activeLeases(), [])
            // Leases of kept updates stay committed; those of dropped updates no longer claim acceptance.
            await expectEqual(try await ledger.lease(id: "L8")?.state, .committed)
            var droppedLeaseStates: [LeaseState?] = []
            for unit in 9...15 { droppedLeaseStates.append(try await ledger.lease(id: "L\(unit)")?.state) }
            XCTAssertEqual(droppedLeaseStates, Array(repeating: .expired, count: 7))

            // Credit: alice had units 9...15 except 9, 12, 15 (bob's); bob had 9, 12, 15.
            // alice: samples (10+10)+(10+11)+(10+13)+(10+14) = 88, flops (11+12+14+15)e9 = 52e9.
            // bob:   samples (10+9)+(10+12)+(10+15) = 66,         flops (10+13+16)e9    = 39e9.
            let after = Dictionary(uniqueKeysWithValues: try await ledger.workers().map { ($0.id, $0) })
            for id in ["alice", "bob"] {
                let mine = dropped.filter { $0.workerId == id }
                let old = try XCTUnwrap(before[id]), new = try XCTUnwrap(after[id])
                XCTAssertEqual(old.samples - new.samples, mine.reduce(0) { $0 + $1.samples }, id)
                XCTAssertEqual(old.flops - new.flops, mine.reduce(0) { $0 + $1.flops }, id)
                XCTAssertEqual(old.acceptedUpdates - new.acceptedUpdates, mine.count, id)
                XCTAssertEqual(new.rejectedUpdates, old.rejectedUpdates, id)
        }
        XCTAssertEqual(before["alice"].map { [$0.samples, $0.acceptedUpdates] }, [175, 10])
        XCTAssertEqual(before["bob"].map { [$0.samples, $0.acceptedUpdates] }, [105, 6])
        // Left: alice units 1, 2, 4, 5, 7, 8; bob units 0, 3, 6.
        await expectEqual(try await ledger.worker(id: "alice").map { [$0.samples, $0.acceptedUpdates] }, [87, 6])
        await expectEqual(try await ledger.worker(id: "alice")?.flops, 33e9)
        await expectEqual(try await ledger.worker(id: "bob").map { [$0.samples, $0.acceptedUpdates] }, [10 * 3 + 9, 3])
        await expectEqual(try await ledger.worker(id: "bob")?.flops, 12e9)

        // Running it again (a second crash during restart) changes nothing.
        await expectEqual(try await ledger.recoverAfterRestart(checkpointedRound: 3),
                       RecoveryReport(droppedUpdates: 0, requeuedUnits: 0, expiredLeases: 0, droppedRounds: 0))
        await expectEqual(try await ledger.unitCounts(epoch: 0), [.pending: 15, .leased: 0, .done: 9])

        // The requeued work can be leased and accepted again, and the rollback survives a reopen.
        let redo = makeLease("R9", unit: 9, worker: "bob", baseVersion: 3, issuedAt: 90_000)
        try await ledger.insertLease(redo)
        try await ledger.recordAcceptedUpdate(makeUpdate(lease: redo, round: 4, samples: 19, flops: 10e9))
        await expectEqual(try await fixture.openStore().worker(id: "bob")?.samples, 39 + 19)
        await expectEqual(try await fixture.openStore().unitCounts(epoch: 0), [.pending: 14, .leased: 0, .done: 10])
        }
    }

    func testRecoveryFromNoCheckpointUndoesEverything() async {
        await forEachStore { fixture in
            let ledger = try await fixture.openStore()
            _ = try await buildScenario(ledger)
            let report = try await ledger.recoverAfterRestart(checkpointedRound: 0)
            XCTAssertEqual(report, RecoveryReport(droppedUpdates: 16, requeuedUnits: 18, expiredLeases: 2,
                                                  droppedRounds: 5, droppedCheckpoints: 2))
            await expectEqual(try await ledger.unitCounts(epoch: 0), [.pending: 24, .leased: 0, .done: 0])
            for worker in try await ledger.workers() {
                XCTAssertEqual([worker.samples, worker.acceptedUpdates], [0, 0], worker.id)
                XCTAssertEqual(worker.flops, 0, worker.id)
        }
        await expectNil(try await ledger.lastRound())
        await expectNil(try await ledger.latestCheckpoint())
        }
    }
}
