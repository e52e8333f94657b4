import ArgumentParser
import AsyncHTTPClient
import Foundation
import Logging
import TributaryCheckpoint
import TributaryProtocol
import TributaryTensor
import TributaryWorker

struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker", abstract: "Donate this machine's compute to a coordinator's job.",
        subcommands: [WorkerRun.self, WorkerPause.self, WorkerResume.self, WorkerStatus.self],
        defaultSubcommand: WorkerRun.self)
}

struct WorkerRun: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run", abstract: "Lease units from a coordinator and compute them until stopped (the default).")

    @Option(help: "The coordinator's URL, e.g. http://host:8470.") var coordinator: String?
    @Flag(name: .customLong("list-devices"), help: "List the OpenCL platforms and devices this machine has, with their memory, and exit.")
    var listDevices = false
    @Option(name: .customLong("join-token"), help: "The job's join token (or TRIBUTARY_JOIN_TOKEN, or --join-token-file).") var joinToken: String?
    @Option(name: .customLong("join-token-file"), help: "A file holding the join token.") var joinTokenFile: String?
    @Option(help: "A name shown on the coordinator's worker list.") var name: String?
    @Option(name: .customLong("memory-budget"), parsing: .upToNextOption,
            help: "Tensor memory this worker may use, e.g. 512MiB or 2 GiB.") var memoryBudget: [String] = []
    @Option(name: .customLong("data-dir"), help: "Identity, shard cache and control socket.") var dataDir = "\(NSHomeDirectory())/.tributary-worker"
    @Option(name: .customLong("max-units"), help: "Stop after this many units.") var maxUnits: Int?
    @Option(name: .customLong("grace-seconds"), help: "On SIGINT/SIGTERM, time to finish the current unit before releasing its lease.") var graceSeconds = 30.0
    @Option(name: .customLong("ca-file"), help: "PEM certificate(s) to trust for an https:// coordinator (e.g. a self-signed one).") var caFile: String?
    @Option(help: "CPU priority, 0 (normal) to 19 (only what nothing else wants).") var nice: Int32 = 19
    @OptionGroup var idle: IdleOptions
    @OptionGroup var compute: ComputeOptions
    @OptionGroup var devices: DeviceOptions

    func run() async throws {
        if listDevices { return try DeviceList.print() }
        guard let coordinator else { throw CLIError("give the coordinator's URL: --coordinator http://HOST:8470") }
        try compute.apply()
        _ = try devices.choice()
        let token = try joinTokenGiven()
        var budget: Int?
        if !memoryBudget.isEmpty {
            guard let b = ByteCount.parse(memoryBudget.joined(separator: " ")), b > 0 else {
                throw CLIError("--memory-budget takes a size such as 512MiB or 2 GiB, not '\(memoryBudget.joined(separator: " "))'")
            }
            budget = b
        }
        let policy = try idle.policy()
        guard (0...19).contains(nice) else { throw CLIError("--nice must be 0 to 19") }
        guard graceSeconds.isFinite, (0...86_400).contains(graceSeconds) else {
            throw CLIError("--grace-seconds must be 0 to 86400")
        }
        let address: CoordinatorAddress
        do { address = try CoordinatorAddress(coordinator) } catch { throw CLIError(error.description) }
        do { try DataDirectory.create(dataDir) } catch { throw CLIError(error.description) }
        // Kernels are built (or read from the cache) now: a device that cannot run them is
        // said before anything is leased. (Before the priority drops, so that the threads
        // the driver starts are among those lowered.)
        let device = try devices.make(memoryBudgetBytes: budget, cacheDirectory: "\(dataDir)/opencl-cache")
        var options = WorkerOptions(coordinator: address.origin, joinToken: token, name: name, dataDirectory: dataDir,
                                    memoryBudgetBytes: budget, maxUnits: maxUnits)
        options.gracePeriod = .milliseconds(Int(graceSeconds * 1000))
        let logger = Logger(label: "tributary.worker")
        ProcessPriority.lower(to: nice, logger: logger)
        if let ignored = address.ignored {
            logger.notice("using the coordinator's origin; the rest of the URL is ignored",
                          metadata: ["coordinator": "\(address.origin)", "ignored": "\(LogSafe.escape(ignored))"])
        }
        // No redirects (WorkerHTTPClient): one could carry the join token elsewhere.
        let http = try WorkerHTTPClient.trusting(caFile: caFile)
        let daemon = WorkerDaemon(options: options, logger: logger, http: http, device: device)
        let gate = daemon.gate
        if WorkerPauseFile.isPaused(dataDirectory: dataDir) { gate.set(.paused, reason: ComputeGate.pausedReason) }
        // Held before the first lease: the watcher opens it once a look says the machine is idle.
        if policy != nil { gate.set(.machineInUse, reason: IdleWatcher.firstLook) }
        let totals = WorkerSessionTotals()
        let control = ControlSocketTask(path: WorkerControlSocket.path(dataDirectory: dataDir))
        let signals = stopOnSignals(daemon, totals: totals, control: control, logger: logger)
        defer { signals.cancel() }
        let background = Task {
            await withTaskGroup(of: Void.self) { group in
                if let policy { group.addTask { await IdleWatcher(policy: policy, signals: idle.signals()).run(gate: gate, logger: logger) } }
                group.addTask { await UnitProgressLine(progress: daemon.progress).run() }
                await group.waitForAll()
            }
        }
        defer {
            background.cancel()
            control.close()
        }
        let dataDir = self.dataDir, coordinatorURL = address.origin
        try await daemon.run(report: { r in
            totals.add(r)
            print(String(format: "unit %d (epoch %d, v%d): loss %.4f, %d samples in %.2fs (%.0f samples/s), up %@, down %@",
                         r.unit, r.epoch, r.version, r.loss, r.samples, r.totalSeconds, Double(r.samples) / max(1e-9, r.computeSeconds),
                         ByteCount.format(r.bytesUp), ByteCount.format(r.bytesDown)))
            fflush(nil)
        }, started: {
            // The data directory is this worker's now: a socket file there is a dead run's.
            control.start {
                try await WorkerControlSocket.serve(
                    dataDirectory: dataDir, logger: logger,
                    status: { WorkerControlStatus(gate: gate, unit: daemon.progress.snapshot, coordinator: coordinatorURL,
                                                  session: totals.session) },
                    setPaused: { paused in
                        try gate.setPaused(paused, dataDirectory: dataDir)
                        logger.notice(paused ? "paused by the volunteer" : "resumed by the volunteer")
                    })
            }
        })
        print(totals.summary)
        try? await http.shutdown()
    }

    private func joinTokenGiven() throws -> String {
        if let joinToken { return joinToken }
        if let joinTokenFile {
            guard let text = try? String(contentsOfFile: joinTokenFile, encoding: .utf8) else {
                throw CLIError("cannot read --join-token-file \(joinTokenFile)")
            }
            return text.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        if let env = ProcessInfo.processInfo.environment["TRIBUTARY_JOIN_TOKEN"] { return env }
        throw ValidationError("give the join token: --join-token, --join-token-file or TRIBUTARY_JOIN_TOKEN")
    }

    /// Ctrl-C or SIGTERM: with no unit in hand, stop at once; else finish it within the grace
    /// period, then give it back. A second signal gives it back at once.
    /// The control socket is removed before each exit: `exit` runs no task's clean-up.
    private func stopOnSignals(_ daemon: WorkerDaemon, totals: WorkerSessionTotals, control: ControlSocketTask,
                               logger: Logger) -> StopSignals {
        let grace = Duration.milliseconds(Int(graceSeconds * 1000)), graceSeconds = self.graceSeconds
        return StopSignals { stopCount in
            Task {
                await daemon.requestStop()
                if stopCount > 1 {
                    await daemon.releaseCurrentLease()
                    control.close()
                    print(totals.summary)
                    Foundation.exit(130)
                }
                if await !daemon.holdsLease {
                    control.close()
                    print(totals.summary)
                    Foundation.exit(0)
                }
                logger.info("stopping after the current unit", metadata: ["grace_seconds": "\(graceSeconds)"])
                try? await Task.sleep(for: grace)
                await daemon.releaseCurrentLease()
                control.close()
                print(totals.summary)
                Foundation.exit(0)
            }
        }
    }
}

