import ArgumentParser
import Foundation
import TributaryCompression
import TributaryCoordinator
import TributaryTensor

/// `tributary bench traffic`: the same training (same samples, same data order per unit)
/// in sync fp32, with the upload codec, with compressed downloads too, and in local rounds;
/// bytes up and down per training sample and the final validation loss, each against sync fp32.
struct TrafficBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "traffic",
        abstract: "Bytes up and down per training sample and final validation loss: sync fp32, upload codec, compressed downloads, local steps (DiLoCo).")

    @Option(help: "Dataset (default: ../shared tinyshakespeare if present, else builtin:arithmetic).") var data: String?
    @Option(name: .customLong("model"), help: "gpt-tiny (4 layers × 4 heads × 128 wide, context 128, peers.md) or gpt-2x64 (2 × 4 × 64, context 64).")
    var modelName = "gpt-tiny"
    @Option(help: "Sync rounds of the reference run; local runs take rounds / H rounds of H inner steps (the same samples).")
    var rounds = 400
    @Option(help: "Workers (in this process), one unit each per round.") var workers = 4
    @Option(name: .customLong("samples-per-step"), help: "Samples per unit in sync rounds, and per inner step in local rounds.")
    var samplesPerStep = 8
    @Option(name: .customLong("upload-codec"), help: "The upload codec of the compressed sync runs.") var uploadCodec = "lowrank:6:int4"
    @Option(name: .customLong("download-codec"), help: "The download codec of the sync-both run.") var downloadCodec = "int8"
    @Option(name: .customLong("local-upload-codec"), help: "The upload codec of the local runs (pseudo-gradients of H AdamW steps are far from low rank).")
    var localUploadCodec = "int4"
    @Option(name: .customLong("local-download-codec"), help: "The download codec of the local runs.") var localDownloadCodec = "int4"
    @Option(name: .customLong("local-steps"), help: "Inner steps H of the local runs (comma-separated).") var localSteps = "10,50"
    @Option(help: "AdamW learning rate (sync; inner in local rounds).") var lr: Float = 3e-3
    @Option(name: .customLong("outer-lr"), help: "Local rounds: the outer Nesterov SGD's learning rate.") var outerLr: Float = 0.7
    @Option(name: .customLong("outer-momentum"), help: "Local rounds: the outer (Nesterov) momentum; 0: plain SGD.") var outerMomentum: Float = 0.9
    @Option(help: "Repeats of the whole table.") var repeats = 1
    @Option(help: "Only these runs (comma-separated: sync-fp32, sync-up, sync-both, local-H); the ratios need sync-fp32 among them.") var only: String?

    struct Run {
        let name: String
        let upload: String
        let download: String
        let steps: Int?
    }

    func run() async throws {
        guard ["gpt-tiny", "gpt-2x64"].contains(modelName) else { throw ValidationError("--model: expected gpt-tiny or gpt-2x64") }
        do {
            for codec in [uploadCodec, downloadCodec, localUploadCodec, localDownloadCodec] { _ = try UpdateCodecSpec(parsing: codec) }
        } catch { throw ValidationError("codec: \(error)") }
        let hs = try localSteps.split(separator: ",").map { text -> Int in
            guard let h = Int(text), h >= 1, rounds % h == 0 else {
                throw ValidationError("--local-steps: \(text) must be a positive divisor of --rounds (\(rounds))")
            }
            return h
        }
        guard workers >= 1, samplesPerStep >= 1, rounds >= 1, repeats >= 1 else {
            throw ValidationError("--workers, --samples-per-step, --rounds and --repeats must be positive")
        }
        #if DEBUG
        print("warning: debug build; benchmark with `swift run -c release tributary bench traffic`")
        #endif
        var runs = [Run(name: "sync-fp32", upload: "fp32", download: "none", steps: nil),
                    Run(name: "sync-up", upload: uploadCodec, download: "none", steps: nil),
                    Run(name: "sync-both", upload: uploadCodec, download: downloadCodec, steps: nil)]
        runs += hs.map { Run(name: "local-\($0)", upload: localUploadCodec, download: localDownloadCodec, steps: $0) }
        if let only {
            let wanted = Set(only.split(separator: ",").map(String.init))
            runs = runs.filter { wanted.contains($0.name) }
        }
        let source = data ?? (FileManager.default.fileExists(atPath: "../shared/data/tinyshakespeare/input.txt")
            ? "../shared/data/tinyshakespeare/input.txt" : "builtin:arithmetic")
        let samples = rounds * workers * samplesPerStep
        print("# traffic bench: \(modelName) on \(source), \(samples.formatted()) training samples per run (\(workers) workers in this process, \(samplesPerStep) samples per sync unit or inner step), AdamW lr \(lr) (inner in local rounds; outer Nesterov SGD lr \(outerLr), momentum \(outerMomentum)), \(repeats) repeat(s)")
        print("| repeat | run | uploads | downloads | rounds | up B/sample | down B/sample (batches) | total B/sample | vs sync fp32 | final validation loss | vs sync fp32 |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        ComputeThreads.set(ProcessInfo.processInfo.activeProcessorCount)
        for repeatIndex in 1...repeats {
            var reference: (bytes: Double, loss: Double)?
            for run in runs {
                let result = try await measure(run, source: source)
                let total = Double(result.up + result.down) / Double(samples)
                if run.name == "sync-fp32" { reference = (total, result.loss) }
                let ratio = reference.map { String(format: "%.0fx", $0.bytes / total) } ?? "–"
                let lossDelta = reference.map { String(format: "%+.2f%%", 100 * (result.loss - $0.loss) / $0.loss) } ?? "–"
                print(String(format: "| %d | %@ | %@ | %@ | %d | %.0f | %.0f (%.0f) | %.0f | %@ | %.4f | %@ |", repeatIndex, run.name,
                             run.upload, run.download, result.rounds, Double(result.up) / Double(samples),
                             Double(result.down) / Double(samples), Double(result.batchBytes) / Double(samples), total, ratio,
                             result.loss, lossDelta))
                fflush(nil)
            }
        }
    }

    struct Result {
        var up: Int
        var down: Int
        var batchBytes: Int
        var loss: Double
        var rounds: Int
    }

    private func measure(_ run: Run, source: String) async throws -> Result {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tributary-traffic-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let h = run.steps ?? 1
        let jobRounds = rounds / h
        var c = JobConfig()
        c.name = "traffic-\(run.name)"
        c.validation.replication = .off
        c.aggregation.rule = .mean       // the traffic, not robustness: the mean is every rule's reference
        if modelName == "gpt-tiny" {
            (c.model.nLayer, c.model.nHead, c.model.nEmbd, c.model.blockSize) = (4, 4, 128, 128)
        } else {
            (c.model.nLayer, c.model.nHead, c.model.nEmbd, c.model.blockSize) = (2, 4, 64, 64)
        }
        c.data.source = source
        c.units.samplesPerUnit = samplesPerStep * h
        c.units.microBatch = samplesPerStep
        c.optimizer.lr = lr
        // The same number of warm-up optimizer steps: 10 rounds in sync, 10 inner steps (at least one round) in local.
        c.optimizer.warmupRounds = run.steps == nil ? 10 : max(1, 10 / h)
        c.optimizer.totalRounds = jobRounds
        if let steps = run.steps {
            c.rounds.mode = .local
            c.local.steps = steps
            c.local.outerLr = outerLr
            c.local.outerMomentum = outerMomentum
            c.local.outerNesterov = outerMomentum > 0
        }
        c.rounds.unitsPerRound = workers
        c.rounds.maxStaleness = 0
        c.compression.codec = run.upload
        c.compression.downloadCodec = run.download
        c.storage.dataDirectory = "\(dir)/c"
        c.storage.checkpointEveryRounds = jobRounds
        c.storage.validationEveryRounds = jobRounds
        c.storage.validationBatches = 40
        c.auth.joinToken = "bench-traffic-join"
        let status = try await InProcessJob.run(c, workers: workers, directory: dir, label: "bench.traffic")
        // Batches are kind-2 token windows: a 16-byte header and context + 1 one-byte tokens per sample.
        let units = status.updatesAccepted
        let batchBytes = units * (16 + c.units.samplesPerUnit * ((c.model.blockSize ?? 0) + 1))
        return Result(up: status.bytesIn, down: status.bytesOut, batchBytes: batchBytes,
                      loss: status.validationLoss.last?.value ?? .nan, rounds: status.version)
    }
}
