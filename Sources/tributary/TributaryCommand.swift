import ArgumentParser
import Foundation
import Logging
import TributaryProtocol
import TributaryTensor

@main
struct TributaryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tributary",
        abstract: "Volunteer deep-learning training: train models, run and watch training jobs.",
        version: TributaryRelease.version,
        subcommands: [DemoCommand.self, CoordinatorCommand.self, WorkerCommand.self, CreditCommand.self, StatusCommand.self,
                      TrainCommand.self, SampleCommand.self, BenchCommand.self])

    static func main() async {
        selectBLASKernels()
        let level = ProcessInfo.processInfo.environment["TRIBUTARY_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }

    /// OpenBLAS reads OPENBLAS_CORETYPE only when it loads, so when this CPU would get
    /// faster kernels than the ones loaded, re-execute once with the variable set
    /// (see `BLASCoreSelection`). If exec fails we go on with the loaded kernels.
    static func selectBLASKernels() {
        guard let core = BLASCoreSelection.recommendedCoreType() else { return }
        setenv(BLASCoreSelection.environmentKey, core, 1)
        setenv(BLASCoreSelection.reexecutedKey, "1", 1)
        execv("/proc/self/exe", CommandLine.unsafeArgv)
    }
}

/// Options every compute-heavy command shares.
struct ComputeOptions: ParsableArguments {
    @Option(help: "Compute threads (OpenBLAS and Tributary's own loops). Default: all cores.")
    var threads: Int?

    func apply() throws {
        if let threads {
            guard threads > 0 else { throw ValidationError("--threads must be positive") }
            ComputeThreads.set(threads)
        } else {
            ComputeThreads.set(ComputeThreads.count)
        }
    }
}

/// A failure the CLI reports in one line with a non-zero exit.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}
