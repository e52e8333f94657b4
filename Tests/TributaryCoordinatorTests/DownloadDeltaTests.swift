import Crypto
import Foundation
import TributaryCompression
import TributaryModels
import TributaryProtocol
import TributaryTensor
import XCTest
@testable import TributaryCoordinator

/// Compressed downloads: every version a worker rebuilds from an older one and the chain
/// of deltas is bit for bit the published shard (its SHA-256 is the manifest's hash), for
/// every download codec, for workers that hold every version and workers that skip some;
/// the published values follow the true parameters (error feedback); bad requests refused.
final class DownloadDeltaTests: XCTestCase {
    let spec = ModelSpec.gpt(GPTConfig(vocabSize: 65, blockSize: 16, nLayer: 2, nHead: 2, nEmbd: 32))

    func testWorkersRebuildEveryVersionBitForBitFromDeltaChains() throws {
        for codec in ["int8", "int4", "topk:0.05:int8", "lowrank:2:int8", "lowrank:4", "bf16"] {
            try checkChains(codec: try UpdateCodecSpec(parsing: codec))
        }
    }

    private func checkChains(codec: UpdateCodecSpec) throws {
        let layout = ShardLayout(spec: spec)
        let shapes = Dictionary(uniqueKeysWithValues: spec.shardGroups.map { ($0.name, $0.parameters.map { MatrixShape(shape: $0.shape) }) })
        let publisher = ParameterPublisher(layout: layout, zstdLevel: 1, downloadCodec: codec, shapes: shapes)
        let model = try spec.build(seed: 7)
        let initial = model.parameters.parameters.map { $0.value.toArray() }
        var rng = SeededRandom(seed: 11)
        var held: [Int: [String: [Float]]] = [:]  // what a worker rebuilt, by version
        var rebuilt = 0, refused = 0
        for v in 0...24 {
            if v > 0 {
                // An optimizer-like step: matrices move mostly along a rank-1 direction (as
                // gradients do), plus noise and a few large coordinates; vectors drift.
                for p in model.parameters.parameters {
                    let w = p.value.data
                    let rows = p.shape.count >= 2 ? p.shape[0] : 1, cols = p.count / rows
                    let a = (0..<rows).map { _ in rng.nextGaussian() }, b = (0..<cols).map { _ in rng.nextGaussian() }
                    for i in 0..<p.count {
                        w[i] += 1e-3 * a[i / cols] * b[i % cols] + 2e-4 * rng.nextGaussian() + (i % 97 == 0 ? 1e-3 : 0)
                    }
                }
            }
            try publisher.publish(version: v, parameters: model.parameters, oldestServed: v - 30)
            let manifest = try publisher.manifest(version: v)
            XCTAssertEqual(manifest.deltaCodec, codec.description)
            var now: [String: [Float]] = [:]
            for shard in layout.shards {
                let d = try XCTUnwrap(manifest.shard(named: shard.name))
                XCTAssertEqual(d.deltaByteSize != nil, v > 0, "every version after the first has a delta")
                let full = try publisher.shard(version: v, name: shard.name)
                now[shard.name] = try Self.decode(full.body, count: shard.elementCount)
                // A worker that held each of the last 6 versions.
                for u in max(0, v - 6)..<v {
                    guard var values = held[u]?[shard.name] else { continue }
                    let chain: [UInt8]
                    do { chain = try publisher.deltaChain(version: v, name: shard.name, from: u) } catch {
                        guard case .deltaUnavailable = error else { throw error }
                        refused += 1
                        continue
                    }
                    XCTAssertLessThan(chain.count, full.body.count, "a chain is served only when smaller")
                    try Self.apply(chain, from: u, to: v, to: &values)
                    let body = try values.withUnsafeBufferPointer { try TensorFrame.encode($0, codec: .fp32, zstdLevel: nil) }
                    XCTAssertEqual(SHA256.hash(data: body).map { String(format: "%02x", $0) }.joined(), d.contentHash,
                                   "\(codec): shard \(shard.name) rebuilt from version \(u) to \(v)")
                    rebuilt += 1
                }
            }
            held[v] = now
            // Error feedback: the published values stay within a step's compression error of
            // the true ones, while the parameters have moved by ~v·1e-3 per coordinate.
            var worst: Float = 0, scale: Float = 0
            for (index, p) in model.parameters.parameters.enumerated() {
                guard let shard = layout.shards.first(where: { $0.tensors.contains { $0.name == p.name } }),
                      let slot = shard.tensors.first(where: { $0.name == p.name }), let values = now[shard.name] else { continue }
                let truth = p.value.toArray()
                for i in 0..<p.count {
                    worst = max(worst, abs(values[slot.offset + i] - truth[i]))
                    scale = max(scale, abs(truth[i] - initial[index][i]))
                }
            }
            if v >= 12 { XCTAssertLessThan(worst, 0.6 * scale, "\(codec) v\(v): published values follow the parameters") }
        }
        print("\(codec): \(rebuilt) chains rebuilt bit for bit, \(refused) refused as not smaller")
        XCTAssertGreaterThan(rebuilt, 24 * 4, "\(codec): chains of one delta are always served")
    }

