import Crypto
import Foundation
import NIOConcurrencyHelpers
import TributaryCompression
import TributaryProtocol
import TributaryTensor

/// The parameter versions workers may fetch: each version's manifest and its shard bodies
/// (immutable tensor frames). The job publishes a version after each step; downloads read
/// here without waiting for the job.
public final class ParameterPublisher: Sendable {
    public struct Version: Sendable {
        public let manifest: Manifest
        let bodies: [String: [UInt8]]
    }

    private struct State {
        var versions: [Int: Version] = [:]
        var current = 0
    }

    public let layout: ShardLayout
    private let zstdLevel: Int
    private let state = NIOLockedValueBox(State())

    init(layout: ShardLayout, zstdLevel: Int) {
        self.layout = layout
        self.zstdLevel = zstdLevel
    }

    /// Encodes `parameters` as version `version` and stops serving versions older than
    /// `oldestServed`.
    func publish(version: Int, parameters: ParameterSet, oldestServed: Int) throws {
        var bodies: [String: [UInt8]] = [:]
        var descriptors: [ShardDescriptor] = []
        for shard in layout.shards {
            var flat = [Float](repeating: 0, count: shard.elementCount)
            flat.withUnsafeMutableBufferPointer { buf in
                guard let base = buf.baseAddress else { return }
                layout.gather(shard, from: parameters, gradients: false, into: base)
            }
            let body = try flat.withUnsafeBufferPointer {
                try TensorFrame.encode($0, codec: .fp32, zstdLevel: zstdLevel)
            }
            let hash = SHA256.hash(data: body).map { String(format: "%02x", $0) }.joined()
            bodies[shard.name] = body
            descriptors.append(ShardDescriptor(name: shard.name, tensors: shard.tensors, elementCount: shard.elementCount,
                                               byteSize: body.count, contentHash: hash))
        }
        let published = Version(manifest: Manifest(version: version, shards: descriptors), bodies: bodies)
        state.withLockedValue {
            $0.versions[version] = published
            $0.current = version
            $0.versions = $0.versions.filter { $0.key >= oldestServed }
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

    private func served(_ v: Int) throws(JobError) -> Version {
        let (found, current) = state.withLockedValue { ($0.versions[v], $0.current) }
        guard let found else {
            throw v > current ? .versionNotYet(v, current: current) : .versionGone(v, current: current)
        }
        return found
    }
}
