import AsyncHTTPClient
import Crypto
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import TributaryCheckpoint
import TributaryCompression
import TributaryModels
import TributaryProtocol
import TributaryTensor

/// How a worker runs.
public struct WorkerOptions: Sendable {
    public var coordinator: String
    public var joinToken: String
    public var name: String?
    public var dataDirectory: String
    public var memoryBudgetBytes: Int?
    /// Stop after this many committed units (nil: run until stopped).
    public var maxUnits: Int?
    /// On SIGINT/SIGTERM, how long the current unit may take to finish before its lease is released.
    public var gracePeriod: Duration = .seconds(30)

    public init(coordinator: String, joinToken: String, name: String? = nil, dataDirectory: String,
                memoryBudgetBytes: Int? = nil, maxUnits: Int? = nil) {
        self.coordinator = coordinator
        self.joinToken = joinToken
        self.name = name
        self.dataDirectory = dataDirectory
        self.memoryBudgetBytes = memoryBudgetBytes
        self.maxUnits = maxUnits
    }
}

/// One line of progress, for whoever shows it.
public struct UnitReport: Sendable {
    public let unit: Int
    public let epoch: Int
    public let version: Int
    public let loss: Double
    public let samples: Int
    public let computeSeconds: Double
    public let totalSeconds: Double
    public let bytesUp: Int
    public let bytesDown: Int
    public let round: Int
}

public enum WorkerError: Error, CustomStringConvertible {
    case fatal(String)
    public var description: String {
        switch self { case let .fatal(why): return why }
    }
}

