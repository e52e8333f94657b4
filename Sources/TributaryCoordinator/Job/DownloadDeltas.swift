import Crypto
import Foundation
import TributaryCheckpoint
import TributaryCompression
import TributaryProtocol

/// Compressed downloads on the coordinator: per shard, what workers hold and the delta
/// encoder that moves it toward the true parameters (`ParameterDeltaEncoder`). Saved next
/// to each checkpoint, so a restarted coordinator publishes the same values again and
/// workers keep using their chains.
struct DownloadDeltas: Sendable {
    let codec: UpdateCodecSpec
    let shapes: [String: [MatrixShape]]
    private(set) var encoders: [String: ParameterDeltaEncoder] = [:]
    /// The version `encoders` hold; nil before the first publish.
    private(set) var version: Int?

    init(codec: UpdateCodecSpec, shapes: [String: [MatrixShape]]) {
        self.codec = codec
        self.shapes = shapes
    }

    /// Published values of `version` per shard and the deltas from `version − 1`: none when
    /// `version` is the held one (the held values again) or does not follow it (then the
    /// values are `target` exactly). All shards advance or none.
    mutating func advance(to version: Int, target: [String: [Float]],
                          zstdLevel: Int) throws -> (values: [String: [Float]], deltas: [String: [UInt8]]) {
        if self.version == version, Set(encoders.keys) == Set(target.keys) {
            // Published again (after a restart restored this version): the same values.
            return (encoders.mapValues(\.published), [:])
        }
        guard let held = self.version, held + 1 == version, Set(encoders.keys) == Set(target.keys) else {
            encoders = [:]
            for (name, values) in target {
                encoders[name] = ParameterDeltaEncoder(codec: codec, shapes: shapes[name], published: values)
            }
            self.version = version
            return (target, [:])
        }
        var next = encoders
        var deltas: [String: [UInt8]] = [:]
        for (name, values) in target {
            guard var encoder = next[name] else { continue }
            deltas[name] = try values.withUnsafeBufferPointer { try encoder.advance(toward: $0, zstdLevel: zstdLevel) }
            next[name] = encoder
        }
        encoders = next
        self.version = version
        return (encoders.mapValues(\.published), deltas)
    }

    /// What a checkpoint keeps.
    struct Saved: Sendable, Equatable {
        var version: Int
        var published: [String: [Float]]
        var warmStarts: [String: [Float]]
        /// The latest versions' delta frames by version and shard, so that workers a version
        /// or two behind still get chains after a restart.
        var deltas: [Int: [String: [UInt8]]] = [:]
    }

    /// Delta versions a saved state keeps.
    static let savedDeltaVersions = 4

    var saved: Saved? {
        version.map { Saved(version: $0, published: encoders.mapValues(\.published), warmStarts: encoders.mapValues(\.warmStart)) }
    }

    /// Whether the saved state fit the layout and was taken.
    @discardableResult
    mutating func restore(_ saved: Saved, layout: ShardLayout) -> Bool {
        guard layout.shards.allSatisfy({ saved.published[$0.name]?.count == $0.elementCount }) else { return false }
        encoders = [:]
        for (name, values) in saved.published {
            encoders[name] = ParameterDeltaEncoder(codec: codec, shapes: shapes[name], published: values,
                                                   warmStart: saved.warmStarts[name])
        }
        version = saved.version
        return true
    }
}

/// The file beside a checkpoint that holds `DownloadDeltas.Saved`: a safetensors file with
/// `published.<shard>` and `warm.<shard>` tensors, its version, codec and a SHA-256 of every
/// tensor's bytes in its metadata (a damaged file is ignored, never served).
enum DownloadStateFile {
    static func directory(dataDirectory: String) -> String { "\(dataDirectory)/downloads" }
    static func path(dataDirectory: String, step: Int) -> String {
        "\(directory(dataDirectory: dataDirectory))/step-\(step).safetensors"
    }

    static func write(_ saved: DownloadDeltas.Saved, codec: UpdateCodecSpec, dataDirectory: String) throws {
        var entries: [SafeTensorsEntry] = []
        for (name, values) in saved.published { entries.append(SafeTensorsEntry(name: "published.\(name)", shape: [values.count], floats: values)) }
        for (name, values) in saved.warmStarts where !values.isEmpty {
            entries.append(SafeTensorsEntry(name: "warm.\(name)", shape: [values.count], floats: values))
        }
        for (version, bodies) in saved.deltas {
            for (name, body) in bodies {
                entries.append(SafeTensorsEntry(name: "delta.\(version).\(name)", dtype: .U8, shape: [body.count], bytes: body))
            }
        }
        let file = SafeTensorsFile(entries: entries, metadata: [
            "version": String(saved.version), "codec": codec.description, "sha256": digest(entries)])
        try FileManager.default.createDirectory(atPath: directory(dataDirectory: dataDirectory), withIntermediateDirectories: true)
        try AtomicFile.write(try file.serialized(), to: path(dataDirectory: dataDirectory, step: saved.version))
    }

    /// The state saved at `step`, or nil when there is none, it is damaged, or of another codec.
    static func read(step: Int, codec: UpdateCodecSpec, dataDirectory: String) -> DownloadDeltas.Saved? {
        guard let file = try? SafeTensorsFile.read(path: path(dataDirectory: dataDirectory, step: step)),
              file.metadata["version"] == String(step), file.metadata["codec"] == codec.description,
              file.metadata["sha256"] == digest(file.entries) else { return nil }
        var saved = DownloadDeltas.Saved(version: step, published: [:], warmStarts: [:])
        for entry in file.entries {
            if entry.name.hasPrefix("delta."), entry.dtype == .U8 {
                let rest = entry.name.dropFirst("delta.".count)
                guard let dot = rest.firstIndex(of: "."), let version = Int(rest[..<dot]) else { return nil }
                saved.deltas[version, default: [:]][String(rest[rest.index(after: dot)...])] = entry.bytes
                continue
            }
            guard let values = try? entry.floats() else { return nil }
            if entry.name.hasPrefix("published.") {
                saved.published[String(entry.name.dropFirst("published.".count))] = values
            } else if entry.name.hasPrefix("warm.") {
                saved.warmStarts[String(entry.name.dropFirst("warm.".count))] = values
            }
        }
        return saved
    }

    /// Removes the files of steps not in `keep`.
    static func prune(keeping keep: Set<Int>, dataDirectory: String) {
        let dir = directory(dataDirectory: dataDirectory)
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return }
        for name in names where name.hasPrefix("step-") && name.hasSuffix(".safetensors") {
            guard let step = Int(name.dropFirst("step-".count).dropLast(".safetensors".count)), !keep.contains(step) else { continue }
            try? FileManager.default.removeItem(atPath: "\(dir)/\(name)")
        }
    }

    private static func digest(_ entries: [SafeTensorsEntry]) -> String {
        var hasher = SHA256()
        for entry in entries.sorted(by: { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }) {
            hasher.update(data: Array(entry.name.utf8))
            hasher.update(data: entry.bytes)
        }
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }
}
