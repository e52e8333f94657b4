import Foundation
import XCTest
import TributaryLedger

/// Workers, units, leases, updates, rounds and checkpoints, on every store (`forEachStore`).
final class LedgerOperationTests: LedgerStoreTestCase {
    func testWorkersAreFoundByIdAndTokenHashAndDuplicatesRefused() async {
        await forEachStore { fixture in
            let ledger = try await fixture.openStore()
            try await ledger.insertWorker(makeWorker("b", createdAt: 200))
            try await ledger.insertWorker(makeWorker("a", createdAt: 100))
            try await ledger.insertWorker(makeWorker("c", createdAt: 300))

            await expectEqual(try await ledger.worker(tokenHash: "sha256:a-hash"), makeWorker("a", createdAt: 100))
            await expectEqual(try await ledger.worker(id: "c"), makeWorker("c", createdAt: 300))
            await expectNil(try await ledger.worker(id: "zz"))
            await expectNil(try await ledger.worker(tokenHash: "sha256:zz"))
            await expectEqual(try await ledger.workers().map(\.id), ["a", "b", "c"])

            var sameId = makeWorker("a", createdAt: 400)
            sameId.tokenHash = "sha256:other"
            await expectLedgerError(try await ledger.insertWorker(sameId), .duplicate(kind: "worker id", key: "a"))
            var sameToken = makeWorker("d", createdAt: 400)
            sameToken.tokenHash = "sha256:b-hash"
            await expectLedgerError(try await ledger.insertWorker(sameToken),
                                    .duplicate(kind: "worker token hash", key: "registering d"))
            await expectEqual(try await ledger.workers().count, 3)

            try await ledger.noteWorkerSeen(id: "a", at: at(5_000))
            try await ledger.noteWorkerSeen(id: "a", at: at(4_000))  // late, out of order: ignored
            await expectEqual(try await ledger.worker(id: "a")?.lastSeenAt, at(5_000))
            await expectLedgerError(try await ledger.noteWorkerSeen(id: "zz", at: at(1)), .unknownWorker(id: "zz"))
        }
    }

    func testFiftyThousandUnitsInsertInOneFastTransaction() async {
        await forEachStore { fixture in
            let ledger = try await fixture.openStore()
            var units = makeUnits(epoch: 1, count: 50_000)
            units[10].state = .leased
            units[20].state = .done
            units[30].state = .done
            let clock = ContinuousClock()
            let start = clock.now
            try await ledger.insertUnits(units)
            let elapsed = clock.now - start
            XCTAssertLessThan(elapsed, .seconds(2), "inserting 50k units took \(elapsed)")

            await expectEqual(try await ledger.unitCounts(epoch: 1), [.pending: 49_997, .leased: 1, .done: 2])
            await expectEqual(try await ledger.unitCounts(epoch: 0), [.pending: 0, .leased: 0, .done: 0])
            let all = try await ledger.units(epoch: 1, state: nil)
            XCTAssertEqual(all.count, 50_000)
            XCTAssertEqual(all.map(\.index), Array(0..<50_000))
            XCTAssertEqual(all[49_999], UnitRecord(epoch: 1, index: 49_999, sampleStart: 49_999 * 64, sampleCount: 64))
            await expectEqual(try await ledger.units(epoch: 1, state: .done).map(\.index), [20, 30])

            // One bad row (a repeat of index 7) rolls back the whole batch.
            var batch = makeUnits(epoch: 2, count: 100)
            batch.append(UnitRecord(epoch: 2, index: 7, sampleStart: 0, sampleCount: 1))
            await expectLedgerError(try await ledger.insertUnits(batch), .duplicate(kind: "unit", key: "epoch 2 index 7"))
            await expectEqual(try await ledger.unitCounts(epoch: 2)[.pending], 0)
            // The first clash in batch order is named, whether it is with a stored unit or an earlier row.
            try await ledger.insertUnits(makeUnits(epoch: 3, count: 3))
            let stored = UnitRecord(epoch: 3, index: 2, sampleStart: 0, sampleCount: 1)
            let fresh = UnitRecord(epoch: 3, index: 6, sampleStart: 0, sampleCount: 1)
            await expectLedgerError(try await ledger.insertUnits([fresh, stored, fresh]),
                                    .duplicate(kind: "unit", key: "epoch 3 index 2"))
            await expectLedgerError(try await ledger.insertUnits([fresh, fresh, stored]),
                                    .duplicate(kind: "unit", key: "epoch 3 index 6"))
            await expectEqual(try await ledger.units(epoch: 3, state: nil).map(\.index), [0, 1, 2])
            let negative = UnitRecord(epoch: 2, index: -1, sampleStart: 0, sampleCount: 1)
            await expectLedgerError(try await ledger.insertUnits([negative]),
                                    .invalidValue("unit index is -1; it must be ≥ 0"))
        }
    }

