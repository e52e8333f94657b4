import Foundation
import Synchronization
import TributaryCoordinator
import TributaryLedger
import TributaryProtocol
import TributaryTensor
import TributaryWorker
import XCTest

/// Issue 14, leases that follow the worker, in one process: a worker renews a short lease
/// for as long as its unit takes, and the job's lease duration is short and bounded.
final class LeaseRenewalTests: XCTestCase {
    override func setUp() { ComputeThreads.set(1) }

    /// Leases of 1 s, and a slow link that holds each of a unit's three uploads 0.7 s: a
    /// unit takes over 2 s. The worker renews every 0.5 s, so both units are accepted on
    /// their first lease, none expires, and each lease ended more than 2 s after its grant
    /// (without renewals: 1 s, and the uploads would be refused `lease_expired`).
    func testAWorkerKeepsItsLeaseAlivePastItsDurationByRenewing() async throws {
        let (c, dir) = try await RunningCoordinator.startInTemporaryDirectory("renew") {
            $0.rounds.unitsPerRound = 1
            $0.leases.durationSeconds = 1
            $0.optimizer.totalRounds = 2
        }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let proxy = try await LostAnswerProxy.start(to: c.url, lose: 0, delayUpdates: .milliseconds(700))
        let options = WorkerOptions(coordinator: proxy.url, joinToken: RunningCoordinator.joinToken,
                                    dataDirectory: "\(dir)/worker", maxUnits: 2)
        let reports = Mutex<[UnitReport]>([])
        try await WorkerDaemon(options: options, logger: quietLogger("test.renew")).run { r in reports.withLock { $0.append(r) } }
        let done = reports.withLock { $0 }
        let status = c.job.status()
        await proxy.stop()
        await c.stop()

        print("renewals per unit: \(done.map(\.renewals)), unit seconds: \(done.map { String(format: "%.2f", $0.totalSeconds) })")
        XCTAssertEqual(done.count, 2)
        XCTAssertEqual(status.updatesAccepted, 2)
        XCTAssertEqual(status.version, 2)
        XCTAssertEqual(status.units.expired, 0, "no lease ran out")
        XCTAssertEqual(status.updatesRejected.values.reduce(0, +), 0)
        for r in done {
            XCTAssertGreaterThan(r.totalSeconds, 2.1, "three uploads held 0.7 s each")
            XCTAssertGreaterThanOrEqual(r.renewals, 3, "every 0.5 s over more than 2 s")
        }
        XCTAssertEqual(proxy.renewals.value, done.map(\.renewals).reduce(0, +), "every renewal sent was answered")
        let ledger = try Ledger(path: "\(dir)/ledger.sqlite")
        for r in done {
            let leases = try ledger.leases(epoch: r.epoch, unitIndex: r.unit)
            XCTAssertEqual(leases.count, 1, "unit \(r.unit) leased once")
            for lease in leases {
                let span = lease.deadline.timeIntervalSince(lease.issuedAt)
                print("lease \(lease.id): deadline \(String(format: "%.2f", span)) s after its grant (duration 1 s)")
                XCTAssertGreaterThan(span, 2.0, "renewals moved the deadline past the nominal 1 s")
                XCTAssertEqual(lease.state, .committed)
            }
        }
    }

    /// The coordinator's side: a unit whose worker vanished goes to an idle worker soon after
    /// its lease's deadline. A ghost takes the only unit of the first round (no unit has been
    /// done yet, so no backup lease can free it) and vanishes; a worker polling for work
    /// meanwhile (0.25 s apart at first, doubling to 1–2 s) is granted the unit within 2.5 s
    /// of the ghost's deadline, and the unit counts once, for it.
    func testAnExpiredUnitGoesToAnIdleWorkerPromptly() async throws {
        let (c, dir) = try await RunningCoordinator.startInTemporaryDirectory("expiry") {
            $0.rounds.unitsPerRound = 1
            $0.leases.durationSeconds = 2
            $0.optimizer.totalRounds = 1
        }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let raw = RawClient(base: c.url)
        let ghost = try await raw.register(name: "ghost")
        let grant = try await raw.request(.POST, Routes.leases, token: ghost.token).json(LeaseGrant.self)
        let options = WorkerOptions(coordinator: c.url, joinToken: RunningCoordinator.joinToken, name: "idle",
                                    dataDirectory: "\(dir)/worker", maxUnits: 1)
        try await WorkerDaemon(options: options, logger: quietLogger("test.expiry")).run()
        let status = c.job.status()
        await c.stop()

        XCTAssertEqual(status.version, 1)
        XCTAssertEqual(status.units.expired, 1)
        let leases = try Ledger(path: "\(dir)/ledger.sqlite").leases(epoch: grant.epoch, unitIndex: grant.unitIndex)
        guard leases.count == 2 else { return XCTFail("\(leases)") }
        XCTAssertEqual(leases[0].id, grant.leaseId)
        XCTAssertEqual(leases[0].state, .expired)
        XCTAssertEqual(leases[1].state, .committed)
        let gap = leases[1].issuedAt.timeIntervalSince(leases[0].deadline)
        print(String(format: "expired unit re-leased %.2f s after the deadline", gap))
        XCTAssertGreaterThanOrEqual(gap, 0)
        XCTAssertLessThanOrEqual(gap, 2.5)
    }

    /// The default lease is 10 s (the example says so too), and durations outside 1…3600 s
    /// are refused with the range in the message.
    func testTheLeaseDurationIsShortByDefaultAndBounded() throws {
        XCTAssertEqual(JobConfig().leases.durationSeconds, 10)
        XCTAssertEqual(try JobConfig.parse(JobConfig.example).leases.durationSeconds, 10)
        let base = "auth: {join_token: t}\n"
        for ok in [1.0, 10, 3600] {
            XCTAssertEqual(try JobConfig.parse(base + "leases: {duration_seconds: \(ok), max_lifetime_seconds: 3600}")
                .leases.durationSeconds, ok)
        }
        for bad in [0.0, 0.5, -3, 3601] {
            XCTAssertThrowsError(try JobConfig.parse(base + "leases: {duration_seconds: \(bad), max_lifetime_seconds: 7200}")) {
                XCTAssertTrue("\($0)".contains("leases.duration_seconds must lie in 1...3600"), "\(bad): \($0)")
            }
        }
    }
}
