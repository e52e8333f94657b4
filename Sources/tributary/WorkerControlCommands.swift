import ArgumentParser
import Foundation
import NIOHTTP1
import TributaryWorker

/// `tributary worker pause`: the running worker gives back its unit and computes nothing
/// until `resume`, even across restarts.
struct WorkerPause: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pause", abstract: "Pause the worker on this data directory (it gives back its unit at once).")
    @Option(name: .customLong("data-dir"), help: "The worker's data directory.") var dataDir = "\(NSHomeDirectory())/.tributary-worker"

    func run() async throws {
        let status = try await WorkerControlSocket.ask(dataDirectory: dataDir, method: .POST, route: WorkerControlSocket.Route.pause)
        print("paused; \(status.state == "paused" ? "tributary worker resume" : "resume") to continue")
    }
}

struct WorkerResume: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "resume", abstract: "Resume a paused worker.")
    @Option(name: .customLong("data-dir"), help: "The worker's data directory.") var dataDir = "\(NSHomeDirectory())/.tributary-worker"

    func run() async throws {
        let status = try await WorkerControlSocket.ask(dataDirectory: dataDir, method: .POST, route: WorkerControlSocket.Route.resume)
        print(status.holds.isEmpty ? "resumed" : "resumed; still not computing: \(status.holds.joined(separator: "; "))")
    }
}

/// `tributary worker status`: the state, the unit in hand and its progress, this run's totals.
struct WorkerStatus: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "What the worker on this data directory is doing.")
    @Option(name: .customLong("data-dir"), help: "The worker's data directory.") var dataDir = "\(NSHomeDirectory())/.tributary-worker"
    @Flag(help: "Print the status as JSON.") var json = false

    func run() async throws {
        let status = try await WorkerControlSocket.ask(dataDirectory: dataDir, method: .GET, route: WorkerControlSocket.Route.status)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            encoder.dateEncodingStrategy = .iso8601
            print(String(decoding: try encoder.encode(status), as: UTF8.self))
        } else {
            WorkerControlSocket.describe(status).forEach { print($0) }
        }
    }
}
