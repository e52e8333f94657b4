import Foundation
import Logging
import TributaryCompression
import TributaryModels
import TributaryProtocol
import TributaryTensor

/// One unit's life on the worker, from lease to commit, under the lease's heartbeat.
extension WorkerDaemon {
    /// One unit from lease to commit; nil when there was nothing to do. The lease is kept
    /// alive by a heartbeat from the grant until the commit's answer (`LeaseHeartbeat`); when
    /// it is lost first, the unit's downloads, compute and uploads are cancelled.
    func workOneUnit() async throws -> UnitReport? {
        let start = DispatchTime.now().uptimeNanoseconds
        let me = try await register()
        let (compute, job) = try await ensureCompute(token: me.token)
        let (grant, date): (LeaseGrant, Date?) = try await client.jsonReply(.POST, Routes.leases, token: me.token,
                                                                            body: [String: String]())
        try grant.check(for: job)
        currentLease = grant.leaseId
        let lease = HeldLease(id: grant.leaseId, deadline: grant.deadline, coordinatorDate: date)
        logger.debug("lease granted", metadata: ["lease": "\(grant.leaseId)", "unit": "\(grant.unitIndex)",
                                                 "version": "\(grant.version)",
                                                 "left_ms": "\(Int(Backoff.seconds(lease.timeLeft()) * 1000))"])
        let heartbeat = LeaseHeartbeat(lease: lease, client: releaseClient, token: me.token, logger: logger)
        let token = me.token, gate = self.gate
        progress.begin(unit: grant.unitIndex, samples: grant.sampleCount)
        defer { progress.end() }
        let done = try await heartbeat.keepingAlive {
            try await gate.interruptingWhenClosed(lease) {
                try await self.runLeased(grant, lease: lease, compute: compute, job: job, token: token)
            }
        }
        try residualStore.commitStaged()
        try compute.commitStaged()
        currentLease = nil
        return UnitReport(unit: grant.unitIndex, epoch: grant.epoch, version: grant.version, loss: done.loss,
                          samples: done.samples, computeSeconds: done.computeSeconds,
                          totalSeconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9,
                          bytesUp: done.bytesUp, bytesDown: done.bytesDown, round: done.receipt.round,
                          renewals: lease.renewals)
    }

    /// What a unit produced, from the lease's shards to the commit's receipt.
    struct CommittedUnit: Sendable {
        var loss: Double
        var samples: Int
        var computeSeconds: Double
        var bytesUp: Int
        var bytesDown: Int
        var receipt: CommitReceipt
    }