/// The control socket's server task, started once the worker holds its data directory.
final class ControlSocketTask: @unchecked Sendable {
    // Unchecked: `task` is behind `lock`.
    private let lock = NSLock()
    private var task: Task<Void, Never>?
    private let path: String

    init(path: String) { self.path = path }

    func start(_ serve: @escaping @Sendable () async throws -> Void) {
        lock.withLock {
            task = Task {
                do { try await serve() } catch {
                    Logger(label: "tributary.worker").warning("the control socket failed; pause and resume are unavailable",
                                                              metadata: ["error": "\(error)"])
                }
            }
        }
    }

    /// Stops serving and removes the socket file now, not when the cancelled server gets to
    /// it: the process may exit first, and a socket left behind says a worker is running.
    func close() {
        lock.withLock {
            guard let task else { return }
            task.cancel()
            unlink(path)
        }
    }
}

/// What this worker run did, for the line it prints when it stops and for `worker status`.
final class WorkerSessionTotals: @unchecked Sendable {
    // Unchecked: every field is behind `lock`.
    private let lock = NSLock()
    private var totals = WorkerControlStatus.Session()
    private let started = Date()

    func add(_ r: UnitReport) {
        lock.withLock {
            totals.units += 1
            totals.samples += r.samples
            totals.bytesUp += r.bytesUp
            totals.bytesDown += r.bytesDown
        }
    }

    var session: WorkerControlStatus.Session {
        lock.withLock {
            var s = totals
            s.seconds = Date().timeIntervalSince(started)
            return s
        }
    }

    var summary: String {
        let s = session
        return "stopped after \(ProgressReporter.duration(s.seconds)): \(s.work)"
    }
}

extension WorkerControlStatus.Session {
    /// "3 units, 192 samples, up 1.2 MiB, down 3.4 MiB": the exit line and `worker status` say it alike.
    var work: String {
        "\(ProgressReporter.count(units, "unit")), \(ProgressReporter.count(samples, "sample")), "
            + "up \(ByteCount.format(bytesUp)), down \(ByteCount.format(bytesDown))"
    }
}

/// A unit that runs long says where it is every 30 s: "unit 12: computing, micro-batch 3 of 8 (1m30s so far)".
struct UnitProgressLine: Sendable {
    let progress: UnitProgress
    var every: Duration = .seconds(30)

    func run() async {
        var lastUnit: Int?
        while !Task.isCancelled {
            do { try await Task.sleep(for: every) } catch { return }
            guard let u = progress.snapshot else { continue }
            let age = Date().timeIntervalSince(u.startedAt)
            guard age >= Double(every.components.seconds) || lastUnit == u.unit else { continue }
            lastUnit = u.unit
            print("unit \(u.unit): \(u.phrase) (\(ProgressReporter.duration(age)) so far)")
            fflush(nil)
        }
    }
}
