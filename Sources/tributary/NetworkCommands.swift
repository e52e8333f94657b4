import ArgumentParser
import AsyncHTTPClient
import Foundation
import Logging
import NIOSSL
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
