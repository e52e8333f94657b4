import Foundation
import TributaryCheckpoint
import TributaryLedger

/// Restart: the newest checkpoint that proves itself, then every round after it replayed
/// from the update log, in the ledger's order, through the same aggregation and step.
extension TrainingJob {
    struct CoordinatorState: Codable {
        var version: Int
        var epoch: Int
        var seed: UInt64
    }

    struct RecoveryError: Error, CustomStringConvertible {
        let description: String
    }

    /// Where recovery starts from: a checkpoint (or the seeded initial model, step 0).
    struct RecoveryBase {
        var step: Int
        var loaded: LoadedCheckpoint?
    }

    /// Restores the job after a stop or a crash (or starts it fresh). Nothing the ledger
    /// accepted is dropped while the update log holds it: closed rounds are applied again in
    /// order, the open round gets its accepted updates back, and only leases in flight end.
    func recover() async throws {
        let lastRound = try await ledger.lastRound()?.round ?? 0
        let acceptedAny = try await !ledger.updates(round: 1).isEmpty || lastRound > 0
        if !acceptedAny, checkpoints.stepDirectories().isEmpty {
            try await startFresh()
            return
        }
        try checkSameModel()
        var epoch = 0
        if let base = try await replayBase(lastRound: lastRound) {
            epoch = base.loaded.flatMap(Self.epoch(in:)) ?? 0
            version = base.step
            checkpointedVersion = base.step
            let report = try await ledger.recoverAfterRestart(checkpointedRound: .max)
            try restoreDownloads(at: base.step)
            try await refillClipWindow(before: base.step)
            let replayed = try await replayRounds(after: base.step, through: lastRound)
            if let saved = try await ledger.meta("epoch").flatMap(Int.init) { epoch = saved }
            logger.info("resumed", metadata: [
                "from_checkpoint": "\(base.step)", "replayed_rounds": "\(replayed)", "version": "\(version)",
                "epoch": "\(epoch)", "expired_leases": "\(report.expiredLeases)"])
        } else {
            // The log cannot reach back to any usable checkpoint (a ledger from before the
            // update log, or a log lost with its disk): the old rule, loudly.
            let base = try restoreNewestUsable(atMost: lastRound)
            epoch = base.loaded.flatMap(Self.epoch(in:)) ?? 0
            version = base.step
            checkpointedVersion = base.step
            let report = try await ledger.recoverAfterRestart(checkpointedRound: base.step)
            for r in updateLog.rounds() where r > base.step { updateLog.discard(round: r) }
            logger.error("the update log does not cover the rounds after the newest usable checkpoint; updates after it were dropped and their units will be done again", metadata: [
                "checkpoint": "\(base.step)", "dropped_updates": "\(report.droppedUpdates)",
                "dropped_rounds": "\(report.droppedRounds)", "requeued_units": "\(report.requeuedUnits)"])
        }
        // `latest` names the checkpoint recovery chose (a damaged newer one was moved aside).
        if checkpoints.stepDirectories().contains(where: { $0.step == checkpointedVersion }) {
            try? checkpoints.markLatest(step: checkpointedVersion)
        }
        try await loadRegistry()
        try await startEpoch(epoch)
        let openDecision = try await restoreOpenRound(version + 1)
        if openDecision == .keepOpen, scheduler.roundAccepted == 0, scheduler.epochComplete, !isComplete {
            // Stopped between a round that ended its epoch and the next epoch's start.
            try await startEpoch(scheduler.epoch + 1)
            openRound()
        }
        let rounds = try await ledger.rounds(limit: 512)
        stats.update { s in
            s.version = version
            s.checkpointedVersion = checkpointedVersion
            for r in rounds { s.trainingLoss.append(.init(round: r.version, value: r.meanLoss)) }
        }
        try publish()
        if openDecision == .close { await closeRoundIfReady() }
        // The replayed rounds are now in memory only: make them a checkpoint (and the log short).
        if checkpointedVersion < version { await checkpointSafely() }
        if isComplete { announceCompletion() }
    }

