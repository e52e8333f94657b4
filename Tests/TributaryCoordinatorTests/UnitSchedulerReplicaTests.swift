import Foundation
import XCTest
@testable import TributaryCoordinator

/// Issue 13: replica leases as the scheduler hands them out.
final class UnitSchedulerReplicaTests: XCTestCase {
    let t0 = Date(timeIntervalSince1970: 1_000_000)

    /// A sync round of three units, each counted from one of a, b, c and wanting a replica.
    func countedRound() -> UnitScheduler {
        var s = UnitScheduler(mode: .sync, unitsPerEpoch: 30, unitsPerRound: 3, minUnits: 1, roundDeadline: 30,
                              leaseDuration: 10, maxLeasesPerWorker: 1, now: t0)
        _ = s.startEpoch(0, done: [])
        s.openRound(now: t0)
        for (i, w) in ["a", "b", "c"].enumerated() {
            guard case let .grant(unit) = s.nextUnit(for: w, now: t0) else { XCTFail("\(w) gets a unit"); continue }
            let lease = s.grant(id: "l\(i)", worker: w, unit: unit, baseVersion: 0, now: t0)
            s.wantReplica(unit: unit, excluding: [w])
            _ = s.accept(lease, now: t0)
        }
        return s
    }

    /// Leases and finishes a replica for `worker`; its unit, or nil when none was given.
    func replicate(_ s: inout UnitScheduler, _ worker: String, _ id: String) -> Int? {
        guard case let .grantReplica(unit) = s.nextUnit(for: worker, now: t0) else { return nil }
        let lease = s.grant(id: id, worker: worker, unit: unit, baseVersion: 0, replica: true, now: t0)
        XCTAssertTrue(lease.isReplica)
        s.finishReplica(id)
        s.dropReplicaWant(unit: unit)
        return unit
    }

    func testTheRoundWaitsForItsReplicasAndAnEagerWorkerGetsOnlyItsShare() {
        var s = countedRound()
        XCTAssertEqual(s.roundAccepted, 3)
        XCTAssertFalse(s.roundIsReadyToClose(now: t0), "replicas are wanted and workers are asking")
        XCTAssertNotNil(replicate(&s, "a", "r1"))
        XCTAssertNil(replicate(&s, "a", "r2"), "a has its share while b and c could check the rest")
        XCTAssertNotNil(replicate(&s, "b", "r3"))
        // The last one goes to c unless it is c's own unit; then a or b, past their share, take it.
        let last = replicate(&s, "c", "r4") ?? replicate(&s, "a", "r5")
        XCTAssertNotNil(last)
        XCTAssertTrue(s.roundIsReadyToClose(now: t0))
    }

    func testNoWorkerChecksItsOwnUnitAndOnlyATrustedOneDecides() {
        var s = countedRound()
        // b's unit is disputed between b and a: only a trusted worker other than them decides.
        let disputed = 1
        s.dropReplicaWant(unit: 0)
        s.dropReplicaWant(unit: 2)
        s.wantReplica(unit: disputed, excluding: ["a", "b"], decider: true)
        XCTAssertNil(replicate(&s, "b", "x1"), "not its own unit")
        XCTAssertNil(replicate(&s, "c", "x2"), "c is not trusted")
        XCTAssertTrue(s.roundIsReadyToClose(now: t0), "nobody could decide: the caller holds the update back")
        s.trustedWorkers = ["c"]
        XCTAssertFalse(s.roundIsReadyToClose(now: t0), "c can decide now")
        XCTAssertEqual(replicate(&s, "c", "x3"), disputed)
    }

    func testWhoChecksWhomVariesBetweenWorkers() {
        // Each worker has an order of its own over the open replicas.
        let units = Array(0..<64)
        let orders = ["w-1", "w-2", "w-3"].map { w in
            units.sorted { ReplicationPolicy.fraction(UnitScheduler.workerKey(w), 0, $0)
                < ReplicationPolicy.fraction(UnitScheduler.workerKey(w), 0, $1) }
        }
        XCTAssertNotEqual(orders[0], orders[1])
        XCTAssertNotEqual(orders[1], orders[2])
        XCTAssertGreaterThan(Set(orders.map { $0.first }).count, 1, "not everyone starts at the same unit")
    }
}
