import Foundation
import Hummingbird
import Logging
import NIOCore
import Synchronization
import TributaryProtocol
@testable import TributaryWorker
import XCTest

/// Issue 14, leases that follow the worker: the lease's clock, the heartbeat's schedule, and
/// what the daemon does when a renewal is refused or never answered.
final class LeaseHeartbeatTests: XCTestCase {
    // MARK: The lease's clock

    func testHTTPDatesParseToTheirInstant() {
        XCTAssertEqual(HTTPDate.parse("Sun, 06 Nov 1994 08:49:37 GMT")?.timeIntervalSince1970, 784_111_777)
        XCTAssertEqual(HTTPDate.parse("Thu, 29 Feb 2024 12:00:00 GMT")?.timeIntervalSince1970, 1_709_208_000)
        XCTAssertEqual(HTTPDate.parse("Thu, 01 Jan 1970 00:00:00 GMT")?.timeIntervalSince1970, 0)
        for bad in ["", "Sun, 06 Nov 1994 08:49:37 PST", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun, 06 Foo 1994 08:49:37 GMT",
                    "Sun, 32 Nov 1994 08:49:37 GMT", "Sun, 06 Nov 1994 24:00:00 GMT", "Sun, 06 Nov 1994 08:49 GMT"] {
            XCTAssertNil(HTTPDate.parse(bad), bad)
        }
    }

    /// A worker whose clock runs 30 s ahead still sees a 10 s lease as 9 s long (the
    /// coordinator's `Date` header, whole seconds and perhaps a second old, plus one); without the
    /// header it would see the lease as 20 s over and renew in a loop, and one 30 s behind
    /// would wait 13 s to renew a lease that ends after 10.
    func testTimeLeftIsMeasuredOnTheCoordinatorsClock() {
        let coordinatorNow = Date(timeIntervalSince1970: 1_700_000_000)
        let ahead = coordinatorNow.addingTimeInterval(30)
        let t0 = ContinuousClock.now
        let lease = HeldLease(id: "l-1", deadline: coordinatorNow.addingTimeInterval(10), coordinatorDate: coordinatorNow,
                              localNow: ahead, at: t0)
        XCTAssertEqual(lease.timeLeft(at: t0), .seconds(9))
        XCTAssertEqual(lease.nextBeat(at: t0), .seconds(3), "a third of the time left")
        XCTAssertEqual(lease.requestTimeout(at: t0), .seconds(11), "time left plus the 2 s margin")
        XCTAssertEqual(lease.renewalTimeout(at: t0), .seconds(5), "renewals are retried rather than awaited long")
        XCTAssertFalse(lease.isPastDeadline(at: t0.advanced(by: .seconds(11))), "9 s left + 2 s margin")
        XCTAssertTrue(lease.isPastDeadline(at: t0.advanced(by: .milliseconds(11_001))))

        let noHeader = HeldLease(id: "l-2", deadline: coordinatorNow.addingTimeInterval(10), coordinatorDate: nil,
                                 localNow: ahead, at: t0)
        XCTAssertEqual(noHeader.timeLeft(at: t0), .seconds(-20), "the local clock is all there is")
        XCTAssertEqual(noHeader.nextBeat(at: t0), .milliseconds(500), "never more often than every 0.5 s")
        XCTAssertEqual(noHeader.requestTimeout(at: t0), .seconds(5), "at least 5 s")
        XCTAssertEqual(noHeader.renewalTimeout(at: t0), .seconds(1))

        // A renewal moves the deadline; the beat and the timeouts follow it, capped at 60 s.
        lease.extend(to: coordinatorNow.addingTimeInterval(600), coordinatorDate: coordinatorNow.addingTimeInterval(5),
                     at: t0.advanced(by: .seconds(5)))
        XCTAssertEqual(lease.renewals, 1)
        XCTAssertEqual(lease.timeLeft(at: t0.advanced(by: .seconds(5))), .seconds(594))
        XCTAssertEqual(lease.nextBeat(at: t0.advanced(by: .seconds(5))), .seconds(198))
        XCTAssertEqual(lease.requestTimeout(at: t0.advanced(by: .seconds(5))), .seconds(60))

        // A deadline no clock could mean is bounded, not trapped on.
        let absurd = HeldLease(id: "l-3", deadline: .distantFuture, coordinatorDate: coordinatorNow, at: t0)
        XCTAssertEqual(absurd.timeLeft(at: t0), .seconds(86_400))
    }

    /// Once the commit is on its way the heartbeat can no longer abandon the unit, and an
    /// abandoned unit cannot begin its commit: exactly one of the two wins.
    func testCommitAndAbandonExcludeEachOther() {
        let committing = HeldLease(id: "l-1", deadline: Date().addingTimeInterval(10), coordinatorDate: nil)
        XCTAssertTrue(committing.beginCommit())
        XCTAssertFalse(committing.abandon())
        XCTAssertEqual(committing.phase, .committing)
        let lost = HeldLease(id: "l-2", deadline: Date().addingTimeInterval(10), coordinatorDate: nil)
        XCTAssertTrue(lost.abandon())
        XCTAssertFalse(lost.beginCommit())
        XCTAssertEqual(lost.phase, .abandoned)
    }

    // MARK: The daemon against a scripted coordinator

    /// Requests with the seconds since the server started, and a switch that ends hung answers.
    final class TimedLog: Sendable {
        let start = ContinuousClock.now
        private let entries = Mutex<[(String, Double)]>([])
        let released = Mutex(false)

