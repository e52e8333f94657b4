import Foundation
import TributaryCompression
import TributaryTensor
import XCTest
@testable import TributaryWorker

/// The cache names files by the manifest's content hashes, which a hostile coordinator (or
/// anyone on a plain-HTTP path) writes: no hash may reach a file outside the cache.
final class ShardCacheTests: XCTestCase {
    func testHostileContentHashesNeverTouchFilesOutsideTheCache() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("tributary-cache-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        let cacheDir = "\(root)/worker/shards"
        try FileManager.default.createDirectory(atPath: cacheDir, withIntermediateDirectories: true)
        let victim = "\(root)/victim.frame"
        try Data("precious".utf8).write(to: URL(fileURLWithPath: victim))
        let cache = ShardCache(directory: cacheDir)
        let hostile = ["../../victim", "../../victim\u{0}", String(repeating: "a", count: 63) + "/",
                       String(repeating: "A", count: 64), "", String(repeating: "0", count: 65)]
        var out = [Float](repeating: 0, count: 4)
        for hash in hostile {
            XCTAssertFalse(ShardCache.isContentHash(hash), hash)
            XCTAssertFalse(cache.contains(hash), "\(hash.debugDescription) is never looked up")
            XCTAssertThrowsError(try cache.store(Array("x".utf8), hash: hash))
            XCTAssertThrowsError(try out.withUnsafeMutableBufferPointer {
                try cache.load(hash, into: $0, allocator: TensorAllocator(budgetBytes: nil))
            })
        }
        XCTAssertEqual(try String(contentsOfFile: victim, encoding: .utf8), "precious", "the file outside the cache is intact")

        // A real body round-trips, and pruning leaves files that are not cache entries alone.
        let values: [Float] = [1, 2, 3, 4]
        let body = try values.withUnsafeBufferPointer { try TensorFrame.encode($0, codec: .fp32) }
        let hash = ShardCache.contentHash(of: body)
        XCTAssertTrue(ShardCache.isContentHash(hash))
        try cache.store(body, hash: hash)
        XCTAssertTrue(cache.contains(hash))
        try out.withUnsafeMutableBufferPointer { try cache.load(hash, into: $0, allocator: TensorAllocator(budgetBytes: nil)) }
        XCTAssertEqual(out, values)
        let notes = "\(cacheDir)/notes.txt"
        try Data("mine".utf8).write(to: URL(fileURLWithPath: notes))
        cache.prune(keeping: [], limit: 0)
        XCTAssertTrue(FileManager.default.fileExists(atPath: notes), "only cache files are pruned")
        XCTAssertFalse(cache.contains(hash), "the cache entry itself was pruned")
    }

    /// Issue 14: a cached shard replaced on disk by a valid frame (of zeros) is caught at
    /// the read that would have used it, removed, and no longer counted as cached.
    func testASubstitutedCachedShardIsNeverUsed() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tributary-swap-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let cache = ShardCache(directory: dir)
        let values: [Float] = [1, 2, 3, 4]
        let body = try values.withUnsafeBufferPointer { try TensorFrame.encode($0, codec: .fp32) }
        let hash = ShardCache.contentHash(of: body)
        try cache.store(body, hash: hash)
        XCTAssertTrue(cache.contains(hash), "verified once")
        let zeros = try [Float](repeating: 0, count: 4).withUnsafeBufferPointer { try TensorFrame.encode($0, codec: .fp32) }
        try Data(zeros).write(to: URL(fileURLWithPath: cache.path(hash)))
        var out = [Float](repeating: -1, count: 4)
        XCTAssertThrowsError(try out.withUnsafeMutableBufferPointer {
            try cache.load(hash, into: $0, allocator: TensorAllocator(budgetBytes: nil))
        })
        XCTAssertEqual(out, [-1, -1, -1, -1], "nothing of the substitute reached the output")
        XCTAssertFalse(cache.contains(hash), "removed: the next unit fetches it again")
        XCTAssertFalse(FileManager.default.fileExists(atPath: cache.path(hash)))
    }
}
