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
        abstract: "Training-step speed of the peers.md configurations and the MNIST U-Net, next to PyTorch run in the same session.")

    @Option(help: "Configurations: \(ComputeBenchmark.Configuration.all.map(\.name).joined(separator: ", ")) (comma-separated).") var models = "mlp,gpt-tiny,gpt-small"
    @Option(help: "Optimizers: adamw, sgd (comma-separated).") var opts = "adamw"
    @Option(help: "Untimed warm-up steps.") var warmup = 5
    @Option(help: "Timed steps.") var steps = 20
    @Option(name: .customLong("peer-python"), help: "A python with torch for the PyTorch peer ('none' to skip). Default: /tmp/torchvenv/bin/python if present, else python3.")
    var peerPython: String?
    @Option(name: .customLong("peer-script"), help: "The peer script (default: ../shared/reference/pytorch_peer.py).")
    var peerScript: String?
    @Option(name: .customLong("unet-peer-script"),
            help: "The PyTorch peer of the U-Net configurations (default: Deploy/bench/pytorch_unet_peer.py of this checkout).")
    var unetPeerScript: String?
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
                let known = ComputeBenchmark.Configuration.all.map(\.name).joined(separator: ", ")
                throw ValidationError("unknown configuration '\(name)' (\(known))")
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
        // The shared peer knows mlp and gpt; the U-Nets have ours.
        let shared = PyTorchPeer.locate(peerScript, candidates: ["../shared/reference/pytorch_peer.py", "../../shared/reference/pytorch_peer.py"],
                                        option: "--peer-script")
        let unet = PyTorchPeer.locate(unetPeerScript, candidates: ["Deploy/bench/pytorch_unet_peer.py"],
                                      besideExecutable: "Deploy/bench/pytorch_unet_peer.py", option: "--unet-peer-script")
        let peer = shared.run(python: peerPython, configs: configs.filter { !$0.isImageModel }.map(\.name), optimizers: optimizers,
                              warmup: warmup, steps: steps)
            + unet.run(python: peerPython, configs: configs.filter(\.isImageModel).map(\.name), optimizers: optimizers,
                       warmup: warmup, steps: steps)
        print()
        print("| config | optimizer | Tributary ms/step | throughput | GFLOP/s | PyTorch explicit ms | PyTorch SDPA ms | speed-up vs explicit | vs SDPA |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in ours {
            let explicit = peer.first { $0.model == r.configuration && $0.opt == r.optimizer && $0.attn != "sdpa" }
            let sdpa = peer.first { $0.model == r.configuration && $0.opt == r.optimizer && $0.attn == "sdpa" }
            func ms(_ p: PyTorchPeer.Row?) -> String { p.map { String(format: "%.2f", $0.msMed) } ?? "–" }
            func ratio(_ p: PyTorchPeer.Row?) -> String { p.map { String(format: "%.2fx", $0.msMed / r.median) } ?? "–" }
            print(String(format: "| %@ | %@ | %.2f [%.2f–%.2f] | %@ | %.1f | %@ | %@ | %@ | %@ |",
                         r.configuration, r.optimizer, r.median, r.minimum, r.maximum,
                         ProgressReporter.rate(r.throughput, r.unitName), r.gflops,
                         ms(explicit), ms(sdpa), ratio(explicit), ratio(sdpa)))
        }
        if peer.isEmpty {
            print("\nPyTorch peer not run. To compare: python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch==2.13.0+cpu numpy, then rerun.")
        }
    }
}