    /// The unit's work under `lease`: shards, batch, gradient, uploads, commit. Cancelled by
    /// the heartbeat when the lease is lost; every request it makes is cancelled with it.
    private func runLeased(_ grant: LeaseGrant, lease: HeldLease, compute: UnitCompute, job: JobDescription,
                           token: String) async throws -> CommittedUnit {
        var down = 0
        // The lease's version: shards whose content is not in the local cache are fetched.
        let manifest: Manifest = try await client.json(.GET, Routes.manifest(grant.version), token: token,
                                                       limit: manifestLimit)
        guard manifest.version == grant.version else {
            throw ClientError.protocolViolation("the manifest is of version \(manifest.version), the lease's is \(grant.version)")
        }
        if manifest.deltaCodec != nil { seedInitialShards(job, layout: compute.layout) }
        // Looked up by name once: a listing per shard would be quadratic in the shard count.
        let described = Dictionary(manifest.shards.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        var refs: [String: UnitShardStream.ShardDescriptorRef] = [:]
        for shard in compute.layout.shards {
            guard let d = described[shard.name], d.elementCount == shard.elementCount else {
                throw WorkerError.fatal("shard \(shard.name) does not match this worker's model layout")
            }
            guard ShardCache.isContentHash(d.contentHash) else {
                throw ClientError.protocolViolation("the manifest's content hash of shard \(shard.name) is not a SHA-256")
            }
            refs[d.name] = .init(hash: d.contentHash, elements: d.elementCount)
            if !cache.contains(d.contentHash) {
                down += try await acquireShard(d, manifest: manifest, token: token)
            }
        }
        noteHeld(manifest)
        cache.prune(keeping: Set(refs.values.map(\.hash)), limit: 2 * compute.layout.shards.count)

        // The unit's samples.
        let width = job.model.sampleShape.width
        let batchReply = try await client.send(.GET, Routes.batch(grant.leaseId), token: token,
                                               limit: ResponseLimit.batch(samples: grant.sampleCount, width: width,
                                                                          budget: options.memoryBudgetBytes))
        down += batchReply.body.count
        let batch: ModelBatch
        do {
            batch = try BatchBody.decode(batchReply.body, maxBatch: grant.sampleCount, width: width)
        } catch {
            throw ClientError.protocolViolation("batch: \(error)")
        }

        // Compute the gradient; each shard's update is encoded (with error feedback) and
        // uploaded as soon as it is final, while the rest of the backward goes on.
        let client = self.client, leaseId = grant.leaseId
        let computeStart = DispatchTime.now().uptimeNanoseconds
        let (loss, up) = try await compute.runUnit(batch, version: grant.version, shards: refs, cache: cache,
                                                   residuals: residualStore, zstdLevel: job.zstdLevel,
                                                   progress: progress) { shard, body in
            _ = try await client.send(.PUT, Routes.update(leaseId, shard: shard), token: token, body: body,
                                      contentType: Routes.tensorFrameType, limit: ResponseLimit.json)
        }
        let computeSeconds = Double(DispatchTime.now().uptimeNanoseconds - computeStart) / 1e9

        let receipt: CommitReceipt
        do {
            // From here the commit's answer decides: a renewal refused meanwhile no longer cancels the unit.
            guard lease.beginCommit() else { throw CancellationError() }
            progress.enter(.committing)
            receipt = try await commit(lease, token: token, CommitRequest(samples: batch.sampleCount, loss: loss))
        } catch {
            // The update was not applied: what it carried from the residual must not be lost.
            residualStore.discardStaged()
            compute.discardStaged()
            throw error
        }
        return CommittedUnit(loss: loss, samples: batch.sampleCount, computeSeconds: computeSeconds,
                             bytesUp: up, bytesDown: down, receipt: receipt)
    }

    /// Puts the manifest's version of shard `d` into the cache and returns the bytes that
    /// took: as a chain of deltas from the version held (Protocol/frames.md) when the
    /// coordinator publishes deltas and the chain is smaller, else the whole shard. A chain
    /// refused, malformed or not rebuilding the published hash falls back to the whole shard.
    private func acquireShard(_ d: ShardDescriptor, manifest: Manifest, token: String) async throws -> Int {
        var down = 0
        let v = manifest.version
        let limit = ResponseLimit.shard(elements: d.elementCount, budget: options.memoryBudgetBytes)
        if manifest.deltaCodec != nil, let deltaSize = d.deltaByteSize, let held = heldShards.shards[d.name],
           held.version < v, v - held.version <= DeltaChain.maximumDeltas,
           (v - held.version).multipliedReportingOverflow(by: deltaSize).partialValue < d.byteSize, cache.contains(held.hash) {
            do {
                let reply = try await client.send(.GET, Routes.delta(v, d.name) + "?from=\(held.version)", token: token,
                                                  limit: limit)
                down += reply.body.count
                let body = try device.allocator.withReservedBytes(reply.body.count) {
                    try DeltaReconstruction.rebuild(cache: cache, baseHash: held.hash, chain: reply.body, from: held.version,
                                                    to: v, elements: d.elementCount, expectedHash: d.contentHash,
                                                    allocator: device.allocator)
                }
                try cache.store(body, hash: d.contentHash)
                return down
            } catch ClientError.refused(let problem) where problem.code == .deltaUnavailable {
                logger.debug("no delta chain; fetching the whole shard", metadata: ["shard": "\(d.name)", "from": "\(held.version)"])
            } catch ClientError.protocolViolation(let why) {
                logger.warning("delta chain refused; fetching the whole shard", metadata: [
                    "shard": "\(d.name)", "from": "\(held.version)", "to": "\(v)", "reason": "\(LogSafe.escape(why))"])
            } catch let error as TensorAllocationError {
                logger.debug("no memory to rebuild from deltas; fetching the whole shard", metadata: ["error": "\(error)"])
            }
        }
        let reply = try await client.send(.GET, Routes.shard(v, d.name), token: token, limit: limit)
        try device.allocator.withReservedBytes(reply.body.count) { try cache.store(reply.body, hash: d.contentHash) }
        return down + reply.body.count
    }

    /// Records the manifest's versions of its shards as the ones held (all are in the cache now).
    private func noteHeld(_ manifest: Manifest) {
        for d in manifest.shards { heldShards.shards[d.name] = .init(version: manifest.version, hash: d.contentHash) }
        heldShards.save(directory: cache.directory)
    }

    /// Commits, and on a network failure commits again (up to 3 times, while the lease
    /// lasts): a commit is idempotent, so a first attempt that landed but whose answer was
    /// lost is answered with its receipt, and the unit's work is not thrown away. Each
    /// attempt's timeout is the lease's time left (renewals extend it) plus a margin.
    private func commit(_ lease: HeldLease, token: String, _ request: CommitRequest) async throws -> CommitReceipt {
        var attempt = 0
        while true {
            do {
                return try await client.json(.POST, Routes.commit(lease.id), token: token, body: request,
                                             timeout: lease.requestTimeout())
            } catch ClientError.transient(let why) {
                attempt += 1
                let wait = Duration.milliseconds(250 << min(attempt, 4))
                guard attempt <= 3, lease.timeLeft() > wait else { throw ClientError.transient(why) }
                logger.info("commit failed; committing again", metadata: ["attempt": "\(attempt)", "error": "\(LogSafe.escape(why))"])
                try await sleep(wait)
            } catch ClientError.refused(let problem) where problem.code == .storageUnavailable {
                // The coordinator could not store the update (its disk is full): nothing changed
                // and the lease is still ours, so commit again shortly while it lasts.
                attempt += 1
                let wait = Duration.seconds(2)
                guard attempt <= 5, lease.timeLeft() > wait else { throw ClientError.refused(problem) }
                logger.warning("the coordinator cannot store updates now; committing again", metadata: ["attempt": "\(attempt)"])
                try await sleep(wait)
            }
        }
    }
}
