import Foundation
import Prometheus
import TributaryProtocol

/// The job's figures as Prometheus metrics (GET /metrics), with conventional names and
/// units. Each job has its own registry, so several coordinators can live in one process
/// (tests, benchmarks); the executable also bootstraps swift-metrics with it, so metrics
/// that libraries emit through swift-metrics (HTTP requests) appear beside these.
public struct CoordinatorMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    let workersRegistered: Counter
    let leasesGranted: Counter
    let leasesExpired: Counter
    let updatesAccepted: Counter
    let samplesAccepted: Counter
    let updateBytes: Counter
    let updateDenseBytes: Counter
    let bytesSent: Counter
    let rounds: Counter
    let roundDuration: DurationHistogram
    let version: Gauge
    let trainingLoss: Gauge
    let validationLoss: Gauge
    let workersActive: Gauge
    let unitsPending: Gauge
    let unitsLeased: Gauge
    let samplesPerSecond: Gauge
    let checkpointFailing: Gauge
    let storageFailing: Gauge
    let updateLogBytes: Gauge
    let updateLogAppendSeconds: DurationHistogram

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        workersRegistered = registry.makeCounter(descriptor: Self.metric("tributary_workers_registered_total", "Workers that joined the job."))
        leasesGranted = registry.makeCounter(descriptor: Self.metric("tributary_leases_granted_total", "Work-unit leases handed out."))
        leasesExpired = registry.makeCounter(descriptor: Self.metric("tributary_leases_expired_total", "Leases that ran out; their units were queued again."))
        updatesAccepted = registry.makeCounter(descriptor: Self.metric("tributary_updates_accepted_total", "Committed updates accepted into a round."))
        samplesAccepted = registry.makeCounter(descriptor: Self.metric("tributary_samples_total", "Training samples in accepted updates."))
        updateBytes = registry.makeCounter(descriptor: Self.metric("tributary_update_received_bytes_total", "Update bytes received on the wire."))
        updateDenseBytes = registry.makeCounter(descriptor: Self.metric("tributary_update_dense_bytes_total", "The same updates' size as dense fp32 (for the compression ratio)."))
        bytesSent = registry.makeCounter(descriptor: Self.metric("tributary_sent_bytes_total", "Parameter shard and batch bytes sent to workers."))
        rounds = registry.makeCounter(descriptor: Self.metric("tributary_rounds_total", "Rounds closed (optimizer steps)."))
        roundDuration = registry.makeDurationHistogram(
            descriptor: Self.metric("tributary_round_duration_seconds", "Time from a round opening to its closing."),
            buckets: [.milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1),
                      .seconds(2), .seconds(5), .seconds(10), .seconds(30), .seconds(60), .seconds(120), .seconds(300)])
        version = registry.makeGauge(descriptor: Self.metric("tributary_parameter_version", "The current parameter version."))
        trainingLoss = registry.makeGauge(descriptor: Self.metric("tributary_training_loss", "Mean training loss of the last round."))
        validationLoss = registry.makeGauge(descriptor: Self.metric("tributary_validation_loss", "Last validation loss."))
        workersActive = registry.makeGauge(descriptor: Self.metric("tributary_workers_active", "Workers holding a lease."))
        unitsPending = registry.makeGauge(descriptor: Self.metric("tributary_units_pending", "Units of the epoch not done and not leased."))
        unitsLeased = registry.makeGauge(descriptor: Self.metric("tributary_units_leased", "Units under lease."))
        samplesPerSecond = registry.makeGauge(descriptor: Self.metric("tributary_samples_per_second", "Accepted samples per second, last minute."))
        checkpointFailing = registry.makeGauge(descriptor: Self.metric("tributary_checkpoint_failing", "1 while the last checkpoint write failed (it is retried)."))
        storageFailing = registry.makeGauge(descriptor: Self.metric("tributary_storage_failing", "1 while the ledger or update log cannot be written (leases and commits refused)."))
        updateLogBytes = registry.makeGauge(descriptor: Self.metric("tributary_update_log_bytes", "Bytes of the update log on disk (rounds after the oldest kept checkpoint)."))
        updateLogAppendSeconds = registry.makeDurationHistogram(
            descriptor: Self.metric("tributary_update_log_append_seconds", "Time to append and sync one accepted update to the update log."),
            buckets: [.microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2),
                      .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100)])
        registry.makeGauge(descriptor: Self.metric("tributary_build_info", "This coordinator's release (always 1)."), labels: [("version", TributaryRelease.version)]).set(to: 1)
    }

    func rejected(_ reason: String) {
        registry.makeCounter(descriptor: Self.metric("tributary_updates_rejected_total", "Refused updates and requests, by reason."), labels: [("reason", reason)]).increment()
    }

    public func exposition() -> [UInt8] { registry.emitToBuffer() }

    /// A metric's full name (units are in the names already) and its help line.
    static func metric(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }
}
