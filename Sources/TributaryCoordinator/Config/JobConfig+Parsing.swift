import Foundation
import TributaryTraining
import Yams

/// Reading job files: YAML laid over the defaults, unknown keys refused.
extension JobConfig {
    /// Reads and validates a job file.
    /// Relative paths in the file (data, data directory, ledger, TLS files, token files) are
    /// taken relative to the file's own directory, wherever the coordinator is started from.
    public static func load(path: String) throws -> JobConfig {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            let absolute = URL(fileURLWithPath: path).standardizedFileURL.path
            throw JobConfigError.invalid("cannot read job file \(path) (looked at \(absolute))")
        }
        let directory = URL(fileURLWithPath: path).standardizedFileURL.deletingLastPathComponent().path
        return try parse(text, source: path, baseDirectory: directory)
    }

    /// `baseDirectory`: what relative paths are relative to (nil: the current directory).
    public static func parse(_ yaml: String, source: String = "job file", baseDirectory: String? = nil) throws -> JobConfig {
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
            let hint = suggestion(for: unknown, allowed: allowedKeys()).map { "; did you mean '\($0)'?" } ?? ""
            throw JobConfigError.invalid("\(source): unknown key '\(unknown)'\(hint)")
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
            // Foundation's decoder names no key for a number of the wrong kind: find it.
            if let bad = badValue(given, decoder: decoder) { throw JobConfigError.invalid("\(source): \(bad)") }
            throw JobConfigError.invalid("\(source): \(Self.describe(error))")
        } catch {
            throw JobConfigError.invalid("\(source): not valid YAML (\(error))")
        }
        if let baseDirectory { config.resolveRelativePaths(against: baseDirectory) }
        try config.validate()
        return config
    }

    /// Makes every relative path in the job absolute, under `directory`.
    mutating func resolveRelativePaths(against directory: String) {
        func resolve(_ path: String) -> String {
            guard !path.isEmpty, !path.hasPrefix("/"), !path.hasPrefix("~") else { return path }
            return URL(fileURLWithPath: directory).appendingPathComponent(path).standardizedFileURL.path
        }
        if !data.source.hasPrefix("builtin:") { data.source = resolve(data.source) }
        storage.dataDirectory = resolve(storage.dataDirectory)
        if storage.ledger.hasPrefix("sqlite:") {
            storage.ledger = "sqlite:" + resolve(String(storage.ledger.dropFirst("sqlite:".count)))
        }
        server.tlsCertificate = server.tlsCertificate.map(resolve)
        server.tlsKey = server.tlsKey.map(resolve)
        auth.joinTokenFile = auth.joinTokenFile.map(resolve)
        auth.viewerTokenFile = auth.viewerTokenFile.map(resolve)
        auth.operatorTokenFile = auth.operatorTokenFile.map(resolve)
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
        full.model.imageSize = 1
        full.model.inChannels = 1
        full.model.baseChannels = 1
        full.model.channelMultipliers = [1]
        full.model.blocksPerLevel = 1
        full.model.normGroups = 1
        full.model.attentionResolutions = [1]
        full.model.diffusionSteps = 1
        full.model.noiseSchedule = ""
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

    /// The first key whose value alone fails to decode, said with what it should be.
    static func badValue(_ given: [String: Any], decoder: JSONDecoder) -> String? {
        let defaults = defaultsObject(JobConfig())
        func decodes(_ overlay: [String: Any]) -> Bool {
            guard let json = try? JSONSerialization.data(withJSONObject: merge(defaults, overlay)) else { return false }
            return (try? decoder.decode(JobConfig.self, from: json)) != nil
        }
        for section in given.keys.sorted() {
            guard let sub = given[section] as? [String: Any] else {
                if !decodes([section: given[section] ?? ""]) { return "\(section) must be a mapping of keys" }
                continue
            }
            for key in sub.keys.sorted() {
                guard let value = sub[key], !decodes([section: [key: value]]) else { continue }
                let expected = (defaults[section] as? [String: Any])?[key]
                let kind: String
                let fractional = (value as? Double).map { $0 != $0.rounded() } ?? false
                switch expected {
                case is NSNumber where fractional: kind = "a whole number"
                case is NSNumber: kind = "a number"
                case is String: kind = "text"
                case is [Any]: kind = "a list"
                case is [String: Any]: kind = "a mapping of keys"
                default: kind = "a value of another kind"
                }
                return "\(section).\(key) must be \(kind) (got \(value))"
            }
        }
        return nil
    }

    /// The allowed key closest to a misspelt one (at most two edits, same section), if any.
    static func suggestion(for path: String, allowed: [String: Any]) -> String? {
        let parts = path.split(separator: ".").map(String.init)
        guard let last = parts.last else { return nil }
        var level: [String: Any] = allowed
        for part in parts.dropLast() {
            guard let next = level[part] as? [String: Any] else { return nil }
            level = next
        }
        let prefix = parts.dropLast().map { $0 + "." }.joined()
        let scored = level.keys.map { ($0, editDistance($0, last)) }.filter { $0.1 <= 2 }.sorted { ($0.1, $0.0) < ($1.1, $1.0) }
        return scored.first.map { prefix + $0.0 }
    }

    /// Levenshtein distance between two short keys.
    static func editDistance(_ a: String, _ b: String) -> Int {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count < 64, y.count < 64 else { return Int.max }
        var row = Array(0...y.count)
        for i in 1...max(1, x.count) where !x.isEmpty {
            var previous = row[0]
            row[0] = i
            for j in 1...max(1, y.count) where !y.isEmpty {
                let old = row[j]
                row[j] = min(row[j] + 1, row[j - 1] + 1, previous + (x[i - 1] == y[j - 1] ? 0 : 1))
                previous = old
            }
        }
        return row[y.count]
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
    static let modelTypes = ["gpt", "mlp", "unet"]

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
