import Foundation
import XCTest
import TributaryLedger

/// Workers, units, leases, updates, rounds and checkpoints on an in-memory ledger.
final class LedgerOperationTests: XCTestCase {
    func testWorkersAreFoundByIdAndTokenHashAndDuplicatesRefused() throws {
        let ledger = try Ledger.inMemory()
        try ledger.insertWorker(makeWorker("b", createdAt: 200))
        try ledger.insertWorker(makeWorker("a", createdAt: 100))
        try ledger.insertWorker(makeWorker("c", createdAt: 300))

        XCTAssertEqual(try ledger.worker(tokenHash: "sha256:a-hash"), makeWorker("a", createdAt: 100))
        XCTAssertEqual(try ledger.worker(id: "c"), makeWorker("c", createdAt: 300))
        XCTAssertNil(try ledger.worker(id: "zz"))
        XCTAssertNil(try ledger.worker(tokenHash: "sha256:zz"))
        XCTAssertEqual(try ledger.workers().map(\.id), ["a", "b", "c"])

        var sameId = makeWorker("a", createdAt: 400)
        sameId.tokenHash = "sha256:other"
        assertLedgerError(try ledger.insertWorker(sameId), .duplicate(kind: "worker id", key: "a"))
        var sameToken = makeWorker("d", createdAt: 400)
        sameToken.tokenHash = "sha256:b-hash"
        assertLedgerError(try ledger.insertWorker(sameToken),
                          .duplicate(kind: "worker token hash", key: "registering d"))
        XCTAssertEqual(try ledger.workers().count, 3)

        try ledger.noteWorkerSeen(id: "a", at: at(5_000))
        try ledger.noteWorkerSeen(id: "a", at: at(4_000))  // late, out of order: ignored
        XCTAssertEqual(try ledger.worker(id: "a")?.lastSeenAt, at(5_000))
        assertLedgerError(try ledger.noteWorkerSeen(id: "zz", at: at(1)), .unknownWorker(id: "zz"))
    }

    func testFiftyThousandUnitsInsertInOneFastTransaction() throws {
        let ledger = try Ledger.inMemory()
        var units = makeUnits(epoch: 1, count: 50_000)
        units[10].state = .leased
        units[20].state = .done
        units[30].state = .done
        let clock = ContinuousClock()
        let elapsed = try clock.measure { try ledger.insertUnits(units) }
        XCTAssertLessThan(elapsed, .seconds(2), "inserting 50k units took \(elapsed)")

        XCTAssertEqual(try ledger.unitCounts(epoch: 1), [.pending: 49_997, .leased: 1, .done: 2])
        XCTAssertEqual(try ledger.unitCounts(epoch: 0), [.pending: 0, .leased: 0, .done: 0])
        let all = try ledger.units(epoch: 1, state: nil)
        XCTAssertEqual(all.count, 50_000)
        XCTAssertEqual(all.map(\.index), Array(0..<50_000))
        XCTAssertEqual(all[49_999], UnitRecord(epoch: 1, index: 49_999, sampleStart: 49_999 * 64, sampleCount: 64))
        XCTAssertEqual(try ledger.units(epoch: 1, state: .done).map(\.index), [20, 30])

        // One bad row (a repeat of index 7) rolls back the whole batch.
        var batch = makeUnits(epoch: 2, count: 100)
        batch.append(UnitRecord(epoch: 2, index: 7, sampleStart: 0, sampleCount: 1))
        assertLedgerError(try ledger.insertUnits(batch), .duplicate(kind: "unit", key: "epoch 2 index 7"))
        XCTAssertEqual(try ledger.unitCounts(epoch: 2)[.pending], 0)
        assertLedgerError(try ledger.insertUnits([UnitRecord(epoch: 2, index: -1, sampleStart: 0, sampleCount: 1)]),
                          .invalidValue("unit index is -1; it must be ≥ 0"))
    }

