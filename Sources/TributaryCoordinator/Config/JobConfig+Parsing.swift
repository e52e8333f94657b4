import Foundation
import TributaryTraining
import Yams

/// Reading job files: YAML laid over the defaults, unknown keys refused.
extension JobConfig {
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
        try checkChoices(given, source: source)
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
        full.auth.viewerToken = ""
        full.auth.viewerTokenFile = ""
        full.auth.operatorToken = ""
        full.auth.operatorTokenFile = ""
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

    /// The model types a job file can describe (its `model` section has their keys).
    static let modelTypes = ["gpt", "mlp"]

    /// Keys whose value is one of a few words, checked before decoding so that the error
    /// names the key and the choices ("rounds.mode must be sync or async (got x)").
    static let choices: [(section: String, key: String, allowed: [String])] = [
        ("model", "type", modelTypes),
        ("optimizer", "type", OptimizerKind.allCases.map(\.rawValue)),
        ("rounds", "mode", RoundMode.allCases.map(\.rawValue)),
        ("aggregation", "rule", AggregationRule.allCases.map(\.rawValue)),
        ("validation", "replication", ReplicationMode.allCases.map(\.rawValue)),
    ]

    static func checkChoices(_ given: [String: Any], source: String) throws {
        for (section, key, allowed) in choices {
            guard let value = (given[section] as? [String: Any])?[key] else { continue }
            let text = value as? String ?? "\(value)"
            guard allowed.contains(text) else {
                let words = allowed.count == 2 ? allowed.joined(separator: " or ") : allowed.joined(separator: ", ")
                throw JobConfigError.invalid("\(source): \(section).\(key) must be \(words) (got \(text))")
            }
        }
    }
}
