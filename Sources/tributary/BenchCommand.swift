import ArgumentParser
import Foundation
import TributaryModels
import TributaryTensor
import TributaryTraining

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Benchmarks (build with -c release).",
        subcommands: [ComputeBench.self, CoordinatorBench.self, CompressionBench.self, MemoryBench.self, AttackBench.self, RobustnessBench.self,
                      TrafficBench.self, WANBench.self, SampleQualityBench.self, DelayRelayCommand.self])
}

struct ComputeBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compute",
        abstract: "Training-step speed of the peers.md configurations, next to PyTorch run in the same session.")

    @Option(help: "Configurations: mlp, gpt-tiny, gpt-small, gpt2-small (comma-separated).") var models = "mlp,gpt-tiny,gpt-small"
    @Option(help: "Optimizers: adamw, sgd (comma-separated).") var opts = "adamw"
    @Option(help: "Untimed warm-up steps.") var warmup = 5
    @Option(help: "Timed steps.") var steps = 20
    @Option(name: .customLong("peer-python"), help: "A python with torch for the PyTorch peer ('none' to skip). Default: /tmp/torchvenv/bin/python if present, else python3.")
    var peerPython: String?
    @Option(name: .customLong("peer-script"), help: "The peer script (default: ../shared/reference/pytorch_peer.py).")
    var peerScript: String?
    @OptionGroup var compute: ComputeOptions
    @OptionGroup var devices: DeviceOptions

    func run() throws {
        try compute.apply()
        #if DEBUG
        print("warning: this is a debug build; benchmark with `swift run -c release tributary bench compute`")
        #endif
        let device = try devices.make(memoryBudgetBytes: nil, cacheDirectory: DeviceOptions.userCacheDirectory)
        let configs = try models.split(separator: ",").map { name in
            guard let c = ComputeBenchmark.Configuration.named(String(name)) else {
                throw ValidationError("unknown configuration '\(name)' (mlp, gpt-tiny, gpt-small, gpt2-small)")
            }
            return c
        }
        let optimizers = opts.split(separator: ",").map(String.init)
        guard optimizers.allSatisfy({ ["adamw", "sgd"].contains($0) }) else { throw ValidationError("--opts takes adamw and/or sgd") }
        print("# tributary: \(device.name), OpenBLAS kernels \(ComputeThreads.blasCoreName), vector kernels \(VectorKernels.active), \(warmup) warm-up + \(steps) timed steps")
        var ours: [ComputeBenchmark.Result] = []
        for cfg in configs {
            for opt in optimizers {
                // A bar with rate and ETA on a terminal; plain result lines otherwise.
                let progress = ProgressReporter(total: warmup + steps)
                let r = try ComputeBenchmark.run(cfg, optimizer: opt, warmup: warmup, steps: steps,
                                                 device: device.kind == .cpu ? nil : device) { done, lastMs in
                    guard progress.isTerminal else { return }
                    progress.update(done: done, rate: String(format: "%.1f ms/step", lastMs),
                                    eta: lastMs / 1000 * Double(warmup + steps - done), detail: "\(cfg.name) \(opt)")
                }
                if progress.isTerminal { print("\r\u{1B}[2K", terminator: "") }
                ours.append(r)
                print(String(format: "tributary %@ %@: %.2f ms/step [%.2f-%.2f], %@, %.1f GFLOP/s, peak tensor memory %@%@",
                             r.configuration, r.optimizer, r.median, r.minimum, r.maximum,
                             ProgressReporter.rate(r.throughput, r.unitName), r.gflops, ByteCount.format(r.peakTensorBytes),
                             r.peakDeviceBytes.map { ", peak device memory \(ByteCount.format($0))" } ?? ""))
            }
        }
        let peer = runPeer(configs: configs.map(\.name), optimizers: optimizers)
        print()
        print("| config | optimizer | Tributary ms/step | throughput | GFLOP/s | PyTorch explicit ms | PyTorch SDPA ms | speed-up vs explicit | vs SDPA |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in ours {
            let explicit = peer.first { $0.model == r.configuration && $0.opt == r.optimizer && $0.attn != "sdpa" }
            let sdpa = peer.first { $0.model == r.configuration && $0.opt == r.optimizer && $0.attn == "sdpa" }
            func ms(_ p: PeerRow?) -> String { p.map { String(format: "%.2f", $0.msMed) } ?? "–" }
            func ratio(_ p: PeerRow?) -> String { p.map { String(format: "%.2fx", $0.msMed / r.median) } ?? "–" }
            print(String(format: "| %@ | %@ | %.2f [%.2f–%.2f] | %@ | %.1f | %@ | %@ | %@ | %@ |",
                         r.configuration, r.optimizer, r.median, r.minimum, r.maximum,
                         ProgressReporter.rate(r.throughput, r.unitName), r.gflops,
                         ms(explicit), ms(sdpa), ratio(explicit), ratio(sdpa)))
        }
        if peer.isEmpty {
            print("\nPyTorch peer not run. To compare: python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch==2.13.0+cpu numpy, then rerun.")
        }
    }

    struct PeerRow: Decodable {
        let model: String
        let attn: String
        let opt: String
        let msMed: Double
        enum CodingKeys: String, CodingKey { case model, attn, opt, msMed = "ms_med" }
    }

    /// Runs ../shared/reference/pytorch_peer.py and reads its JSON lines.
    private func runPeer(configs: [String], optimizers: [String]) -> [PeerRow] {
        if peerPython == "none" { return [] }
        let fm = FileManager.default
        let script = peerScript ?? ["../shared/reference/pytorch_peer.py", "../../shared/reference/pytorch_peer.py"]
            .first { fm.fileExists(atPath: $0) } ?? ""
        guard fm.fileExists(atPath: script) else {
            print("# PyTorch peer script not found (give --peer-script)")
            return []
        }
        let python = peerPython ?? (fm.isExecutableFile(atPath: "/tmp/torchvenv/bin/python") ? "/tmp/torchvenv/bin/python" : "/usr/bin/env")
        var args = python == "/usr/bin/env" ? ["python3"] : []
        args += [script, "--threads", String(ComputeThreads.count), "--warmup", String(warmup), "--steps", String(steps),
                 "--models", configs.joined(separator: ","), "--opts", optimizers.joined(separator: ",")]
        print("# running the PyTorch peer: \(python) \(args.joined(separator: " "))")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = args
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.standardError
        do { try process.run() } catch {
            print("# PyTorch peer could not start: \(error.localizedDescription)")
            return []
        }
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            print("# PyTorch peer failed (exit \(process.terminationStatus)); is torch installed for \(python)?")
            return []
        }
        let lines = String(decoding: output, as: UTF8.self).split(separator: "\n").filter { $0.hasPrefix("{") }
        let rows = lines.compactMap { try? JSONDecoder().decode(PeerRow.self, from: Data($0.utf8)) }
        for line in String(decoding: output, as: UTF8.self).split(separator: "\n") where line.hasPrefix("#") { print(line) }
        return rows
    }
}