    func testChainsThatCannotBeServedAreRefused() throws {
        let layout = ShardLayout(spec: spec)
        let publisher = ParameterPublisher(layout: layout, zstdLevel: 1, downloadCodec: try UpdateCodecSpec(parsing: "int8"))
        let model = try spec.build(seed: 1)
        try publisher.publish(version: 0, parameters: model.parameters, oldestServed: 0)
        var rng = SeededRandom(seed: 3)
        for v in 1...8 {
            for p in model.parameters.parameters { for i in 0..<p.count { p.value.data[i] += 1e-2 * rng.nextGaussian() } }
            try publisher.publish(version: v, parameters: model.parameters, oldestServed: v - 1)
        }
        let name = layout.shards[1].name
        XCTAssertNoThrow(try publisher.deltaChain(version: 8, name: name, from: 7))
        for from in [8, 9, -1] {
            XCTAssertThrowsError(try publisher.deltaChain(version: 8, name: name, from: from)) { error in
                guard case JobError.deltaUnavailable = error else { return XCTFail("\(error)") }
            }
        }
        // Five int8 deltas weigh more than one fp32 shard: the worker fetches the shard.
        XCTAssertThrowsError(try publisher.deltaChain(version: 8, name: name, from: 3)) { error in
            XCTAssertEqual((error as? JobError)?.problemCode, .deltaUnavailable)
        }
        XCTAssertThrowsError(try publisher.deltaChain(version: 8, name: "nope", from: 7))
        // Published again (a restart restored version 8): the same bodies, no second delta.
        let before = try publisher.manifest(version: 8)
        try publisher.publish(version: 8, parameters: model.parameters, oldestServed: 7)
        XCTAssertEqual(try publisher.manifest(version: 8), before)
    }

    static func decode(_ body: [UInt8], count: Int) throws -> [Float] {
        var out = [Float](repeating: 0, count: count)
        try body.withUnsafeBytes { raw in try out.withUnsafeMutableBufferPointer { try TensorFrame.decode(raw, expectedCount: count, into: $0) } }
        return out
    }

    static func apply(_ chain: [UInt8], from: Int, to: Int, to values: inout [Float]) throws {
        var scratch = [Float](repeating: 0, count: values.count)
        try chain.withUnsafeBytes { raw in
            for range in try DeltaChain.deltas(in: raw, from: from, to: to) {
                try values.withUnsafeMutableBufferPointer { v in
                    try scratch.withUnsafeMutableBufferPointer { s in
                        try ParameterDelta.apply(UnsafeRawBufferPointer(rebasing: raw[range]), to: v, scratch: s)
                    }
                }
            }
        }
    }
}

/// After a stop without a word (no shutdown checkpoint), the restarted coordinator restores
/// what workers held at the checkpoint and replays the deltas of the rounds after it: every
/// version it publishes again is bit for bit the one published before the stop.
final class DownloadRecoveryTests: JobTestCase {
    func testReplayedRoundsPublishTheSameValuesAndDeltas() async throws {
        var c = config(checkpointEvery: 3)
        c.compression.downloadCodec = "lowrank:2:int8"
        var job = try await open(c)
        let workers = try await register(job, 2)
        try await run(job, workers, units: 15)  // 7 rounds; the newest checkpoint is version 6
        let before = try (6...7).map { try job.publisher.manifest(version: $0) }
        let chain = try job.publisher.deltaChain(version: 7, name: job.layout.shards[0].name, from: 5)
        await job.close()

        job = try await open(c)
        let version = await job.version
        XCTAssertEqual(version, 7)
        let after = try job.publisher.manifest(version: 7)
        XCTAssertEqual(after, before[1], "version 7 replayed: the same shards and delta sizes")
        XCTAssertEqual(try job.publisher.deltaChain(version: 7, name: job.layout.shards[0].name, from: 5), chain,
                       "a worker holding version 5 gets the same chain")
        // Without the state beside the checkpoint the chain starts over: exact values at the
        // checkpoint, other bytes from there (what this test would see if it were not restored).
        await job.close()
        for name in try FileManager.default.contentsOfDirectory(atPath: "\(c.storage.dataDirectory)/downloads") {
            try FileManager.default.removeItem(atPath: "\(c.storage.dataDirectory)/downloads/\(name)")
        }
        job = try await open(c)
        XCTAssertNotEqual(try job.publisher.manifest(version: 7).shards.map(\.contentHash),
                          before[1].shards.map(\.contentHash))
        await job.close()
    }
}
