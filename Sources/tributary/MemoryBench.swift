import ArgumentParser
import Foundation
import TributaryModels
import TributaryPlanning
import TributaryProtocol
import TributaryTensor
import TributaryTraining
import TributaryWorker

/// `tributary bench memory`: one GPT (or the MNIST U-Net) under a falling memory budget. Each budget runs in its
/// own child process (a process's peak RSS only grows), which runs the worker's real unit
/// computation offline — planner, shard cache, streamed step, codec with error feedback,
/// upload queue — and reports the plan, the allocator's peak, the OS's peak RSS and the
/// step time.
struct MemoryBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "memory",
        abstract: "Worker step under a falling memory budget: plan, allocator peak, peak RSS, slowdown.")

    @Option(help: "Configuration: gpt-tiny, gpt-small (peers.md), gpt2-small, or unet-mnist (Deploy/jobs/mnist-unet.yaml's U-Net).")
    var model = "gpt-tiny"
    @Option(help: "Budgets as fractions of the unbudgeted peak (comma-separated; 1 = the unbudgeted plan).")
    var fractions = "1,0.5,0.25,0.125,0.0625"
    @Option(help: "Update codec (with error feedback unless fp32).") var codec = "int8:256"
    @Option(help: "Untimed warm-up units.") var warmup = 2
    @Option(help: "Timed units.") var steps = 6
    @Option(name: .customLong("child-budget"), help: .hidden) var childBudget: Int?
    @Flag(name: .customLong("child"), help: .hidden) var child = false
    @OptionGroup var compute: ComputeOptions
    @OptionGroup var devices: DeviceOptions

    struct ChildResult: Codable {
        var plan: String
        var predicted: Int
        var allocatorPeak: Int
        var rssPeak: Int
        var rssBaseline: Int
        var hwmReset: Bool
        var milliseconds: Double
        var cpuMilliseconds: Double
        var loss: Double
        /// On a GPU: the device memory's peak (the budgets are VRAM budgets there).
        var devicePeak: Int?
    }

    /// The U-Net of Deploy/jobs/mnist-unet.yaml with its unit of 32 images: its plans keep
    /// activations or recompute the residual blocks as the budget falls.
    static let mnistUNet = (spec: ModelSpec(UNetConfig(imageSize: 28, inChannels: 1, baseChannels: 16, channelMultipliers: [1, 2, 2],
                                                       blocksPerLevel: 1, normGroups: 8, timesteps: 1000, schedule: .linear)),
                            batch: 32)

    /// The model and its unit size.
    func configuration() throws -> (spec: ModelSpec, batch: Int) {
        if model == "unet-mnist" { return Self.mnistUNet }
        guard let cfg = ComputeBenchmark.Configuration.named(model), cfg.spec.family is GPTConfig else {
            throw ValidationError("--model takes gpt-tiny, gpt-small, gpt2-small or unet-mnist")
        }
        return (cfg.spec, cfg.batch)
    }

    func job() throws -> JobDescription {
        let cfg = try configuration()
        return JobDescription(name: "bench-memory", model: cfg.spec, samplesPerUnit: cfg.batch, microBatchSize: cfg.batch,
                              updateCodec: codec, zstdLevel: 1)
    }

    func run() async throws {
        try compute.apply()
        if child { return try await runChild() }
        #if DEBUG
        print("warning: this is a debug build; benchmark with `swift build -c release && .build/release/tributary bench memory`")
        #endif
        let job = try job()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tributary-bench-memory-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let onGPU = try devices.choice() != .cpu
        let unbudgeted = try OfflineUnitRunner(job: job, directory: dir, budgetBytes: nil).plan.predictedPeakBytes
        let parsed = try fractions.split(separator: ",").map { text -> Double in
            guard let f = Double(text.trimmingCharacters(in: .whitespaces)), f > 0, f <= 1 else {
                throw ValidationError("--fractions takes numbers in (0, 1]")
            }
            return f
        }
        print("# \(job.model.summary); unit of \(job.samplesPerUnit) samples; codec \(codec); \(ComputeThreads.count) threads; \(warmup) warm-up + \(steps) timed units per budget, each budget in its own process")
        print("# unbudgeted plan's peak: \(ByteCount.format(unbudgeted)); parameters+gradients+AdamW state of this model: \(ByteCount.format(16 * job.model.parameterCount))")
        print()
        if onGPU {
            print("# --device \(devices.device): each budget is a VRAM budget; the host memory is unbounded")
            print("| VRAM budget | plan | predicted device peak | device peak | ms/unit (wall) | vs unbudgeted |")
            print("|---|---|---|---|---|---|")
        } else {
            print("| budget | plan | predicted peak | allocator peak | peak RSS | RSS − budget | ms/unit (wall) | vs unbudgeted | CPU ms/unit | vs unbudgeted |")
            print("|---|---|---|---|---|---|---|---|---|---|")
        }
        fflush(nil)
        var baseMs: Double?, baseCPU: Double?
        for f in parsed {
            let budget: Int? = f >= 1 ? nil : Int(Double(unbudgeted) * f)
            let label = budget.map { "\(ByteCount.format($0)) (1/\(String(format: "%g", 1 / f)))" } ?? "unbounded"
            guard let r = try runChildProcess(budget: budget) else {
                print("| \(label) | does not fit | | | | | | | | |")
                continue
            }
            if budget == nil { baseMs = r.milliseconds; baseCPU = r.cpuMilliseconds }
            if onGPU {
                let peak = r.devicePeak.map(ByteCount.format) ?? "–"
                let within = zip(r.devicePeak.map { [$0] } ?? [], budget.map { [$0] } ?? []).allSatisfy { $0 <= $1 } ? "" : " (over!)"
                print("| \(label) | \(r.plan) | \(ByteCount.format(r.predicted)) | \(peak)\(within) | \(String(format: "%.1f", r.milliseconds)) | \(baseMs.map { String(format: "%.2fx", r.milliseconds / $0) } ?? "–") |")
                fflush(nil)
                continue
            }
            let over = r.rssPeak - (budget ?? r.allocatorPeak)
            print("| \(label) | \(r.plan) | \(ByteCount.format(r.predicted)) | \(ByteCount.format(r.allocatorPeak)) | \(ByteCount.format(r.rssPeak)) | \(over >= 0 ? "+" : "−")\(ByteCount.format(abs(over))) | \(String(format: "%.1f", r.milliseconds)) | \(baseMs.map { String(format: "%.2fx", r.milliseconds / $0) } ?? "–") | \(String(format: "%.1f", r.cpuMilliseconds)) | \(baseCPU.map { String(format: "%.2fx", r.cpuMilliseconds / $0) } ?? "–") |")
            if !r.hwmReset { print("  (peak RSS could not be reset after set-up; it includes the set-up)") }
            fflush(nil)
        }
        print()
        if onGPU { return }
        print("RSS − budget: the process's fixed overhead beyond tensor memory (runtime, code, OpenBLAS, HTTP and codec buffers); for the unbudgeted row, RSS − allocator peak.")
    }

    private func runChildProcess(budget: Int?) throws -> ChildResult? {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL
        if !FileManager.default.isExecutableFile(atPath: p.executableURL?.path ?? "") {
            p.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        }
        var args = ["bench", "memory", "--child", "--model", model, "--codec", codec, "--warmup", "\(warmup)", "--steps", "\(steps)"]
        if let t = compute.threads { args += ["--threads", "\(t)"] }
        if let budget { args += ["--child-budget", "\(budget)"] }
        args += ["--device", devices.device]
        p.arguments = args
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("RESULT ") }) else {
            if text.contains("does not fit") || p.terminationStatus != 0 { return nil }
            throw CLIError("bench child produced no result: \(text.suffix(300))")
        }
        return try JSONDecoder().decode(ChildResult.self, from: Data(line.dropFirst("RESULT ".count).utf8))
    }

    private func runChild() async throws {
        let job = try job()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tributary-bench-memory-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let runner: OfflineUnitRunner
        do {
            if try devices.choice() == .cpu {
                runner = try OfflineUnitRunner(job: job, directory: dir, budgetBytes: childBudget)
            } else {
                // The budget is the GPU's: VRAM, with the host's memory unbounded.
                var gpu = devices
                gpu.vramBudget = childBudget.map { ["\($0)"] } ?? []
                let device = try gpu.make(memoryBudgetBytes: nil, cacheDirectory: DeviceOptions.userCacheDirectory)
                runner = try OfflineUnitRunner(job: job, directory: dir, budgetBytes: nil, device: device)
            }
        } catch {
            print("does not fit: \(error)")
            return
        }
        let cfg = try configuration()
        do {
            // The model to publish lives outside the budget and is gone before measuring.
            let published = try job.model.build(seed: 1)
            try runner.publish(published.parameters)
        }
        TensorAllocator.shared.releaseCachedBlocks()
        var rng = SeededRandom(seed: 7)
        let batches = (0..<2).map { _ in cfg.spec.sampleShape.randomBatch(samples: cfg.batch, using: &rng) }
        // Start the OS's high-water mark from here (Linux: "5" to clear_refs resets VmHWM).
        let reset = (try? "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8)) != nil
        let baseline = Self.procStatus("VmRSS")
        var times: [Double] = []
        var loss = 0.0
        var cpuStart = 0.0
        for i in 0..<(warmup + steps) {
            if i == warmup { cpuStart = Self.cpuSeconds() }
            let start = DispatchTime.now().uptimeNanoseconds
            loss = try await runner.run(batches[i % 2]).loss
            if i >= warmup { times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6) }
        }
        let cpuMs = (Self.cpuSeconds() - cpuStart) * 1000 / Double(max(1, steps))
        times.sort()
        let result = ChildResult(plan: Self.describe(runner.plan.execution),
                                 predicted: runner.plan.predictedDevicePeakBytes ?? runner.plan.predictedPeakBytes, allocatorPeak: runner.device.allocator.peakBytes,
                                 rssPeak: Self.procStatus("VmHWM"), rssBaseline: baseline, hwmReset: reset,
                                 milliseconds: times.isEmpty ? 0 : times[times.count / 2], cpuMilliseconds: cpuMs, loss: loss,
                                 devicePeak: runner.device.deviceMemoryPeakBytes)
        let data = try JSONEncoder().encode(result)
        print("RESULT " + String(decoding: data, as: UTF8.self))
        fflush(nil)
    }

    static func describe(_ e: MemoryPlan.Execution) -> String {
        switch e {
        case let .streamedGPT(p): return p.description
        case let .residentModel(m, recomputes): return "whole model, micro-batch \(m)" + (recomputes ? ", residual blocks recomputed" : "")
        }
    }

    /// User + system CPU time of this process so far.
    static func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }

    /// A /proc/self/status field in bytes (0 where there is none).
    static func procStatus(_ field: String) -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix(field + ":") {
            let kb = line.split(separator: " ").compactMap { Int($0) }.first ?? 0
            return kb * 1024
        }
        return 0
    }
}
