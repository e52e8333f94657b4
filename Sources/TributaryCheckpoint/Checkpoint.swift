import Foundation
import TributaryData
import TributaryModels
import TributaryOptim
import TributaryTensor

/// What a checkpoint's config.json holds besides the weights.
public struct CheckpointConfig: Codable, Sendable, Equatable {
    public var model: ModelSpec
    /// The character vocabulary of a text corpus, so sampling can decode without the data.
    public var vocabulary: CharacterVocabulary?
    public var step: Int
    public var format = CheckpointConfig.currentFormat
    public static let currentFormat = 1

    public init(model: ModelSpec, vocabulary: CharacterVocabulary?, step: Int) {
        self.model = model
        self.vocabulary = vocabulary
        self.step = step
    }

    enum CodingKeys: String, CodingKey { case vocabulary, step, format = "tributary_checkpoint_format" }

    // The model's keys sit at the top level (model_type, model_args), as nanoGPT's do.
    public init(from decoder: any Decoder) throws {
        model = try ModelSpec(from: decoder)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        vocabulary = try c.decodeIfPresent(CharacterVocabulary.self, forKey: .vocabulary)
        step = try c.decode(Int.self, forKey: .step)
        format = try c.decodeIfPresent(Int.self, forKey: .format) ?? 1
    }

    public func encode(to encoder: any Encoder) throws {
        try model.encode(to: encoder)
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeIfPresent(vocabulary, forKey: .vocabulary)
        try c.encode(step, forKey: .step)
        try c.encode(format, forKey: .format)
    }
}

public enum CheckpointError: Error, CustomStringConvertible, Equatable {
    case notFound(String)
    case corrupt(path: String, reason: String)
    case mismatch(String)

    public var description: String {
        switch self {
        case let .notFound(path): return "no checkpoint at \(path)"
        case let .corrupt(path, reason): return "checkpoint \(path) is unusable: \(reason)"
        case let .mismatch(why): return "checkpoint does not fit this run: \(why)"
        }
    }
}

/// A directory of checkpoints: `step-00000100/{model.safetensors, config.json,
/// optimizer.safetensors, trainer_state.json, SHA256SUMS}` plus `latest`, a one-line pointer file.
///
/// A checkpoint is written completely into its own new directory, flushed, its files'
/// SHA-256 written last (`SHA256SUMS`, in `sha256sum -c` format), and only then made current
/// by atomically replacing `latest`. A crash at any moment leaves `latest` naming a complete
/// checkpoint; a half-written directory is ignored and cleaned later; a file damaged on disk
/// afterwards fails its hash when read (`CheckpointIntegrity`).
public struct CheckpointStore: Sendable {
    public let directory: String
    public var keep: Int

    public static let modelFile = "model.safetensors"
    public static let configFile = "config.json"
    public static let optimizerFile = "optimizer.safetensors"
    public static let trainerStateFile = "trainer_state.json"
    public static let latestFile = "latest"

    public init(directory: String, keep: Int = 2) {
        self.directory = directory
        self.keep = max(1, keep)
    }

    public static func stepDirectoryName(_ step: Int) -> String {
        "step-" + String(repeating: "0", count: max(0, 8 - String(step).count)) + String(step)
    }

    /// Writes a checkpoint and makes it the latest; returns its directory.
    @discardableResult
    public func save(step: Int, spec: ModelSpec, model: any TrainableModel, vocabulary: CharacterVocabulary?,
                     optimizer: (any Optimizer)?, trainerState: [UInt8]?) throws -> String {
        let fm = FileManager.default
        try fm.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let name = Self.stepDirectoryName(step)
        let path = "\(directory)/\(name)"
        if fm.fileExists(atPath: path) {
            // Left over from a crash before `latest` moved, or a re-save of the same step.
            if (try? latestDirectoryName()) == name {
                throw CheckpointError.mismatch("step \(step) is already the latest checkpoint in \(directory)")
            }
            try fm.removeItem(atPath: path)
        }
        try fm.createDirectory(atPath: path, withIntermediateDirectories: false)
        try Self.modelFile(spec: spec, parameters: model.parameters, step: step).write(to: "\(path)/\(Self.modelFile)")
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let config = try encoder.encode(CheckpointConfig(model: spec, vocabulary: vocabulary, step: step))
        try AtomicFile.write(Array(config), to: "\(path)/\(Self.configFile)")
        if let optimizer {
            let entries = optimizer.stateTensors().map { SafeTensorsEntry(name: $0.name, shape: $0.tensor.shape, floats: $0.tensor.toArray()) }
            try SafeTensorsFile(entries: entries, metadata: ["kind": optimizer.kind, "step": String(optimizer.stepCount)])
                .write(to: "\(path)/\(Self.optimizerFile)")
        }
        if let trainerState { try AtomicFile.write(trainerState, to: "\(path)/\(Self.trainerStateFile)") }
        try CheckpointIntegrity.writeSums(in: path)
        try AtomicFile.writeText(name + "\n", to: "\(directory)/\(Self.latestFile)")
        prune(except: name)
        return path
    }