    private func startFresh() async throws {
        _ = try await ledger.recoverAfterRestart(checkpointedRound: 0)
        try await ledger.setMeta("job", config.name)
        try await writeCheckpointNow()
        try await loadRegistry()
        try await startEpoch(0)
        try publish()
        openRound()
    }

    private func loadRegistry() async throws {
        for w in try await ledger.workers() { registry.add(id: w.id, tokenHash: w.tokenHash, seen: nil) }
        let meta = try await ledger.allMeta()
        for (key, value) in meta where key.hasPrefix(WorkerReputation.metaPrefix) {
            if let r = WorkerReputation(metaValue: value) { reputations[String(key.dropFirst(WorkerReputation.metaPrefix.count))] = r }
        }
        for key in meta.keys where key.hasPrefix(Self.bannedMetaPrefix) {
            registry.ban(id: String(key.dropFirst(Self.bannedMetaPrefix.count)))
        }
        noteTrustedWorkers()
    }

    /// A data directory whose checkpoints hold another model (the job file's model or data
    /// changed): refused with what to do, before any checkpoint is judged unusable and moved
    /// aside: they are not damaged, they are another job's.
    private func checkSameModel() throws {
        for (step, path) in checkpoints.stepDirectories().reversed() {
            guard let saved = LoadedCheckpoint.readConfig(path)?.model else { continue }
            guard saved != spec else { return }
            throw RecoveryError(description: "the data directory \(config.storage.dataDirectory) holds a job of another model "
                + "(checkpoint \(step): \(saved.summary); the job file: \(spec.summary)); give the changed job a new "
                + "storage.data_directory (or --data-dir), or put the job file's model and data back to continue the old job")
        }
    }

    static func epoch(in loaded: LoadedCheckpoint) -> Int? {
        guard let bytes = loaded.trainerState,
              let state = try? JSONDecoder().decode(CoordinatorState.self, from: Data(bytes)) else { return nil }
        return state.epoch
    }

    /// The newest checkpoint that reads back intact and from which the update log holds
    /// every accepted update up to the open round; step 0 (the seeded initial model) when
    /// the log reaches back to round 1. Damaged checkpoints are moved aside, one log line each.
    private func replayBase(lastRound: Int) async throws -> RecoveryBase? {
        for (step, path) in checkpoints.stepDirectories().reversed() where step <= lastRound {
            guard try await logCovers(from: step + 1, through: lastRound + 1) else { return nil }
            do {
                let loaded = try LoadedCheckpoint.read(path)
                guard loaded.config.step == step else {
                    throw CheckpointError.corrupt(path: path, reason: "config.json says step \(loaded.config.step)")
                }
                try model.restore(from: loaded)  // checks everything before copying anything
                try checkRestoredModel(path)
                return RecoveryBase(step: step, loaded: loaded)
            } catch {
                skipCheckpoint(path, error)
            }
        }
        guard try await logCovers(from: 1, through: lastRound + 1) else { return nil }
        try model.reset(seed: config.data.seed)  // a refused checkpoint may have been loaded
        return RecoveryBase(step: 0, loaded: nil)
    }

    /// Without a log to replay: the newest checkpoint that reads back intact (or step 0).
    private func restoreNewestUsable(atMost lastRound: Int) throws -> RecoveryBase {
        for (step, path) in checkpoints.stepDirectories().reversed() where step <= lastRound {
            do {
                let loaded = try LoadedCheckpoint.read(path)
                try model.restore(from: loaded)
                try checkRestoredModel(path)
                return RecoveryBase(step: loaded.config.step, loaded: loaded)
            } catch {
                skipCheckpoint(path, error)
            }
        }
        guard lastRound == 0 else {
            // Starting over would silently throw away every round the ledger recorded.
            throw RecoveryError(description: "no usable checkpoint in \(checkpoints.directory) and the update log does not reach back to round 1, but the ledger records \(lastRound) rounds; restore a checkpoint from a backup, or start the job afresh in an empty data directory")
        }
        try model.reset(seed: config.data.seed)
        return RecoveryBase(step: 0, loaded: nil)
    }

