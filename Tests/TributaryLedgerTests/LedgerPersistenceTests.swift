import Foundation
import XCTest
import TributaryLedger

/// What every store keeps across instances, on every store: reopening, exact dates, an empty
/// start, a second instance seeing committed writes, and a closed store refusing calls.
final class LedgerPersistenceTests: LedgerStoreTestCase {
    func testReopenedLedgerKeepsEverything() async {
        await forEachStore { fixture in
            let lease = makeLease("L1", unit: 2, worker: "w1")
            let update = makeUpdate(lease: lease, round: 1, samples: 64, flops: 3.0e9)
            let round = RoundRecord(round: 1, version: 1, openedAt: at(100), closedAt: at(9_100), updates: 1,
                                    samples: 64, meanLoss: 2.25)
            let checkpoint = CheckpointRecord(version: 1, round: 1, path: "checkpoints/v1.safetensors",
                                              createdAt: at(9_500))
            do {
                let ledger = try await fixture.openStore()
                try await ledger.setMeta("job.name", "shakespeare-char")
                try await ledger.setMeta("model.version", "0")
                try await ledger.setMeta("model.version", "1")  // overwrite, not a second row
                try await ledger.insertWorker(makeWorker("w1", createdAt: 10))
                try await ledger.insertUnits(makeUnits(epoch: 0, count: 10))
                try await ledger.insertLease(lease)
                try await ledger.insertLease(makeLease("L2", unit: 5, worker: "w1"))
                try await ledger.recordAcceptedUpdate(update)
                try await ledger.recordRejectedUpdate(workerId: "w1", reason: "stale", at: at(7_000))
                try await ledger.recordRound(round)
                try await ledger.recordCheckpoint(checkpoint)
                await ledger.close()
            }

            let reopened = try await fixture.openStore()
            await expectEqual(try await reopened.allMeta(), ["job.name": "shakespeare-char", "model.version": "1"])
            await expectEqual(try await reopened.meta("model.version"), "1")
            await expectNil(try await reopened.meta("absent"))
            var expectedWorker = makeWorker("w1", createdAt: 10)
            expectedWorker.samples = 64
            expectedWorker.flops = 3.0e9
            expectedWorker.acceptedUpdates = 1
            expectedWorker.rejectedUpdates = 1
            await expectEqual(try await reopened.workers(), [expectedWorker])
            await expectEqual(try await reopened.unitCounts(epoch: 0), [.pending: 8, .leased: 1, .done: 1])
            await expectEqual(try await reopened.unit(epoch: 0, index: 2),
                              UnitRecord(epoch: 0, index: 2, sampleStart: 128, sampleCount: 64, state: .done))
            var committed = lease
            committed.state = .committed
            await expectEqual(try await reopened.lease(id: "L1"), committed)
            await expectEqual(try await reopened.lease(id: "L2")?.state, .active)
            await expectEqual(try await reopened.updates(round: 1), [update])
            await expectEqual(try await reopened.rejectionCounts(), ["stale": 1])
            await expectEqual(try await reopened.lastRound(), round)
            await expectEqual(try await reopened.latestCheckpoint(), checkpoint)
        }
    }

    func testDatesRoundTripToTheMillisecond() async {
        await forEachStore { fixture in
            let ledger = try await fixture.openStore()
            // 0.1234567 s after the instant: stored as 123 ms.
            let precise = Date(timeIntervalSince1970: 1_700_000_000.1234567)
            var worker = makeWorker("w1")
            worker.createdAt = precise
            try await ledger.insertWorker(worker)
            let stored = try unwrap(await ledger.worker(id: "w1")).createdAt
            XCTAssertEqual(stored.timeIntervalSince1970, 1_700_000_000.123, accuracy: 1e-6)
            XCTAssertEqual(stored.timeIntervalSince(precise), -0.0004567, accuracy: 1e-6)
        }
    }

    func testNewLedgerStartsEmpty() async throws {
        await forEachStore { fixture in
            try await Self.assertEmpty(fixture.openStore())
        }
        try await Self.assertEmpty(Ledger.inMemory())
    }

    private static func assertEmpty(_ ledger: any LedgerStore) async throws {
        await expectEqual(try await ledger.workers(), [])
        await expectEqual(try await ledger.unitCounts(epoch: 0), [.pending: 0, .leased: 0, .done: 0])
        await expectEqual(try await ledger.units(epoch: 0, state: nil), [])
        await expectNil(try await ledger.lastRound())
        await expectEqual(try await ledger.rounds(limit: 10), [])
        await expectNil(try await ledger.latestCheckpoint())
        await expectEqual(try await ledger.rejectionCounts(), [:])
        await expectEqual(try await ledger.allMeta(), [:])
        await expectEqual(try await ledger.activeLeases(), [])
        await expectEqual(try await ledger.recoverAfterRestart(checkpointedRound: 0),
                          RecoveryReport(droppedUpdates: 0, requeuedUnits: 0, expiredLeases: 0, droppedRounds: 0))
    }

    /// Two coordinators' worth of instances on one store (say, an operator's tool beside the
    /// coordinator): each sees what the other committed.
    func testSecondInstanceSeesCommittedWrites() async {
        await forEachStore { fixture in
            let first = try await fixture.openStore()
            try await first.insertWorker(makeWorker("w1"))
            try await first.setMeta("epoch", "3")

            let second = try await fixture.openStore()
            await expectEqual(try await second.worker(id: "w1")?.name, "volunteer w1")
            await expectEqual(try await second.meta("epoch"), "3")
            try await second.insertUnits(makeUnits(epoch: 3, count: 7))
            await expectEqual(try await first.unitCounts(epoch: 3)[.pending], 7)
            // Keys are shared too: the second instance cannot register the same worker again.
            await expectLedgerError(try await second.insertWorker(makeWorker("w1")),
                                    .duplicate(kind: "worker id", key: "w1"))
        }
    }

    func testClosedLedgerRefusesCallsAndClosesTwiceHarmlessly() async {
        await forEachStore { fixture in
            let ledger = try await fixture.openStore()
            try await ledger.setMeta("k", "v")
            await ledger.close()
            await ledger.close()
            await expectThrows(try await ledger.meta("k")) { error in
                XCTAssertNotNil(error as? LedgerError, "\(error)")
            }
            await expectThrows(try await ledger.setMeta("k", "w"))
            // Nothing was lost by closing, and nothing changed after it.
            await expectEqual(try await fixture.openStore().meta("k"), "v")
        }
    }
}
