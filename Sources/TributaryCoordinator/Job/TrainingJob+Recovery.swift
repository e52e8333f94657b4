import Foundation
import TributaryCheckpoint
import TributaryLedger

/// Restart, epochs, checkpoints and validation.
extension TrainingJob {
    struct CoordinatorState: Codable {
        var version: Int
        var epoch: Int
        var seed: UInt64
    }

    /// Restores from the newest checkpoint (or starts fresh) and squares the ledger with it:
    /// updates after the checkpoint are forgotten and their units done again.
    func recover() async throws {
        var epoch = 0
        if let record = try await ledger.latestCheckpoint() {
            let loaded = try LoadedCheckpoint.read(record.path)
            try model.restore(from: loaded)
            version = record.version
            checkpointedVersion = record.version
            if let bytes = loaded.trainerState,
               let state = try? JSONDecoder().decode(CoordinatorState.self, from: Data(bytes)) {
                epoch = state.epoch
            }
            let report = try await ledger.recoverAfterRestart(checkpointedRound: record.round)
            logger.info("resumed from checkpoint", metadata: [
                "version": "\(version)", "epoch": "\(epoch)", "dropped_updates": "\(report.droppedUpdates)",
                "requeued_units": "\(report.requeuedUnits)", "expired_leases": "\(report.expiredLeases)"])
        } else {
            _ = try await ledger.recoverAfterRestart(checkpointedRound: 0)
            try await ledger.setMeta("job", config.name)
            try await writeCheckpointNow()
        }
        for w in try await ledger.workers() { registry.add(id: w.id, tokenHash: w.tokenHash, seen: nil) }
        for key in try await ledger.allMeta().keys where key.hasPrefix(Self.bannedMetaPrefix) {
            registry.ban(id: String(key.dropFirst(Self.bannedMetaPrefix.count)))
        }
        try await startEpoch(epoch)
        let rounds = try await ledger.rounds(limit: 512)
        stats.update { s in
            s.version = version
            s.checkpointedVersion = checkpointedVersion
            for r in rounds { s.trainingLoss.append(.init(round: r.version, value: r.meanLoss)) }
        }
        try publish()
        openRound()
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
        for lease in scheduler.startEpoch(e, done: done) { try await recordExpired(lease) }
        try await ledger.setMeta("epoch", String(e))
        publishUnitCounts()
    }

    /// Starts a round: sync rounds get their units (carrying over unfinished ones).
    func openRound() {
        roundSamples = 0
        roundLossSum = 0
        aggregator.reset()
        scheduler.openRound(now: now())
        publishUnitCounts()
    }

    /// Writes model + optimizer state; updates up to this version survive a crash.
    public func writeCheckpoint() async throws {
        try await exclusively { try await writeCheckpointNow() }
    }

    func writeCheckpointNow() async throws {
        if checkpointedVersion == version, (try? checkpoints.latestPath()) != nil { return }
        let state = try JSONEncoder().encode(CoordinatorState(version: version, epoch: scheduler.epoch,
                                                              seed: config.data.seed))
        let path = try model.save(to: checkpoints, step: version, vocabulary: data.vocabulary, position: Array(state))
        try await ledger.recordCheckpoint(CheckpointRecord(version: version, round: version, path: path, createdAt: now()))
        checkpointedVersion = version
        stats.update { $0.checkpointedVersion = version }
        logger.info("checkpoint written", metadata: ["version": "\(version)", "path": "\(path)"])
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

    /// Encodes the current parameters as the current version's shards.
    func publish() throws {
        try publisher.publish(version: version, parameters: model.parameters,
                              oldestServed: version - config.rounds.maxStaleness)
    }
}
