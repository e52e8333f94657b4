import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import TributaryProtocol

/// `tributary coordinator ban URL WORKER --operator-token-file F`: stops a worker's token
/// at once, through the running coordinator's operator route.
struct CoordinatorBan: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ban",
        abstract: "Ban a worker from a running coordinator (its token stops working at once).",
        discussion: """
        Needs the job's operator token (auth.operator_token or auth.operator_token_file in the \
        job file). The worker's leases end and their units go back to the queue; its credit \
        stays on record, marked banned. Worker ids are on the dashboard and in GET /v1/workers.
        """)

    @Argument(help: "The coordinator's URL, e.g. http://127.0.0.1:8470.") var url: String
    @Argument(help: "The worker's id (w-…).") var worker: String
    @Option(name: .customLong("operator-token-file"), help: "A file holding the operator token (or TRIBUTARY_OPERATOR_TOKEN).")
    var operatorTokenFile: String?

    func run() async throws {
        let token: String
        if let operatorTokenFile {
            guard let text = try? String(contentsOfFile: operatorTokenFile, encoding: .utf8),
                  case let t = text.trimmingCharacters(in: .whitespacesAndNewlines), !t.isEmpty else {
                throw CLIError("cannot read the operator token from \(operatorTokenFile)")
            }
            token = t
        } else if let t = ProcessInfo.processInfo.environment["TRIBUTARY_OPERATOR_TOKEN"], !t.isEmpty {
            token = t
        } else {
            throw CLIError("give --operator-token-file or set TRIBUTARY_OPERATOR_TOKEN")
        }
        guard worker.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }), !worker.isEmpty else {
            throw CLIError("'\(worker)' is not a worker id (letters, digits and '-')")
        }
        let base = url.hasSuffix("/") ? String(url.dropLast()) : url
        var request = HTTPClientRequest(url: base + Routes.ban(worker))
        request.method = .POST
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        let client = StatusCommand.makeClient()
        let response: HTTPClientResponse
        let body: ByteBuffer
        do {
            response = try await client.execute(request, timeout: .seconds(15))
            body = try await response.body.collect(upTo: 1 << 20)
        } catch {
            try? await client.shutdown()
            throw CLIError("cannot reach \(base): \(error)")
        }
        try? await client.shutdown()
        guard response.status.code == 204 else {
            let problem = try? WireJSON.decoder().decode(Problem.self, from: Data(body.readableBytesView))
            throw CLIError("the coordinator refused: HTTP \(response.status.code)\(problem.map { " \($0.code.rawValue): \($0.detail)" } ?? "")")
        }
        print("banned \(worker)")
    }
}
