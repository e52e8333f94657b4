import ArgumentParser
import Foundation
import NIOHTTP1
import TributaryProtocol
import TributaryWorker

/// `tributary credit`: a volunteer's own credit and rank, asked of its coordinator
/// (`GET /v1/workers/me`) with the identity its worker keeps in the data directory.
struct CreditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "credit",
        abstract: "Show this volunteer's credit in its job: samples, share, updates, rank.",
        discussion: """
        Reads the identity `tributary worker` saved in --data-dir (its coordinator and token) \
        and asks that coordinator for this worker's credit. Run it with the same --data-dir \
        as the worker.
        """)

    @Option(name: .customLong("data-dir"), help: "The worker's data directory (where its identity is).")
    var dataDir = "\(NSHomeDirectory())/.tributary-worker"

    @Flag(help: "Print the coordinator's answer as JSON.")
    var json = false

    @Option(name: .customLong("ca-file"), help: "PEM certificate(s) to trust for an https:// coordinator (e.g. a self-signed one).")
    var caFile: String?

    func run() async throws {
        let identity: WorkerIdentity
        do { identity = try WorkerIdentity.load(dataDirectory: dataDir) } catch { throw CLIError(error.description) }
        let http = try WorkerHTTPClient.trusting(caFile: caFile)
        let credit: WorkerCredit
        do {
            credit = try await CoordinatorClient(base: identity.coordinator, http: http, timeout: .seconds(15))
                .json(.GET, Routes.myCredit, token: identity.token, limit: ResponseLimit.json)
        } catch {
            try? await http.shutdown()
            throw CLIError(Self.failure(error, coordinator: identity.coordinator))
        }
        try? await http.shutdown()
        if json {
            print(String(decoding: try WireJSON.encoder().encode(credit), as: UTF8.self))
        } else {
            print(Self.line(credit))
        }
    }

    /// The credit in one line: "worker w-1 (alice): 12,800 samples (31.2% of the job), 4.1 TFLOP,
    /// 50 updates accepted, 0 refused; rank 2 of 5 volunteers".
    static func line(_ credit: WorkerCredit) -> String {
        let w = credit.worker
        let id = StatusScreen.clean(w.id), name = StatusScreen.clean(w.name)
        let who = name.isEmpty || name == id ? "worker \(id)" : "worker \(id) (\(name))"
        let share = credit.jobSamples > 0 ? String(format: "%.1f%% of the job", 100 * credit.share) : "the job has none yet"
        var text = "\(who): \(ProgressReporter.count(w.samples, "sample")) (\(share)), \(ProgressReporter.flops(w.flops)), "
            + "\(ProgressReporter.count(w.acceptedUpdates, "update")) accepted, \(w.rejectedUpdates.formatted()) refused; "
            + "rank \(credit.rank) of \(ProgressReporter.count(credit.volunteers, "volunteer"))"
        if w.banned == true { text += "; banned by the coordinator" }
        return text
    }

    /// Why the coordinator gave no credit, in one line.
    static func failure(_ error: any Error, coordinator: String) -> String {
        let why = "\(error)".split(whereSeparator: \.isNewline).joined(separator: " ")
        return "cannot get this worker's credit from \(coordinator): \(why)"
    }

}
