import Foundation
import XCTest
@testable import TributaryCoordinator

/// The scheduler's rules on their own: no ledger, network or model.
final class UnitSchedulerTests: XCTestCase {
    let t0 = Date(timeIntervalSince1970: 1_000_000)

    func scheduler(_ mode: RoundMode, units: Int = 6, perRound: Int = 2, minUnits: Int = 1) -> UnitScheduler {
        var s = UnitScheduler(mode: mode, unitsPerEpoch: units, unitsPerRound: perRound, minUnits: minUnits,
                              roundDeadline: 30, leaseDuration: 10, now: t0)
        XCTAssertEqual(s.startEpoch(0, done: []), [])
        s.openRound(now: t0)
        return s
    }

    /// Grants whatever `nextUnit` offers, failing the test when it offers nothing.
    func grant(_ s: inout UnitScheduler, _ id: String, worker: String = "w", at time: Date? = nil,
               file: StaticString = #filePath, line: UInt = #line) -> ScheduledLease? {
        guard case let .grant(unit) = s.nextUnit() else {
            XCTFail("expected a unit to lease", file: file, line: line)
            return nil
        }
        return s.grant(id: id, worker: worker, unit: unit, baseVersion: 0, now: time ?? t0)
    }

    func testSyncRoundLeasesOnlyItsUnitsAndClosesWhenAllReported() throws {
        var s = scheduler(.sync)
        XCTAssertEqual(s.roundUnits, [0, 1])
        let a = try XCTUnwrap(grant(&s, "a"))
        let b = try XCTUnwrap(grant(&s, "b"))
        XCTAssertEqual([a.unit, b.unit], [0, 1])
        XCTAssertEqual(s.nextUnit(), .noWork, "a sync round is a barrier: unit 2 waits for the next round")
        XCTAssertEqual(s.accept(a), .keepOpen)
        XCTAssertEqual(s.accept(b), .close)
        s.openRound(now: t0)
        XCTAssertEqual(s.roundUnits, [2, 3])
        XCTAssertEqual(s.done, [0, 1])
    }

    func testExpiredLeaseGoesBackToTheRoundAndUnfinishedUnitsCarryOver() throws {
        var s = scheduler(.sync)
        let a = try XCTUnwrap(grant(&s, "a"))
        _ = try XCTUnwrap(grant(&s, "b"))
        XCTAssertEqual(s.expireLeases(now: t0.addingTimeInterval(5)), [], "not yet past the deadline")
        let expired = s.expireLeases(now: t0.addingTimeInterval(11))
        XCTAssertEqual(expired.map(\.id), ["a", "b"])
        XCTAssertTrue(s.leases.isEmpty)
        XCTAssertEqual(s.nextUnit(), .grant(unit: a.unit), "the expired unit is offered again")
        // Unit 1 is accepted through a new lease, unit 0 is not: the deadline closes the
        // round with one update, and unit 0 carries over into the next round.
        let b2 = s.grant(id: "b2", worker: "w", unit: 1, baseVersion: 0, now: t0)
        XCTAssertEqual(s.accept(b2), .keepOpen)
        XCTAssertFalse(s.roundDeadlinePassed(now: t0.addingTimeInterval(29)))
        XCTAssertTrue(s.roundDeadlinePassed(now: t0.addingTimeInterval(30)))
        s.openRound(now: t0.addingTimeInterval(30))
        XCTAssertEqual(s.roundUnits, [0, 2])
    }

    func testDeadlineNeedsMinUnits() throws {
        var s = scheduler(.sync, perRound: 3, minUnits: 2)
        let a = try XCTUnwrap(grant(&s, "a"))
        XCTAssertEqual(s.accept(a), .keepOpen)
        XCTAssertFalse(s.roundDeadlinePassed(now: t0.addingTimeInterval(1000)), "one update is below min_units")
        let b = try XCTUnwrap(grant(&s, "b"))
        XCTAssertEqual(s.accept(b), .keepOpen)
        XCTAssertTrue(s.roundDeadlinePassed(now: t0.addingTimeInterval(30)))
    }

