import Foundation
import XCTest

/// The systemd units' sandbox against what the binary really does. systemd cannot run here,
/// so a coordinator and a worker run a short job under strace, as an unprivileged user (like
/// the units' DynamicUser: SQLite, for one, chowns its journal only as root), and every system
/// call, socket family and memory protection they use must be one their unit allows.
extension DeployFilesTests {
    func testUnitSandboxesAllowWhatTheBinaryDoes() async throws {
        let strace = try ExternalTool.require("strace", for: "the units' sandbox")
        let analyze = try ExternalTool.require("systemd-analyze", for: "the units' sandbox")
        let exe = try ProcessTestCase.executable().path
        let asNobody = getuid() == 0 ? ["-u", "nobody"] : []
        if getuid() == 0 {
            // Under /tmp whatever TMPDIR says: a root TMPDIR may be closed to nobody.
            try? FileManager.default.removeItem(atPath: dir)
            dir = "/tmp/tributary-sandbox-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        }
        try FileManager.default.setAttributes([.posixPermissions: 0o777], ofItemAtPath: dir)
        let job = try write("""
            name: sandbox
            model: {type: gpt, n_layer: 1, n_head: 2, n_embd: 16, block_size: 16}
            units: {samples_per_unit: 4}
            optimizer: {total_rounds: 2, warmup_rounds: 1}
            rounds: {units_per_round: 2}
            validation: {replication: "off"}
            server: {listen: "127.0.0.1:0"}
            storage: {data_directory: "\(dir)/coordinator", checkpoint_every_rounds: 1, validation_every_rounds: 1}
            auth: {join_token_file: "\(dir)/token"}
            """, "job.yaml")
        _ = try write("sandbox-join-token-123456\n", "token")

        let coordinator = Process()
        coordinator.executableURL = URL(fileURLWithPath: strace)
        coordinator.arguments = ["-f", "-qq", "-o", "\(dir)/coordinator.trace"] + asNobody
            + [exe, "coordinator", "--job", job, "--port-file", "\(dir)/port", "--threads", "1"]
        coordinator.standardOutput = FileHandle.nullDevice
        coordinator.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: try write("", "coordinator.log")))
        try coordinator.run()
        defer { if coordinator.isRunning { kill(coordinator.processIdentifier, SIGKILL) } }
        var port: Int?
        for _ in 0..<600 where port == nil && coordinator.isRunning {
            port = (try? String(contentsOfFile: "\(dir)/port", encoding: .utf8)).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            if port == nil { try await Task.sleep(for: .milliseconds(50)) }
        }
        guard let port else {
            let log = (try? String(contentsOfFile: "\(dir)/coordinator.log", encoding: .utf8)) ?? ""
            if log.contains("ptrace") { throw XCTSkip("strace cannot trace here: \(log.suffix(300))") }
            XCTFail("the coordinator did not start under strace: \(log.suffix(1000))")
            return
        }
        let worker = try await ExternalTool.run(strace, ["-f", "-qq", "-o", "\(dir)/worker.trace"] + asNobody
            + [exe, "worker", "--coordinator", "http://127.0.0.1:\(port)", "--join-token-file", "\(dir)/token",
               "--data-dir", "\(dir)/worker", "--threads", "1", "--memory-budget", "64MiB"], timeout: 120)
        XCTAssertEqual(worker.status, 0, "the worker ran the job to its end: \(worker.output.suffix(1000))")
        // SIGTERM to the coordinator itself (strace would only detach): it checkpoints and exits.
        let coordinatorTrace = try String(contentsOfFile: "\(dir)/coordinator.trace", encoding: .utf8)
        let pid = try XCTUnwrap(coordinatorTrace.prefix(while: { $0 != " " }).nonEmpty.flatMap { pid_t($0) })
        kill(pid, SIGTERM)
        for _ in 0..<600 where coordinator.isRunning { try await Task.sleep(for: .milliseconds(50)) }
        XCTAssertFalse(coordinator.isRunning, "the coordinator stops on SIGTERM")

