import Foundation
import Logging
import TributaryCompression
import TributaryModels
import TributaryPlanning
import TributaryTensor

/// What a job needs in memory, said when the coordinator starts and checked against the
/// machine before anything is allocated: a model too large fails here in one line with the
/// numbers, not minutes later in the middle of an allocation.
///
/// The coordinator's part counts copies of the parameters (4 bytes each): the weights and
/// their gradients, the optimizer's moments, the versions workers may still fetch (the
/// staleness window and the one being built), a round's updates held for a robust rule (as
/// encoded: a fraction of a copy by codec) or the mean's running sum, the uploads in
/// flight, shard bodies on their way out, a checkpoint or validation pass, the download
/// deltas' state and a local round's outer momentum; plus the runtime (`runtimeBytes`),
/// the dataset and, for a U-Net, the activations of its sample grid. Measured against a
/// coordinator's peak resident memory in `CoordinatorMemoryEstimateTests`.
public struct JobMemoryEstimate: Sendable, Equatable {
    public let parameters: Int
    public let coordinatorBytes: Int
    /// The smallest plan a worker can run a unit with, and what it needs (nil: no machine can).
    public let smallestWorkerBytes: Int?
    public let smallestWorkerPlan: String?

    /// The Swift runtime, NIO, the ledger's caches: a coordinator of a tiny model.
    static let runtimeBytes = 64 << 20

    public static func estimate(config: JobConfig, spec: ModelSpec, datasetBytes: Int) -> JobMemoryEstimate {
        let parameters = spec.parameterCount
        let copy = Double(parameters) * 4
        let upload = (try? UpdateCodecSpec(parsing: config.compression.codec)).map(encodedFraction) ?? 1
        var copies = 2.0  // weights and gradients
        switch config.optimizer.type {
        case .adamw: copies += 2
        case .sgd: copies += config.optimizer.momentum > 0 ? 1 : 0
        }
        copies += Double(max(0, config.rounds.maxStaleness) + 2)
        let held = Double(max(1, min(config.rounds.unitsPerRound, config.limits.maxConcurrentUploads)))
        copies += config.aggregation.rule == .mean ? 1 : held * upload
        copies += held * upload  // uploads arriving
        copies += 4  // shard bodies being sent, a checkpoint being written, a validation pass
        if (try? config.downloadCodec()) != nil { copies += 3 }
        if config.rounds.mode == .local { copies += 1 }
        // A U-Net job's sample grid runs the model on its 16 images at once (TrainingJob+Samples).
        let sampleGrid = (spec.family as? UNetConfig).map { Double(UNet.activationBytes(config: $0, batch: TrainingJob.sampleGridImages)) } ?? 0
        let coordinator = min(Double(Int.max / 2), copies * copy + Double(runtimeBytes) + Double(datasetBytes) + sampleGrid)

        let (workerBytes, workerPlan) = smallestWorker(config: config, spec: spec)
        return JobMemoryEstimate(parameters: parameters, coordinatorBytes: Int(coordinator),
                                 smallestWorkerBytes: workerBytes, smallestWorkerPlan: workerPlan)
    }

    /// Bytes of an encoded update per byte of fp32 (the worst case the codec allows, about).
    static func encodedFraction(_ codec: UpdateCodecSpec) -> Double {
        switch codec.kind {
        case .fp32: return 1
        case .fp16, .bf16: return 0.5
        case .int8Block: return 0.27
        case .int4Block: return 0.15
        case let .topK(fraction, _): return min(1, 2 * fraction)
        case .lowRank: return 0.1
        }
    }

    private static func smallestWorker(config: JobConfig, spec: ModelSpec) -> (Int?, String?) {
        guard let codec = try? UpdateCodecSpec(parsing: config.compression.codec) else { return (nil, nil) }
        let local = config.localStepsDescription
        let perStep = local.map { config.units.samplesPerUnit / max(1, $0.steps) } ?? config.units.samplesPerUnit
        let planner = MemoryPlanner(model: spec, unitSamples: max(1, perStep),
                                    suggestedMicroBatch: config.units.microBatch ?? perStep, codec: codec)
        do {
            let plan = try local.map { try planner.planLocal(budgetBytes: 1, stateFloatsPerParameter: $0.optimizer == "sgd" ? 1 : 2) }
                ?? planner.plan(budgetBytes: 1)
            return (plan.predictedPeakBytes, plan.description)
        } catch let MemoryPlanError.doesNotFit(needed, _, plan) {
            return (needed, plan)
        } catch {
            return (nil, nil)
        }
    }

    /// What this machine can give a process: its memory, or its cgroup's limit when lower.
    public static func machineBytes() -> Int {
        let pages = sysconf(Int32(_SC_PHYS_PAGES)), size = sysconf(Int32(_SC_PAGESIZE))
        var total = pages > 0 && size > 0 ? pages.multipliedReportingOverflow(by: size).partialValue : Int.max
        if let text = try? String(contentsOfFile: "/sys/fs/cgroup/memory.max", encoding: .utf8),
           let limit = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)), limit > 0 {
            total = min(total, limit)
        }
        return total
    }

    /// For the start-up log line.
    public func metadata(machineBytes machine: Int) -> Logger.Metadata {
        ["parameters": "\(parameters.formatted())",
         "coordinator": "\(ByteCount.format(coordinatorBytes)) of \(ByteCount.format(machine))",
         "smallest_worker": "\(smallestWorkerBytes.map { ByteCount.format($0) } ?? "no machine can run a unit")",
         "smallest_worker_plan": "\(smallestWorkerPlan ?? "-")"]
    }

    /// The one-line refusal when the coordinator's part cannot fit `machine` bytes.
    public func refusal(machineBytes machine: Int) -> String? {
        guard coordinatorBytes > machine else { return nil }
        return "this job's coordinator needs about \(ByteCount.format(coordinatorBytes)) of memory "
            + "(\(parameters.formatted()) parameters: weights, gradients, optimizer state, published versions and a round's updates), "
            + "this machine has \(ByteCount.format(machine)); choose a smaller model or run the coordinator on a larger machine"
    }
}