    /// The weights as a safetensors file PyTorch's nanoGPT `GPT` loads with
    /// `load_state_dict` and no renaming (the tied head is written under both names).
    public static func modelFile(spec: ModelSpec, parameters: ParameterSet, step: Int) -> SafeTensorsFile {
        var entries = parameters.parameters.map { SafeTensorsEntry(name: $0.name, shape: $0.shape, floats: $0.value.toArray()) }
        for (alias, source) in spec.tiedAliases {
            if let p = parameters[source] { entries.append(SafeTensorsEntry(name: alias, shape: p.shape, floats: p.value.toArray())) }
        }
        return SafeTensorsFile(entries: entries, metadata: ["format": "pt", "step": String(step)])
    }

    public func latestDirectoryName() throws -> String {
        let pointer = "\(directory)/\(Self.latestFile)"
        guard let text = try? String(contentsOfFile: pointer, encoding: .utf8) else { throw CheckpointError.notFound(directory) }
        let name = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard name.hasPrefix("step-"), !name.contains("/") else {
            throw CheckpointError.corrupt(path: pointer, reason: "the pointer names '\(name)', not a step directory")
        }
        return name
    }

    /// The latest checkpoint's directory, or nil when the store has none.
    public func latestPath() throws -> String? {
        guard FileManager.default.fileExists(atPath: "\(directory)/\(Self.latestFile)") else { return nil }
        return "\(directory)/\(try latestDirectoryName())"
    }

    /// Removes step directories other than the newest `keep` complete ones (never the
    /// current one). A directory without its config and weights is a crashed save.
    private func prune(except current: String) {
        let fm = FileManager.default
        guard let names = try? fm.contentsOfDirectory(atPath: directory) else { return }
        let steps = names.compactMap { name -> (step: Int, name: String)? in
            guard name.hasPrefix("step-"), let n = Int(name.dropFirst(5)) else { return nil }
            return (n, name)
        }.sorted { $0.step < $1.step }
        let complete = steps.filter {
            fm.fileExists(atPath: "\(directory)/\($0.name)/\(Self.configFile)")
                && fm.fileExists(atPath: "\(directory)/\($0.name)/\(Self.modelFile)")
        }
        let keepSet = Set(complete.suffix(keep).map(\.name)).union([current])
        for entry in steps where !keepSet.contains(entry.name) {
            try? fm.removeItem(atPath: "\(directory)/\(entry.name)")
        }
    }
}

/// A checkpoint read back and checked.
public struct LoadedCheckpoint: Sendable {
    public let path: String
    public let config: CheckpointConfig
    public let weights: SafeTensorsFile
    public let optimizerState: SafeTensorsFile?
    public let trainerState: [UInt8]?

    /// Only a step directory's `config.json` (which model, which step), unverified and without
    /// the tensors: for a quick look, such as whether a data directory holds another model.
    public static func readConfig(_ dir: String) -> CheckpointConfig? {
        guard let bytes = FileManager.default.contents(atPath: "\(dir)/\(CheckpointStore.configFile)"),
              bytes.count <= 1 << 20 else { return nil }
        return try? JSONDecoder().decode(CheckpointConfig.self, from: bytes)
    }

