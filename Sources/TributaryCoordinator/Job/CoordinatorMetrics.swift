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
        workersRegistered = registry.makeCounter(name: "tributary_workers_registered_total", help: "Workers that joined the job.")
        leasesGranted = registry.makeCounter(name: "tributary_leases_granted_total", help: "Work-unit leases handed out.")
        leasesExpired = registry.makeCounter(name: "tributary_leases_expired_total", help: "Leases that ran out; their units were queued again.")
        updatesAccepted = registry.makeCounter(name: "tributary_updates_accepted_total", help: "Committed updates accepted into a round.")
        samplesAccepted = registry.makeCounter(name: "tributary_samples_total", help: "Training samples in accepted updates.")
        updateBytes = registry.makeCounter(name: "tributary_update_received_bytes_total", help: "Update bytes received on the wire.")
        updateDenseBytes = registry.makeCounter(name: "tributary_update_dense_bytes_total", help: "The same updates' size as dense fp32 (for the compression ratio).")
        bytesSent = registry.makeCounter(name: "tributary_sent_bytes_total", help: "Parameter shard and batch bytes sent to workers.")
        rounds = registry.makeCounter(name: "tributary_rounds_total", help: "Rounds closed (optimizer steps).")
        roundDuration = registry.makeDurationHistogram(
            name: "tributary_round_duration_seconds",
            buckets: [.milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1),
                      .seconds(2), .seconds(5), .seconds(10), .seconds(30), .seconds(60), .seconds(120), .seconds(300)],
            help: "Time from a round opening to its closing.")
        version = registry.makeGauge(name: "tributary_parameter_version", help: "The current parameter version.")
        trainingLoss = registry.makeGauge(name: "tributary_training_loss", help: "Mean training loss of the last round.")
        validationLoss = registry.makeGauge(name: "tributary_validation_loss", help: "Last validation loss.")
        workersActive = registry.makeGauge(name: "tributary_workers_active", help: "Workers holding a lease.")
        unitsPending = registry.makeGauge(name: "tributary_units_pending", help: "Units of the epoch not done and not leased.")
        unitsLeased = registry.makeGauge(name: "tributary_units_leased", help: "Units under lease.")
        samplesPerSecond = registry.makeGauge(name: "tributary_samples_per_second", help: "Accepted samples per second, last minute.")
        checkpointFailing = registry.makeGauge(name: "tributary_checkpoint_failing", help: "1 while the last checkpoint write failed (it is retried).")
        storageFailing = registry.makeGauge(name: "tributary_storage_failing", help: "1 while the ledger or update log cannot be written (leases and commits refused).")
        updateLogBytes = registry.makeGauge(name: "tributary_update_log_bytes", help: "Bytes of the update log on disk (rounds after the oldest kept checkpoint).")
        updateLogAppendSeconds = registry.makeDurationHistogram(
            name: "tributary_update_log_append_seconds",
            buckets: [.microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2),
                      .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100)],
            help: "Time to append and sync one accepted update to the update log.")
        registry.makeGauge(name: "tributary_build_info", labels: [("version", TributaryRelease.version)],
                           help: "This coordinator's release (always 1).").set(to: 1)
    }

    func rejected(_ reason: String) {
        registry.makeCounter(name: "tributary_updates_rejected_total", labels: [("reason", reason)],
                             help: "Refused updates and requests, by reason.").increment()
    }

    public func exposition() -> [UInt8] { registry.emitToBuffer() }
}
