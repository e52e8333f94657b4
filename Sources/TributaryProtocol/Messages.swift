import Foundation
import TributaryModels

// JSON bodies of the HTTP API (Protocol/openapi.yaml). Keys are snake_case on the wire;
// dates are ISO 8601 with fractional seconds.

/// What a worker sends to join: the operator's join token, and what it can offer.
public struct RegisterRequest: Codable, Sendable, Equatable {
    public var joinToken: String
    public var name: String?
    public var threads: Int?
    public var memoryBudgetBytes: Int?

    public init(joinToken: String, name: String? = nil, threads: Int? = nil, memoryBudgetBytes: Int? = nil) {
        self.joinToken = joinToken
        self.name = name
        self.threads = threads
        self.memoryBudgetBytes = memoryBudgetBytes
    }

    enum CodingKeys: String, CodingKey { case joinToken = "join_token", name, threads, memoryBudgetBytes = "memory_budget_bytes" }
}

/// The worker's identity and bearer token (shown once; the coordinator keeps only a hash).
public struct RegisterResponse: Codable, Sendable, Equatable {
    public var workerId: String
    public var token: String
    public var job: JobDescription

    public init(workerId: String, token: String, job: JobDescription) {
        self.workerId = workerId
        self.token = token
        self.job = job
    }

    enum CodingKeys: String, CodingKey { case workerId = "worker_id", token, job }
}

/// Everything a worker needs to compute for this job, besides parameters and batches.
public struct JobDescription: Codable, Sendable, Equatable {
    public var name: String
    public var model: ModelSpec
    /// Samples in one work unit, and how a worker splits them (gradient accumulation).
    public var samplesPerUnit: Int
    public var microBatchSize: Int
    /// The codec workers must use for updates, and the zstd level.
    public var updateCodec: String
    public var zstdLevel: Int
    /// Present in local rounds (DiLoCo): each unit is that many inner optimizer steps, and the
    /// update is the pseudo-gradient (parameters at the lease's version minus after the steps).
    public var localSteps: LocalSteps?
    /// The seed version 0's parameters were initialised from (`ModelSpec.build(seed:)`): with
    /// compressed downloads a new worker builds version 0 itself and fetches only deltas.
    public var initSeed: UInt64?

    public init(name: String, model: ModelSpec, samplesPerUnit: Int, microBatchSize: Int,
                updateCodec: String, zstdLevel: Int, localSteps: LocalSteps? = nil, initSeed: UInt64? = nil) {
        self.name = name
        self.model = model
        self.samplesPerUnit = samplesPerUnit
        self.microBatchSize = microBatchSize
        self.updateCodec = updateCodec
        self.zstdLevel = zstdLevel
        self.localSteps = localSteps
        self.initSeed = initSeed
    }

    enum CodingKeys: String, CodingKey { case name, model, samplesPerUnit = "samples_per_unit", microBatchSize = "micro_batch_size", updateCodec = "update_codec", zstdLevel = "zstd_level", localSteps = "local_steps", initSeed = "init_seed" }
}

/// The inner optimization of a local-rounds job: `steps` optimizer steps per unit, each over
/// samples_per_unit / steps samples in the unit's order, by the inner optimizer below. Its
/// state stays on the worker between units. Inner step i of a unit leased at version v is
/// step v·steps + i of the schedule (linear warm-up to `lr`, cosine decay to `min_lr`).
public struct LocalSteps: Codable, Sendable, Equatable {
    public var steps: Int
    /// `adamw` or `sgd`.
    public var optimizer: String
    public var lr: Float
    public var minLr: Float
    public var warmupSteps: Int
    public var decaySteps: Int
    public var beta1: Float
    public var beta2: Float
    public var weightDecay: Float
    public var momentum: Float
    public var nesterov: Bool
    /// Global gradient-norm clipping of each inner step (0: off).
    public var gradClip: Float

    public init(steps: Int, optimizer: String, lr: Float, minLr: Float, warmupSteps: Int, decaySteps: Int, beta1: Float,
                beta2: Float, weightDecay: Float, momentum: Float, nesterov: Bool, gradClip: Float) {
        self.steps = steps
        self.optimizer = optimizer
        self.lr = lr
        self.minLr = minLr
        self.warmupSteps = warmupSteps
        self.decaySteps = decaySteps
        self.beta1 = beta1
        self.beta2 = beta2
        self.weightDecay = weightDecay
        self.momentum = momentum
        self.nesterov = nesterov
        self.gradClip = gradClip
    }