    /// Reads a checkpoint directory (or a store whose `latest` names one). Its files are
    /// checked against its `SHA256SUMS` first (a checkpoint written before those existed
    /// has none and is read unchecked).
    public static func read(_ path: String) throws -> LoadedCheckpoint {
        let fm = FileManager.default
        var dir = path
        if fm.fileExists(atPath: "\(path)/\(CheckpointStore.latestFile)") {
            dir = "\(path)/\(try CheckpointStore(directory: path).latestDirectoryName())"
        }
        guard fm.fileExists(atPath: "\(dir)/\(CheckpointStore.configFile)") else { throw CheckpointError.notFound(path) }
        try CheckpointIntegrity.verify(dir)
        let configBytes: Data
        do { configBytes = try Data(contentsOf: URL(fileURLWithPath: "\(dir)/\(CheckpointStore.configFile)")) } catch {
            throw CheckpointError.corrupt(path: dir, reason: "config.json unreadable: \(error.localizedDescription)")
        }
        let config: CheckpointConfig
        do { config = try JSONDecoder().decode(CheckpointConfig.self, from: configBytes) } catch {
            throw CheckpointError.corrupt(path: dir, reason: "config.json is not a valid checkpoint config (\(error))")
        }
        guard config.format <= CheckpointConfig.currentFormat else {
            throw CheckpointError.corrupt(path: dir, reason: "written in checkpoint format \(config.format) by a newer Tributary; this one reads format \(CheckpointConfig.currentFormat)")
        }
        do { try config.model.validate() } catch {
            throw CheckpointError.corrupt(path: dir, reason: "\(error)")
        }
        let weights: SafeTensorsFile
        do { weights = try SafeTensorsFile.read(path: "\(dir)/\(CheckpointStore.modelFile)") } catch {
            throw CheckpointError.corrupt(path: dir, reason: "\(error)")
        }
        var optimizerState: SafeTensorsFile?
        if fm.fileExists(atPath: "\(dir)/\(CheckpointStore.optimizerFile)") {
            do { optimizerState = try SafeTensorsFile.read(path: "\(dir)/\(CheckpointStore.optimizerFile)") } catch {
                throw CheckpointError.corrupt(path: dir, reason: "\(error)")
            }
        }
        let trainerState = fm.contents(atPath: "\(dir)/\(CheckpointStore.trainerStateFile)").map { Array($0) }
        return LoadedCheckpoint(path: dir, config: config, weights: weights, optimizerState: optimizerState, trainerState: trainerState)
    }

    /// Copies the weights into `parameters`, checking every name, shape and value first:
    /// a checkpoint that fails any check changes nothing.
    public func loadWeights(into parameters: ParameterSet) throws {
        let values = try validatedWeights(for: parameters)
        for (p, v) in zip(parameters.parameters, values) { p.value.copy(from: v) }
    }

    /// Every parameter's values, checked (present, F32, right shape, finite), in order.
    public func validatedWeights(for parameters: ParameterSet) throws -> [[Float]] {
        try parameters.parameters.map { p in
            guard let entry = weights.entry(named: p.name) else {
                throw CheckpointError.corrupt(path: path, reason: "tensor '\(p.name)' is missing")
            }
            guard entry.shape == p.shape else {
                throw CheckpointError.corrupt(path: path, reason: "tensor '\(p.name)' has shape \(entry.shape), expected \(p.shape)")
            }
            let values: [Float]
            do { values = try entry.floats() } catch { throw CheckpointError.corrupt(path: path, reason: "\(error)") }
            guard values.count == p.count else {
                throw CheckpointError.corrupt(path: path, reason: "tensor '\(p.name)' holds \(values.count) values, expected \(p.count)")
            }
            guard values.allSatisfy(\.isFinite) else {
                throw CheckpointError.corrupt(path: path, reason: "tensor '\(p.name)' contains NaN or infinity")
            }
            return values
        }
    }

    /// Restores an optimizer's state; its kind must match. Checked completely before
    /// anything is copied.
    public func loadOptimizer(into optimizer: any Optimizer) throws {
        let (step, state) = try validatedOptimizerState(for: optimizer)
        try optimizer.restore(stepCount: step) { name in
            guard let values = state[name] else { throw OptimizerError.missingState(name) }
            return values
        }
    }

    /// The optimizer's step count and state tensors by name, checked (kind, presence,
    /// shape, finiteness).
    public func validatedOptimizerState(for optimizer: any Optimizer) throws -> (step: Int, state: [String: [Float]]) {
        guard let file = optimizerState else {
            throw CheckpointError.mismatch("the checkpoint at \(path) has no optimizer state to resume from")
        }
        guard file.metadata["kind"] == optimizer.kind else {
            throw CheckpointError.mismatch("optimizer is \(optimizer.kind) but the checkpoint holds \(file.metadata["kind"] ?? "unknown") state")
        }
        guard let stepText = file.metadata["step"], let step = Int(stepText), step >= 0 else {
            throw CheckpointError.corrupt(path: path, reason: "optimizer state has no step count")
        }
        var state: [String: [Float]] = [:]
        for (name, tensor) in optimizer.stateTensors() {
            guard let entry = file.entry(named: name) else {
                throw CheckpointError.corrupt(path: path, reason: "optimizer state '\(name)' is missing")
            }
            guard entry.shape == tensor.shape else {
                throw CheckpointError.corrupt(path: path, reason: "optimizer state '\(name)' has shape \(entry.shape), expected \(tensor.shape)")
            }
            let values: [Float]
            do { values = try entry.floats() } catch { throw CheckpointError.corrupt(path: path, reason: "\(error)") }
            guard values.count == tensor.count, values.allSatisfy(\.isFinite) else {
                throw CheckpointError.corrupt(path: path, reason: "optimizer state '\(name)' has the wrong size or non-finite values")
            }
            state[name] = values
        }
        return (step, state)
    }
}
