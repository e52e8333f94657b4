import Foundation
import Logging
import TributaryCheckpoint
import TributaryLedger
import TributaryProtocol
import TributaryTraining

/// Closing rounds exactly once, checkpoints that may fail and are retried, and the job's
/// view of its storage.
///
/// A round closes in one step that cannot half-happen: its record goes into the ledger
/// (the decision), and only then is its gradient applied and the next round opened, all
/// in memory. Whatever fails afterwards (the checkpoint on a full disk, the next epoch's
/// units) leaves the round closed and is retried by `tick`; the update log holds every
/// accepted update until a checkpoint covers it.
extension TrainingJob {
    /// A coordinator job whose rounds are skipped as non-finite this many times in a row has
    /// failed (one hostile update cannot do this: the norm guard refuses non-finite updates).
    static let maxConsecutiveSkippedRounds = 10
    /// How long a failed checkpoint waits before it is tried again.
    static let checkpointRetrySeconds: TimeInterval = 5

    /// Periodic work: expire leases; close a sync round whose deadline passed with enough
    /// units; retry what storage refused earlier (a round's record, the next epoch, a checkpoint).
    public func tick() async throws {
        try await exclusively {
            try await expireLeasesNow()
            let s = status()
            metrics.workersActive.set(to: Double(s.workers.active))
            metrics.unitsPending.set(to: Double(s.units.pending))
            metrics.unitsLeased.set(to: Double(s.units.leased))
            metrics.samplesPerSecond.set(to: s.samplesPerSecond)
            guard failure == nil else { return }
            if scheduler.roundIsReadyToClose(now: now()) {
                await closeRoundIfReady()
            } else if scheduler.roundDeadlinePassed(now: now()) {
                logger.info("round deadline passed", metadata: ["updates": "\(countedRound.count)"])
                await holdBackDisputedUpdates()
                await closeRoundSafely()
            }
            await advanceEpochIfDone()
            if let retry = checkpointRetryAt, now() >= retry { await checkpointSafely() }
        }
    }

    /// Closes the open round once all its units are counted and no replica is outstanding.
    /// Disputes nobody is left to decide hold their counted update back first: the unit is
    /// computed again, and the round waits for it (or for its deadline).
    func closeRoundIfReady() async {
        guard scheduler.roundIsReadyToClose(now: now()) else { publishUnitCounts(); return }
        if !verifications.disputedUnits.isEmpty {
            await holdBackDisputedUpdates()
            guard scheduler.roundIsReadyToClose(now: now()) else { publishUnitCounts(); return }
        }
        guard !countedRound.isEmpty else { publishUnitCounts(); return }
        await closeRoundSafely()
    }

    /// Closes the open round; a storage failure leaves it open (and is retried by `tick`).
    func closeRoundSafely() async {
        do {
            try await closeRound()
        } catch {
            _ = storageFailed("ledger (closing round \(version + 1))", error)
        }
    }

