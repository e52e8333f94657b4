import ArgumentParser
import AsyncHTTPClient
import Foundation
import TributaryProtocol
import TributaryTensor

struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "A coordinator and a few worker processes on loopback train a small GPT; Ctrl-C stops everything.")

    @Option(help: "Worker processes.") var workers = 3
    @Option(help: "Dataset: builtin:arithmetic (nothing to download), a text file, a .bin token file, or an MNIST directory.")
    var data = "builtin:arithmetic"
    @Option(help: "Optimizer rounds (global steps).") var rounds = 300
    @Option(name: .customLong("units-per-round"), help: "Units averaged per round.") var unitsPerRound = 4
    @Option(name: .customLong("samples-per-unit"), help: "Sequences per unit.") var samplesPerUnit = 8
    @Option(help: "Learning rate.") var lr: Float = 2e-3
    @Option(help: "Port for the coordinator (0: any free port).") var port = 0
    @Option(name: .customLong("data-dir"), help: "Where the ledger and checkpoints go (default: a new temporary directory).")
    var dataDir: String?
    @Option(name: .customLong("threads-per-worker")) var threadsPerWorker = 1
    @Option(help: "Update codec: fp32, fp16, bf16, int8:256, int4:64, topk:0.01, lowrank:6:int4 (about 100x fewer bytes than fp32 on this 128-wide GPT, for slow uplinks) …")
    var codec = "lowrank:6:int4"
    @Option(name: .customLong("download-codec"), help: "Parameter downloads: none (changed shards in full), or deltas in int8, int4, lowrank:8:int4 …")
    var downloadCodec = "int8"
    @Option(name: .customLong("worker-memory-budget"), help: "Memory budget of each worker, e.g. 8MiB (default: unbounded); each worker logs the plan it chose.")
    var workerMemoryBudget: String?

    func run() async throws {
        guard workers >= 1, rounds >= 1 else { throw ValidationError("--workers and --rounds must be positive") }
        if let workerMemoryBudget, ByteCount.parse(workerMemoryBudget) == nil {
            throw ValidationError("--worker-memory-budget takes a size such as 8MiB")
        }
        let fm = FileManager.default
        let dir = dataDir ?? fm.temporaryDirectory.appendingPathComponent("tributary-demo-\(ProcessInfo.processInfo.processIdentifier)").path
        try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let token = UUID().uuidString
        let isImages = !data.hasPrefix("builtin:arithmetic") && (data == "builtin:digits" || isDirectory(data))
        let job = """
        name: demo
        model: {type: \(isImages ? "mlp" : "gpt"), n_layer: 4, n_head: 4, n_embd: 128, block_size: 64, hidden: [256]}
        data: {source: "\(data)", seed: 1337}
        units: {samples_per_unit: \(samplesPerUnit)}
        optimizer: {type: adamw, lr: \(lr), warmup_rounds: 20, total_rounds: \(rounds)}
        rounds: {mode: sync, units_per_round: \(unitsPerRound), min_units: 1, deadline_seconds: 30, max_staleness: 1}
        leases: {duration_seconds: 30}
        compression: {codec: "\(codec)", download_codec: "\(downloadCodec)", zstd_level: 1}
        server: {listen: "127.0.0.1:\(port)"}
        storage: {data_directory: "\(dir)/coordinator", checkpoint_every_rounds: 50, validation_every_rounds: 25}
        auth: {join_token: "\(token)"}
        """
        try job.write(toFile: "\(dir)/job.yaml", atomically: true, encoding: .utf8)
        let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        let portFile = "\(dir)/port"
        try? fm.removeItem(atPath: portFile)

        let children = ChildProcesses()
        let coordinator = try launch(exe, ["coordinator", "--job", "\(dir)/job.yaml", "--port-file", portFile, "--threads", "1"],
                                     log: "\(dir)/coordinator.log")
        children.add(coordinator)
        let stop = StopSignals { _ in children.terminateAll() }
        defer {
            stop.cancel()
            children.terminateAll()
            children.waitAll()
        }
        var boundPort: Int?
        for _ in 0..<300 {
            if let text = try? String(contentsOfFile: portFile, encoding: .utf8), let p = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
                boundPort = p
                break
            }
            guard coordinator.isRunning else { throw CLIError("the coordinator exited; see \(dir)/coordinator.log") }
            try await Task.sleep(for: .milliseconds(100))
        }
        guard let boundPort else { throw CLIError("the coordinator did not start listening; see \(dir)/coordinator.log") }
        let url = "http://127.0.0.1:\(boundPort)"
        print("coordinator: \(url)  dashboard: \(url)/  status: \(url)\(Routes.status)  logs and checkpoints: \(dir)")
        for i in 0..<workers {
            children.add(try launch(exe, ["worker", "--coordinator", url, "--join-token", token, "--name", "demo-\(i + 1)",
                                             "--data-dir", "\(dir)/worker-\(i + 1)", "--threads", String(threadsPerWorker)]
                                             + (workerMemoryBudget.map { ["--memory-budget", $0] } ?? []),
                                       log: "\(dir)/worker-\(i + 1).log"))
        }
        print("\(ProgressReporter.count(workers, "worker")) started; training \(rounds) rounds of \(unitsPerRound) units × \(samplesPerUnit) samples")
        var lastVersion = -1
        var lastValidation = -1
        while coordinator.isRunning {
            try await Task.sleep(for: .seconds(2))
            guard let status = try? await fetchStatus(url) else { continue }
            if status.version != lastVersion {
                lastVersion = status.version
                let loss = status.trainingLoss.last.map { String(format: "%.4f", $0.value) } ?? "-"
                let ratio = status.bytesIn > 0 ? Double(status.denseBytesIn) / Double(status.bytesIn) : 0
                print(String(format: "round %d/%d  loss %@  %@  %.0f samples/s  up %@ (%.1fx less than fp32)  down %@",
                             status.version, status.totalRounds, loss,
                             ProgressReporter.count(status.workers.seenRecently, "worker"), status.samplesPerSecond,
                             formatBytes(status.bytesIn), ratio, formatBytes(status.bytesOut)))
            }
            if let v = status.validationLoss.last, v.round != lastValidation {
                lastValidation = v.round
                print(String(format: "round %d  validation loss %.4f", v.round, v.value))
            }
            fflush(nil)
            if status.complete {
                print("done: \(status.totalRounds) rounds; checkpoint in \(dir)/coordinator/checkpoints")
                break
            }
            if children.workersAllExited {
                throw CLIError("every worker exited; see \(dir)/worker-*.log")
            }
        }
    }

    private func isDirectory(_ path: String) -> Bool {
        var d: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &d) && d.boolValue
    }

    private func launch(_ exe: String, _ args: [String], log: String) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        p.standardOutput = handle
        p.standardError = handle
        try p.run()
        return p
    }

    private func fetchStatus(_ url: String) async throws -> StatusReport {
        let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url + Routes.status), timeout: .seconds(5))
        let body = try await response.body.collect(upTo: 1 << 24)
        return try WireJSON.decoder().decode(StatusReport.self, from: Data(body.readableBytesView))
    }

    private func formatBytes(_ n: Int) -> String {
        let d = Double(n)
        if d >= 1_048_576 { return String(format: "%.1f MB", d / 1_048_576) }
        if d >= 1024 { return String(format: "%.1f KB", d / 1024) }
        return "\(n) B"
    }
}

/// The demo's child processes, shared with the signal handler.
final class ChildProcesses: @unchecked Sendable {
    // Unchecked: every access goes through the lock.
    private let lock = NSLock()
    private var processes: [Process] = []

    func add(_ p: Process) { lock.withLock { processes.append(p) } }

    /// SIGTERM to every child still running: the coordinator checkpoints, workers release leases.
    func terminateAll() { lock.withLock { for p in processes where p.isRunning { p.terminate() } } }

    func waitAll() { for p in lock.withLock({ processes }) { p.waitUntilExit() } }

    var workersAllExited: Bool { lock.withLock { processes.dropFirst().allSatisfy { !$0.isRunning } } }
}
