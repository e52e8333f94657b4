import Crypto
import Foundation
import NIOConcurrencyHelpers
import TributaryCompression
import TributaryProtocol
import TributaryTensor

/// The parameter versions workers may fetch: each version's manifest, its shard bodies
/// (immutable fp32 tensor frames) and, with a download codec, each shard's delta from the
/// version before (`DownloadDeltas`). The job publishes a version after each step;
/// downloads read here without waiting for the job.
public final class ParameterPublisher: Sendable {
    public struct Version: Sendable {
        public let manifest: Manifest
        let bodies: [String: [UInt8]]
    }

    private struct State {
        var versions: [Int: Version] = [:]
        /// Delta frames by version (the step from version − 1), kept longer than full bodies.
        var deltas: [Int: [String: [UInt8]]] = [:]
        var current = 0
    }

    public let layout: ShardLayout
    private let zstdLevel: Int
    private let state = NIOLockedValueBox(State())
    /// What workers hold, when downloads are compressed; nil: workers get the parameters exactly.
    let downloads: NIOLockedValueBox<DownloadDeltas>?

    /// Deltas are served this many versions back (a chain longer than the full shard is refused anyway).
    static let deltaWindow = 64

    init(layout: ShardLayout, zstdLevel: Int, downloadCodec: UpdateCodecSpec? = nil, shapes: [String: [MatrixShape]] = [:]) {
        self.layout = layout
        self.zstdLevel = zstdLevel
        downloads = downloadCodec.map { NIOLockedValueBox(DownloadDeltas(codec: $0, shapes: shapes)) }
    }

    /// Publishes `parameters` as version `version` and stops serving full bodies older than
    /// `oldestServed`. With compressed downloads the version's values are the previous
    /// version's plus a delta toward `parameters` (the first version, or one that does not
    /// follow the last, is published exactly and has no delta). Publishing the latest version
    /// again changes nothing.
    func publish(version: Int, parameters: ParameterSet, oldestServed: Int) throws {
        if downloads != nil, state.withLockedValue({ $0.versions[version] != nil && $0.current == version }) {
            trim(oldestServed: oldestServed)
            return
        }
        var deltaBodies: [String: [UInt8]] = [:]
        var values: [String: [Float]] = [:]
        for shard in layout.shards {
            var flat = [Float](repeating: 0, count: shard.elementCount)
            flat.withUnsafeMutableBufferPointer { buf in
                guard let base = buf.baseAddress else { return }
                layout.gather(shard, from: parameters, gradients: false, into: base)
            }
            values[shard.name] = flat
        }
        if let downloads {
            let restoredHere = downloads.withLockedValue { $0.version == version }
            (values, deltaBodies) = try downloads.withLockedValue { try $0.advance(to: version, target: values, zstdLevel: zstdLevel) }
            // A version restored from a checkpoint (its values as saved) keeps the delta it had.
            if restoredHere, let restored = state.withLockedValue({ $0.deltas[version] }) { deltaBodies = restored }
        }
        var bodies: [String: [UInt8]] = [:]
        var descriptors: [ShardDescriptor] = []
        for shard in layout.shards {
            let flat = values[shard.name] ?? []
            // Reproducible bodies when workers rebuild them from deltas: zstd's bytes depend on its version.
            let body = try flat.withUnsafeBufferPointer {
                try TensorFrame.encode($0, codec: .fp32, zstdLevel: downloads == nil ? zstdLevel : nil)
            }
            let hash = SHA256.hash(data: body).map { String(format: "%02x", $0) }.joined()
            bodies[shard.name] = body
            descriptors.append(ShardDescriptor(name: shard.name, tensors: shard.tensors, elementCount: shard.elementCount,
                                               byteSize: body.count, contentHash: hash,
                                               deltaByteSize: deltaBodies[shard.name]?.count))
        }
        let manifest = Manifest(version: version, shards: descriptors,
                                deltaCodec: downloads.map { $0.withLockedValue { $0.codec.description } })
        state.withLockedValue {
            $0.versions[version] = Version(manifest: manifest, bodies: bodies)
            $0.deltas[version] = deltaBodies.isEmpty ? nil : deltaBodies
            $0.current = version
        }
        trim(oldestServed: oldestServed)
    }

    private func trim(oldestServed: Int) {
        state.withLockedValue {
            $0.versions = $0.versions.filter { $0.key >= oldestServed }
            let oldestDelta = $0.current - Self.deltaWindow
            $0.deltas = $0.deltas.filter { $0.key > oldestDelta }
        }
    }

    public func manifest(version v: Int) throws(JobError) -> Manifest {
        try served(v).manifest
    }

    public func shard(version v: Int, name: String) throws(JobError) -> (body: [UInt8], hash: String) {
        let published = try served(v)
        guard let body = published.bodies[name], let d = published.manifest.shard(named: name) else {
            throw .unknownShard(name, known: layout.shards.map(\.name))
        }
        return (body, d.contentHash)
    }

    /// The chain of deltas that takes shard `name` from version `from` to `v`, when every
    /// step is held and together they are smaller than the full body.
    public func deltaChain(version v: Int, name: String, from: Int) throws(JobError) -> [UInt8] {
        let full = try shard(version: v, name: name).body.count
        guard from >= 0, from < v, v - from <= DeltaChain.maximumDeltas else {
            throw .deltaUnavailable(name, from: from, to: v, reason: "the chain must go forward by 1 to \(DeltaChain.maximumDeltas) versions")
        }
        let steps: [[UInt8]]? = state.withLockedValue { s in
            var out: [[UInt8]] = []
            for u in (from + 1)...v {
                guard let d = s.deltas[u]?[name] else { return nil }
                out.append(d)
            }
            return out
        }
        guard let steps else {
            throw .deltaUnavailable(name, from: from, to: v, reason: "the coordinator does not hold every delta between them")
        }
        let size = steps.reduce(DeltaChain.headerSize) { $0 + 8 + $1.count }
        guard size < full else {
            throw .deltaUnavailable(name, from: from, to: v, reason: "the chain (\(size) bytes) is not smaller than the shard (\(full) bytes)")
        }
        return DeltaChain.encode(from: from, to: v, deltas: steps)
    }

    private func served(_ v: Int) throws(JobError) -> Version {
        let (found, current) = state.withLockedValue { ($0.versions[v], $0.current) }
        guard let found else {
            throw v > current ? .versionNotYet(v, current: current) : .versionGone(v, current: current)
        }
        return found
    }

    /// The version whose values workers hold (nil without compressed downloads or before the first).
    var downloadVersion: Int? { downloads?.withLockedValue { $0.version } }

    /// What workers hold (for a checkpoint); nil without compressed downloads.
    func downloadState() -> DownloadDeltas.Saved? {
        guard var saved = downloads?.withLockedValue({ $0.saved }) else { return nil }
        saved.deltas = state.withLockedValue { s in
            s.deltas.filter { $0.key <= saved.version && $0.key > saved.version - DownloadDeltas.savedDeltaVersions }
        }
        return saved
    }

    /// Restores what workers held at `saved.version` (from a checkpoint), before that version is
    /// published again; a state that does not fit the layout is ignored (the next version is exact).
    func restoreDownloads(_ saved: DownloadDeltas.Saved) {
        guard let downloads, downloads.withLockedValue({ $0.restore(saved, layout: layout) }) else { return }
        state.withLockedValue { s in
            for (version, bodies) in saved.deltas where version <= saved.version { s.deltas[version] = bodies }
        }
    }
}
