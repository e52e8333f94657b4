import Foundation
import Logging
import TributaryCompression
import TributaryCoordinator
import TributaryModels
import TributaryProtocol
import TributaryTensor

/// One run of `bench robustness`: a coordinator job on a temporary directory, and workers
/// that lease in turn (one unit each per round), compute the unit's gradient on the leased
/// version with a model of their own, and push it (or, when hostile, their attack on it).
struct RobustnessRun {
    let settings: RobustnessBench
    let source: String
    let rule: AggregationRule
    let attack: RobustnessAttack?
    let seed: UInt64

    struct Result {
        var loss: Double
        var hostileAccepted = 0
        var hostileRefused = 0
        /// Samples credited to hostile workers at the end (after voids).
        var hostileCredit = 0
        var hostileBanned = 0
        /// Replica samples against counted samples: the whole run, and its second half
        /// (once workers have a reputation).
        var replicaSamples = 0
        var countedSamples = 0
        var lateReplicaSamples = 0
        var lateCountedSamples = 0
    }

    func run() async throws -> Result {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tributary-robust-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var c = JobConfig()
        c.name = "robustness"
        c.model.nLayer = 2
        c.model.nHead = 4
        c.model.nEmbd = settings.nEmbd
        c.model.blockSize = 64
        c.data.source = source
        c.data.seed = seed
        c.units.samplesPerUnit = 8
        c.optimizer.totalRounds = settings.rounds
        c.optimizer.warmupRounds = max(1, settings.rounds / 10)
        c.rounds.unitsPerRound = settings.workers
        c.rounds.mode = settings.mode
        c.rounds.maxStaleness = 0
        c.aggregation.rule = rule
        c.validation.replication = settings.replication
        c.storage.dataDirectory = dir
        c.storage.checkpointEveryRounds = 1_000_000
        c.storage.validationEveryRounds = 1_000_000
        c.storage.validationBatches = 16
        c.auth.joinToken = "bench"
        var logger = Logger(label: "bench.robustness")
        logger.logLevel = .critical
        let job = try await TrainingJob.open(config: c, logger: logger)
        do {
            let result = try await drive(job)
            await job.close()
            return result
        } catch {
            await job.close()
            throw error
        }
    }

    /// Rounds until the job completes: every worker leases once per pass, in order.
    private func drive(_ job: TrainingJob) async throws -> Result {
        let model = try job.spec.build(seed: 1, allocator: .shared)
        var ids: [String] = []
        for i in 0..<settings.workers {
            ids.append(try await job.register(RegisterRequest(joinToken: "bench", name: "w\(i)")).workerId)
        }
        let hostileIDs = Set(ids.suffix(attack == nil ? 0 : settings.hostile))
        // Greedy hostile workers ask again after every unit, as often as the pass has workers.
        let turns = ids.flatMap { id in settings.greedy && hostileIDs.contains(id) ? Array(repeating: id, count: ids.count) : [id] }
        var byVersion: [Int: [String: [Float]]] = [:]  // the last 11 versions' parameters (the stale attack)
        var replayBodies: [String: [UInt8]]?
        var result = Result(loss: .nan)
        var stalled = 0, lastVersion = -1
        var half: (version: Int, replicaSamples: Int)?
        while await !job.isComplete {
            let v = await job.version
            if half == nil, v >= settings.rounds / 2 { half = (v, await job.replicationFigures.replicaSamples) }
            stalled = v == lastVersion ? stalled + 1 : 0
            lastVersion = v
            if stalled > 2000 {
                let s = job.status()
                throw CLIError("the run stalled at version \(v) (units leased \(s.units.leased), done \(s.units.done), refused \(s.updatesRejected))")
            }
            var progressed = false
            for id in turns where !job.registry.bannedIDs.contains(id) {  // a banned token is refused at the door
                let grant: LeaseGrant
                do { grant = try await job.lease(worker: id) } catch { continue }
                let batchBody = try await job.batch(lease: grant.leaseId, worker: id)
                let batch = try BatchBody.decode(batchBody, maxBatch: grant.sampleCount, width: job.spec.sampleShape.width)
                let isHostile = hostileIDs.contains(id)
                // Every worker computes on the version its lease names (a round may close mid-pass).
                if byVersion[grant.version] == nil {
                    byVersion[grant.version] = await job.parameterValues()
                    byVersion = byVersion.filter { $0.key >= grant.version - 10 }
                }
                let parameters = byVersion[grant.version] ?? [:]
                let oldest = byVersion.keys.min().flatMap { byVersion[$0] } ?? parameters
                let base = isHostile && attack == .stale ? oldest : parameters
                var (loss, g) = try gradient(model, parameters: base, batch: batch, layout: job.layout)
                var bodies: [String: [UInt8]]?
                if isHostile, let attack {
                    switch attack {
                    case .signFlip: g = g.mapValues { $0.map { -$0 } }
                    case .scale: g = g.mapValues { $0.map { 100 * $0 } }
                    case .noise:
                        let norm = Self.norm(g)
                        var rng = SeededRandom(seed: seed &+ UInt64(grant.unitIndex), stream: 99)
                        let count = Double(g.values.reduce(0) { $0 + $1.count })
                        let sigma = Float(10 * norm / count.squareRoot())
                        g = g.mapValues { $0.map { $0 + sigma * rng.nextGaussian() } }
                    case .zeros: g = g.mapValues { [Float](repeating: 0, count: $0.count) }
                    case .replay: bodies = replayBodies
                    case .stale: break
                    case .littleIsEnough:
                        // μ and σ estimated from the two halves of its own unit (Baruch et al.
                        // assume an omniscient attacker; this one sees only its samples).
                        let halves = batch.halves()
                        let (_, a) = try gradient(model, parameters: base, batch: halves.0, layout: job.layout)
                        let (_, b) = try gradient(model, parameters: base, batch: halves.1, layout: job.layout)
                        g = a.merging(b) { x, y in Self.littleIsEnough(x, y) }
                    case .innerProduct: g = g.mapValues { $0.map { -0.5 * $0 } }
                    case .falseLoss: loss = 0
                    }
                }
                let sent = try bodies ?? g.mapValues { v in try v.withUnsafeBufferPointer { try TensorFrame.encode($0, codec: .fp32, zstdLevel: 1) } }
                do {
                    for (name, body) in sent {
                        _ = try await job.receiveUpdate(lease: grant.leaseId, worker: id, shard: name, body: body)
                    }
                    _ = try await job.commit(lease: grant.leaseId, worker: id, CommitRequest(samples: grant.sampleCount, loss: loss))
                    if isHostile {
                        result.hostileAccepted += 1
                        if replayBodies == nil { replayBodies = sent }
                    }
                    progressed = true
                } catch {
                    if isHostile { result.hostileRefused += 1 }
                    try? await job.release(lease: grant.leaseId, worker: id)
                }
            }
            if !progressed {
                try await job.tick()
                try await Task.sleep(nanoseconds: 5_000_000)  // no unit to do: idle workers poll
            }
        }
        result.loss = job.status().validationLoss.last?.value ?? .nan
        let figures = await job.replicationFigures
        let samplesPerRound = settings.mode == .sync ? settings.workers * 8 : 8
        result.replicaSamples = figures.replicaSamples
        result.countedSamples = settings.rounds * samplesPerRound
        if let half {
            result.lateReplicaSamples = figures.replicaSamples - half.replicaSamples
            result.lateCountedSamples = (settings.rounds - half.version) * samplesPerRound
        }
        let credit = try await job.workers().workers
        result.hostileCredit = credit.filter { hostileIDs.contains($0.id) }.reduce(0) { $0 + $1.samples }
        result.hostileBanned = hostileIDs.filter { job.registry.bannedIDs.contains($0) }.count
        return result
    }