    func testLeaseMarksUnitLeasedAndExpiryOrReleaseRequeuesIt() async {
        await forEachStore { fixture in
            let ledger = try await fixture.openStore()
            try await ledger.insertWorker(makeWorker("w1"))
            try await ledger.insertUnits(makeUnits(epoch: 0, count: 4))

            let lease = makeLease("L1", unit: 1, worker: "w1")
            try await ledger.insertLease(lease)
            await expectEqual(try await ledger.lease(id: "L1"), lease)
            await expectEqual(try await ledger.unit(epoch: 0, index: 1)?.state, .leased)
            await expectEqual(try await ledger.unitCounts(epoch: 0), [.pending: 3, .leased: 1, .done: 0])

            // Renewal: still active, later deadline.
            try await ledger.setLeaseState(id: "L1", .active, deadline: at(120_000))
            await expectEqual(try await ledger.lease(id: "L1")?.deadline, at(120_000))
            await expectEqual(try await ledger.activeLeases().map(\.id), ["L1"])

            try await ledger.setLeaseState(id: "L1", .expired, deadline: nil)
            await expectEqual(try await ledger.lease(id: "L1")?.state, .expired)
            await expectEqual(try await ledger.unit(epoch: 0, index: 1)?.state, .pending)
            await expectEqual(try await ledger.activeLeases(), [])
            // An ended lease cannot come back; repeating its state is a no-op.
            try await ledger.setLeaseState(id: "L1", .expired, deadline: nil)
            await expectLedgerError(try await ledger.setLeaseState(id: "L1", .active, deadline: nil),
                                    .leaseNotActive(id: "L1", state: .expired))

            try await ledger.insertLease(makeLease("L2", unit: 1, worker: "w1", issuedAt: 70_000))
            await expectEqual(try await ledger.unit(epoch: 0, index: 1)?.state, .leased)
            try await ledger.setLeaseState(id: "L2", .released, deadline: nil)
            await expectEqual(try await ledger.unit(epoch: 0, index: 1)?.state, .pending)
            await expectEqual(try await ledger.leases(epoch: 0, unitIndex: 1).map(\.id), ["L1", "L2"])

            // Two overlapping leases (a speculative re-issue): the unit stays leased while one is active.
            try await ledger.insertLease(makeLease("L3", unit: 2, worker: "w1"))
            try await ledger.insertLease(makeLease("L4", unit: 2, worker: "w1"))
            try await ledger.setLeaseState(id: "L3", .expired, deadline: nil)
            await expectEqual(try await ledger.unit(epoch: 0, index: 2)?.state, .leased)
            try await ledger.setLeaseState(id: "L4", .expired, deadline: nil)
            await expectEqual(try await ledger.unit(epoch: 0, index: 2)?.state, .pending)

            await expectLedgerError(try await ledger.insertLease(makeLease("L1", unit: 3, worker: "w1")),
                                    .duplicate(kind: "lease", key: "L1"))
            await expectLedgerError(try await ledger.insertLease(makeLease("L9", unit: 99, worker: "w1")),
                                    .unknownUnit(epoch: 0, index: 99))
            await expectLedgerError(try await ledger.insertLease(makeLease("L9", unit: 3, worker: "ghost")),
                                    .unknownWorker(id: "ghost"))
            await expectLedgerError(try await ledger.setLeaseState(id: "nope", .expired, deadline: nil),
                                    .unknownLease(id: "nope"))
            await expectEqual(try await ledger.unitCounts(epoch: 0), [.pending: 4, .leased: 0, .done: 0])
        }
    }

