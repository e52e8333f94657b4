import Foundation
import TributaryLedger
import TributaryProtocol
import XCTest

/// Real processes on loopback: a coordinator and workers started from the built
/// `tributary` executable, killed, stopped, restarted. Subclasses hold the tests; this
/// class holds none, so XCTest runs nothing of its own.
class ProcessTestCase: XCTestCase {
    var dir = ""
    var children: [Process] = []

    override func setUp() async throws {
        dir = try temporaryDirectory("processes")
    }

    override func tearDown() async throws {
        for c in children where c.isRunning { kill(c.processIdentifier, SIGKILL) }
        for c in children { c.waitUntilExit() }
        children = []
        try? FileManager.default.removeItem(atPath: dir)
    }

    static func executable() throws -> URL {
        let candidates = [Bundle.main.bundleURL, Bundle.main.bundleURL.deletingLastPathComponent(),
                          Bundle(for: ProcessTestCase.self).bundleURL.deletingLastPathComponent(),
                          URL(fileURLWithPath: CommandLine.arguments.first ?? "").deletingLastPathComponent()]
        for c in candidates {
            let exe = c.appendingPathComponent("tributary")
            if FileManager.default.isExecutableFile(atPath: exe.path) { return exe }
        }
        throw XCTSkip("the tributary executable was not found beside the test bundle")
    }

    /// `dir`/corpus.txt: lines of sums, at least `characters` long.
    func writeCorpus(characters: Int) throws {
        var text = ""
        var i = 0
        while text.count < characters {
            text += "\(i % 97)+\((i * 7) % 89)=\(i % 97 + (i * 7) % 89)\n"
            i += 1
        }
        try text.write(toFile: "\(dir)/corpus.txt", atomically: true, encoding: .utf8)
    }

    /// A small corpus: one epoch is 14 rounds of 3 units × 4 sequences of 16 characters.
    func writeJob(rounds: Int, checkpointEvery: Int, leaseSeconds: Double = 3, port: Int = 0,
                  unitsPerRound: Int = 3, deadlineSeconds: Double = 60, maxLifetimeSeconds: Double = 600) throws -> String {
        try writeCorpus(characters: 3000)
        let job = """
        name: process-test
        model: {type: gpt, n_layer: 1, n_head: 2, n_embd: 16, block_size: 16}
        data: {source: "\(dir)/corpus.txt", validation_fraction: 0.1, seed: 7}
        units: {samples_per_unit: 4}
        optimizer: {type: adamw, lr: 0.02, warmup_rounds: 2, total_rounds: \(rounds)}
        rounds: {mode: sync, units_per_round: \(unitsPerRound), min_units: 1, deadline_seconds: \(deadlineSeconds), max_staleness: 1}
        leases: {duration_seconds: \(leaseSeconds), max_lifetime_seconds: \(maxLifetimeSeconds)}
        server: {listen: "127.0.0.1:\(port)"}
        storage: {data_directory: "\(dir)/coordinator", checkpoint_every_rounds: \(checkpointEvery), validation_every_rounds: 1000}
        auth: {join_token: "process-token"}
        """
        try job.write(toFile: "\(dir)/job.yaml", atomically: true, encoding: .utf8)
        return "\(dir)/job.yaml"
    }

    @discardableResult
    func launch(_ args: [String], log: String, environment: [String: String] = [:]) throws -> Process {
        let p = Process()
        p.executableURL = try Self.executable()
        p.arguments = args
        var env = ProcessInfo.processInfo.environment.merging(environment) { _, given in given }
        env["TRIBUTARY_BLAS_CORETYPE"] = "inherit" // no re-exec: the pid stays the one we kill
        p.environment = env
        FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        p.standardOutput = handle
        p.standardError = handle
        try p.run()
        children.append(p)
        return p
    }

    func startCoordinator(_ job: String, listen: String? = nil) async throws -> (Process, Int) {
        let portFile = "\(dir)/port"
        try? FileManager.default.removeItem(atPath: portFile)
        var args = ["coordinator", "--job", job, "--port-file", portFile, "--threads", "1"]
        if let listen { args += ["--listen", listen] }
        let p = try launch(args, log: "\(dir)/coordinator-\(children.count).log")
        for _ in 0..<600 {
            if let t = try? String(contentsOfFile: portFile, encoding: .utf8), let port = Int(t.trimmingCharacters(in: .whitespacesAndNewlines)) {
                return (p, port)
            }
            if !p.isRunning { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        let log = (try? String(contentsOfFile: "\(dir)/coordinator-\(children.count - 1).log", encoding: .utf8)) ?? ""
        throw XCTSkip("coordinator did not start: \(log.suffix(500))")
    }

    /// `environment` adds to the test's own (`TRIBUTARY_LOG_LEVEL=debug` logs each lease granted and renewed).
    func startWorker(_ i: Int, port: Int, environment: [String: String] = [:]) throws -> Process {
        try launch(["worker", "--coordinator", "http://127.0.0.1:\(port)", "--join-token", "process-token",
                    "--name", "w\(i)", "--data-dir", "\(dir)/worker-\(i)", "--threads", "1"],
                   log: "\(dir)/worker-\(i).log", environment: environment)
    }

    func status(_ port: Int) async -> StatusReport? {
        guard let reply = try? await RawClient(base: "http://127.0.0.1:\(port)").request(.GET, Routes.status) else { return nil }
        return try? reply.json(StatusReport.self)
    }

    func waitFor(_ port: Int, timeout: Double, _ condition: (StatusReport) -> Bool) async throws -> StatusReport {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let s = await status(port), condition(s) { return s }
            try await Task.sleep(for: .milliseconds(200))
        }
        let last = await status(port)
        XCTFail("timed out; last status: version \(last?.version ?? -1), workers \(last?.workers.total ?? -1)")
        throw XCTSkip("timeout")
    }

    /// Every unit is done once per epoch, the rounds run 1…N without gaps.
    func assertLedgerConsistent(rounds: Int, unitsPerRound: Int, file: StaticString = #filePath, line: UInt = #line) throws {
        let ledger = try Ledger(path: "\(dir)/coordinator/ledger.sqlite")
        let history = try ledger.rounds(limit: 10_000)
        XCTAssertEqual(history.map(\.round), Array(1...rounds), "rounds recorded once each, in order", file: file, line: line)
        var total = 0
        for r in 1...rounds {
            let updates = try ledger.updates(round: r)
            total += updates.count
            XCTAssertGreaterThanOrEqual(updates.count, 1, "round \(r)", file: file, line: line)
            XCTAssertLessThanOrEqual(updates.count, unitsPerRound, "round \(r)", file: file, line: line)
        }
        var seen = Set<String>()
        for r in 1...rounds {
            for u in try ledger.updates(round: r) {
                XCTAssertTrue(seen.insert("\(u.epoch)/\(u.unitIndex)").inserted,
                              "unit \(u.unitIndex) of epoch \(u.epoch) applied twice", file: file, line: line)
            }
        }
        XCTAssertEqual(seen.count, total)
    }
}