        func record(_ line: String) {
            let t = Backoff.seconds(start.duration(to: .now))
            entries.withLock { $0.append((line, t)) }
        }
        func times(of line: String) -> [Double] { entries.withLock { $0.filter { $0.0 == line }.map(\.1) } }
        var lines: [String] { entries.withLock { $0.map(\.0) } }

        /// An answer that never comes while the test runs (until `released`).
        func hang() async throws -> Response {
            for _ in 0..<200 where !released.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(50)) }
            return try HostileCoordinator.problem(.internalError)
        }
    }

    /// A coordinator that grants `l-1` (deadline `leaseSeconds` ahead), never answers the
    /// manifest, and answers renewals with `renew`. The worker runs for `seconds`.
    func run(leaseSeconds: Double, seconds: Double,
             renew: @escaping @Sendable () throws -> Response) async throws -> TimedLog {
        let log = TimedLog()
        let server = try await HostileCoordinator.start { request, _ in
            let path = request.uri.path
            log.record("\(request.method.rawValue) \(path)")
            switch path {
            case Routes.register: return try HostileCoordinator.registered()
            case Routes.leases: return try HostileCoordinator.grant(deadline: Date().addingTimeInterval(leaseSeconds))
            case Routes.renew("l-1"): return try renew()
            case Routes.lease("l-1"): return Response(status: .noContent)
            default: return try await log.hang()
            }
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tributary-beat-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var options = WorkerOptions(coordinator: server.url, joinToken: "j", dataDirectory: dir)
        options.retry = RetryPolicy(base: .milliseconds(50), cap: .milliseconds(100))
        var logger = Logger(label: "test.beat")
        logger.logLevel = .critical
        // A client of its own, shut down before the server stops, and a pause for the server
        // to take in connections still in its backlog: a cancelled request can leave the
        // pool connecting, and a connection the server accepts while it shuts down trips a
        // fatal error in NIO (NIOAsyncWriter deinited without finish()).
        let http = WorkerHTTPClient(WorkerHTTPClient.defaultConfiguration)
        let worker = WorkerDaemon(options: options, logger: logger, http: http)
        let running = Task { try await worker.run() }
        try await Task.sleep(for: .seconds(seconds))
        running.cancel()
        _ = try? await running.value
        try await http.shutdown()
        log.released.withLock { $0 = true }
        try await Task.sleep(for: .milliseconds(300))
        await server.stop()
        return log
    }

    /// A renewal refused (the lease expired on the coordinator) ends the unit at once: the
    /// manifest request still waiting is cancelled, the lease is given back and another
    /// leased within a back-off (≤ 0.1 s). Without the heartbeat the worker waited on the
    /// manifest for the client's 60 s.
    func testARefusedRenewalCancelsTheUnitAndTheWorkerLeasesAgain() async throws {
        let log = try await run(leaseSeconds: 1.5, seconds: 3) {
            try HostileCoordinator.problem(.leaseExpired, detail: "lease l-1 expired")
        }
        let leases = log.times(of: "POST \(Routes.leases)")
        let renewals = log.times(of: "POST \(Routes.renew("l-1"))")
        print("refused renewal: leases at \(leases), renewals at \(renewals)")
        XCTAssertGreaterThanOrEqual(leases.count, 3, "a new lease after each refused renewal: \(log.lines)")
        XCTAssertGreaterThanOrEqual(renewals.count, 2)
        guard leases.count >= 2, let renewed = renewals.first,
              let released = log.times(of: "DELETE \(Routes.lease("l-1"))").first else { return XCTFail("\(log.lines)") }
        // The first renewal comes 0.5–0.83 s in: a third of the 0.5–2.5 s a 1.5 s lease seems to
        // have (the Date header is whole seconds, perhaps a second old), at least 0.5 s. The next
        // lease follows within 0.5 s of the refusal.
        XCTAssertGreaterThanOrEqual(renewed - leases[0], 0.45)
        XCTAssertLessThan(renewed - leases[0], 1.0)
        XCTAssertLessThan(leases[1] - renewed, 0.5)
        XCTAssertTrue(released > renewed && released < leases[1], "given back before leasing again: \(log.lines)")
    }

    /// Renewals that fail on the network are tried again at every beat (faster as the
    /// deadline nears); the unit is abandoned only when the deadline and the 2 s margin have
    /// passed with none answered: 3 to 5.5 s into a 2 s lease (the coordinator's clock, known
    /// to within a second, puts the deadline 1 to 3 s after the grant; beats are 0.5 s apart).
    func testRenewalsLostOnTheNetworkAreRetriedUntilTheDeadlinePasses() async throws {
        let log = try await run(leaseSeconds: 2, seconds: 6.5) { Response(status: .badGateway) }
        let leases = log.times(of: "POST \(Routes.leases)")
        let renewals = log.times(of: "POST \(Routes.renew("l-1"))").filter { $0 < (leases.dropFirst().first ?? .infinity) }
        print("unanswered renewals: leases at \(leases), renewals of the first at \(renewals)")
        guard leases.count >= 2 else { return XCTFail("no second lease: \(log.lines)") }
        XCTAssertGreaterThanOrEqual(renewals.count, 4, "every 0.5 s once under 1.5 s were left")
        // Abandoned at the first failed beat past deadline + margin (beats are 0.5 s apart by then), plus a back-off.
        let abandonedAfter = leases[1] - leases[0]
        XCTAssertGreaterThan(abandonedAfter, 2.9)
        XCTAssertLessThan(abandonedAfter, 5.7)
    }
}