/// The volunteer's daemon: lease a unit → fetch the parameter shards it lacks (cached by
/// content hash) → compute the unit's gradient → push it shard by shard → commit → repeat.
/// Any step can fail: network errors and 5xx are retried with exponential back-off and
/// jitter; a lease that expired or a version that went stale is dropped and re-leased.
public actor WorkerDaemon {
    public let options: WorkerOptions
    let client: CoordinatorClient
    let logger: Logger
    private var identity: Identity?
    private var job: JobDescription?
    private var model: (any TrainableModel)?
    private var layout: ShardLayout?
    private var loadedHashes: [String: String] = [:]   // shard → content hash now in the model
    private var allocator: TensorAllocator?
    /// Error feedback: what the codec dropped so far, per shard (see `residual(for:)`).
    private var residuals: [String: Tensor] = [:]
    private var stopRequested = false
    private var currentLease: String?
    public private(set) var unitsDone = 0

    struct Identity: Codable {
        var coordinator: String
        var workerId: String
        var token: String
    }

    public init(options: WorkerOptions, logger: Logger, http: HTTPClient = .shared) {
        self.options = options
        self.logger = logger
        client = CoordinatorClient(base: options.coordinator, http: http)
    }

    var identityPath: String { "\(options.dataDirectory)/identity.json" }
    var cacheDirectory: String { "\(options.dataDirectory)/shards" }

    /// Asks the loop to stop after the current unit.
    public func requestStop() { stopRequested = true }

    /// Releases the lease in hand (after the grace period ran out).
    public func releaseCurrentLease() async {
        guard let lease = currentLease, let token = identity?.token else { return }
        _ = try? await client.send(.DELETE, Routes.lease(lease), token: token)
        currentLease = nil
        logger.info("lease released", metadata: ["lease": "\(lease)"])
    }

    /// Runs until stopped or `maxUnits` units are committed.
    public func run(report: @Sendable (UnitReport) -> Void = { _ in }) async throws {
        try FileManager.default.createDirectory(atPath: cacheDirectory, withIntermediateDirectories: true)
        var backoff = Backoff()
        while !stopRequested && !Task.isCancelled {
            if let max = options.maxUnits, unitsDone >= max { return }
            do {
                if let r = try await workOneUnit() {
                    unitsDone += 1
                    backoff.reset()
                    report(r)
                }
            } catch let ClientError.refused(problem) {
                switch problem.code {
                case .jobComplete:
                    logger.info("the job is complete")
                    return
                case .noWork:
                    try await sleep(.milliseconds(500 + Int.random(in: 0..<500)))
                case .unauthorized, .forbidden:
                    if problem.detail.contains("join token") { throw WorkerError.fatal("the coordinator refused the join token: \(problem.detail)") }
                    logger.warning("the coordinator does not know this worker's token; registering again")
                    identity = nil
                    try? FileManager.default.removeItem(atPath: identityPath)
                default:
                    // Stale version, expired lease, duplicate: drop this unit (giving the lease
                    // back, so nobody waits for it to time out) and lease another.
                    logger.info("unit dropped", metadata: ["reason": "\(problem.code.rawValue)", "detail": "\(problem.detail)"])
                    await releaseCurrentLease()
                }
                currentLease = nil
            } catch let error as ClientError {
                currentLease = nil
                let delay = backoff.next()
                logger.warning("retrying", metadata: ["error": "\(error)", "in_ms": "\(delay.components.seconds * 1000 + delay.components.attoseconds / 1_000_000_000_000_000)"])
                try await sleep(delay)
            }
        }
    }

    private func sleep(_ d: Duration) async throws {
        try await Task.sleep(for: d)
    }

    private func register() async throws -> Identity {
        if let identity { return identity }
        if let data = FileManager.default.contents(atPath: identityPath),
           let saved = try? JSONDecoder().decode(Identity.self, from: data), saved.coordinator == options.coordinator {
            identity = saved
            return saved
        }
        let request = RegisterRequest(joinToken: options.joinToken, name: options.name,
                                      threads: ComputeThreads.count, memoryBudgetBytes: options.memoryBudgetBytes)
        let response: RegisterResponse = try await client.json(.POST, Routes.register, body: request)
        let fresh = Identity(coordinator: options.coordinator, workerId: response.workerId, token: response.token)
        // The token is a secret: readable by this user only.
        let data = try JSONEncoder().encode(fresh)
        FileManager.default.createFile(atPath: identityPath, contents: data, attributes: [.posixPermissions: 0o600])
        identity = fresh
        job = response.job
        logger.info("registered", metadata: ["worker": "\(response.workerId)", "job": "\(response.job.name)"])
        return fresh
    }

    private func ensureModel(token: String) async throws -> (any TrainableModel, ShardLayout, JobDescription) {
        if let model, let layout, let job { return (model, layout, job) }
        let description: JobDescription
        if let job { description = job } else { description = try await client.json(.GET, Routes.job, token: token) }
        let allocator = TensorAllocator(budgetBytes: options.memoryBudgetBytes)
        self.allocator = allocator
        let built = try description.model.build(seed: 0, allocator: allocator)
        let l = ShardLayout(spec: description.model)
        job = description
        model = built
        layout = l
        return (built, l, description)
    }

    /// One unit from lease to commit; nil when there was nothing to do.
    private func workOneUnit() async throws -> UnitReport? {
        let start = DispatchTime.now().uptimeNanoseconds
        let me = try await register()
        let (model, layout, job) = try await ensureModel(token: me.token)
        let grant: LeaseGrant = try await client.json(.POST, Routes.leases, token: me.token, body: [String: String]())
        currentLease = grant.leaseId
        var down = 0, up = 0

        // Parameters of the lease's version: only shards whose content changed are fetched.
        let manifest: Manifest = try await client.json(.GET, Routes.manifest(grant.version), token: me.token)
        for descriptor in manifest.shards {
            guard loadedHashes[descriptor.name] != descriptor.contentHash else { continue }
            guard let shard = layout.shard(named: descriptor.name), shard.elementCount == descriptor.elementCount else {
                throw WorkerError.fatal("shard \(descriptor.name) does not match this worker's model layout")
            }
            let body = try await shardBody(descriptor, version: grant.version, token: me.token, downloaded: &down)
            var flat = [Float](repeating: 0, count: shard.elementCount)
            do {
                try body.withUnsafeBytes { raw in
                    try flat.withUnsafeMutableBufferPointer { try TensorFrame.decode(raw, expectedCount: shard.elementCount, into: $0) }
                }
            } catch {
                try? FileManager.default.removeItem(atPath: cachePath(descriptor.contentHash))
                throw ClientError.protocolViolation("shard \(descriptor.name): \(error)")
            }
            flat.withUnsafeBufferPointer { p in
                if let base = p.baseAddress { layout.scatter(shard, from: base, into: model.parameters) }
            }
            loadedHashes[descriptor.name] = descriptor.contentHash
        }

        // The unit's samples.
        let batchReply = try await client.send(.GET, Routes.batch(grant.leaseId), token: me.token)
        down += batchReply.body.count
        let width: Int
        switch job.model {
        case let .gpt(g): width = g.blockSize
        case let .mlp(m): width = m.inputFeatures
        }
        let batch: ModelBatch
        do {
            batch = try BatchBody.decode(batchReply.body, maxBatch: grant.sampleCount, width: width)
        } catch {
            throw ClientError.protocolViolation("batch: \(error)")
        }

        // The gradient of the unit's mean loss, accumulated over micro-batches.
        let computeStart = DispatchTime.now().uptimeNanoseconds
        let loss = try Self.computeGradient(model: model, batch: batch, microBatch: grant.microBatchSize)
        let computeSeconds = Double(DispatchTime.now().uptimeNanoseconds - computeStart) / 1e9

        // Push shard by shard (compressed, with error feedback), then commit.
        let codec: UpdateCodecSpec
        do { codec = try UpdateCodecSpec(parsing: job.updateCodec) } catch {
            throw WorkerError.fatal("the coordinator asks for update codec '\(job.updateCodec)', which this worker does not know: \(error)")
        }
        let lossy = codec.codec != .fp32
        do {
            for shard in layout.shards {
                var flat = [Float](repeating: 0, count: shard.elementCount)
                flat.withUnsafeMutableBufferPointer { p in
                    if let base = p.baseAddress { layout.gather(shard, from: model.parameters, gradients: true, into: base) }
                }
                let residual = lossy ? try residual(for: shard) : nil
                let body = try flat.withUnsafeBufferPointer { g in
                    try codec.encode(g, residual: residual.map { UnsafeMutableBufferPointer(start: $0.data, count: $0.count) },
                                     zstdLevel: job.zstdLevel)
                }
                _ = try await client.send(.PUT, Routes.update(grant.leaseId, shard: shard.name), token: me.token, body: body,
                                          contentType: Routes.tensorFrameType)
                up += body.count
            }
        } catch {
            if lossy { discardUnsavedResiduals() }
            throw error
        }
        let receipt: CommitReceipt
        do {
            receipt = try await client.json(.POST, Routes.commit(grant.leaseId), token: me.token,
                                            body: CommitRequest(samples: batch.sampleCount, loss: loss))
        } catch {
            // The update was not applied: what it carried from the residual must not be lost.
            if lossy { discardUnsavedResiduals() }
            throw error
        }
        if lossy { try saveResiduals() }
        currentLease = nil
        return UnitReport(unit: grant.unitIndex, epoch: grant.epoch, version: grant.version, loss: loss,
                          samples: batch.sampleCount, computeSeconds: computeSeconds,
                          totalSeconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9,
                          bytesUp: up, bytesDown: down, round: receipt.round)
    }

    /// Mean loss of the unit; gradients (of the mean) left in the model's parameters.
    static func computeGradient(model: any TrainableModel, batch: ModelBatch, microBatch: Int) throws -> Double {
        model.parameters.zeroGradients()
        let n = batch.sampleCount
        let m = max(1, min(microBatch, n))
        var lossSum = 0.0
        var start = 0
        while start < n {
            let end = min(n, start + m)
            let slice = Self.slice(batch, start, end)
            let share = Float(end - start) / Float(n)
            lossSum += Double(try model.forwardBackward(slice, lossScale: share)) * Double(share)
            start = end
        }
        return lossSum
    }

    static func slice(_ batch: ModelBatch, _ lo: Int, _ hi: Int) -> ModelBatch {
        switch batch {
        case let .tokens(x, y, _, t):
            return .tokens(inputs: Array(x[(lo * t)..<(hi * t)]), targets: Array(y[(lo * t)..<(hi * t)]), batch: hi - lo, sequence: t)
        case let .features(x, y, b):
            let f = x.count / max(1, b)
            return .features(inputs: Array(x[(lo * f)..<(hi * f)]), targets: Array(y[lo..<hi]), batch: hi - lo)
        }
    }

    private func cachePath(_ hash: String) -> String { "\(cacheDirectory)/\(hash).frame" }

    // MARK: Error feedback

    var residualDirectory: String { "\(options.dataDirectory)/residual" }

    /// The shard's residual: in memory (from the worker's budgeted allocator, so it counts
    /// against --memory-budget), loaded from disk after a restart. It is kept across parameter
    /// versions, as Deep Gradient Compression does: it holds gradient mass not yet sent, which
    /// stays a valid direction for the next version. A file of the wrong size (another model)
    /// is discarded.
    private func residual(for shard: ShardLayout.Shard) throws -> Tensor {
        if let r = residuals[shard.name] { return r }
        let r = try Tensor(shape: [shard.elementCount], allocator: allocator ?? .shared)
        if let data = FileManager.default.contents(atPath: "\(residualDirectory)/\(shard.name).f32"),
           data.count == 4 * shard.elementCount {
            data.withUnsafeBytes { raw in
                for i in 0..<shard.elementCount {
                    let v = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
                    r.data[i] = v.isFinite ? v : 0
                }
            }
        }
        residuals[shard.name] = r
        return r
    }

    /// After a commit: the residuals become the persisted state (atomic per file).
    private func saveResiduals() throws {
        try FileManager.default.createDirectory(atPath: residualDirectory, withIntermediateDirectories: true)
        for (name, r) in residuals {
            var bytes = [UInt8](repeating: 0, count: 4 * r.count)
            for i in 0..<r.count {
                let b = r.data[i].bitPattern.littleEndian
                bytes[4 * i] = UInt8(truncatingIfNeeded: b)
                bytes[4 * i + 1] = UInt8(truncatingIfNeeded: b >> 8)
                bytes[4 * i + 2] = UInt8(truncatingIfNeeded: b >> 16)
                bytes[4 * i + 3] = UInt8(truncatingIfNeeded: b >> 24)
            }
            try AtomicFile.write(bytes, to: "\(residualDirectory)/\(name).f32")
        }
    }

    /// A refused or failed unit: go back to the last committed residuals.
    private func discardUnsavedResiduals() { residuals = [:] }

    /// A shard body from the local cache (checked against its hash) or the coordinator.
    private func shardBody(_ d: ShardDescriptor, version: Int, token: String, downloaded: inout Int) async throws -> [UInt8] {
        if let cached = FileManager.default.contents(atPath: cachePath(d.contentHash)) {
            let bytes = Array(cached)
            if Self.hex(SHA256.hash(data: bytes)) == d.contentHash { return bytes }
        }
        let reply = try await client.send(.GET, Routes.shard(version, d.name), token: token)
        guard Self.hex(SHA256.hash(data: reply.body)) == d.contentHash else {
            throw ClientError.protocolViolation("shard \(d.name) of version \(version) does not match its content hash")
        }
        downloaded += reply.body.count
        FileManager.default.createFile(atPath: cachePath(d.contentHash), contents: Data(reply.body))
        pruneCache(keeping: 4 * (layout?.shards.count ?? 16))
        return reply.body
    }

    /// Keeps the newest shard files (a worker only needs the current version's).
    private func pruneCache(keeping limit: Int) {
        let fm = FileManager.default
        guard let names = try? fm.contentsOfDirectory(atPath: cacheDirectory), names.count > limit else { return }
        let dated = names.compactMap { name -> (String, Date)? in
            let path = "\(cacheDirectory)/\(name)"
            guard let date = (try? fm.attributesOfItem(atPath: path))?[.modificationDate] as? Date else { return nil }
            return (path, date)
        }.sorted { $0.1 > $1.1 }
        for (path, _) in dated.dropFirst(limit) { try? fm.removeItem(atPath: path) }
    }

    static func hex(_ digest: SHA256.Digest) -> String { digest.map { String(format: "%02x", $0) }.joined() }
}

/// Exponential back-off with full jitter: 0.25 s doubling to 30 s.
struct Backoff {
    private var attempt = 0

    mutating func reset() { attempt = 0 }

    mutating func next() -> Duration {
        let cap = min(30.0, 0.25 * pow(2, Double(attempt)))
        attempt = min(attempt + 1, 16)
        return .milliseconds(Int(Double.random(in: 0.5...1.0) * cap * 1000))
    }
}
