import Crypto
import Foundation
import TributaryCompression
import TributaryModels
import TributaryPlanning
import TributaryTensor

/// Parameter shard bodies (fp32 tensor frames) on the worker's disk, named by their
/// SHA-256 content hash: a shard whose content did not change between versions is never
/// downloaded again, and a streaming worker makes a shard resident by decoding its file.
final class ShardCache: @unchecked Sendable {
    // Unchecked: `verified` is guarded by `lock`; files are written atomically by name.
    let directory: String
    private let lock = NSLock()
    private var verified: Set<String> = []

    init(directory: String) {
        self.directory = directory
    }

    /// A body's file. Only ever called with a checked hash (`isContentHash`): the hash comes
    /// from the coordinator's manifest, and "../x" or a NUL would name a file outside the cache.
    func path(_ hash: String) -> String { "\(directory)/\(hash).frame" }

    static func hex(_ digest: SHA256.Digest) -> String { digest.map { String(format: "%02x", $0) }.joined() }

    /// The content hash a body is stored under (its SHA-256, lowercase hex).
    static func contentHash(of body: [UInt8]) -> String { hex(SHA256.hash(data: body)) }

    /// A SHA-256 in lowercase hex: exactly 64 characters of 0-9 and a-f.
    static func isContentHash(_ text: String) -> Bool {
        let bytes = text.utf8
        return bytes.count == 64 && bytes.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    private func checked(_ hash: String) throws -> String {
        guard Self.isContentHash(hash) else {
            throw ClientError.protocolViolation("a content hash must be 64 lowercase hex digits (got \(hash.count) characters)")
        }
        return hash
    }

    /// Whether the body with this hash is on disk and intact (hashed once per process;
    /// a damaged file is removed).
    func contains(_ hash: String) -> Bool {
        guard Self.isContentHash(hash) else { return false }
        if lock.withLock({ verified.contains(hash) }), FileManager.default.fileExists(atPath: path(hash)) { return true }
        guard let data = FileManager.default.contents(atPath: path(hash)) else { return false }
        guard Self.hex(SHA256.hash(data: data)) == hash else {
            try? FileManager.default.removeItem(atPath: path(hash))
            return false
        }
        lock.withLock { _ = verified.insert(hash) }
        return true
    }

    /// Stores a downloaded body after checking it against its hash.
    func store(_ body: [UInt8], hash: String) throws {
        let hash = try checked(hash)
        guard Self.contentHash(of: body) == hash else {
            throw ClientError.protocolViolation("a shard body does not match its content hash \(hash)")
        }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try Data(body).write(to: URL(fileURLWithPath: path(hash)), options: .atomic)
        lock.withLock { _ = verified.insert(hash) }
    }

    /// Decodes the body with this hash into `out`, its file bytes counted against
    /// `allocator` while they are held.
    func load(_ hash: String, into out: UnsafeMutableBufferPointer<Float>, allocator: TensorAllocator) throws {
        let hash = try checked(hash)
        let size = (try? FileManager.default.attributesOfItem(atPath: path(hash))[.size] as? Int) ?? nil
        guard let size else { throw ClientError.protocolViolation("shard \(hash) is missing from the local cache") }
        try allocator.withReservedBytes(size) {
            guard let data = FileManager.default.contents(atPath: path(hash)) else {
                throw ClientError.protocolViolation("shard \(hash) is missing from the local cache")
            }
            // Checked at every read, not once per process: a file replaced since (even by a
            // valid frame) must never reach the model.
            guard Self.hex(SHA256.hash(data: data)) == hash else {
                try? FileManager.default.removeItem(atPath: path(hash))
                lock.withLock { _ = verified.remove(hash) }
                throw ClientError.protocolViolation("cached shard \(hash) changed on disk; it was removed and will be fetched again")
            }
            do {
                try data.withUnsafeBytes { raw in try TensorFrame.decode(raw, expectedCount: out.count, into: out) }
            } catch {
                try? FileManager.default.removeItem(atPath: path(hash))
                lock.withLock { _ = verified.remove(hash) }
                throw ClientError.protocolViolation("cached shard \(hash) does not decode: \(error)")
            }
        }
    }

    /// Keeps the bodies in `keep` and the newest others up to `limit` files.
    func prune(keeping keep: Set<String>, limit: Int) {
        let fm = FileManager.default
        guard let names = try? fm.contentsOfDirectory(atPath: directory), names.count > limit else { return }
        let dated = names.compactMap { name -> (String, String, Date)? in
            // Only cache files: anything else in the folder is not ours to delete.
            guard name.hasSuffix(".frame"), Self.isContentHash(String(name.dropLast(".frame".count))) else { return nil }
            let p = "\(directory)/\(name)"
            guard let date = (try? fm.attributesOfItem(atPath: p))?[.modificationDate] as? Date else { return nil }
            return (p, String(name.dropLast(".frame".count)), date)
        }.sorted { $0.2 > $1.2 }
        var kept = 0
        for (p, hash, _) in dated {
            if keep.contains(hash) { continue }
            kept += 1
            if kept > max(0, limit - keep.count) {
                try? fm.removeItem(atPath: p)
                lock.withLock { _ = verified.remove(hash) }
            }
        }
    }
}

/// One unit's shard traffic for a streamed step: shards made resident from the cache,
/// finished gradients encoded (with error feedback) and queued for upload.
final class UnitShardStream: ShardStreamingDelegate, @unchecked Sendable {
    // Unchecked: immutable references; the step calls it from one task at a time.
    let descriptors: [String: ShardDescriptorRef]
    let cache: ShardCache
    let allocator: TensorAllocator
    let planner: MemoryPlanner
    let zstdLevel: Int
    let residuals: ResidualStore?
    let queue: UploadQueue
    let progress: UnitProgress?