    func testLeaseMarksUnitLeasedAndExpiryOrReleaseRequeuesIt() throws {
        let ledger = try Ledger.inMemory()
        try ledger.insertWorker(makeWorker("w1"))
        try ledger.insertUnits(makeUnits(epoch: 0, count: 4))

        let lease = makeLease("L1", unit: 1, worker: "w1")
        try ledger.insertLease(lease)
        XCTAssertEqual(try ledger.lease(id: "L1"), lease)
        XCTAssertEqual(try ledger.unit(epoch: 0, index: 1)?.state, .leased)
        XCTAssertEqual(try ledger.unitCounts(epoch: 0), [.pending: 3, .leased: 1, .done: 0])

        // Renewal: still active, later deadline.
        try ledger.setLeaseState(id: "L1", .active, deadline: at(120_000))
        XCTAssertEqual(try ledger.lease(id: "L1")?.deadline, at(120_000))
        XCTAssertEqual(try ledger.activeLeases().map(\.id), ["L1"])

        try ledger.setLeaseState(id: "L1", .expired)
        XCTAssertEqual(try ledger.lease(id: "L1")?.state, .expired)
        XCTAssertEqual(try ledger.unit(epoch: 0, index: 1)?.state, .pending)
        XCTAssertEqual(try ledger.activeLeases(), [])
        // An ended lease cannot come back; repeating its state is a no-op.
        try ledger.setLeaseState(id: "L1", .expired)
        assertLedgerError(try ledger.setLeaseState(id: "L1", .active), .leaseNotActive(id: "L1", state: .expired))

        try ledger.insertLease(makeLease("L2", unit: 1, worker: "w1", issuedAt: 70_000))
        XCTAssertEqual(try ledger.unit(epoch: 0, index: 1)?.state, .leased)
        try ledger.setLeaseState(id: "L2", .released)
        XCTAssertEqual(try ledger.unit(epoch: 0, index: 1)?.state, .pending)
        XCTAssertEqual(try ledger.leases(epoch: 0, unitIndex: 1).map(\.id), ["L1", "L2"])

        // Two overlapping leases (a speculative re-issue): the unit stays leased while one is active.
        try ledger.insertLease(makeLease("L3", unit: 2, worker: "w1"))
        try ledger.insertLease(makeLease("L4", unit: 2, worker: "w1"))
        try ledger.setLeaseState(id: "L3", .expired)
        XCTAssertEqual(try ledger.unit(epoch: 0, index: 2)?.state, .leased)
        try ledger.setLeaseState(id: "L4", .expired)
        XCTAssertEqual(try ledger.unit(epoch: 0, index: 2)?.state, .pending)

        assertLedgerError(try ledger.insertLease(makeLease("L1", unit: 3, worker: "w1")),
                          .duplicate(kind: "lease", key: "L1"))
        assertLedgerError(try ledger.insertLease(makeLease("L9", unit: 99, worker: "w1")),
                          .unknownUnit(epoch: 0, index: 99))
        assertLedgerError(try ledger.insertLease(makeLease("L9", unit: 3, worker: "ghost")),
                          .unknownWorker(id: "ghost"))
        assertLedgerError(try ledger.setLeaseState(id: "nope", .expired), .unknownLease(id: "nope"))
        XCTAssertEqual(try ledger.unitCounts(epoch: 0), [.pending: 4, .leased: 0, .done: 0])
    }

