import Foundation
import Logging
import TributaryCompression
import TributaryModels
import TributaryProtocol
import TributaryTensor

/// Which version of each shard the worker's cache holds (by content hash), so that the next
/// version can come as a chain of deltas instead of the whole shard. Kept in the cache
/// folder (`held.json`), so a restarted worker continues its chains.
struct HeldShards: Codable, Sendable, Equatable {
    struct Entry: Codable, Sendable, Equatable {
        var version: Int
        var hash: String
    }

    var shards: [String: Entry] = [:]

    static func load(directory: String) -> HeldShards {
        guard let data = FileManager.default.contents(atPath: "\(directory)/held.json"), data.count <= 1 << 20,
              let held = try? JSONDecoder().decode(HeldShards.self, from: data) else { return HeldShards() }
        // Only checked hashes ever name a cache file.
        return HeldShards(shards: held.shards.filter { ShardCache.isContentHash($0.value.hash) && $0.value.version >= 0 })
    }

    func save(directory: String) {
        guard let data = try? JSONEncoder().encode(self) else { return }
        try? data.write(to: URL(fileURLWithPath: "\(directory)/held.json"), options: .atomic)
    }
}

/// Rebuilding a shard's version from an older one and a chain of deltas (Protocol/frames.md,
/// "Parameter deltas"): the result is the fp32 frame the coordinator would serve, bit for
/// bit, and is accepted only when its SHA-256 is the manifest's content hash.
enum DeltaReconstruction {
    /// Bytes held while rebuilding a shard of `elements` values: the values, the decode
    /// scratch and the rebuilt frame (fp32, uncompressed).
    static func workingBytes(elements: Int) -> Int {
        8 * elements + TensorFrameHeader.size + 4 * elements
    }

    /// The frame of version `to` from the cached body of version `from` and `chain`.
    static func rebuild(cache: ShardCache, baseHash: String, chain: [UInt8], from: Int, to: Int, elements: Int,
                        expectedHash: String, allocator: TensorAllocator) throws -> [UInt8] {
        try allocator.withReservedBytes(workingBytes(elements: elements)) {
            let values = UnsafeMutableBufferPointer<Float>.allocate(capacity: elements)
            defer { values.deallocate() }
            let scratch = UnsafeMutableBufferPointer<Float>.allocate(capacity: elements)
            defer { scratch.deallocate() }
            try cache.load(baseHash, into: values, allocator: allocator)
            try chain.withUnsafeBytes { raw in
                let ranges: [Range<Int>]
                do { ranges = try DeltaChain.deltas(in: raw, from: from, to: to) } catch {
                    throw ClientError.protocolViolation("delta chain: \(error)")
                }
                for (index, range) in ranges.enumerated() {
                    do {
                        try ParameterDelta.apply(UnsafeRawBufferPointer(rebasing: raw[range]), to: values, scratch: scratch)
                    } catch {
                        throw ClientError.protocolViolation("delta \(index + 1) of the chain \(from)→\(to): \(error)")
                    }
                }
            }
            for v in values where !v.isFinite {
                throw ClientError.protocolViolation("the delta chain \(from)→\(to) gives non-finite parameters")
            }
            let body = try TensorFrame.encode(UnsafeBufferPointer(values), codec: .fp32, zstdLevel: nil)
            guard ShardCache.contentHash(of: body) == expectedHash else {
                throw ClientError.protocolViolation("the delta chain \(from)→\(to) does not rebuild the published shard (content hash differs)")
            }
            return body
        }
    }
}

extension WorkerDaemon {
    /// A worker that holds no shard yet builds version 0 from the job's seed, as the
    /// coordinator did, instead of downloading it: with compressed downloads the shard
    /// bodies are reproducible, so version 0's are in the cache by their hashes and later
    /// versions come as delta chains from it (a chain that does not rebuild the published
    /// hash, if this machine's initialisation differed, falls back to whole shards).
    func seedInitialShards(_ job: JobDescription, layout: ShardLayout) {
        guard heldShards.shards.isEmpty, !triedSeedInitialisation, let seed = job.initSeed else { return }
        triedSeedInitialisation = true
        do {
            // The model is built outside the budget's allocator, but its bytes are reserved there.
            try device.allocator.withReservedBytes(2 * TensorShapes.byteCount(elements: job.model.parameterCount)) {
                let model = try job.model.build(seed: seed, device: CPUDevice(memoryBudgetBytes: nil))
                for shard in layout.shards {
                    var flat = [Float](repeating: 0, count: shard.elementCount)
                    flat.withUnsafeMutableBufferPointer { p in
                        if let base = p.baseAddress { layout.gather(shard, from: model.parameters, gradients: false, into: base) }
                    }
                    let body = try flat.withUnsafeBufferPointer { try TensorFrame.encode($0, codec: .fp32, zstdLevel: nil) }
                    let hash = ShardCache.contentHash(of: body)
                    try cache.store(body, hash: hash)
                    heldShards.shards[shard.name] = .init(version: 0, hash: hash)
                }
            }
            heldShards.save(directory: cache.directory)
            logger.debug("version 0 built from the job's seed", metadata: ["seed": "\(seed)"])
        } catch {
            heldShards = HeldShards()
            logger.debug("version 0 not built from the seed; downloading", metadata: ["error": "\(error)"])
        }
    }
}
