import Foundation
import TributaryTraining

/// A training job, as the operator writes it in YAML (`tributary coordinator init`
/// writes a commented example).
public struct JobConfig: Codable, Sendable, Equatable {
    public struct Model: Codable, Sendable, Equatable {
        public var type: String = "gpt"
        public var nLayer: Int? = 4
        public var nHead: Int? = 4
        public var nEmbd: Int? = 128
        public var blockSize: Int? = 64
        public var bias: Bool? = true
        public var hidden: [Int]? = nil
        // A unet's (UNetConfig). The image size and channels follow the data unless given:
        // an image folder is resized to them, MNIST and CIFAR-10 must match them.
        public var imageSize: Int? = nil
        public var inChannels: Int? = nil
        public var baseChannels: Int? = nil
        public var channelMultipliers: [Int]? = nil
        public var blocksPerLevel: Int? = nil
        public var normGroups: Int? = nil
        public var attentionResolutions: [Int]? = nil
        public var diffusionSteps: Int? = nil
        public var noiseSchedule: String? = nil
    }
    public struct Data: Codable, Sendable, Equatable {
        public var source: String = "builtin:arithmetic"
        public var validationFraction: Double = 0.1
        public var seed: UInt64 = 1337
        /// Mirror each training image left-right with probability 1/2, drawn per epoch and
        /// sample from the seed (`RandomFlip`), so every process flips the same images.
        public var randomFlip: Bool = false
    }
    public struct Units: Codable, Sendable, Equatable {
        public var samplesPerUnit: Int = 8
        public var microBatch: Int? = nil
    }
    public struct Optimizer: Codable, Sendable, Equatable {
        public var type: OptimizerKind = .adamw
        public var lr: Float = 1e-3
        public var minLr: Float? = nil
        public var warmupRounds: Int = 20
        public var totalRounds: Int = 1000
        public var weightDecay: Float? = nil
        public var beta1: Float = 0.9
        public var beta2: Float = 0.99
        /// AdamW's β₁ when the job's codec is top-k; nil: automatic (see `JobConfig.adamBeta1`).
        public var sparseBeta1: Float? = nil
        /// AdamW's bound on each coordinate's normalised step when the codec is top-k; nil:
        /// the default (see `JobConfig.adamUpdateBound`).
        public var sparseUpdateBound: Float? = nil
        public var momentum: Float = 0.9
        public var nesterov: Bool = false
        public var gradClip: Float = 1.0
    }
    public struct Rounds: Codable, Sendable, Equatable {
        /// sync: a round closes when `unitsPerRound` units reported (or the deadline passed
        /// with at least `minUnits`); async: every accepted update is applied at once.
        public var mode: RoundMode = .sync
        public var unitsPerRound: Int = 4
        public var minUnits: Int = 1
        public var deadlineSeconds: Double = 120
        /// Updates computed on a version up to this many rounds old are accepted, with
        /// weight samples / (1 + staleness); older ones are refused.
        public var maxStaleness: Int = 1
    }
    public struct Leases: Codable, Sendable, Equatable {
        /// A lease ends this long after its grant or latest renewal. Short, because a worker
        /// that vanishes holds its unit (and a sync round) that long; workers at work renew
        /// every third of it. Within `durationRange`.
        public var durationSeconds: Double = 10
        /// Leases one worker may hold at once.
        public var maxPerWorker: Int = 1
        /// Renewals never carry a lease past this many seconds after it was granted.
        public var maxLifetimeSeconds: Double = 600