    func testAcceptedUpdateCommitsAndCreditsExactlyOnce() throws {
        let ledger = try Ledger.inMemory()
        try ledger.insertWorker(makeWorker("w1"))
        try ledger.insertWorker(makeWorker("w2"))
        try ledger.insertUnits(makeUnits(epoch: 0, count: 3))
        let lease = makeLease("L1", unit: 0, worker: "w1")
        try ledger.insertLease(lease)
        // A second worker got the same unit after a (missed) deadline.
        let rival = makeLease("L2", unit: 0, worker: "w2", issuedAt: 70_000)
        try ledger.insertLease(rival)

        try ledger.recordAcceptedUpdate(makeUpdate(lease: lease, round: 1, samples: 64, flops: 1.25e9))
        XCTAssertEqual(try ledger.lease(id: "L1")?.state, .committed)
        XCTAssertEqual(try ledger.unit(epoch: 0, index: 0)?.state, .done)
        let credited = try XCTUnwrap(ledger.worker(id: "w1"))
        XCTAssertEqual(credited.samples, 64)
        XCTAssertEqual(credited.flops, 1.25e9)
        XCTAssertEqual(credited.acceptedUpdates, 1)
        XCTAssertEqual(credited.rejectedUpdates, 0)

        // The rival's update for the same (epoch, unit): refused, nothing changes.
        assertLedgerError(try ledger.recordAcceptedUpdate(makeUpdate(lease: rival, round: 1, samples: 64, flops: 9e9)),
                          .unitAlreadyDone(epoch: 0, index: 0))
        // Replaying the first update is refused the same way.
        assertLedgerError(try ledger.recordAcceptedUpdate(makeUpdate(lease: lease, round: 2, samples: 64, flops: 1.25e9)),
                          .unitAlreadyDone(epoch: 0, index: 0))
        XCTAssertEqual(try ledger.worker(id: "w1"), credited)
        XCTAssertEqual(try ledger.worker(id: "w2")?.acceptedUpdates, 0)
        XCTAssertEqual(try ledger.worker(id: "w2")?.samples, 0)
        XCTAssertEqual(try ledger.lease(id: "L2")?.state, .active)
        XCTAssertEqual(try ledger.updates(round: 1).map(\.leaseId), ["L1"])
        XCTAssertEqual(try ledger.updates(round: 2), [])
        XCTAssertEqual(try ledger.update(epoch: 0, unitIndex: 0)?.flops, 1.25e9)
        // A done unit cannot be leased again.
        assertLedgerError(try ledger.insertLease(makeLease("L3", unit: 0, worker: "w2")),
                          .unitAlreadyDone(epoch: 0, index: 0))

        // A second unit adds to the credit exactly.
        let next = makeLease("L4", unit: 1, worker: "w1")
        try ledger.insertLease(next)
        try ledger.recordAcceptedUpdate(makeUpdate(lease: next, round: 1, samples: 32, flops: 0.75e9))
        let total = try XCTUnwrap(ledger.worker(id: "w1"))
        XCTAssertEqual(total.samples, 96)
        XCTAssertEqual(total.flops, 2.0e9)
        XCTAssertEqual(total.acceptedUpdates, 2)
        XCTAssertEqual(try ledger.unitCounts(epoch: 0), [.pending: 1, .leased: 0, .done: 2])
    }

    func testAcceptedUpdateRefusesMismatchesAndBadNumbersWithoutChanges() throws {
        let ledger = try Ledger.inMemory()
        try ledger.insertWorker(makeWorker("w1"))
        try ledger.insertWorker(makeWorker("w2"))
        try ledger.insertUnits(makeUnits(epoch: 0, count: 3))
        let lease = makeLease("L1", unit: 0, worker: "w1")
        try ledger.insertLease(lease)

        var wrongWorker = makeUpdate(lease: lease, round: 1, samples: 64, flops: 1e9)
        wrongWorker.workerId = "w2"
        assertLedgerError(try ledger.recordAcceptedUpdate(wrongWorker),
                          .leaseMismatch(leaseId: "L1", detail: "it was issued to worker 'w1', not 'w2'"))
        var wrongUnit = makeUpdate(lease: lease, round: 1, samples: 64, flops: 1e9)
        wrongUnit.unitIndex = 2
        XCTAssertThrowsError(try ledger.recordAcceptedUpdate(wrongUnit)) { error in
            guard case .leaseMismatch("L1", _)? = error as? LedgerError else { return XCTFail("\(error)") }
        }
        var unknownLease = makeUpdate(lease: lease, round: 1, samples: 64, flops: 1e9)
        unknownLease.leaseId = "nope"
        assertLedgerError(try ledger.recordAcceptedUpdate(unknownLease), .unknownLease(id: "nope"))
        var notFinite = makeUpdate(lease: lease, round: 1, samples: 64, flops: 1e9)
        notFinite.loss = .nan
        assertLedgerError(try ledger.recordAcceptedUpdate(notFinite), .invalidValue("update loss is nan; it must be finite"))

        XCTAssertEqual(try ledger.unitCounts(epoch: 0), [.pending: 2, .leased: 1, .done: 0])
        XCTAssertEqual(try ledger.lease(id: "L1")?.state, .active)
        XCTAssertEqual(try ledger.workers().map(\.acceptedUpdates), [0, 0])
        XCTAssertEqual(try ledger.updates(round: 1), [])
    }