    /// Records the round, applies it, opens the next. Throws only before anything changed.
    func closeRound() async throws {
        guard !countedRound.isEmpty, failure == nil else { return }
        let closed = now()
        let opened = scheduler.roundOpened
        // Under a robust rule the round's loss is the median reported: one worker reporting
        // 0 (or 1e9) cannot draw the curve; the mean rule trusts its workers.
        let meanLoss = config.aggregation.rule == .mean ? countedRound.meanLoss : Self.median(countedRound.losses)
        let updates = countedRound.count
        let samples = countedRound.samples
        // The decision: once this row exists the round is closed, whatever fails next.
        try await ledger.recordRound(RoundRecord(round: version + 1, version: version + 1, openedAt: opened,
                                                 closedAt: closed, updates: updates, samples: samples,
                                                 meanLoss: meanLoss))
        storageRecovered()
        let outcome = applyRoundGradient()
        logger.info("round closed", metadata: [
            "version": "\(version)", "updates": "\(updates)", "samples": "\(samples)",
            "loss": "\(String(format: "%.4f", meanLoss))", "lr": "\(outcome?.learningRate ?? 0)",
            "grad_norm": "\(outcome.map { String(format: "%.3f", $0.gradientNorm) } ?? "none")"])
        if version % config.storage.validationEveryRounds == 0 || isComplete {
            renderSamples() // first: the grid is on disk before the validation point announces it
            validate()
        }
        if version % config.storage.checkpointEveryRounds == 0 || isComplete { await checkpointSafely() }
        if isComplete { announceCompletion() }
        openRound()
        await advanceEpochIfDone()
        // Published last: status readers (who never wait for the job) must not see the new
        // version (or `complete`) before the epoch it ends has turned over.
        stats.noteRound(version: version, meanLoss: meanLoss, seconds: closed.timeIntervalSince(opened))
        do { try publish() } catch {
            fail("the new parameters could not be published: \(error)")
        }
    }

    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        let n = sorted.count
        return n % 2 == 1 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2])
    }

    /// The aggregator's round gradient through the optimizer: version + 1. Used live and by
    /// replay, so both take the same steps bit for bit. nil when there was nothing to apply.
    @discardableResult
    func applyRoundGradient() -> StepOutcome? {
        countedRound.feed(aggregator)
        var combined = false
        if let clip = asyncClip {
            combined = applyClipped(clip)
        } else {
            combined = applyAggregated()
        }
        version += 1
        guard combined else { return nil }
        let outcome: StepOutcome
        do { outcome = try model.step(at: version - 1) } catch {
            fail("the optimizer step failed: \(error)")
            return nil
        }
        if outcome.skipped {
            logger.error("round gradient is not finite; step skipped", metadata: ["version": "\(version)"])
            if model.consecutiveSkips >= Self.maxConsecutiveSkippedRounds {
                fail("\(model.consecutiveSkips) rounds in a row had a non-finite gradient; the model cannot train from here (check the checkpoint it resumed from and the learning rate)")
            }
        }
        return outcome
    }

    /// Async under a robust rule: the whole update, clipped against the running reference,
    /// then scattered; the update (as it arrived) joins the reference's window.
    private func applyClipped(_ clip: RunningReferenceClip) -> Bool {
        var gradient: [String: [Float]] = [:]
        for shard in layout.shards {
            var g = [Float](repeating: 0, count: shard.elementCount)
            guard g.withUnsafeMutableBufferPointer({ aggregator.gradient(of: shard, into: $0) }) else { return false }
            gradient[shard.name] = g
        }
        clip.clip(&gradient)
        for shard in layout.shards {
            gradient[shard.name]?.withUnsafeBufferPointer { g in
                if let base = g.baseAddress { layout.scatterGradients(shard, from: base, into: model.parameters) }
            }
        }
        for e in countedRound.entries { clip.note(e.update) }
        return true
    }

    private func applyAggregated() -> Bool {
        var combined = false
        // Each shard's gradient passes through the decoding scratch (the largest shard's size).
        for shard in layout.shards {
            if scratch.count < shard.elementCount { scratch = [Float](repeating: 0, count: shard.elementCount) }
            let ok = scratch.withUnsafeMutableBufferPointer { buf -> Bool in
                guard let base = buf.baseAddress else { return false }
                let out = UnsafeMutableBufferPointer(start: base, count: shard.elementCount)
                guard aggregator.gradient(of: shard, into: out) else { return false }
                layout.scatterGradients(shard, from: base, into: model.parameters)
                return true
            }
            combined = combined || ok
        }
        return combined
    }

    /// Once every unit of the epoch is done, the next epoch starts (status counts whole epochs) and
    /// its first round opens. A storage failure leaves it for the next tick.
    func advanceEpochIfDone() async {
        guard scheduler.epochComplete, failure == nil, scheduler.roundAccepted == 0 else { return }
        do {
            try await startEpoch(scheduler.epoch + 1)
            openRound()
        } catch {
            _ = storageFailed("ledger (starting epoch \(scheduler.epoch + 1))", error)
        }
    }

    // MARK: Checkpoints

    /// Writes model + optimizer state; updates up to this version survive a crash.
    public func writeCheckpoint() async throws {
        try await exclusively { try await writeCheckpointNow() }
    }

    /// A checkpoint that may fail (a full disk): the job goes on, status shows
    /// `checkpoint_failing`, and it is tried again every few seconds.
    func checkpointSafely() async {
        do {
            try await writeCheckpointNow()
            checkpointRetryAt = nil
            stats.update { $0.checkpointFailing = false }
            metrics.checkpointFailing.set(to: 0)
        } catch {
            checkpointRetryAt = now().addingTimeInterval(Self.checkpointRetrySeconds)
            stats.update { $0.checkpointFailing = true }
            metrics.checkpointFailing.set(to: 1)
            logger.error("checkpoint failed; the update log keeps every accepted update, retrying", metadata: [
                "version": "\(version)", "error": "\(error)", "retry_in_s": "\(Int(Self.checkpointRetrySeconds))"])
        }
    }

    func writeCheckpointNow() async throws {
        let name = CheckpointStore.stepDirectoryName(version)
        let onDisk = (try? checkpoints.latestDirectoryName()) == name
            && FileManager.default.fileExists(atPath: "\(checkpoints.directory)/\(name)")
        if checkpointedVersion == version, onDisk { return }
        let path: String
        if onDisk {
            // Written earlier, but its ledger record failed: only the record is missing.
            path = "\(checkpoints.directory)/\(name)"
        } else {
            let state = try JSONEncoder().encode(CoordinatorState(version: version, epoch: scheduler.epoch,
                                                                  seed: config.data.seed))
            try saveDownloadState()
            path = try model.save(to: checkpoints, step: version, vocabulary: data.vocabulary, position: Array(state))
        }
        try await ledger.recordCheckpoint(CheckpointRecord(version: version, round: version, path: path, createdAt: now()))
        checkpointedVersion = version
        stats.update { $0.checkpointedVersion = version }
        // The log is needed back to the oldest checkpoint kept (a damaged newer one falls back to it).
        // Async clipping also replays the reference's window: that many rounds more.
        let window = asyncClip == nil ? 0 : RunningReferenceClip.capacity
        if let oldest = checkpoints.stepDirectories().first?.step { updateLog.prune(throughRound: oldest - window) }
        if publisher.downloads != nil {
            DownloadStateFile.prune(keeping: Set(checkpoints.stepDirectories().map(\.step)), dataDirectory: config.storage.dataDirectory)
        }
        metrics.updateLogBytes.set(to: Double(updateLog.byteCount()))
        logger.info("checkpoint written", metadata: ["version": "\(version)", "path": "\(path)"])
    }

    /// Compressed downloads: what workers hold at this version, written before the checkpoint
    /// it belongs to (a checkpoint without it restarts the chain with full shards).
    func saveDownloadState() throws {
        // The round's version is published after its checkpoint; its delta is needed now.
        if publisher.downloads != nil, publisher.downloadVersion != version { try publish() }
        guard let saved = publisher.downloadState(), saved.version == version,
              let codec = publisher.downloads?.withLockedValue({ $0.codec }) else { return }
        try DownloadStateFile.write(saved, codec: codec, dataDirectory: config.storage.dataDirectory)
    }

    /// One line an operator can act on: the job is done, where its model is, how to try it.
    func announceCompletion() {
        let checkpoints = URL(fileURLWithPath: self.checkpoints.directory).standardizedFileURL.path
        var metadata: Logger.Metadata = ["rounds": "\(version)", "checkpoint": "\(checkpoints)"]
        if case .tokens = spec.sampleShape, data.vocabulary != nil {
            metadata["try"] = "tributary sample --checkpoint \(checkpoints)"
        }
        logger.notice("job complete; workers are told to stop", metadata: metadata)
    }

    // MARK: Storage health

    /// Notes that the ledger or the log refused a write and returns the refusal to throw:
    /// status and metrics show it until a write succeeds again.
    func storageFailed(_ what: String, _ error: any Error) -> JobError {
        if let job = error as? JobError { return job }
        let reason = "\(what): \(error)"
        if stats.snapshot.storageError == nil {
            logger.error("storage refused a write; leases and commits are refused until it recovers",
                         metadata: ["error": "\(reason)"])
        }
        stats.update { $0.storageError = reason }
        metrics.storageFailing.set(to: 1)
        return .storageUnavailable(reason)
    }

    /// Errors of the storage itself, as opposed to refusals the ledger makes by its rules.
    static func isStorageFailure(_ error: any Error) -> Bool {
        if error is UpdateLogError { return true }
        guard let ledger = error as? LedgerError else { return false }
        switch ledger {
        case .database, .server, .cannotConnect, .cannotOpen: return true
        default: return false
        }
    }

    func storageRecovered() {
        guard stats.snapshot.storageError != nil else { return }
        stats.update { $0.storageError = nil }
        metrics.storageFailing.set(to: 0)
        logger.info("storage writes again; work resumes")
    }

    /// The job stops: status says why, workers are refused, the daemon exits non-zero.
    func fail(_ reason: String) {
        guard failure == nil else { return }
        failure = reason
        stats.update { $0.failed = reason }
        logger.critical("the job failed", metadata: ["reason": "\(reason)"])
    }

    func checkNotFailed() throws {
        if let failure { throw JobError.jobFailed(failure) }
    }

    /// Why the job failed, if it did (the daemon exits non-zero).
    public var failureReason: String? { failure }
}