    func testLookupChecksOwnerAndDeadlineAndRenewExtends() throws {
        var s = scheduler(.async)
        let a = try XCTUnwrap(grant(&s, "a", worker: "alice"))
        XCTAssertEqual(s.lookup("a", worker: "alice", now: t0), .active(a))
        XCTAssertEqual(s.lookup("a", worker: "mallory", now: t0), .otherWorker)
        XCTAssertEqual(s.lookup("zzz", worker: "alice", now: t0), .unknown)
        XCTAssertEqual(s.lookup("a", worker: "alice", now: t0.addingTimeInterval(10.5)), .pastDeadline)
        XCTAssertEqual(s.renew("a", now: t0.addingTimeInterval(8)), .extended(t0.addingTimeInterval(18)))
        if case .active = s.lookup("a", worker: "alice", now: t0.addingTimeInterval(15)) {} else {
            XCTFail("a renewed lease stays active past its first deadline")
        }
    }

    func testAsyncRequeuesReleasedUnitsFirstAndEveryUpdateClosesARound() throws {
        var s = scheduler(.async, units: 4)
        let a = try XCTUnwrap(grant(&s, "a"))
        let b = try XCTUnwrap(grant(&s, "b"))
        XCTAssertEqual([a.unit, b.unit], [0, 1])
        s.release("a")
        XCTAssertEqual(s.nextUnit(), .grant(unit: 0), "a released unit is leased again before fresh ones")
        XCTAssertEqual(s.accept(b), .close, "async: every accepted update is its own round")
        XCTAssertFalse(s.unitIsOpen(b), "a done unit no longer takes updates")
    }

    func testAsyncEpochEndsWhenEveryUnitIsDoneAndTheNextStartsClean() throws {
        var s = scheduler(.async, units: 2)
        let a = try XCTUnwrap(grant(&s, "a"))
        let b = try XCTUnwrap(grant(&s, "b"))
        XCTAssertEqual(s.nextUnit(), .noWork, "both units are leased, none done")
        _ = s.accept(a)
        _ = s.accept(b)
        XCTAssertTrue(s.epochComplete)
        XCTAssertEqual(s.nextUnit(), .epochFinished)
        let stale = s.grant(id: "late", worker: "w", unit: 1, baseVersion: 0, now: t0)
        let ended = s.startEpoch(1, done: [])
        XCTAssertEqual(ended, [stale], "leases of the old epoch end with it")
        XCTAssertEqual(s.epoch, 1)
        XCTAssertEqual(s.nextUnit(), .grant(unit: 0))
    }

    func testRestartSkipsUnitsTheLedgerRecordsAsDone() {
        var s = UnitScheduler(mode: .sync, unitsPerEpoch: 6, unitsPerRound: 2, minUnits: 1, roundDeadline: 30,
                              leaseDuration: 10, now: t0)
        _ = s.startEpoch(3, done: [0, 2, 3])
        s.openRound(now: t0)
        XCTAssertEqual(s.roundUnits, [1, 4])
        XCTAssertEqual(s.epoch, 3)
    }

    /// Issue 14: after a restart the open round keeps the units it had accepted (they count
    /// toward closing it), the rest of it is filled as before, and no unit is skipped.
    func testARestoredOpenRoundKeepsItsAcceptedUnits() {
        var s = UnitScheduler(mode: .sync, unitsPerEpoch: 9, unitsPerRound: 3, minUnits: 1, roundDeadline: 30,
                              leaseDuration: 10, now: t0)
        _ = s.startEpoch(0, done: [0, 1, 2, 3])  // round 1 closed; unit 3 accepted in round 2
        XCTAssertEqual(s.restoreOpenRound(accepted: [3], now: t0), .keepOpen)
        XCTAssertEqual(s.roundUnits, [3, 4, 5])
        XCTAssertEqual(s.roundAccepted, 1)
        let a = grant(&s, "a"), b = grant(&s, "b")
        XCTAssertEqual([a?.unit, b?.unit], [4, 5])
        XCTAssertEqual(s.nextUnit(), .noWork)
        if let a { XCTAssertEqual(s.accept(a), .keepOpen) }
        if let b { XCTAssertEqual(s.accept(b), .close, "three units: the restored one counted") }
        s.openRound(now: t0)
        XCTAssertEqual(s.roundUnits, [6, 7, 8], "the units the fill took back are not skipped")

        var full = UnitScheduler(mode: .sync, unitsPerEpoch: 9, unitsPerRound: 3, minUnits: 1, roundDeadline: 30,
                                 leaseDuration: 10, now: t0)
        _ = full.startEpoch(0, done: [0, 1, 2])
        XCTAssertEqual(full.restoreOpenRound(accepted: [0, 1, 2], now: t0), .close, "stopped before the round was recorded")
    }
}