    func testRejectedUpdatesAreCountedPerReasonAndPerWorker() throws {
        let ledger = try Ledger.inMemory()
        try ledger.insertWorker(makeWorker("w1"))
        try ledger.insertWorker(makeWorker("w2"))
        try ledger.recordRejectedUpdate(workerId: "w1", reason: "stale", at: at(1))
        try ledger.recordRejectedUpdate(workerId: "w1", reason: "stale", at: at(2))
        try ledger.recordRejectedUpdate(workerId: "w1", reason: "norm", at: at(3))
        try ledger.recordRejectedUpdate(workerId: "w2", reason: "stale", at: at(4))
        try ledger.recordRejectedUpdate(workerId: nil, reason: "bad-token", at: at(5))
        try ledger.recordRejectedUpdate(workerId: "unregistered", reason: "bad-token", at: at(6))

        XCTAssertEqual(try ledger.rejectionCounts(), ["stale": 3, "norm": 1, "bad-token": 2])
        XCTAssertEqual(try ledger.worker(id: "w1")?.rejectedUpdates, 3)
        XCTAssertEqual(try ledger.worker(id: "w2")?.rejectedUpdates, 1)
        XCTAssertEqual(try ledger.worker(id: "w1")?.acceptedUpdates, 0)
    }

    func testRoundsAndCheckpoints() throws {
        let ledger = try Ledger.inMemory()
        for r in 1...6 {
            try ledger.recordRound(RoundRecord(round: r, version: r, openedAt: at(Int64(r) * 1_000),
                                               closedAt: at(Int64(r) * 1_000 + 900), updates: r, samples: 64 * r,
                                               meanLoss: 3.0 - Double(r) * 0.25))
        }
        XCTAssertEqual(try ledger.rounds(limit: 3).map(\.round), [4, 5, 6])
        XCTAssertEqual(try ledger.rounds(limit: 100).map(\.round), [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(try ledger.rounds(limit: 0), [])
        XCTAssertEqual(try ledger.lastRound(),
                       RoundRecord(round: 6, version: 6, openedAt: at(6_000), closedAt: at(6_900), updates: 6,
                                   samples: 384, meanLoss: 1.5))
        assertLedgerError(try ledger.recordRound(RoundRecord(round: 6, version: 7, openedAt: at(0), closedAt: at(0),
                                                             updates: 0, samples: 0, meanLoss: 0)),
                          .duplicate(kind: "round", key: "6"))

        try ledger.recordCheckpoint(CheckpointRecord(version: 2, round: 2, path: "c/2", createdAt: at(2_950)))
        try ledger.recordCheckpoint(CheckpointRecord(version: 4, round: 4, path: "c/4", createdAt: at(4_950)))
        XCTAssertEqual(try ledger.latestCheckpoint(),
                       CheckpointRecord(version: 4, round: 4, path: "c/4", createdAt: at(4_950)))
    }

    func testErrorDescriptionsAreSingleLines() {
        let errors: [LedgerError] = [
            .notALedger(path: "/d/ledger.sqlite", reason: "not a SQLite database"),
            .newerSchema(path: "/d/ledger.sqlite", found: 3, supported: 1),
            .cannotOpen(path: "/d/ledger.sqlite", message: "unable to open database file"),
            .duplicate(kind: "worker id", key: "w1"),
            .unknownWorker(id: "w1"), .unknownUnit(epoch: 1, index: 2), .unknownLease(id: "L"),
            .unitAlreadyDone(epoch: 1, index: 2), .leaseMismatch(leaseId: "L", detail: "x"),
            .leaseNotActive(id: "L", state: .committed), .invalidValue("x"),
            .corruptRow(table: "unit", detail: "x"), .database(operation: "insert units", code: 13, message: "database or disk is full"),
        ]
        for error in errors {
            XCTAssertFalse(error.description.isEmpty)
            XCTAssertFalse(error.description.contains("\n"), error.description)
        }
        XCTAssertEqual(LedgerError.unitAlreadyDone(epoch: 1, index: 2).description,
                       "work unit 2 of epoch 1 is already done; the update was not recorded")
        XCTAssertEqual(LedgerError.newerSchema(path: "/d/l", found: 3, supported: 1).description,
                       "ledger /d/l has schema version 3 but this build supports up to 1; upgrade tributary to open it")
    }
}