    /// A checkpoint whose hash matches may still hold weights no step should start from
    /// (one written before checkpoints carried hashes, damaged in memory before writing):
    /// its loss on one batch must be finite.
    private func checkRestoredModel(_ path: String) throws {
        let source = data.validation.sampleCount > 0 ? data.validation : data.train
        let b = min(config.units.samplesPerUnit, source.sampleCount)
        guard b > 0 else { return }
        let loss = try model.model.evaluate(source.batch(Array(0..<b))).loss
        guard loss.isFinite else {
            throw CheckpointError.corrupt(path: path, reason: "its weights give a non-finite loss (\(loss))")
        }
    }

    private func skipCheckpoint(_ path: String, _ error: any Error) {
        let moved = checkpoints.quarantine(path)
        logger.error("checkpoint skipped: it fails its checks; an older one is used", metadata: [
            "path": "\(path)", "moved_to": "\(moved ?? "(could not move)")", "reason": "\(error)"])
    }

    /// Whether every update the ledger accepted into rounds `first...last` is in the log.
    func logCovers(from first: Int, through last: Int) async throws -> Bool {
        guard first <= last else { return true }
        for r in first...last {
            let accepted = try await ledger.updates(round: r)
            if accepted.isEmpty { continue }
            let logged = Set(updateLog.leaseIDs(round: r))
            if !accepted.allSatisfy({ logged.contains($0.leaseId) }) { return false }
        }
        return true
    }

    /// Applies rounds `step+1 ... lastRound` again from the log; returns how many.
    private func replayRounds(after step: Int, through lastRound: Int) async throws -> Int {
        guard step < lastRound else { return 0 }
        for r in (step + 1)...lastRound {
            countedRound.reset()
            try await addLoggedUpdates(of: r)
            applyRoundGradient()
            // Compressed downloads: each replayed version's delta again, so the values
            // published after the restart are the ones workers already hold.
            if publisher.downloads != nil { try publish() }
        }
        countedRound.reset()
        aggregator.reset()
        return lastRound - step
    }

    /// Async clipping: the reference's window as it was when round `step + 1` opened, from
    /// the log (rounds the log no longer holds leave it shorter, and replay then differs).
    private func refillClipWindow(before step: Int) async throws {
        guard let clip = asyncClip, step > 0 else { return }
        clip.reset()
        for r in max(1, step - RunningReferenceClip.capacity + 1)...step {
            let logged = loggedEntriesByLease(round: r)
            for record in try await ledger.updates(round: r) {
                guard let entry = logged[record.leaseId] else { continue }
                clip.note(RoundUpdate(workerID: record.workerId, weight: record.weight, samples: record.samples,
                                      bodies: entry.bodies))
            }
        }
    }

    /// Round `r`'s log entries by lease. A lease logged twice (its first commit met a ledger
    /// that could not write, and was repeated): the last entry is the one the ledger's row followed.
    private func loggedEntriesByLease(round r: Int) -> [String: LoggedUpdate] {
        Dictionary(updateLog.entries(round: r).map { ($0.leaseID, $0) }, uniquingKeysWith: { _, last in last })
    }

    /// Counts round `r`'s accepted updates in the open round, in the ledger's order, with the
    /// weights it recorded; returns them.
    @discardableResult
    func addLoggedUpdates(of r: Int) async throws -> [UpdateRecord] {
        let accepted = try await ledger.updates(round: r)
        let logged = loggedEntriesByLease(round: r)
        for record in accepted {
            guard let entry = logged[record.leaseId] else {
                throw RecoveryError(description: "the update log lost the update of lease \(record.leaseId) (round \(r))")
            }
            var squares = 0.0
            for shard in layout.shards {
                guard let body = entry.bodies[shard.name] else {
                    throw RecoveryError(description: "the update log's entry for lease \(record.leaseId) lacks shard \(shard.name)")
                }
                squares += try validateFrame(body, elementCount: shard.elementCount)
            }
            normGuard.noteAccepted(norm: squares.squareRoot())
            digests.note(UpdateDigests.digest(entry.bodies, layout: layout), unit: "\(record.epoch)/\(record.unitIndex)")
            countedRound.append(leaseID: record.leaseId, unit: record.unitIndex,
                                RoundUpdate(workerID: record.workerId, weight: record.weight, samples: record.samples,
                                            bodies: entry.bodies), loss: record.loss)
        }
        return accepted
    }

