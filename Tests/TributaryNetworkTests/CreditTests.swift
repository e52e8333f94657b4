import Foundation
import TributaryCoordinator
import TributaryProtocol
import TributaryTensor
import TributaryWorker
import XCTest
#if TRIBUTARY_CLI_TESTS
@testable import tributary
#endif

/// A volunteer's own credit: `GET /v1/workers/me`, the identity a worker keeps in its data
/// directory (`WorkerIdentity`), and `tributary credit`.
final class CreditTests: XCTestCase {
    override func setUp() { ComputeThreads.set(1) }

    /// Three volunteers, one after another, doing 3, 2 and 1 units of 4 samples (the test
    /// job's rounds have 3 units): 24 samples, ranks 1, 2, 3, shares 1/2, 1/3, 1/6, each the
    /// same as `GET /v1/workers` counts.
    func testRanksCountsAndSharesAgreeWithTheWorkerList() async throws {
        let (coordinator, dir) = try await RunningCoordinator.startInTemporaryDirectory("credit")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            try await checkCredit(coordinator, dir: dir)
        } catch {
            await coordinator.stop()
            throw error
        }
        await coordinator.stop()
    }

    private func checkCredit(_ coordinator: EmbeddedCoordinator, dir: String) async throws {
        let units = [3, 2, 1]
        for (i, count) in units.enumerated() {
            let options = WorkerOptions(coordinator: coordinator.url, joinToken: RunningCoordinator.joinToken,
                                        name: "v\(i)", dataDirectory: "\(dir)/worker-\(i)", maxUnits: count)
            try await WorkerDaemon(options: options, logger: quietLogger("test.worker")).run()
        }
        let raw = RawClient(base: coordinator.url)
        let list = try await raw.request(.GET, Routes.workers).json(WorkerList.self)
        XCTAssertEqual(list.workers.map(\.name), ["v0", "v1", "v2"])
        XCTAssertEqual(list.workers.map(\.samples), [12, 8, 4])
        XCTAssertEqual(list.workers.map(\.acceptedUpdates), [3, 2, 1])
        XCTAssertEqual(list.workers.map(\.rejectedUpdates), [0, 0, 0])

        var credits: [WorkerCredit] = []
        for (i, listed) in list.workers.enumerated() {
            let identity = try WorkerIdentity.load(dataDirectory: "\(dir)/worker-\(i)")
            XCTAssertEqual(identity.coordinator, coordinator.url)
            XCTAssertEqual(identity.workerId, listed.id)
            let credit = try await raw.request(.GET, Routes.myCredit, token: identity.token).json(WorkerCredit.self)
            XCTAssertEqual(credit.worker.id, listed.id)
            XCTAssertEqual(credit.worker.samples, listed.samples)
            XCTAssertEqual(credit.worker.flops, listed.flops)
            XCTAssertEqual(credit.worker.acceptedUpdates, listed.acceptedUpdates)
            XCTAssertEqual(credit.worker.rejectedUpdates, listed.rejectedUpdates)
            credits.append(credit)
        }
        XCTAssertEqual(credits.map(\.rank), [1, 2, 3])
        XCTAssertEqual(credits.map(\.volunteers), [3, 3, 3])
        XCTAssertEqual(credits.map(\.jobSamples), [24, 24, 24])
        XCTAssertEqual(credits.map(\.share), [12.0 / 24, 8.0 / 24, 4.0 / 24])
        XCTAssertGreaterThan(credits[0].worker.flops, 0)
        XCTAssertEqual(credits[0].worker.flops, 3 * credits[2].worker.flops, accuracy: credits[0].worker.flops * 1e-12,
                       "credit is per sample")

        #if TRIBUTARY_CLI_TESTS
        try await checkCommand(credits[1], dir: "\(dir)/worker-1")
        try await checkStatusTable(coordinator)
        #endif
    }

    #if TRIBUTARY_CLI_TESTS
    /// `tributary credit` with the second worker's data directory: its line, and the same
    /// answer as JSON.
    private func checkCommand(_ credit: WorkerCredit, dir: String) async throws {
        let exe = try DashboardTests.executable()
        let flops = ProgressReporter.flops(credit.worker.flops)
        let line = try await DashboardTests.run(exe.path, ["credit", "--data-dir", dir], timeout: 30)
        XCTAssertEqual(line.status, 0, line.stderr)
        XCTAssertEqual(line.stdout, "worker \(credit.worker.id) (v1): 8 samples (33.3% of the job), \(flops), "
                       + "2 updates accepted, 0 refused; rank 2 of 3 volunteers\n")
        let json = try await DashboardTests.run(exe.path, ["credit", "--data-dir", dir, "--json"], timeout: 30)
        XCTAssertEqual(json.status, 0, json.stderr)
        let answered = try WireJSON.decoder().decode(WorkerCredit.self, from: Data(json.stdout.utf8))
        XCTAssertEqual([answered.rank, answered.volunteers, answered.jobSamples, answered.worker.samples], [2, 3, 24, 8])
        XCTAssertEqual(answered.share, 8.0 / 24)
    }

    /// `tributary status` lists the same three, most samples first, with their shares.
    private func checkStatusTable(_ coordinator: EmbeddedCoordinator) async throws {
        let client = StatusCommand.makeClient()
        let status = try await StatusCommand.fetchStatus(coordinator.url, client: client)
        let workers = await StatusCommand.fetchWorkers(coordinator.url, client: client)
        try? await client.shutdown()
        let lines = StatusScreen.lines(status, workers: workers, width: 80, height: nil, now: Date(), color: false)
        let rows = lines.filter { $0.hasPrefix("  v") }.map { String($0.prefix(43)) }
        func spaces(_ n: Int) -> String { String(repeating: " ", count: n) }
        XCTAssertEqual(rows, [
            "  v0" + spaces(11) + "12  50.0%" + spaces(9) + "3" + spaces(8) + "0",
            "  v1" + spaces(12) + "8  33.3%" + spaces(9) + "2" + spaces(8) + "0",
            "  v2" + spaces(12) + "4  16.7%" + spaces(9) + "1" + spaces(8) + "0",
        ], lines.joined(separator: "\n"))
        for line in lines { XCTAssertLessThanOrEqual(TerminalText.width(line), 80, line) }
    }
    #endif

    /// Ties share a rank and the next rank skips as many; banned workers are ranked too.
    func testEqualSamplesShareARank() throws {
        let seen = Date(timeIntervalSince1970: 1_750_000_000)
        func worker(_ id: String, _ samples: Int, banned: Bool? = nil) -> WorkerSummary {
            WorkerSummary(id: id, name: id, samples: samples, flops: 0, acceptedUpdates: 0, rejectedUpdates: 0,
                          lastSeen: seen, active: false, banned: banned)
        }
        let all = [worker("a", 10), worker("b", 20), worker("c", 20), worker("d", 5, banned: true), worker("e", 0)]
        let ranks = try all.map { try XCTUnwrap(TrainingJob.credit(of: $0.id, among: all)).rank }
        XCTAssertEqual(ranks, [3, 1, 1, 4, 5])
        let b = try XCTUnwrap(TrainingJob.credit(of: "b", among: all))
        XCTAssertEqual([b.volunteers, b.jobSamples], [5, 55])
        XCTAssertEqual(b.share, 20.0 / 55)
        XCTAssertNil(TrainingJob.credit(of: "z", among: all))
        let nobody = [worker("a", 0), worker("b", 0)]
        XCTAssertEqual(TrainingJob.credit(of: "b", among: nobody).map { [$0.rank, $0.jobSamples] }, [1, 0])
        XCTAssertEqual(TrainingJob.credit(of: "b", among: nobody)?.share, 0)
    }

    // MARK: - The identity file

    func testIdentityFileErrors() throws {
        let dir = try temporaryDirectory("identity")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        XCTAssertThrowsError(try WorkerIdentity.load(dataDirectory: dir)) { error in
            XCTAssertEqual("\(error)", "this data directory has no worker identity yet: run `tributary worker` with it first")
        }
        let path = "\(dir)/identity.json"
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(#"{"coordinator": "http://h:1", "workerId": "w-1"}"#.utf8)))
        XCTAssertThrowsError(try WorkerIdentity.load(dataDirectory: dir)) { error in
            XCTAssertEqual("\(error)", "\(path) is not a worker identity as `tributary worker` writes it")
        }
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(
            #"{"coordinator": "http://h:1", "workerId": "w-1", "token": "trb_x"}"#.utf8)))
        XCTAssertEqual(try WorkerIdentity.load(dataDirectory: dir),
                       WorkerIdentity(coordinator: "http://h:1", workerId: "w-1", token: "trb_x"))
        // The keys the worker daemon writes.
        let written = try JSONSerialization.jsonObject(with: JSONEncoder().encode(
            WorkerIdentity(coordinator: "http://h:1", workerId: "w-1", token: "trb_x"))) as? [String: String]
        XCTAssertEqual(written, ["coordinator": "http://h:1", "workerId": "w-1", "token": "trb_x"])
    }

    #if TRIBUTARY_CLI_TESTS
    /// No identity: one line on standard error, nothing on standard output, exit status 1.
    func testCreditWithoutIdentityFailsInOneLine() async throws {
        let exe = try DashboardTests.executable()
        let dir = try temporaryDirectory("no-identity")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try await DashboardTests.run(exe.path, ["credit", "--data-dir", dir], timeout: 30)
        XCTAssertEqual(r.status, 1)
        XCTAssertEqual(r.stdout, "")
        XCTAssertEqual(r.stderr, "Error: this data directory has no worker identity yet: run `tributary worker` with it first\n")
    }

    /// An identity whose coordinator is gone: one line that says which and why.
    func testCreditWithTheCoordinatorAwayFailsInOneLine() async throws {
        let exe = try DashboardTests.executable()
        let dir = try temporaryDirectory("away")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        XCTAssertTrue(FileManager.default.createFile(atPath: "\(dir)/identity.json", contents: Data(
            #"{"coordinator": "http://127.0.0.1:1", "workerId": "w-1", "token": "trb_x"}"#.utf8)))
        let r = try await DashboardTests.run(exe.path, ["credit", "--data-dir", dir], timeout: 30)
        XCTAssertEqual(r.status, 1)
        XCTAssertEqual(r.stdout, "")
        XCTAssertEqual(r.stderr, "Error: cannot get this worker's credit from http://127.0.0.1:1: coordinator unreachable: "
                       + "GET /v1/workers/me: connection refused: nothing listens at that address "
                       + "(is the coordinator running, and is the port right?)\n")
    }

    func testCreditLine() {
        let seen = Date(timeIntervalSince1970: 1_750_000_000)
        let alice = WorkerSummary(id: "w-3f9a", name: "alice", samples: 12_800, flops: 4.1e12, acceptedUpdates: 50,
                                  rejectedUpdates: 0, lastSeen: seen, active: true)
        XCTAssertEqual(CreditCommand.line(WorkerCredit(worker: alice, rank: 2, volunteers: 5, jobSamples: 41_000,
                                                       share: 12_800.0 / 41_000)),
                       "worker w-3f9a (alice): 12,800 samples (31.2% of the job), 4.1 TFLOP, 50 updates accepted, 0 refused; "
                       + "rank 2 of 5 volunteers")
        // One of each; a name that is the id is not repeated; control characters are neutralised.
        let one = WorkerSummary(id: "w-1", name: "w-1", samples: 1, flops: 812, acceptedUpdates: 1, rejectedUpdates: 1,
                                lastSeen: seen, active: false)
        XCTAssertEqual(CreditCommand.line(WorkerCredit(worker: one, rank: 1, volunteers: 1, jobSamples: 1, share: 1)),
                       "worker w-1: 1 sample (100.0% of the job), 812 FLOP, 1 update accepted, 1 refused; rank 1 of 1 volunteer")
        var newcomer = one
        newcomer.name = "new\u{1B}[2J"
        newcomer.samples = 0
        newcomer.flops = 0
        newcomer.acceptedUpdates = 0
        newcomer.rejectedUpdates = 1_234
        newcomer.banned = true
        XCTAssertEqual(CreditCommand.line(WorkerCredit(worker: newcomer, rank: 1, volunteers: 2, jobSamples: 0, share: 0)),
                       "worker w-1 (new?[2J): 0 samples (the job has none yet), 0 FLOP, 0 updates accepted, 1,234 refused; "
                       + "rank 1 of 2 volunteers; banned by the coordinator")
        XCTAssertEqual(ProgressReporter.flops(999), "999 FLOP")
        XCTAssertEqual(ProgressReporter.flops(1_000), "1.0 kFLOP")
        XCTAssertEqual(ProgressReporter.flops(99_950_000), "100 MFLOP")
        XCTAssertEqual(ProgressReporter.flops(999_700), "1.0 MFLOP")
        XCTAssertEqual(ProgressReporter.flops(250e15), "250 PFLOP")
        XCTAssertEqual(ProgressReporter.flops(-1), "? FLOP")
        XCTAssertEqual(ProgressReporter.flops(.nan), "? FLOP")
    }
    #endif
}