        /// A worker renews at most every 0.5 s and the coordinator expires leases every
        /// 0.5 s, so a shorter lease could end between two renewals; past an hour a vanished
        /// worker would stall a sync round for longer than any round should take.
        public static let durationRange: ClosedRange<Double> = 1...3600
    }
    public struct Aggregation: Codable, Sendable, Equatable {
        /// How a round's updates become one gradient (`AggregationRule`): centered clipping
        /// by default, as volunteers are untrusted; `mean` for a trusted cluster.
        public var rule: AggregationRule = .centeredClip
        /// `trimmed_mean`: the fraction of values dropped at each end of every coordinate.
        public var trim: Double = 0.2
        /// `centered_clip`: iterations, and the radius as a multiple of the median distance
        /// of the round's updates from their coordinate-wise median.
        public var clipIterations: Int = 3
        public var clipRadius: Double = 1.0
        /// An update whose L2 norm passes this multiple of the median of recently accepted
        /// updates' norms is refused (`update_norm_out_of_range`).
        public var maxNormRatio: Double = 10
        /// Refuse an update whose bytes equal one accepted for another unit (`replayed_update`).
        /// Off only for load tests whose simulated workers send one frozen update.
        public var refuseReplays: Bool = true
    }
    /// Validation by replication and reputation (`ReplicationPolicy`).
    public struct Validation: Codable, Sendable, Equatable {
        /// `adaptive`: every unit of a new or distrusted worker is computed again by another
        /// worker, a trusted worker's at `trusted_rate`; `all`; `off` for a trusted cluster.
        public var replication: ReplicationMode = .adaptive
        /// Agreements in a row after which a worker is trusted ...
        public var trustedAfter: Int = 5
        /// ... with at least this many distinct workers (two colluders agree with each other only).
        public var trustedPartners: Int = 2
        /// The share of a trusted worker's units that are still replicated.
        public var trustedRate: Double = 0.05
        /// Disagreements after which a worker is banned (its open round's updates voided).
        public var banAfter: Int = 3
        /// The largest relative distance between two honest updates of one unit; 0: the
        /// default for the job's codec (`ReplicaTolerance.forCodec`).
        public var tolerance: Double = 0
        /// The largest relative difference between two honest reported losses.
        public var lossTolerance: Double = 0.01
    }
    /// What one client address may ask for, and how long connections may idle.
    public struct Limits: Codable, Sendable, Equatable {
        public var registrationsPerMinute: Double = 6
        public var registrationBurst: Int = 20
        /// Wrong join tokens from one address before it is locked out of registration.
        public var badJoinTokens: Int = 5
        public var lockoutSeconds: Double = 300
        /// Requests per second to public routes without a worker token, per address.
        public var publicRequestsPerSecond: Double = 20
        public var publicBurst: Int = 40
        public var maxConnections: Int = 900
        /// New connections per second from one address (HTTP keep-alive needs few), burst `connection_burst`.
        public var connectionsPerSecond: Double = 10
        public var connectionBurst: Int = 60
        public var maxConnectionsPerAddress: Int = 64
        public var maxConcurrentUploads: Int = 64
        /// A connection with no request in progress is closed after this long (also before its first request).
        public var idleTimeoutSeconds: Double = 30
        /// A TLS connection must finish its handshake within this.
        public var handshakeTimeoutSeconds: Double = 10
    }
    public struct Compression: Codable, Sendable, Equatable {
        /// Uploads: the codec of every worker's update (with error feedback when lossy).
        public var codec: String = "fp32"
        /// Downloads: `none` (every changed shard in full, fp32), or the codec of each
        /// version's delta from the one before (`int8`, `int4`, `topk:F`, `lowrank:R`, …),
        /// with error feedback on the coordinator (`ParameterDeltaEncoder`).
        public var downloadCodec: String = "none"
        public var zstdLevel: Int = 1
    }
    /// `rounds.mode: local` (DiLoCo): each unit is `steps` inner optimizer steps on the worker
    /// (the `optimizer` section, its schedule stretched over rounds × steps inner steps); the
    /// coordinator's outer optimizer is Nesterov SGD over the round's pseudo-gradients.
    public struct Local: Codable, Sendable, Equatable {
        /// Inner steps per unit (DiLoCo's H); `units.samples_per_unit` must be a multiple.
        public var steps: Int = 10
        public var outerLr: Float = 0.7
        public var outerMomentum: Float = 0.9
        public var outerNesterov: Bool = true
    }
    public struct Server: Codable, Sendable, Equatable {
        public var listen: String = "127.0.0.1:8470"
        public var tlsCertificate: String? = nil
        public var tlsKey: String? = nil
    }
    public struct Storage: Codable, Sendable, Equatable {
        public var dataDirectory: String = "./tributary-coordinator"
        /// Where the ledger lives: `sqlite` (a file in the data directory), `sqlite:PATH`, or
        /// a `postgres://user@host:port/database` URL (password from `password_file=` or the
        /// environment, never from the URL).
        public var ledger: String = "sqlite"
        public var checkpointEveryRounds: Int = 10
        public var validationEveryRounds: Int = 10
        public var validationBatches: Int = 8
    }
    public struct Auth: Codable, Sendable, Equatable {
        public var joinToken: String? = nil
        public var joinTokenFile: String? = nil
        /// false: the job, model, manifests, status, workers and metrics need a worker's or
        /// the viewer's bearer token.
        public var publicRead: Bool = true
        public var viewerToken: String? = nil
        public var viewerTokenFile: String? = nil
        /// Enables the operator's routes (banning workers); without it they answer 404.
        public var operatorToken: String? = nil
        public var operatorTokenFile: String? = nil
    }

    public var name: String = "tributary-job"
    public var model = Model()
    public var data = Data()
    public var units = Units()
    public var optimizer = Optimizer()
    public var rounds = Rounds()
    public var leases = Leases()
    public var aggregation = Aggregation()
    public var validation = Validation()
    public var limits = Limits()
    public var compression = Compression()
    public var local = Local()
    public var server = Server()
    public var storage = Storage()
    public var auth = Auth()

    public init() {}

    // Every section and key is optional in the file; defaults fill the rest.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decodeIfPresent(String.self, forKey: .name) ?? name
        model = try c.decodeIfPresent(Model.self, forKey: .model) ?? model
        data = try c.decodeIfPresent(Data.self, forKey: .data) ?? data
        units = try c.decodeIfPresent(Units.self, forKey: .units) ?? units
        optimizer = try c.decodeIfPresent(Optimizer.self, forKey: .optimizer) ?? optimizer
        rounds = try c.decodeIfPresent(Rounds.self, forKey: .rounds) ?? rounds
        leases = try c.decodeIfPresent(Leases.self, forKey: .leases) ?? leases
        aggregation = try c.decodeIfPresent(Aggregation.self, forKey: .aggregation) ?? aggregation
        validation = try c.decodeIfPresent(Validation.self, forKey: .validation) ?? validation
        limits = try c.decodeIfPresent(Limits.self, forKey: .limits) ?? limits
        compression = try c.decodeIfPresent(Compression.self, forKey: .compression) ?? compression
        local = try c.decodeIfPresent(Local.self, forKey: .local) ?? local
        server = try c.decodeIfPresent(Server.self, forKey: .server) ?? server
        storage = try c.decodeIfPresent(Storage.self, forKey: .storage) ?? storage
        auth = try c.decodeIfPresent(Auth.self, forKey: .auth) ?? auth
    }

    enum CodingKeys: String, CodingKey {
        case name, model, data, units, optimizer, rounds, leases, aggregation, validation, limits, compression, local, server, storage, auth
    }
}

public enum JobConfigError: Error, CustomStringConvertible, Equatable {
    case invalid(String)
    public var description: String {
        switch self { case let .invalid(why): return "invalid job: \(why)" }
    }
}