    /// The unit's mean loss and every shard's gradient, on `parameters`.
    func gradient(_ model: any TrainableModel, parameters: [String: [Float]], batch: ModelBatch,
                  layout: ShardLayout) throws -> (Double, [String: [Float]]) {
        for p in model.parameters.parameters { if let v = parameters[p.name] { p.value.copy(from: v) } }
        model.parameters.zeroGradients()
        let loss = try model.forwardBackward(batch, lossScale: 1)
        var out: [String: [Float]] = [:]
        for shard in layout.shards {
            var flat = [Float](repeating: 0, count: shard.elementCount)
            flat.withUnsafeMutableBufferPointer { p in
                if let base = p.baseAddress { layout.gather(shard, from: model.parameters, gradients: true, into: base) }
            }
            out[shard.name] = flat
        }
        return (Double(loss), out)
    }

    /// μ − 1.5 σ per coordinate, from two samples of it.
    static func littleIsEnough(_ x: [Float], _ y: [Float]) -> [Float] {
        var out = [Float](repeating: 0, count: x.count)
        let spread: Float = 1.5 / Float(2).squareRoot()
        for i in 0..<min(x.count, y.count) {
            let mean: Float = 0.5 * (x[i] + y[i])
            out[i] = mean - spread * abs(x[i] - y[i])
        }
        return out
    }

    static func norm(_ g: [String: [Float]]) -> Double {
        g.values.reduce(0.0) { total, v in total + v.reduce(0.0) { $0 + Double($1) * Double($1) } }.squareRoot()
    }
}

extension ModelBatch {
    /// The first and second half of the samples (the second keeps the odd one out).
    func halves() -> (ModelBatch, ModelBatch) {
        switch self {
        case let .tokens(inputs, targets, b, t):
            let h = max(1, b / 2)
            return (.tokens(inputs: Array(inputs[..<(h * t)]), targets: Array(targets[..<(h * t)]), batch: h, sequence: t),
                    .tokens(inputs: Array(inputs[(h * t)...]), targets: Array(targets[(h * t)...]), batch: b - h, sequence: t))
        case let .features(inputs, targets, b):
            let h = max(1, b / 2), w = inputs.count / max(1, b)
            return (.features(inputs: Array(inputs[..<(h * w)]), targets: Array(targets[..<h]), batch: h),
                    .features(inputs: Array(inputs[(h * w)...]), targets: Array(targets[h...]), batch: b - h))
        }
    }
}
