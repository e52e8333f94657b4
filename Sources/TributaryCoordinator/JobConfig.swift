import Foundation
import TributaryModels
import TributaryCompression
import Yams

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
    }
    public struct Data: Codable, Sendable, Equatable {
        public var source: String = "builtin:arithmetic"
        public var validationFraction: Double = 0.1
        public var seed: UInt64 = 1337
    }
    public struct Units: Codable, Sendable, Equatable {
        public var samplesPerUnit: Int = 8
        public var microBatch: Int? = nil
    }
    public struct Optimizer: Codable, Sendable, Equatable {
        public var type: String = "adamw"
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
        public var mode: String = "sync"
        public var unitsPerRound: Int = 4
        public var minUnits: Int = 1
        public var deadlineSeconds: Double = 120
        /// Updates computed on a version up to this many rounds old are accepted, with
        /// weight samples / (1 + staleness); older ones are refused.
        public var maxStaleness: Int = 1
    }
    public struct Leases: Codable, Sendable, Equatable {
        public var durationSeconds: Double = 60
    }
    public struct Compression: Codable, Sendable, Equatable {
        public var codec: String = "fp32"
        public var zstdLevel: Int = 1
    }
    public struct Server: Codable, Sendable, Equatable {
        public var listen: String = "127.0.0.1:8470"
        public var tlsCertificate: String? = nil
        public var tlsKey: String? = nil
    }
    public struct Storage: Codable, Sendable, Equatable {
        public var dataDirectory: String = "./tributary-coordinator"
        public var checkpointEveryRounds: Int = 10
        public var validationEveryRounds: Int = 10
        public var validationBatches: Int = 8
    }
    public struct Auth: Codable, Sendable, Equatable {
        public var joinToken: String? = nil
        public var joinTokenFile: String? = nil
    }

    public var name: String = "tributary-job"
    public var model = Model()
    public var data = Data()
    public var units = Units()
    public var optimizer = Optimizer()
    public var rounds = Rounds()
    public var leases = Leases()
    public var compression = Compression()
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
        compression = try c.decodeIfPresent(Compression.self, forKey: .compression) ?? compression
        server = try c.decodeIfPresent(Server.self, forKey: .server) ?? server
        storage = try c.decodeIfPresent(Storage.self, forKey: .storage) ?? storage
        auth = try c.decodeIfPresent(Auth.self, forKey: .auth) ?? auth
    }

    enum CodingKeys: String, CodingKey {
        case name, model, data, units, optimizer, rounds, leases, compression, server, storage, auth
    }

    /// Reads and validates a job file.
    public static func load(path: String) throws -> JobConfig {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw JobConfigError.invalid("cannot read job file \(path)")
        }
        return try parse(text, source: path)
    }

    public static func parse(_ yaml: String, source: String = "job file") throws -> JobConfig {
        // YAML → plain values → JSON, so the snake_case keys map onto the Swift names
        // through JSONDecoder's key strategy.
        let object: Any
        do {
            object = try Yams.load(yaml: yaml) ?? [String: Any]()
        } catch {
            throw JobConfigError.invalid("\(source): not valid YAML (\(error))")
        }
        guard let given = object as? [String: Any], JSONSerialization.isValidJSONObject(given) else {
            throw JobConfigError.invalid("\(source): the top level must be a mapping of sections (name, model, data, …)")
        }
        // Every key is optional: the file is laid over the defaults. A key the job does
        // not know is an error (a typo would otherwise be silently ignored).
        if let unknown = unknownKeys(given, allowed: allowedKeys(), prefix: "").first {
            throw JobConfigError.invalid("\(source): unknown key '\(unknown)'")
        }
        let merged = merge(defaultsObject(JobConfig()), given)
        guard let json = try? JSONSerialization.data(withJSONObject: merged) else {
            throw JobConfigError.invalid("\(source): values must be plain YAML scalars, lists and mappings")
        }
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        var config: JobConfig
        do {
            config = try decoder.decode(JobConfig.self, from: json)
        } catch let error as DecodingError {
            throw JobConfigError.invalid("\(source): \(Self.describe(error))")
        } catch {
            throw JobConfigError.invalid("\(source): not valid YAML (\(error))")
        }
        try config.validate()
        return config
    }

    /// A config as a JSON-like dictionary with snake_case keys.
    static func defaultsObject(_ config: JobConfig) -> [String: Any] {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        guard let data = try? encoder.encode(config),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return [:] }
        return object
    }

    /// Every key a job file may use (optional ones included).
    static func allowedKeys() -> [String: Any] {
        var full = JobConfig()
        full.model.hidden = [1]
        full.units.microBatch = 1
        full.optimizer.minLr = 0
        full.optimizer.weightDecay = 0
        full.optimizer.sparseBeta1 = 0
        full.optimizer.sparseUpdateBound = 1
        full.server.tlsCertificate = ""
        full.server.tlsKey = ""
        full.auth.joinToken = ""
        full.auth.joinTokenFile = ""
        return defaultsObject(full)
    }

    static func unknownKeys(_ given: [String: Any], allowed: [String: Any], prefix: String) -> [String] {
        given.keys.sorted().flatMap { key -> [String] in
            guard let spec = allowed[key] else { return [prefix + key] }
            if let sub = given[key] as? [String: Any], let subSpec = spec as? [String: Any] {
                return unknownKeys(sub, allowed: subSpec, prefix: prefix + key + ".")
            }
            return []
        }
    }

    static func merge(_ base: [String: Any], _ overlay: [String: Any]) -> [String: Any] {
        var out = base
        for (k, v) in overlay {
            if let b = base[k] as? [String: Any], let o = v as? [String: Any] {
                out[k] = merge(b, o)
            } else {
                out[k] = v
            }
        }
        return out
    }

    static func describe(_ error: DecodingError) -> String {
        // Report keys as the file spells them (n_layer), not as Swift does (nLayer).
        func snake(_ key: String) -> String {
            key.reduce(into: "") { out, ch in
                if ch.isUppercase { out += "_" + ch.lowercased() } else { out.append(ch) }
            }
        }
        func path(_ ctx: DecodingError.Context) -> String {
            ctx.codingPath.map { snake($0.stringValue) }.filter { !$0.isEmpty }.joined(separator: ".")
        }
        switch error {
        case let .typeMismatch(_, ctx), let .valueNotFound(_, ctx), let .dataCorrupted(ctx):
            return "\(path(ctx)): \(ctx.debugDescription)"
        case let .keyNotFound(key, ctx):
            return "\(path(ctx)): missing key \(key.stringValue)"
        @unknown default:
            return "\(error)"
        }
    }

    public func validate() throws {
        func bad(_ s: String) -> JobConfigError { .invalid(s) }
        guard ["gpt", "mlp"].contains(model.type) else { throw bad("model.type must be gpt or mlp (got \(model.type))") }
        guard units.samplesPerUnit >= 1 else { throw bad("units.samples_per_unit must be positive") }
        if let mb = units.microBatch, mb < 1 || units.samplesPerUnit % mb != 0 {
            throw bad("units.micro_batch (\(mb)) must divide units.samples_per_unit (\(units.samplesPerUnit))")
        }
        guard ["adamw", "sgd"].contains(optimizer.type) else { throw bad("optimizer.type must be adamw or sgd") }
        guard optimizer.lr > 0, optimizer.lr.isFinite else { throw bad("optimizer.lr must be positive") }
        guard optimizer.totalRounds >= 1 else { throw bad("optimizer.total_rounds must be positive") }
        if let b = optimizer.sparseBeta1, !(b >= 0 && b < 1) {
            throw bad("optimizer.sparse_beta1 must lie in [0, 1) (got \(b)); leave it out for the automatic choice")
        }
        if let b = optimizer.sparseUpdateBound, !(b > 0 && b.isFinite) {
            throw bad("optimizer.sparse_update_bound must be a positive number (got \(b)); leave it out for the default 2")
        }
        guard ["sync", "async"].contains(rounds.mode) else { throw bad("rounds.mode must be sync or async") }
        guard rounds.unitsPerRound >= 1 else { throw bad("rounds.units_per_round must be positive") }
        guard rounds.minUnits >= 1, rounds.minUnits <= rounds.unitsPerRound else {
            throw bad("rounds.min_units must lie in 1...units_per_round (\(rounds.unitsPerRound))")
        }
        guard rounds.deadlineSeconds > 0, rounds.maxStaleness >= 0 else {
            throw bad("rounds.deadline_seconds must be positive and rounds.max_staleness non-negative")
        }
        guard leases.durationSeconds > 0 else { throw bad("leases.duration_seconds must be positive") }
        do { _ = try UpdateCodecSpec(parsing: compression.codec) } catch {
            throw bad("compression.codec: \(error)")
        }
        guard (1...19).contains(compression.zstdLevel) else { throw bad("compression.zstd_level must lie in 1...19") }
        guard (server.tlsCertificate == nil) == (server.tlsKey == nil) else {
            throw bad("server.tls_certificate and server.tls_key go together")
        }
        guard storage.checkpointEveryRounds >= 1 else { throw bad("storage.checkpoint_every_rounds must be positive") }
        guard storage.validationEveryRounds >= 1 else { throw bad("storage.validation_every_rounds must be positive") }
        guard storage.validationBatches >= 0 else { throw bad("storage.validation_batches must not be negative") }
        _ = try listenAddress()
    }

    /// The model, once the dataset's vocabulary or feature count is known.
    public func modelSpec(vocabularySize: Int?, features: Int?, classes: Int?) throws -> ModelSpec {
        switch model.type {
        case "gpt":
            guard let vocab = vocabularySize else { throw JobConfigError.invalid("a gpt needs token data; \(data.source) holds images") }
            let spec = ModelSpec.gpt(GPTConfig(vocabSize: vocab, blockSize: model.blockSize ?? 64, nLayer: model.nLayer ?? 4,
                                               nHead: model.nHead ?? 4, nEmbd: model.nEmbd ?? 128, bias: model.bias ?? true))
            try spec.validate()
            return spec
        default:
            guard let features, let classes else { throw JobConfigError.invalid("an mlp needs image data; \(data.source) holds tokens") }
            let spec = ModelSpec.mlp(MLPConfig(inputFeatures: features, hidden: model.hidden ?? [512, 512], classes: classes))
            try spec.validate()
            return spec
        }
    }

    public func listenAddress() throws -> (host: String, port: Int) {
        guard let colon = server.listen.lastIndex(of: ":"),
              let port = Int(server.listen[server.listen.index(after: colon)...]), (0...65535).contains(port) else {
            throw JobConfigError.invalid("server.listen must be HOST:PORT (got \(server.listen))")
        }
        return (String(server.listen[..<colon]), port)
    }

    /// The join token, from the file or the inline value.
    public func joinToken() throws -> String {
        if let file = auth.joinTokenFile {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw JobConfigError.invalid("cannot read auth.join_token_file \(file)")
            }
            let token = text.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !token.isEmpty else { throw JobConfigError.invalid("auth.join_token_file \(file) is empty") }
            return token
        }
        guard let token = auth.joinToken, !token.isEmpty else {
            throw JobConfigError.invalid("set auth.join_token or auth.join_token_file: workers need it to join")
        }
        return token
    }

    /// AdamW's β₁ for this job: `optimizer.beta1`, except with a top-k codec, where it is
    /// `optimizer.sparse_beta1` if given, else 0 for fractions below
    /// `momentumFreeTopKFraction` and `beta1` from there. A top-k update is a burst: the
    /// workers' error feedback has already summed the rounds in which a coordinate was not
    /// sent, and momentum on the coordinator spreads each burst over a further ~1/(1−β₁)
    /// rounds, adding that much delay to mass that is already late. Measured with
    /// `tributary bench compression` (150 rounds, final validation loss over fp32's 2.4968):
    /// topk:0.01 +21%…+29% with β₁ 0.9, +7%…+21% (mean about +14%) with β₁ 0;
    /// topk:0.03 +19%…+25% vs +11%…+17%. With steps bounded (`adamUpdateBound`) the
    /// line moved: topk:0.05:int8 +9%…+20% with β₁ 0.9, +2.6%…+4.0% with 0; topk:0.1
    /// +3.4%…+5.2% vs +1.7%…+2.7%; topk:0.3, where bursts are short, +0.3%…+0.6% vs
    /// +1.2%…+1.7%.
    public var adamBeta1: Float {
        guard let spec = try? UpdateCodecSpec(parsing: compression.codec), case let .topK(fraction, _) = spec.kind else {
            return optimizer.beta1
        }
        if let chosen = optimizer.sparseBeta1 { return chosen }
        return fraction < Self.momentumFreeTopKFraction ? 0 : optimizer.beta1
    }

    /// Top-k fractions below this run AdamW without momentum unless `sparse_beta1` says otherwise.
    public static let momentumFreeTopKFraction = 0.2

    /// AdamW's bound on each coordinate's normalised step (`AdamW.updateBound`): with a
    /// top-k codec `optimizer.sparse_update_bound`, by default 2; none for dense codecs.
    /// A coordinate that top-k left out for many rounds arrives with all their mass while
    /// its second moment has decayed, and would move up to 10 learning rates at once.
    /// Measured (`bench compression`, 150 rounds, final validation loss over fp32's 2.4968,
    /// several runs each, β₁ 0): topk:0.01 +6.7%…+8.3% bounded at 2 (9 runs), +7%…+21% unbounded;
    /// bound 1: +13% (steady but slow); bound 3 or 4: +7%…+24% (the spikes return).
    public var adamUpdateBound: Float? {
        guard let spec = try? UpdateCodecSpec(parsing: compression.codec), case .topK = spec.kind else { return nil }
        return optimizer.sparseUpdateBound ?? Self.defaultSparseUpdateBound
    }

    public static let defaultSparseUpdateBound: Float = 2

    /// The commented example `tributary coordinator init` writes.
    public static let example = """
    # Tributary training job. Every key is optional; the values shown are the defaults
    # unless marked otherwise.
    name: tributary-job

    model:
      type: gpt            # gpt (token data) or mlp (image data)
      n_layer: 4
      n_head: 4
      n_embd: 128
      block_size: 64       # context length
      bias: true
      # hidden: [512, 512] # mlp only

    data:
      source: builtin:arithmetic   # a text file, a nanoGPT .bin file, a directory of MNIST IDX files
      validation_fraction: 0.1
      seed: 1337                   # fixes initialisation and the order of samples

    units:
      samples_per_unit: 8          # sequences (or images) in one work unit
      # micro_batch: 4             # a worker computes a unit in slices of this many

    optimizer:
      type: adamw                  # adamw or sgd (the state lives on the coordinator)
      lr: 0.001
      # min_lr: 0.0001             # end of the cosine decay (default lr / 10)
      warmup_rounds: 20
      total_rounds: 1000           # the job ends after this many optimizer steps
      # weight_decay: 0.1          # default 0.1 for adamw, 0 for sgd
      beta1: 0.9
      beta2: 0.99
      # sparse_beta1: 0.0          # adamw's beta1 with a topk codec (default: 0 below topk:0.2, beta1 from there)
      # sparse_update_bound: 2     # with a topk codec, adamw's largest step per coordinate, in learning rates
      grad_clip: 1.0

    rounds:
      mode: sync                   # sync: average a round of units; async: apply each update on arrival
      units_per_round: 4           # the round's batch is units_per_round × samples_per_unit
      min_units: 1                 # a round whose deadline passed closes with at least this many
      deadline_seconds: 120
      max_staleness: 1             # accept updates up to this many versions old, down-weighted

    leases:
      duration_seconds: 60         # a unit not committed by then goes back to the queue

    compression:
      codec: fp32                  # fp32, fp16, bf16, int8:256 (block), int4:64, topk:0.01 (fraction kept), topk:0.01:int8
      zstd_level: 1                # every update body is zstd-compressed at this level (1: fastest; quantized gradients gain little from more)

    server:
      listen: 127.0.0.1:8470       # 0.0.0.0:8470 to accept volunteers from other machines
      # tls_certificate: cert.pem  # with both set: HTTPS, HTTP/2 through ALPN
      # tls_key: key.pem

    storage:
      data_directory: ./tributary-coordinator   # ledger (SQLite) and checkpoints
      checkpoint_every_rounds: 10
      validation_every_rounds: 10
      validation_batches: 8

    auth:
      join_token: change-me        # required (or join_token_file); workers present it once to register
      # join_token_file: join-token.txt

    """
}

public enum JobConfigError: Error, CustomStringConvertible, Equatable {
    case invalid(String)
    public var description: String {
        switch self { case let .invalid(why): return "invalid job: \(why)" }
    }
}
