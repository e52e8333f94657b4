import Foundation
import XCTest
@testable import TributaryCoordinator

/// Issue 12, finding 2: one worker (or a few) must not hold a round hostage.
final class UnitSchedulerFairnessTests: XCTestCase {
    let t0 = Date(timeIntervalSince1970: 1_000_000)

    func scheduler(_ mode: RoundMode = .sync, units: Int = 40, perRound: Int = 4, maxPerWorker: Int = 1,
                   lifetime: TimeInterval = 25) -> UnitScheduler {
        var s = UnitScheduler(mode: mode, unitsPerEpoch: units, unitsPerRound: perRound, minUnits: 1,
                              roundDeadline: 30, leaseDuration: 10, maxLeasesPerWorker: maxPerWorker,
                              maxLeaseLifetime: lifetime, now: t0)
        _ = s.startEpoch(0, done: [])
        s.openRound(now: t0)
        return s
    }

    func at(_ seconds: TimeInterval) -> Date { t0.addingTimeInterval(seconds) }

    func lease(_ s: inout UnitScheduler, _ id: String, worker: String, at time: TimeInterval) -> ScheduledLease? {
        guard case let .grant(unit) = s.nextUnit(for: worker, now: at(time)) else { return nil }
        return s.grant(id: id, worker: worker, unit: unit, baseVersion: 0, now: at(time))
    }

    func testAWorkerHoldsAtMostItsLimit() throws {
        var s = scheduler(maxPerWorker: 1)
        XCTAssertNotNil(lease(&s, "a", worker: "mallory", at: 0))
        XCTAssertEqual(s.nextUnit(for: "mallory", now: at(0)), .workerAtLimit(held: 1))
        XCTAssertNotNil(lease(&s, "b", worker: "alice", at: 0), "the others still get units")
        var two = scheduler(maxPerWorker: 2)
        XCTAssertNotNil(lease(&two, "a", worker: "m", at: 0))
        XCTAssertNotNil(lease(&two, "b", worker: "m", at: 0))
        XCTAssertEqual(two.nextUnit(for: "m", now: at(0)), .workerAtLimit(held: 2))
    }

    func testRenewalsStopAtTheLifetimeAndTheRoundDeadline() throws {
        var s = scheduler(lifetime: 25)
        _ = try XCTUnwrap(lease(&s, "a", worker: "m", at: 0))
        XCTAssertEqual(s.renew("a", now: at(8)), .extended(at(18)))
        XCTAssertEqual(s.renew("a", now: at(16)), .extended(at(25)), "capped at the lifetime")
        XCTAssertEqual(s.renew("a", now: at(20)), .atLifetime)
        // Lifetime beyond the round's deadline (30 s): the round's deadline caps it.
        var r = scheduler(lifetime: 600)
        _ = try XCTUnwrap(lease(&r, "a", worker: "m", at: 5))
        XCTAssertEqual(r.renew("a", now: at(25)), .extended(at(30)))
        XCTAssertEqual(r.renew("a", now: at(29)), .atRoundDeadline)
        // Async rounds have no deadline: the lifetime is the bound.
        var a = scheduler(.async, lifetime: 40)
        _ = try XCTUnwrap(lease(&a, "a", worker: "m", at: 0))
        XCTAssertEqual(a.renew("a", now: at(35)), .extended(at(40)))
        XCTAssertEqual(a.renew("a", now: at(39)), .atLifetime)
    }

    func testAWorkerPastItsShareWaitsWhileOthersAsk() throws {
        // Two workers asking: each gets 2 of the round's 4 units, however fast one is.
        var s = scheduler(maxPerWorker: 4)
        XCTAssertEqual(s.nextUnit(for: "slow", now: at(0)), .grant(unit: 0), "slow asks (and will take unit 0 later)")
        let f1 = try XCTUnwrap(lease(&s, "f1", worker: "fast", at: 0.1))
        let f2 = try XCTUnwrap(lease(&s, "f2", worker: "fast", at: 0.2))
        XCTAssertEqual(s.nextUnit(for: "fast", now: at(0.3)), .noWork, "fast has its share (2 of 4) while slow waits")
        XCTAssertNotNil(lease(&s, "s1", worker: "slow", at: 0.4))
        XCTAssertNotNil(lease(&s, "s2", worker: "slow", at: 0.5))
        _ = s.accept(f1, now: at(1))
        _ = s.accept(f2, now: at(1))
        XCTAssertEqual([f1.unit, f2.unit], [0, 1])
        // Alone, a worker takes every unit it is allowed.
        var alone = scheduler(maxPerWorker: 4)
        for i in 0..<4 { XCTAssertNotNil(lease(&alone, "l\(i)", worker: "solo", at: Double(i)), "unit \(i)") }
    }

    func testAStragglingLeaseGetsABackupAndTheFirstUpdateWins() throws {
        var s = scheduler(units: 40, perRound: 2)
        // Three rounds of 1-second units teach the scheduler how long a unit takes.
        var t = 0.0
        for round in 0..<3 {
            let a = try XCTUnwrap(lease(&s, "a\(round)", worker: "alice", at: t))
            let b = try XCTUnwrap(lease(&s, "b\(round)", worker: "bob", at: t))
            _ = s.accept(a, now: at(t + 1))
            XCTAssertEqual(s.accept(b, now: at(t + 1)), .close)
            t += 1
            s.openRound(now: at(t))
        }
        // Mallory takes a unit and sits on it; alice finishes hers.
        let m = try XCTUnwrap(lease(&s, "m", worker: "mallory", at: t))
        let a = try XCTUnwrap(lease(&s, "a", worker: "alice", at: t))
        XCTAssertEqual(s.accept(a, now: at(t + 1)), .keepOpen)
        XCTAssertEqual(s.nextUnit(for: "alice", now: at(t + 2)), .noWork, "2 s is within 3x the median unit time")
        XCTAssertEqual(s.nextUnit(for: "mallory", now: at(t + 4)), .workerAtLimit(held: 1))
        let backup = try XCTUnwrap(lease(&s, "backup", worker: "alice", at: t + 4), "past 3 s: a backup lease")
        XCTAssertEqual(backup.unit, m.unit)
        XCTAssertEqual(s.twins(of: backup).map(\.id), ["m"])
        XCTAssertEqual(s.leasedUnits, 1, "two leases on one unit count once")
        XCTAssertEqual(s.nextUnit(for: "bob", now: at(t + 5)), .noWork, "at most one backup per unit")
        XCTAssertEqual(s.accept(backup, now: at(t + 5)), .close, "the round closes without mallory")
        XCTAssertFalse(s.unitIsOpen(m), "mallory's late update could no longer count")
    }
}