    struct ShardDescriptorRef: Sendable { let hash: String; let elements: Int }

    init(descriptors: [String: ShardDescriptorRef], cache: ShardCache, allocator: TensorAllocator, planner: MemoryPlanner,
         zstdLevel: Int, residuals: ResidualStore?, queue: UploadQueue, progress: UnitProgress? = nil) {
        self.progress = progress
        self.descriptors = descriptors
        self.cache = cache
        self.allocator = allocator
        self.planner = planner
        self.zstdLevel = zstdLevel
        self.residuals = residuals
        self.queue = queue
    }

    func stepProgress(_ done: Int, of total: Int, step: String) throws {
        try Task.checkCancellation()  // the unit was given up: stop between passes
        progress?.computing(done, of: total, named: step)
    }

    func loadShard(_ name: String, into values: UnsafeMutableBufferPointer<Float>) throws {
        // Between shards the step stops if its unit was cancelled (the lease was lost).
        try Task.checkCancellation()
        guard let d = descriptors[name], d.elements == values.count else {
            throw ClientError.protocolViolation("the manifest has no shard \(name) of \(values.count) values")
        }
        try cache.load(d.hash, into: values, allocator: allocator)
    }

    func contentKey(ofShard name: String) -> String { descriptors[name]?.hash ?? "" }

    func shardGradientReady(_ name: String, gradient: UnsafeBufferPointer<Float>) async throws {
        try Task.checkCancellation()
        let body = try encode(name, gradient, gathers: false)
        try await queue.submit(name, body)
    }

    /// The shard's update body: gradient plus the committed residual, in the job's codec;
    /// the new residual is staged. Holds (and reserves) at most the planner's transient.
    func encode(_ name: String, _ gradient: UnsafeBufferPointer<Float>, gathers: Bool) throws -> [UInt8] {
        try allocator.withReservedBytes(planner.gradientTransient(gradient.count, gathers: gathers)) {
            let codec = planner.codec
            var shapes: [MatrixShape]?
            if codec.needsShapes {
                guard let known = planner.shapes(ofShard: name) else {
                    throw ClientError.protocolViolation("the model has no shard \(name) to take tensor shapes from")
                }
                shapes = known
            }
            guard let residuals else {
                return try codec.encode(gradient, residual: nil, zstdLevel: zstdLevel, shapes: shapes)
            }
            let r = UnsafeMutableBufferPointer<Float>.allocate(capacity: gradient.count)
            defer { r.deallocate() }
            residuals.load(name, into: r)
            // The low-rank warm start is kept like the residual: staged, committed with the unit.
            let warm = UnsafeMutableBufferPointer<Float>.allocate(capacity: shapes.map { codec.warmStartCount(shapes: $0) } ?? 0)
            defer { warm.deallocate() }
            if !warm.isEmpty { residuals.load(name + ResidualStore.warmStartSuffix, into: warm) }
            let body = try codec.encode(gradient, residual: r, zstdLevel: zstdLevel, shapes: shapes, warmStart: warm)
            try residuals.stage(name, UnsafeBufferPointer(r))
            if !warm.isEmpty { try residuals.stage(name + ResidualStore.warmStartSuffix, UnsafeBufferPointer(warm)) }
            return body
        }
    }

    func transientBytes(loading elements: Int) -> Int { planner.loadTransient(elements) }
    func transientBytes(takingGradientOf elements: Int) -> Int { planner.gradientTransient(elements, gathers: false) }
}