    func testAcceptedUpdateCommitsAndCreditsExactlyOnce() async {
        await forEachStore { fixture in
            let ledger = try await fixture.openStore()
            try await ledger.insertWorker(makeWorker("w1"))
            try await ledger.insertWorker(makeWorker("w2"))
            try await ledger.insertUnits(makeUnits(epoch: 0, count: 3))
            let lease = makeLease("L1", unit: 0, worker: "w1")
            try await ledger.insertLease(lease)
            // A second worker got the same unit after a (missed) deadline.
            let rival = makeLease("L2", unit: 0, worker: "w2", issuedAt: 70_000)
            try await ledger.insertLease(rival)

            try await ledger.recordAcceptedUpdate(makeUpdate(lease: lease, round: 1, samples: 64, flops: 1.25e9))
            await expectEqual(try await ledger.lease(id: "L1")?.state, .committed)
            await expectEqual(try await ledger.unit(epoch: 0, index: 0)?.state, .done)
            let credited = try unwrap(await ledger.worker(id: "w1"))
            XCTAssertEqual(credited.samples, 64)
            XCTAssertEqual(credited.flops, 1.25e9)
            XCTAssertEqual(credited.acceptedUpdates, 1)
            XCTAssertEqual(credited.rejectedUpdates, 0)

            // The rival's update for the same (epoch, unit): refused, nothing changes.
            let rivalUpdate = makeUpdate(lease: rival, round: 1, samples: 64, flops: 9e9)
            await expectLedgerError(try await ledger.recordAcceptedUpdate(rivalUpdate),
                                    .unitAlreadyDone(epoch: 0, index: 0))
            // Replaying the first update is refused the same way.
            let replay = makeUpdate(lease: lease, round: 2, samples: 64, flops: 1.25e9)
            await expectLedgerError(try await ledger.recordAcceptedUpdate(replay),
                                    .unitAlreadyDone(epoch: 0, index: 0))
            await expectEqual(try await ledger.worker(id: "w1"), credited)
            await expectEqual(try await ledger.worker(id: "w2")?.acceptedUpdates, 0)
            await expectEqual(try await ledger.worker(id: "w2")?.samples, 0)
            await expectEqual(try await ledger.lease(id: "L2")?.state, .active)
            await expectEqual(try await ledger.updates(round: 1).map(\.leaseId), ["L1"])
            await expectEqual(try await ledger.updates(round: 2), [])
            await expectEqual(try await ledger.update(epoch: 0, unitIndex: 0)?.flops, 1.25e9)
            // A done unit cannot be leased again.
            await expectLedgerError(try await ledger.insertLease(makeLease("L3", unit: 0, worker: "w2")),
                                    .unitAlreadyDone(epoch: 0, index: 0))

            // A second unit adds to the credit exactly.
            let next = makeLease("L4", unit: 1, worker: "w1")
            try await ledger.insertLease(next)
            try await ledger.recordAcceptedUpdate(makeUpdate(lease: next, round: 1, samples: 32, flops: 0.75e9))
            let total = try unwrap(await ledger.worker(id: "w1"))
            XCTAssertEqual(total.samples, 96)
            XCTAssertEqual(total.flops, 2.0e9)
            XCTAssertEqual(total.acceptedUpdates, 2)
            await expectEqual(try await ledger.unitCounts(epoch: 0), [.pending: 1, .leased: 0, .done: 2])
        }
    }