    /// The open round gets back the updates it had accepted (they were acknowledged).
    private func restoreOpenRound(_ r: Int) async throws -> UnitScheduler.RoundDecision {
        openRound()
        let accepted = try await addLoggedUpdates(of: r)
        guard !accepted.isEmpty else { return .keepOpen }
        let units = accepted.filter { $0.epoch == scheduler.epoch }.map(\.unitIndex)
        let decision = scheduler.restoreOpenRound(accepted: units, now: now())
        // Their verifications start again (replicas in flight were lost with the process).
        for record in accepted where record.epoch == scheduler.epoch {
            guard let entry = countedRound.entry(leaseID: record.leaseId) else { continue }
            openVerificationIfDue(worker: record.workerId, epoch: record.epoch, unit: record.unitIndex, counted: ReplicaResult(
                leaseID: record.leaseId, workerID: record.workerId, bodies: entry.update.bodies, loss: record.loss,
                samples: record.samples, weight: record.weight, baseVersion: record.baseVersion))
        }
        publishUnitCounts()
        logger.info("open round restored", metadata: ["round": "\(r)", "updates": "\(accepted.count)"])
        return decision
    }

    /// Starts epoch `e`: its units exist in the ledger (created on first start), and the
    /// ones already done stay done.
    func startEpoch(_ e: Int) async throws {
        if try await ledger.unit(epoch: e, index: 0) == nil {
            let units = (0..<scheduler.unitsPerEpoch).map {
                UnitRecord(epoch: e, index: $0, sampleStart: $0 * config.units.samplesPerUnit,
                           sampleCount: config.units.samplesPerUnit, state: .pending)
            }
            try await ledger.insertUnits(units)
        }
        let done = Set(try await ledger.units(epoch: e, state: .done).map(\.index))
        try await ledger.setMeta("epoch", String(e))
        for lease in scheduler.startEpoch(e, done: done) { try await recordExpired(lease) }
        publishUnitCounts()
    }

    /// Starts a round: sync rounds get their units (carrying over unfinished ones).
    func openRound() {
        countedRound.reset()
        verifications.reset()
        aggregator.reset()
        scheduler.openRound(now: now())
        publishUnitCounts()
    }

    /// Mean loss over the first `validation_batches` unit-sized batches of the validation set.
    func validate() {
        guard config.storage.validationBatches > 0, data.validation.sampleCount > 0 else { return }
        let b = min(config.units.samplesPerUnit, data.validation.sampleCount)
        var sum = 0.0, n = 0
        for i in 0..<min(config.storage.validationBatches, data.validation.sampleCount / b) {
            guard let e = try? model.model.evaluate(data.validation.batch(Array((i * b)..<((i + 1) * b)))) else { continue }
            sum += e.loss * Double(e.predictions)
            n += e.predictions
        }
        guard n > 0 else { return }
        stats.noteValidation(version: version, loss: sum / Double(n))
        logger.info("validation", metadata: ["version": "\(version)", "loss": "\(String(format: "%.4f", sum / Double(n)))"])
    }

    /// Compressed downloads: what workers held at checkpoint `step` (saved beside it), then
    /// that version published again, so that the deltas after it continue the chain. Without
    /// the file (or with a damaged one) the version is published exactly: workers fetch full
    /// shards once.
    private func restoreDownloads(at step: Int) throws {
        guard let codec = publisher.downloads?.withLockedValue({ $0.codec }) else { return }
        if let saved = DownloadStateFile.read(step: step, codec: codec, dataDirectory: config.storage.dataDirectory) {
            publisher.restoreDownloads(saved)
        } else if step > 0 {
            logger.warning("no intact download state beside checkpoint \(step); workers download whole shards once",
                           metadata: ["step": "\(step)"])
        }
        try publish()
    }

    /// Encodes the current parameters as the current version's shards.
    func publish() throws {
        try publisher.publish(version: version, parameters: model.parameters,
                              oldestServed: version - config.rounds.maxStaleness)
    }
}