        for (unit, trace) in [("tributary-coordinator.service", "coordinator.trace"), ("tributary-worker@.service", "worker.trace")] {
            let settings = Self.unitSettings(try Self.read("Deploy/systemd/\(unit)"))
            let text = try String(contentsOfFile: "\(dir)/\(trace)", encoding: .utf8)
            let found = Self.sandboxViolations(trace: text, allowed: try await Self.allowedSystemCalls(settings, analyze: analyze),
                                               families: Set(settings["RestrictAddressFamilies"]?.first?.split(separator: " ").map(String.init) ?? []),
                                               denyWriteExecute: settings["MemoryDenyWriteExecute"] == ["yes"])
            XCTAssertEqual(found, [], "\(unit) would refuse what \(trace) shows")
        }
        // The check is live: a filter without @network-io refuses the coordinator's sockets.
        let narrow = Self.sandboxViolations(trace: coordinatorTrace,
                                            allowed: try await Self.expand("@basic-io", analyze: analyze), families: [], denyWriteExecute: true)
        XCTAssertTrue(narrow.contains("system call socket") && narrow.contains("socket family AF_INET"), "\(narrow)")
    }

    /// What a unit's SystemCallFilter= lines allow: the first line's groups, minus those of
    /// `~` lines.
    static func allowedSystemCalls(_ settings: [String: [String]], analyze: String) async throws -> Set<String> {
        var allowed: Set<String> = []
        for line in settings["SystemCallFilter"] ?? [] {
            let deny = line.hasPrefix("~")
            for group in line.dropFirst(deny ? 1 : 0).split(separator: " ") {
                let calls = try await expand(String(group), analyze: analyze)
                if deny { allowed.subtract(calls) } else { allowed.formUnion(calls) }
            }
        }
        return allowed
    }

    /// A system call group's calls, nested groups included, as this systemd defines them.
    static func expand(_ group: String, analyze: String) async throws -> Set<String> {
        guard group.hasPrefix("@") else { return [group] }
        let r = try await ExternalTool.run(analyze, ["syscall-filter", "--no-pager", group])
        XCTAssertEqual(r.status, 0, r.output)
        var calls: Set<String> = []
        for line in r.stdout.split(separator: "\n").dropFirst() {
            let word = line.trimmingCharacters(in: .whitespaces)
            if word.isEmpty || word.hasPrefix("#") { continue }
            calls.formUnion(word.hasPrefix("@") ? try await expand(word, analyze: analyze) : [word])
        }
        return calls
    }

    /// What the traced process did that the sandbox would refuse, one phrase per kind.
    static func sandboxViolations(trace: String, allowed: Set<String>, families: Set<String>, denyWriteExecute: Bool) -> [String] {
        var found: Set<String> = []
        let call = try! NSRegularExpression(pattern: #"^\d+\s+([a-z0-9_]+)\("#)
        for line in trace.split(separator: "\n") {
            let s = String(line)
            guard let m = call.firstMatch(in: s, range: NSRange(s.startIndex..., in: s)),
                  let range = Range(m.range(at: 1), in: s) else { continue }
            let name = String(s[range])
            if !allowed.contains(name) { found.insert("system call \(name)") }
            if name == "socket", let family = s.split(separator: "(").dropFirst().first?.split(separator: ",").first {
                // glibc's getaddrinfo asks netlink which address families are configured and,
                // refused, assumes both (check_pf.c): refusing it costs nothing.
                let probe = family == "AF_NETLINK" && s.contains("NETLINK_ROUTE")
                if !families.contains(String(family)) && !probe { found.insert("socket family \(family)") }
            }
            if denyWriteExecute && s.contains("PROT_EXEC")
                && (name.hasSuffix("mprotect") || (name == "mmap" && s.contains("PROT_WRITE"))) {
                found.insert("writable or late executable memory (\(name))")
            }
        }
        return found.sorted()
    }
}

private extension Substring {
    var nonEmpty: Substring? { isEmpty ? nil : self }
}