    func testAcceptedUpdateRefusesMismatchesAndBadNumbersWithoutChanges() async {
        await forEachStore { fixture in
            let ledger = try await fixture.openStore()
            try await ledger.insertWorker(makeWorker("w1"))
            try await ledger.insertWorker(makeWorker("w2"))
            try await ledger.insertUnits(makeUnits(epoch: 0, count: 3))
            let lease = makeLease("L1", unit: 0, worker: "w1")
            try await ledger.insertLease(lease)

            var wrongWorker = makeUpdate(lease: lease, round: 1, samples: 64, flops: 1e9)
            wrongWorker.workerId = "w2"
            await expectLedgerError(try await ledger.recordAcceptedUpdate(wrongWorker),
                                    .leaseMismatch(leaseId: "L1", detail: "it was issued to worker 'w1', not 'w2'"))
            var wrongUnit = makeUpdate(lease: lease, round: 1, samples: 64, flops: 1e9)
            wrongUnit.unitIndex = 2
            await expectThrows(try await ledger.recordAcceptedUpdate(wrongUnit)) { error in
                guard case .leaseMismatch("L1", _)? = error as? LedgerError else { return XCTFail("\(error)") }
            }
            var unknownLease = makeUpdate(lease: lease, round: 1, samples: 64, flops: 1e9)
            unknownLease.leaseId = "nope"
            await expectLedgerError(try await ledger.recordAcceptedUpdate(unknownLease), .unknownLease(id: "nope"))
            var notFinite = makeUpdate(lease: lease, round: 1, samples: 64, flops: 1e9)
            notFinite.loss = .nan
            await expectLedgerError(try await ledger.recordAcceptedUpdate(notFinite),
                                    .invalidValue("update loss is nan; it must be finite"))

            await expectEqual(try await ledger.unitCounts(epoch: 0), [.pending: 2, .leased: 1, .done: 0])
            await expectEqual(try await ledger.lease(id: "L1")?.state, .active)
            await expectEqual(try await ledger.workers().map(\.acceptedUpdates), [0, 0])
            await expectEqual(try await ledger.updates(round: 1), [])
        }
    }