    enum CodingKeys: String, CodingKey {
        case steps, optimizer, lr, minLr = "min_lr", warmupSteps = "warmup_steps", decaySteps = "decay_steps", beta1, beta2,
             weightDecay = "weight_decay", momentum, nesterov, gradClip = "grad_clip"
    }
}

/// A leased work unit: which samples, computed on which parameter version, until when.
public struct LeaseGrant: Codable, Sendable, Equatable {
    public var leaseId: String
    public var epoch: Int
    public var unitIndex: Int
    /// The unit's samples are positions sampleStart ..< sampleStart + sampleCount of epoch
    /// `epoch`'s order (a seeded permutation of the training set), so any worker can
    /// rebuild the batch; GET /v1/leases/{id}/batch serves it ready-made.
    public var sampleStart: Int
    public var sampleCount: Int
    public var microBatchSize: Int
    public var version: Int
    public var deadline: Date
    public var shards: [String]

    public init(leaseId: String, epoch: Int, unitIndex: Int, sampleStart: Int, sampleCount: Int,
                microBatchSize: Int, version: Int, deadline: Date, shards: [String]) {
        self.leaseId = leaseId
        self.epoch = epoch
        self.unitIndex = unitIndex
        self.sampleStart = sampleStart
        self.sampleCount = sampleCount
        self.microBatchSize = microBatchSize
        self.version = version
        self.deadline = deadline
        self.shards = shards
    }

    enum CodingKeys: String, CodingKey { case leaseId = "lease_id", epoch, unitIndex = "unit_index", sampleStart = "sample_start", sampleCount = "sample_count", microBatchSize = "micro_batch_size", version, deadline, shards }
}

public struct LeaseRenewal: Codable, Sendable, Equatable {
    public var leaseId: String
    public var deadline: Date

    public init(leaseId: String, deadline: Date) {
        self.leaseId = leaseId
        self.deadline = deadline
    }

    enum CodingKeys: String, CodingKey { case leaseId = "lease_id", deadline }
}

/// Sent after every shard's update has been pushed: only a committed unit counts.
public struct CommitRequest: Codable, Sendable, Equatable {
    public var samples: Int
    /// Mean training loss the worker saw on the unit.
    public var loss: Double

    public init(samples: Int, loss: Double) {
        self.samples = samples
        self.loss = loss
    }

    enum CodingKeys: String, CodingKey { case samples, loss }
}

public struct CommitReceipt: Codable, Sendable, Equatable {
    public var accepted: Bool
    /// The round the update joins; it is applied when that round closes.
    public var round: Int
    /// The weight it carries (samples, discounted for staleness).
    public var weight: Double
    /// The parameter version it was computed on, and the current one.
    public var baseVersion: Int
    public var currentVersion: Int

    public init(accepted: Bool, round: Int, weight: Double, baseVersion: Int, currentVersion: Int) {
        self.accepted = accepted
        self.round = round
        self.weight = weight
        self.baseVersion = baseVersion
        self.currentVersion = currentVersion
    }

    enum CodingKeys: String, CodingKey { case accepted, round, weight, baseVersion = "base_version", currentVersion = "current_version" }
}

public struct ShardReceipt: Codable, Sendable, Equatable {
    public var shard: String
    public var bytes: Int

    public init(shard: String, bytes: Int) {
        self.shard = shard
        self.bytes = bytes
    }

    enum CodingKeys: String, CodingKey { case shard, bytes }
}

/// The JSON coding the API uses on both sides.
public enum WireJSON {
    public static func encoder() -> JSONEncoder {
        // Keys are spelled out per type (CodingKeys): a key strategy would also rewrite
        // keys that are snake_case already, such as a model's `model_type`.
        let e = JSONEncoder()
        e.dateEncodingStrategy = .custom { date, encoder in
            var c = encoder.singleValueContainer()
            try c.encode(iso8601.string(from: date))
        }
        e.outputFormatting = [.sortedKeys]
        return e
    }

    public static func decoder() -> JSONDecoder {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .custom { decoder in
            let c = try decoder.singleValueContainer()
            let text = try c.decode(String.self)
            guard let date = iso8601.date(from: text) ?? iso8601NoFraction.date(from: text) else {
                throw DecodingError.dataCorruptedError(in: c, debugDescription: "expected an ISO 8601 date, got \(text)")
            }
            return date
        }
        return d
    }

    nonisolated(unsafe) static let iso8601: ISO8601DateFormatter = {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f
    }()
    nonisolated(unsafe) static let iso8601NoFraction: ISO8601DateFormatter = {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        return f
    }()
}
