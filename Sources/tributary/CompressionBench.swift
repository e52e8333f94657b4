import ArgumentParser
import Foundation
import TributaryCompression
import TributaryCoordinator
import TributaryModels
import TributaryTensor
import TributaryTraining
import TributaryWorker

struct CompressionBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compression",
        abstract: "Update codecs: bytes vs fp32, encode/decode speed on one core, and training quality through the real coordinator.")

    @Option(help: "Codecs (comma-separated).") var codecs = "fp32,fp16,bf16,int8:256,int4:64,topk:0.02:int8,topk:0.01,lowrank:8:int4,lowrank:6:int4,lowrank:4:int4"
    @Option(help: "Dataset for the quality runs (default: ../shared tinyshakespeare if present, else builtin:arithmetic).") var data: String?
    @Option(help: "Rounds per quality run (each round: 4 workers' units of 8 sequences).") var rounds = 150
    @Option(name: .customLong("model"), help: "GPT for the quality runs: gpt-2x64 (2 layers × 4 heads × 64 wide, context 64, 108k parameters), gpt-tiny (peers.md: 4 × 4 × 128, context 128, 818k parameters) or gpt-small (peers.md: 6 × 6 × 384, context 256, 10.8M parameters; learning rate 1e-3, as nanoGPT uses for it).")
    var qualityModel = "gpt-tiny"
    @Flag(name: .customLong("skip-quality"), help: "Only the codec table.") var skipQuality = false
    @Option(name: .customLong("zstd-level"), help: "zstd level for update bodies; 0 sends the codec payload uncompressed (measures the codec alone).")
    var zstdLevel = 1
    var zstd: Int? { zstdLevel == 0 ? nil : zstdLevel }
    @Option(name: .customLong("sparse-beta1"), help: "AdamW β1 on the coordinator for top-k codecs (default: the job's automatic choice, 0 below topk:0.2 and 0.9 from there; 0.9 reproduces plain AdamW).")
    var sparseBeta1: Float?

    /// 3e-3; 1e-3 for gpt-small, as nanoGPT trains that shape.
    var learningRate: Float { qualityModel == "gpt-small" ? 1e-3 : 3e-3 }

    func run() async throws {
        guard ["gpt-2x64", "gpt-tiny", "gpt-small"].contains(qualityModel) else {
            throw ValidationError("--model: expected gpt-2x64, gpt-tiny or gpt-small")
        }
        let specs = try codecs.split(separator: ",").map { text -> UpdateCodecSpec in
            do { return try UpdateCodecSpec(parsing: String(text)) } catch { throw ValidationError("\(text): \(error)") }
        }
        #if DEBUG
        print("warning: debug build; benchmark with `swift run -c release tributary bench compression`")
        #endif
        // A real gradient: one backward pass of gpt-tiny (peers.md) on a random batch.
        ComputeThreads.set(2)
        let cfg = ComputeBenchmark.Configuration.all[1]
        let model = try cfg.spec.build(seed: 1)
        var rng = SeededRandom(seed: 2)
        let batch = cfg.spec.sampleShape.randomBatch(samples: cfg.batch, using: &rng)
        _ = try model.forwardBackward(batch, lossScale: 1) // warm-up: buffers allocated once
        model.parameters.zeroGradients()
        let stepStart = DispatchTime.now().uptimeNanoseconds
        _ = try model.forwardBackward(batch, lossScale: 1)
        let stepSeconds = Double(DispatchTime.now().uptimeNanoseconds - stepStart) / 1e9
        let gradient = model.parameters.parameters.flatMap { $0.gradient.toArray() }
        let shapes = model.parameters.parameters.map { MatrixShape(shape: $0.shape) }
        let denseBytes = 4 * gradient.count
        ComputeThreads.set(1)
        print("# codecs on a gpt-tiny gradient (\(gradient.count.formatted()) values, \(ByteCount.format(denseBytes)) as fp32), one core, zstd level \(zstdLevel); forward+backward took \(String(format: "%.0f", stepSeconds * 1000)) ms on 2 threads")
        print("| codec | bytes | ratio vs fp32 | encode MB/s | decode MB/s | relative L2 error (one update) | encode+decode vs step |")
        print("|---|---|---|---|---|---|---|")
        for spec in specs {
            var residual = [Float](repeating: 0, count: gradient.count)
            var body: [UInt8] = []
            let reps = 5
            var encodeTimes: [Double] = [], decodeTimes: [Double] = []
            var decoded = [Float](repeating: 0, count: gradient.count)
            for _ in 0..<reps {
                residual = [Float](repeating: 0, count: gradient.count)
                let t0 = DispatchTime.now().uptimeNanoseconds
                body = try spec.encode(gradient, residual: &residual, zstdLevel: zstd, shapes: shapes)
                encodeTimes.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
                let t1 = DispatchTime.now().uptimeNanoseconds
                try body.withUnsafeBytes { raw in
                    try decoded.withUnsafeMutableBufferPointer { try TensorFrame.decode(raw, expectedCount: gradient.count, into: $0) }
                }
                decodeTimes.append(Double(DispatchTime.now().uptimeNanoseconds - t1) / 1e9)
            }
            var err = 0.0, norm = 0.0
            for i in 0..<gradient.count {
                let d = Double(gradient[i] - decoded[i])
                err += d * d
                norm += Double(gradient[i]) * Double(gradient[i])
            }
            let enc = encodeTimes.sorted()[reps / 2], dec = decodeTimes.sorted()[reps / 2]
            print(String(format: "| %@ | %@ | %.1fx | %.0f | %.0f | %.2e | %.1f%% |", spec.description, ByteCount.format(body.count),
                         Double(denseBytes) / Double(body.count), Double(denseBytes) / enc / 1e6, Double(denseBytes) / dec / 1e6,
                         (err / max(norm, 1e-30)).squareRoot(), 100 * (enc + dec) / stepSeconds))
            fflush(nil)
        }
        guard !skipQuality else { return }

        let source = data ?? (FileManager.default.fileExists(atPath: "../shared/data/tinyshakespeare/input.txt")
            ? "../shared/data/tinyshakespeare/input.txt" : "builtin:arithmetic")
        let described = ["gpt-tiny": "gpt-tiny, 4 layers × 4 heads × 128 wide, context 128",
                         "gpt-small": "gpt-small, 6 layers × 6 heads × 384 wide, context 256"]
        print("\n# training quality: \(described[qualityModel] ?? "GPT 2 layers × 4 heads × 64 wide, context 64"), on \(source); \(rounds) sync rounds of 4 units × 8 sequences, 4 workers in this process, same samples for every codec; AdamW lr \(learningRate), β1 0.9 (low rank and dense codecs) (top-k: sparse_beta1 \(sparseBeta1.map { "\($0)" } ?? "automatic: 0 below topk:0.2"), steps bounded at \(JobConfig.defaultSparseUpdateBound) learning rates per coordinate), β2 0.99, clip 1.0; which worker computes which unit varies from run to run, and with it the error-feedback residuals: top-k results vary by a few hundredths")
        print("| codec | final validation loss | vs fp32 | bytes up (all workers) | ratio vs fp32 |")
        print("|---|---|---|---|---|")
        var baseline: Double?
        let progress = ProgressReporter(total: specs.count)
        let started = Date()
        for (i, spec) in specs.enumerated() {
            if progress.isTerminal {
                let perRun = i > 0 ? Date().timeIntervalSince(started) / Double(i) : .nan
                progress.update(done: i, rate: "", eta: perRun * Double(specs.count - i), detail: "training with \(spec.description)")
            }
            let (loss, bytes, dense) = try await qualityRun(spec.description, source: source)
            if progress.isTerminal { print("\r\u{1B}[2K", terminator: "") }
            if baseline == nil { baseline = loss }
            let delta = baseline.map { String(format: "%+.2f%%", 100 * (loss - $0) / $0) } ?? "–"
            print(String(format: "| %@ | %.4f | %@ | %@ | %.1fx |", spec.description, loss, delta, ByteCount.format(bytes),
                         Double(dense) / Double(max(1, bytes))))
            fflush(nil)
        }
    }

    private func qualityRun(_ codec: String, source: String) async throws -> (Double, Int, Int) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tributary-codec-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var c = JobConfig()
        c.name = "codec-\(codec)"
        c.validation.replication = .off  // codec quality against a single process, not validation
        c.optimizer.lr = learningRate
        switch qualityModel {
        case "gpt-tiny":
            (c.model.nLayer, c.model.nHead, c.model.nEmbd, c.model.blockSize) = (4, 4, 128, 128)
        case "gpt-small":
            (c.model.nLayer, c.model.nHead, c.model.nEmbd, c.model.blockSize) = (6, 6, 384, 256)
        default:
            (c.model.nLayer, c.model.nHead, c.model.nEmbd, c.model.blockSize) = (2, 4, 64, 64)
        }
        c.data.source = source
        c.units.samplesPerUnit = 8
        c.optimizer.sparseBeta1 = sparseBeta1
        c.optimizer.warmupRounds = 10
        c.optimizer.totalRounds = rounds
        c.rounds.unitsPerRound = 4
        c.rounds.maxStaleness = 0
        c.compression.codec = codec
        c.compression.zstdLevel = zstd ?? 1
        c.storage.dataDirectory = "\(dir)/c"
        c.storage.checkpointEveryRounds = rounds
        c.storage.validationEveryRounds = rounds
        c.storage.validationBatches = 40
        c.auth.joinToken = "bench"
        let status = try await InProcessJob.run(c, workers: 4, directory: dir, label: "bench.codec")
        return (status.validationLoss.last?.value ?? .nan, status.bytesIn, status.denseBytesIn)
    }
}