    /// Writes race as they do in the coordinator (one task per HTTP request): each must behave as
    /// if it ran alone. PostgreSQL gets this from SERIALIZABLE transactions retried on conflict.
    func testConcurrentWritesToOneUnitActAsIfSerialized() async {
        await forEachStore { fixture in
            let ledger = try await fixture.openStore()
            let workers = (0..<8).map { "w\($0)" }
            for worker in workers { try await ledger.insertWorker(makeWorker(worker)) }
            try await ledger.insertUnits(makeUnits(epoch: 0, count: 2))
            let leases = workers.map { makeLease("L-\($0)", unit: 0, worker: $0) }
            for lease in leases { try await ledger.insertLease(lease) }

            // Eight updates for one unit at once: exactly one is accepted and credited.
            let outcomes = await withTaskGroup(of: LedgerError?.self) { group in
                for lease in leases {
                    group.addTask {
                        do throws(LedgerError) {
                            let update = makeUpdate(lease: lease, round: 1, samples: 64, flops: 1e9)
                            try await ledger.recordAcceptedUpdate(update)
                            return nil
                        } catch {
                            return error
                        }
                    }
                }
                return await group.reduce(into: []) { $0.append($1) }
            }
            XCTAssertEqual(outcomes.filter { $0 == nil }.count, 1, "\(outcomes)")
            XCTAssertEqual(outcomes.compactMap { $0 }, Array(repeating: .unitAlreadyDone(epoch: 0, index: 0), count: 7))
            await expectEqual(try await ledger.workers().map(\.acceptedUpdates).reduce(0, +), 1)
            await expectEqual(try await ledger.workers().map(\.samples).reduce(0, +), 64)
            await expectEqual(try await ledger.updates(round: 1).count, 1)

            // Overlapping leases on unit 1 expiring at once: whichever goes last requeues the unit.
            let rivals = workers.map { makeLease("R-\($0)", unit: 1, worker: $0) }
            for lease in rivals { try await ledger.insertLease(lease) }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for lease in rivals {
                    group.addTask { try await ledger.setLeaseState(id: lease.id, .expired, deadline: nil) }
                }
                try await group.waitForAll()
            }
            await expectEqual(try await ledger.unit(epoch: 0, index: 1)?.state, .pending)
            await expectEqual(try await ledger.activeLeases().filter { $0.unitIndex == 1 }, [])
        }
    }

    func testRejectedUpdatesAreCountedPerReasonAndPerWorker() async {
        await forEachStore { fixture in
            let ledger = try await fixture.openStore()
            try await ledger.insertWorker(makeWorker("w1"))
            try await ledger.insertWorker(makeWorker("w2"))
            try await ledger.recordRejectedUpdate(workerId: "w1", reason: "stale", at: at(1))
            try await ledger.recordRejectedUpdate(workerId: "w1", reason: "stale", at: at(2))
            try await ledger.recordRejectedUpdate(workerId: "w1", reason: "norm", at: at(3))
            try await ledger.recordRejectedUpdate(workerId: "w2", reason: "stale", at: at(4))
            try await ledger.recordRejectedUpdate(workerId: nil, reason: "bad-token", at: at(5))
            try await ledger.recordRejectedUpdate(workerId: "unregistered", reason: "bad-token", at: at(6))

            await expectEqual(try await ledger.rejectionCounts(), ["stale": 3, "norm": 1, "bad-token": 2])
            await expectEqual(try await ledger.worker(id: "w1")?.rejectedUpdates, 3)
            await expectEqual(try await ledger.worker(id: "w2")?.rejectedUpdates, 1)
            await expectEqual(try await ledger.worker(id: "w1")?.acceptedUpdates, 0)
        }
    }

    func testRoundsAndCheckpoints() async {
        await forEachStore { fixture in
            let ledger = try await fixture.openStore()
            for r in 1...6 {
                try await ledger.recordRound(RoundRecord(round: r, version: r, openedAt: at(Int64(r) * 1_000),
                                                         closedAt: at(Int64(r) * 1_000 + 900), updates: r,
                                                         samples: 64 * r, meanLoss: 3.0 - Double(r) * 0.25))
            }
            await expectEqual(try await ledger.rounds(limit: 3).map(\.round), [4, 5, 6])
            await expectEqual(try await ledger.rounds(limit: 100).map(\.round), [1, 2, 3, 4, 5, 6])
            await expectEqual(try await ledger.rounds(limit: 0), [])
            await expectEqual(try await ledger.lastRound(),
                              RoundRecord(round: 6, version: 6, openedAt: at(6_000), closedAt: at(6_900), updates: 6,
                                          samples: 384, meanLoss: 1.5))
            let repeated = RoundRecord(round: 6, version: 7, openedAt: at(0), closedAt: at(0), updates: 0, samples: 0,
                                       meanLoss: 0)
            await expectLedgerError(try await ledger.recordRound(repeated), .duplicate(kind: "round", key: "6"))

            try await ledger.recordCheckpoint(CheckpointRecord(version: 2, round: 2, path: "c/2", createdAt: at(2_950)))
            try await ledger.recordCheckpoint(CheckpointRecord(version: 4, round: 4, path: "c/4", createdAt: at(4_950)))
            await expectEqual(try await ledger.latestCheckpoint(),
                              CheckpointRecord(version: 4, round: 4, path: "c/4", createdAt: at(4_950)))
        }
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
            .invalidLocation("x"), .cannotConnect(location: "postgres://u@h:5432/d", message: "Connection refused"),
            .server(operation: "insert units", sqlState: "53100", message: "could not extend file"),
            .notALedger(path: "postgres://u@h:5432/d", reason: "PostgreSQL database with unrelated tables: notes"),
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
