import Foundation
import NIOConcurrencyHelpers
import TributaryProtocol

/// The job's figures as `/v1/status` and `/metrics` show them: counters, the loss series,
/// the scheduler's counts. A plain value; `JobStatsBoard` publishes it.
public struct JobStats: Sendable {
    /// What does not change while the job runs.
    public struct Fixed: Sendable {
        public var job: String
        public var model: String
        public var parameters: Int
        public var shards: Int
        public var mode: RoundMode
        public var totalRounds: Int
        public var unitsPerEpoch: Int
        /// Samples one round consumes (for the ETA) and tokens per sample (for tokens/s).
        public var samplesPerRound: Int
        public var tokensPerSample: Int
        public var started: Date
    }

    public let fixed: Fixed
    public var version = 0
    public var epoch = 0
    public var checkpointedVersion = 0
    public var trainingLoss = BoundedSeries()
    public var validationLoss = BoundedSeries()
    public var unitsDone = 0
    public var unitsLeased = 0
    public var workersHoldingLeases = 0
    public var expiredLeases = 0
    public var bytesIn = 0
    public var denseBytesIn = 0
    public var bytesOut = 0
    public var updatesAccepted = 0
    public var rejected: [String: Int] = [:]
    public var lastRoundSeconds: Double?
    /// Accepted samples with their time, the last minute's (samples per second).
    public var recentSamples: [(Date, Int)] = []
    public var checkpointFailing = false
    public var storageError: String?
    public var failed: String?
    public var replication = ReplicationStatus()

    public var complete: Bool { version >= fixed.totalRounds }

    /// The status report at `now`; `seenRecently` and `totalWorkers` come from the registry.
    public func report(at now: Date, seenRecently: Int, totalWorkers: Int) -> StatusReport {
        let recent = recentSamples.filter { now.timeIntervalSince($0.0) <= 60 }
        let window = min(60, max(1, now.timeIntervalSince(fixed.started)))
        let samplesPerSecond = Double(recent.reduce(0) { $0 + $1.1 }) / window
        let remaining = fixed.totalRounds - version
        let eta: Double? = samplesPerSecond > 0 ? Double(remaining) * Double(fixed.samplesPerRound) / samplesPerSecond : nil
        var report = StatusReport(
            job: fixed.job, model: fixed.model, parameters: fixed.parameters, shards: fixed.shards,
            mode: fixed.mode.rawValue, version: version, round: version + (complete ? 0 : 1), epoch: epoch,
            totalRounds: fixed.totalRounds, complete: complete, checkpointedVersion: checkpointedVersion,
            trainingLoss: trainingLoss.points, validationLoss: validationLoss.points,
            workers: .init(active: workersHoldingLeases, seenRecently: seenRecently, total: totalWorkers),
            units: .init(done: unitsDone, leased: unitsLeased, pending: fixed.unitsPerEpoch - unitsDone - unitsLeased,
                         expired: expiredLeases, perEpoch: fixed.unitsPerEpoch),
            samplesPerSecond: samplesPerSecond, tokensPerSecond: samplesPerSecond * Double(fixed.tokensPerSample),
            bytesIn: bytesIn, denseBytesIn: denseBytesIn, bytesOut: bytesOut, updatesAccepted: updatesAccepted,
            updatesRejected: rejected, lastRoundSeconds: lastRoundSeconds,
            uptimeSeconds: now.timeIntervalSince(fixed.started), etaSeconds: eta)
        report.checkpointFailing = checkpointFailing
        report.storageError = storageError
        report.failed = failed
        report.replication = replication.replicas > 0 || replication.banned > 0 ? replication : nil
        return report
    }
}

/// Publishes the job's figures: the job changes them under a short lock after each event,
/// and status requests, the metrics scrape and the dashboard read a copy without waiting
/// for the job (a copy is cheap: the arrays inside are copy-on-write).
public final class JobStatsBoard: Sendable {
    public let metrics: CoordinatorMetrics
    private let box: NIOLockedValueBox<JobStats>

    init(_ fixed: JobStats.Fixed, metrics: CoordinatorMetrics) {
        self.metrics = metrics
        box = NIOLockedValueBox(JobStats(fixed: fixed))
    }

    public var snapshot: JobStats { box.withLockedValue { $0 } }

    func update(_ change: (inout JobStats) -> Void) { box.withLockedValue { change(&$0) } }

    // MARK: Events (figures and metrics together)

    func noteRejection(_ reason: String) {
        update { $0.rejected[reason, default: 0] += 1 }
        metrics.rejected(reason)
    }

    func noteBytesOut(_ n: Int) {
        update { $0.bytesOut += n }
        metrics.bytesSent.increment(by: Int64(n))
    }

    func noteUpdateBytes(received: Int, dense: Int) {
        update {
            $0.bytesIn += received
            $0.denseBytesIn += dense
        }
        metrics.updateBytes.increment(by: Int64(received))
        metrics.updateDenseBytes.increment(by: Int64(dense))
    }

    func noteAccepted(samples: Int, at time: Date) {
        update {
            $0.updatesAccepted += 1
            $0.recentSamples.removeAll { time.timeIntervalSince($0.0) > 60 }
            $0.recentSamples.append((time, samples))
        }
        metrics.updatesAccepted.increment()
        metrics.samplesAccepted.increment(by: Int64(samples))
    }

    func noteExpiredLeases(_ n: Int) {
        guard n > 0 else { return }
        update { $0.expiredLeases += n }
        metrics.leasesExpired.increment(by: Int64(n))
    }

    func noteRound(version: Int, meanLoss: Double, seconds: Double) {
        update {
            $0.version = version
            $0.lastRoundSeconds = seconds
            $0.trainingLoss.append(.init(round: version, value: meanLoss))
        }
        metrics.rounds.increment()
        metrics.roundDuration.record(.milliseconds(Int64(seconds * 1000)))
        metrics.version.set(to: Double(version))
        metrics.trainingLoss.set(to: meanLoss)
    }

    func noteValidation(version: Int, loss: Double) {
        update { $0.validationLoss.append(.init(round: version, value: loss)) }
        metrics.validationLoss.set(to: loss)
    }

    /// The scheduler's counts after a change.
    func noteUnits(epoch: Int, done: Int, leased: Int, workersHoldingLeases: Int) {
        update {
            $0.epoch = epoch
            $0.unitsDone = done
            $0.unitsLeased = leased
            $0.workersHoldingLeases = workersHoldingLeases
        }
    }
}
