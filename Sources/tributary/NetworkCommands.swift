import ArgumentParser
import AsyncHTTPClient
import NIOSSL
import Foundation
import Logging
import TributaryCheckpoint
import TributaryCoordinator
import TributaryProtocol
import TributaryTensor
import TributaryWorker

struct CoordinatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coordinator",
        abstract: "Run a training job's coordinator (or write an example job file).",
        subcommands: [CoordinatorRun.self, CoordinatorInit.self, CoordinatorBan.self],
        defaultSubcommand: CoordinatorRun.self)
}

struct CoordinatorRun: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "run", abstract: "Serve a job until SIGINT/SIGTERM.")

    @Option(help: "The job file (YAML); `tributary coordinator init` writes an example.") var job: String
    @Option(help: "Override server.listen (HOST:PORT).") var listen: String?
    @Option(name: .customLong("data-dir"), help: "Override storage.data_directory.") var dataDir: String?
    @Option(name: .customLong("port-file"), help: "Write the bound port here once listening (for scripts using port 0).") var portFile: String?
    @OptionGroup var compute: ComputeOptions

    func run() async throws {
        try compute.apply()
        var config = try JobConfig.load(path: job)
        if let listen { config.server.listen = listen }
        if let dataDir { config.storage.dataDirectory = dataDir }
        try config.validate()
        let logger = Logger(label: "tributary.coordinator")
        let (host, port) = try config.listenAddress()
        try await ListenCheck.ensureAvailable(host: host, port: port)
        let trainingJob = try await TrainingJob.open(config: config, logger: logger)
        let tls = config.server.tlsCertificate.flatMap { cert in config.server.tlsKey.map { (certificate: cert, key: $0) } }
        let server = CoordinatorServer(job: trainingJob, logger: logger)
        let portFile = self.portFile
        do {
            try await server.run(host: host, port: port, tls: tls) { bound in
                logger.info("listening", metadata: ["url": "\(tls == nil ? "http" : "https")://\(host):\(bound)",
                                                    "status": "\(tls == nil ? "http" : "https")://\(host):\(bound)\(Routes.status)"])
                if let portFile { try? "\(bound)\n".write(toFile: portFile, atomically: true, encoding: .utf8) }
            }
        } catch {
            await trainingJob.close()
            if let explained = ListenCheck.explain(error, host: host, port: port) { throw CLIError(explained) }
            throw error
        }
        await trainingJob.close()
    }
}

struct CoordinatorInit: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "init", abstract: "Write a commented example job file.")

    @Argument(help: "Where to write it.") var path = "job.yaml"
    @Flag(help: "Replace an existing file.") var force = false

    func run() throws {
        if FileManager.default.fileExists(atPath: path) && !force {
            throw CLIError("\(path) exists; pass --force to replace it")
        }
        try JobConfig.example.write(toFile: path, atomically: true, encoding: .utf8)
        print("wrote \(path); set auth.join_token, then: tributary coordinator --job \(path)")
    }
}

struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker", abstract: "Donate this machine's compute to a coordinator's job.")

    @Option(help: "The coordinator's URL, e.g. http://host:8470.") var coordinator: String
    @Option(name: .customLong("join-token"), help: "The job's join token (or TRIBUTARY_JOIN_TOKEN, or --join-token-file).") var joinToken: String?
    @Option(name: .customLong("join-token-file"), help: "A file holding the join token.") var joinTokenFile: String?
    @Option(help: "A name shown on the coordinator's worker list.") var name: String?
    @Option(name: .customLong("memory-budget"), help: "Tensor memory this worker may use, e.g. 512MiB.") var memoryBudget: String?
    @Option(name: .customLong("data-dir"), help: "Identity and shard cache.") var dataDir = "\(NSHomeDirectory())/.tributary-worker"
    @Option(name: .customLong("max-units"), help: "Stop after this many units.") var maxUnits: Int?
    @Option(name: .customLong("grace-seconds"), help: "On SIGINT/SIGTERM, time to finish the current unit before releasing its lease.") var graceSeconds = 30.0
    @Option(name: .customLong("ca-file"), help: "PEM certificate(s) to trust for an https:// coordinator (e.g. a self-signed one).") var caFile: String?
    @OptionGroup var compute: ComputeOptions

    func run() async throws {
        try compute.apply()
        let token: String
        if let joinToken {
            token = joinToken
        } else if let joinTokenFile {
            guard let text = try? String(contentsOfFile: joinTokenFile, encoding: .utf8) else {
                throw CLIError("cannot read --join-token-file \(joinTokenFile)")
            }
            token = text.trimmingCharacters(in: .whitespacesAndNewlines)
        } else if let env = ProcessInfo.processInfo.environment["TRIBUTARY_JOIN_TOKEN"] {
            token = env
        } else {
            throw ValidationError("give the join token: --join-token, --join-token-file or TRIBUTARY_JOIN_TOKEN")
        }
        var budget: Int?
        if let memoryBudget {
            guard let b = ByteCount.parse(memoryBudget), b > 0 else { throw ValidationError("--memory-budget takes a size such as 512MiB") }
            budget = b
        }
        let address: CoordinatorAddress
        do { address = try CoordinatorAddress(coordinator) } catch { throw CLIError(error.description) }
        do { try DataDirectory.create(dataDir) } catch { throw CLIError(error.description) }
        var options = WorkerOptions(coordinator: address.origin, joinToken: token, name: name, dataDirectory: dataDir,
                                    memoryBudgetBytes: budget, maxUnits: maxUnits)
        options.gracePeriod = .milliseconds(Int(graceSeconds * 1000))
        let logger = Logger(label: "tributary.worker")
        if let ignored = address.ignored {
            logger.notice("using the coordinator's origin; the rest of the URL is ignored",
                          metadata: ["coordinator": "\(address.origin)", "ignored": "\(LogSafe.escape(ignored))"])
        }
        // The worker's clients follow no redirects (WorkerHTTPClient): one could carry the join token elsewhere.
        var http = WorkerHTTPClient.shared
        if let caFile {
            guard FileManager.default.isReadableFile(atPath: caFile) else { throw CLIError("cannot read --ca-file \(caFile)") }
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.trustRoots = .file(caFile)
            var configuration = WorkerHTTPClient.defaultConfiguration
            configuration.tlsConfiguration = tls
            http = WorkerHTTPClient(configuration)
        }
        let daemon = WorkerDaemon(options: options, logger: logger, http: http)
        let grace = options.gracePeriod
        let totals = WorkerSessionTotals()
        let signals = StopSignals { stopCount in
            Task {
                await daemon.requestStop()
                if stopCount > 1 {
                    await daemon.releaseCurrentLease()
                    print(totals.summary)
                    Foundation.exit(130)
                }
                // With no unit in hand there is nothing to finish: stop at once.
                if await !daemon.holdsLease {
                    print(totals.summary)
                    Foundation.exit(0)
                }
                logger.info("stopping after the current unit", metadata: ["grace_seconds": "\(graceSeconds)"])
                try? await Task.sleep(for: grace)
                await daemon.releaseCurrentLease()
                print(totals.summary)
                Foundation.exit(0)
            }
        }
        defer { signals.cancel() }
        try await daemon.run { r in
            totals.add(r)
            print(String(format: "unit %d (epoch %d, v%d): loss %.4f, %d samples in %.2fs (%.0f samples/s), up %@, down %@",
                         r.unit, r.epoch, r.version, r.loss, r.samples, r.totalSeconds, Double(r.samples) / max(1e-9, r.computeSeconds),
                         ByteCount.format(r.bytesUp), ByteCount.format(r.bytesDown)))
            fflush(nil)
        }
        print(totals.summary)
        try? await http.shutdown()
    }
}

/// What this worker run did, for the line it prints when it stops.
final class WorkerSessionTotals: @unchecked Sendable {
    // Unchecked: every field is behind `lock`.
    private let lock = NSLock()
    private var units = 0, samples = 0, up = 0, down = 0
    private let started = Date()

    func add(_ r: UnitReport) {
        lock.withLock {
            units += 1
            samples += r.samples
            up += r.bytesUp
            down += r.bytesDown
        }
    }

    var summary: String {
        lock.withLock {
            "stopped after \(ProgressReporter.duration(Date().timeIntervalSince(started))): \(ProgressReporter.count(units, "unit")), "
                + "\(ProgressReporter.count(samples, "sample")), up \(ByteCount.format(up)), down \(ByteCount.format(down))"
        }
    }
}

/// SIGINT/SIGTERM handlers that call back with how many signals arrived so far.
final class StopSignals: @unchecked Sendable {
    // Unchecked: the sources are created once and only cancelled afterwards.
    private var sources: [DispatchSourceSignal] = []
    private let lock = NSLock()
    private var count = 0

    init(_ handler: @escaping @Sendable (Int) -> Void) {
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { [weak self] in
                guard let self else { return }
                let n = self.lock.withLock { self.count += 1; return self.count }
                handler(n)
            }
            source.resume()
            sources.append(source)
        }
    }

    func cancel() { sources.forEach { $0.cancel() } }
}
