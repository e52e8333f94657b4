import AsyncHTTPClient
import ArgumentParser
import Foundation
import TributaryProtocol

/// `tributary bench wan`: each worker in a network namespace behind an emulated home
/// connection (`WANNetwork`: tc tbf for the rates, tc netem or `DelayRelay` for the delay),
/// the coordinator in another; the time each mode takes to reach a validation loss.
struct WANBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wan",
        abstract: "Time to a validation loss with workers behind emulated home connections (needs root: network namespaces and tc).")

    @Option(help: "Runs (comma-separated): sync-fp32, sync-both, local-H (H inner steps, with both codecs).")
    var runs = "sync-fp32,sync-both,local-10,local-50"
    @Option(name: .customLong("target-loss"), help: "The validation loss to reach.") var targetLoss = 2.5
    @Option(help: "Workers, each in its own namespace.") var workers = 4
    @Option(name: .customLong("up-mbit"), help: "Upload rate of each worker.") var upMbit = 20.0
    @Option(name: .customLong("slow-up-mbit"), help: "Upload rate of worker 0.") var slowUpMbit = 5.0
    @Option(name: .customLong("down-mbit"), help: "Download rate of each worker.") var downMbit = 100.0
    @Option(name: .customLong("delay-ms"), help: "One-way delay of every link.") var delayMs = 40
    @Option(name: .customLong("max-minutes"), help: "Give a run up to this long.") var maxMinutes = 20.0
    @Option(help: "Dataset (default: ../shared tinyshakespeare if present, else builtin:arithmetic).") var data: String?
    @Option(name: .customLong("upload-codec"), help: "Uploads of sync-both (64 wide: rank 3 is ~10x).") var uploadCodec = "lowrank:3:int4"
    @Option(name: .customLong("download-codec"), help: "Downloads of sync-both.") var downloadCodec = "int8"
    @Option(name: .customLong("local-upload-codec")) var localUploadCodec = "int4"
    @Option(name: .customLong("local-download-codec")) var localDownloadCodec = "int4"
    @Option(name: .customLong("samples-per-step")) var samplesPerStep = 8
    @Option(help: "AdamW learning rate (inner in local rounds).") var lr: Float = 3e-3

    func run() async throws {
        guard geteuid() == 0 else {
            throw CLIError("bench wan needs root (it creates network namespaces and shapes links with tc); run it with sudo")
        }
        guard let ip = WANNetwork.tool("ip"), let tc = WANNetwork.tool("tc") else {
            throw CLIError("bench wan needs iproute2's ip and tc (Debian: apt-get install iproute2)")
        }
        guard workers >= 1, workers <= 60 else { throw ValidationError("--workers must lie in 1...60") }
        let exe = try WANNetwork.ownExecutable()
        let source = data ?? (FileManager.default.fileExists(atPath: "../shared/data/tinyshakespeare/input.txt")
            ? "../shared/data/tinyshakespeare/input.txt" : "builtin:arithmetic")
        let absoluteSource = source.hasPrefix("builtin:") ? source : URL(fileURLWithPath: source).standardizedFileURL.path
        let network = WANNetwork(ip: ip, tc: tc, workers: workers)
        let netem = network.hasNetem()
        print("# wan bench: gpt-2x64 on \(source), \(workers) workers (\(upMbit) Mbit/s up, worker 0 \(slowUpMbit), \(downMbit) down, \(delayMs) ms each way by \(netem ? "tc netem" : "a delay relay (this kernel has no netem)"); rates by tc tbf), coordinator in its own namespace; target validation loss \(targetLoss); all processes share this machine's \(ProcessInfo.processInfo.activeProcessorCount) cores")
        print("| run | reached | time to target | rounds | samples | vs sync-fp32 |")
        print("|---|---|---|---|---|---|")
        var reference: Double?
        for name in runs.split(separator: ",").map(String.init) {
            let steps: Int? = name.hasPrefix("local-") ? Int(name.dropFirst("local-".count)) : nil
            guard ["sync-fp32", "sync-both"].contains(name) || steps != nil else { throw ValidationError("unknown run \(name)") }
            try network.create(upMbit: upMbit, slowUpMbit: slowUpMbit, downMbit: downMbit, delayMs: netem ? delayMs : 0)
            defer { network.destroy() }
            let outcome = try await measure(name: name, steps: steps, network: network, exe: exe, source: absoluteSource,
                                            relayDelay: netem ? 0 : delayMs)
            if name == "sync-fp32", let t = outcome.seconds { reference = t }
            let ratio = reference.flatMap { r in outcome.seconds.map { String(format: "%.1fx", r / $0) } } ?? "–"
            print("| \(name) | \(outcome.seconds == nil ? "no" : "yes") | \(outcome.seconds.map { String(format: "%.0f s", $0) } ?? "> \(Int(maxMinutes * 60)) s") | \(outcome.rounds) | \(outcome.samples) | \(ratio) |")
            fflush(nil)
        }
    }

    struct Outcome {
        var seconds: Double?
        var rounds: Int
        var samples: Int
    }

    private func measure(name: String, steps: Int?, network: WANNetwork, exe: String, source: String,
                         relayDelay: Int) async throws -> Outcome {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tributary-wan-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let h = steps ?? 1
        let codecs = name == "sync-fp32" ? (upload: "fp32", download: "none")
            : steps == nil ? (upload: uploadCodec, download: downloadCodec) : (upload: localUploadCodec, download: localDownloadCodec)
        let job = """
            name: wan-\(name)
            model: {type: gpt, n_layer: 2, n_head: 4, n_embd: 64, block_size: 64}
            data: {source: "\(source)"}
            units: {samples_per_unit: \(samplesPerStep * h), micro_batch: \(samplesPerStep)}
            optimizer: {lr: \(lr), warmup_rounds: \(steps == nil ? 10 : 1), total_rounds: \(steps == nil ? 100_000 : 100_000 / h)}
            rounds: {mode: \(steps == nil ? "sync" : "local"), units_per_round: \(workers), max_staleness: 0, deadline_seconds: 600}
            local: {steps: \(h)}
            aggregation: {rule: mean}
            validation: {replication: "off"}
            leases: {duration_seconds: 60}
            compression: {codec: "\(codecs.upload)", download_codec: "\(codecs.download)"}
            server: {listen: "0.0.0.0:8470"}
            storage: {data_directory: "\(dir)/coordinator", checkpoint_every_rounds: 100000, validation_every_rounds: 1, validation_batches: 16}
            auth: {join_token: "wan-bench-join-token"}
            """
        try job.write(toFile: "\(dir)/job.yaml", atomically: true, encoding: .utf8)
        var processes: [Process] = []
        defer { WANNetwork.stop(processes) }
        processes.append(try network.run(in: network.coordinatorNamespace, exe, ["coordinator", "run", "--job", "\(dir)/job.yaml", "--threads", "1"],
                                         log: "\(dir)/coordinator.log"))
        let status = "http://\(network.monitorAddress):8470\(Routes.status)"
        let client = StatusCommand.makeClient()
        do {
            let outcome = try await startWorkersAndWatch(status, client: client, network: network, exe: exe, dir: dir,
                                                         relayDelay: relayDelay, h: h, processes: &processes)
            try? await client.shutdown()
            return outcome
        } catch {
            try? await client.shutdown()
            throw error
        }
    }

    private func startWorkersAndWatch(_ status: String, client: HTTPClient, network: WANNetwork, exe: String, dir: String,
                                      relayDelay: Int, h: Int, processes: inout [Process]) async throws -> Outcome {
        try await waitUntilUp(status, client: client)
        for i in 0..<workers {
            var url = "http://\(network.coordinatorAddress(worker: i)):8470"
            if relayDelay > 0 {
                processes.append(try network.run(in: network.workerNamespace(i), exe,
                                                 ["bench", "wan-relay", "--listen", "127.0.0.1:18470",
                                                  "--to", "\(network.coordinatorAddress(worker: i)):8470", "--delay-ms", "\(relayDelay)"],
                                                 log: "\(dir)/relay-\(i).log"))
                url = "http://127.0.0.1:18470"
            }
            processes.append(try network.run(in: network.workerNamespace(i), exe,
                                             ["worker", "--coordinator", url, "--join-token", "wan-bench-join-token", "--name", "w\(i)",
                                              "--data-dir", "\(dir)/worker-\(i)", "--threads", "1"],
                                             log: "\(dir)/worker-\(i).log"))
        }
        let start = Date()
        var last: StatusReport?
        while Date().timeIntervalSince(start) < maxMinutes * 60 {
            try await Task.sleep(for: .milliseconds(500))
            guard let report = try? await StatusCommand.fetch(status, client: client) else { continue }
            last = report
            if let loss = report.validationLoss.last?.value, loss <= targetLoss {
                return Outcome(seconds: Date().timeIntervalSince(start), rounds: report.version,
                               samples: report.version * workers * samplesPerStep * h)
            }
        }
        return Outcome(seconds: nil, rounds: last?.version ?? 0, samples: (last?.version ?? 0) * workers * samplesPerStep * h)
    }

    private func waitUntilUp(_ status: String, client: HTTPClient) async throws {
        for _ in 0..<200 {
            if (try? await StatusCommand.fetch(status, client: client)) != nil { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw CLIError("the coordinator did not come up in its namespace within 20 s (see its log)")
    }
}
