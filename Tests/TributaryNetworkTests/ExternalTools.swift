import Foundation
import XCTest

/// Programs the deployment checks run (systemd-analyze, kubernetes-validate, promtool, …).
/// Deploy/install-deps.sh --tests puts the ones Debian does not install system-wide in a cache
/// directory; they are looked for there first, then on PATH.
enum ExternalTool {
    static var cacheDirectory: String {
        let env = ProcessInfo.processInfo.environment
        let cache = env["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? "\(NSHomeDirectory())/.cache"
        return "\(cache)/tributary-test-tools"
    }

    static func find(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        let directories = ["\(cacheDirectory)/bin", "\(cacheDirectory)/venv/bin"]
            + path.split(separator: ":").map(String.init) + ["/usr/sbin", "/sbin"]
        return directories.map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// The tool's path, or a skip that says how to get it.
    static func require(_ name: String, for purpose: String) throws -> String {
        guard let path = find(name) else {
            throw XCTSkip("\(name) not found (looked in \(cacheDirectory) and on PATH), so \(purpose) is not checked; "
                          + "run: bash Deploy/install-deps.sh --tests")
        }
        return path
    }

    struct Finished {
        let status: Int32
        let stdout: String
        let stderr: String
        var output: String { stdout + stderr }
    }

    /// Runs `executable` to its end (killed after `timeout` seconds, which fails the caller's
    /// assertions on status). Output goes through files: a pipe left unread could block it.
    static func run(_ executable: String, _ arguments: [String], stdin: Data? = nil, timeout: Double = 120,
                    environment: [String: String] = [:], directory: String? = nil) async throws -> Finished {
        let dir = try temporaryDirectory("tool")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let files = ["in", "out", "err"].map { "\(dir)/\($0)" }
        FileManager.default.createFile(atPath: files[0], contents: stdin ?? Data())
        FileManager.default.createFile(atPath: files[1], contents: nil)
        FileManager.default.createFile(atPath: files[2], contents: nil)
        let input = try FileHandle(forReadingFrom: URL(fileURLWithPath: files[0]))
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: files[1]))
        let err = try FileHandle(forWritingTo: URL(fileURLWithPath: files[2]))
        defer { [input, out, err].forEach { try? $0.close() } }

        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        p.environment = ProcessInfo.processInfo.environment.merging(environment) { _, given in given }
        if let directory { p.currentDirectoryURL = URL(fileURLWithPath: directory) }
        p.standardInput = input
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning, Date() < deadline { try await Task.sleep(for: .milliseconds(20)) }
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
        let read = { (path: String) in String(decoding: FileManager.default.contents(atPath: path) ?? Data(), as: UTF8.self) }
        return Finished(status: p.terminationStatus, stdout: read(files[1]), stderr: read(files[2]))
    }
}
