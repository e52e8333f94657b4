import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import TributaryProtocol
import TributaryTensor

/// `tributary status URL [--watch]`: a running job at a glance, from `GET /v1/status` and
/// `GET /v1/workers`, drawn by `StatusScreen` to the terminal's width.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show a running coordinator's job: progress, loss, workers, units, traffic, ETA.",
        discussion: """
        URL is the coordinator's address, e.g. http://127.0.0.1:8080 (a trailing slash, a \
        missing http://, or the full …/v1/status URL are accepted). With --watch the screen \
        is redrawn every --interval seconds until Ctrl-C; when standard output is not a \
        terminal, one plain block is printed per refresh instead. Every line fits the \
        terminal's width (COLUMNS, else 80, when it is not a terminal); the figures the \
        coordinator counts in memory stand under "since coordinator start", as a restart \
        resets them; the volunteers with the most samples are listed, as many as fit.
        """)

    @Argument(help: "The coordinator's URL, e.g. http://127.0.0.1:8080.")
    var url: String

    @Flag(help: "Refresh every --interval seconds until Ctrl-C.")
    var watch = false

    @Option(help: "Seconds between refreshes with --watch.")
    var interval: Double = 2

    @Flag(name: .customLong("no-color"), help: "Plain text even on a terminal (also when NO_COLOR is set).")
    var noColor = false

    @Option(name: .customLong("token-file"),
            help: "A file holding the viewer's (or a worker's) token, for a job with auth.public_read: false (or TRIBUTARY_VIEWER_TOKEN).")
    var tokenFile: String?

    func validate() throws {
        guard interval.isFinite, interval >= 0.1 else { throw ValidationError("--interval must be at least 0.1 seconds") }
    }

    func run() async throws {
        let base = try Self.coordinatorBase(url)
        let token = try viewerToken()
        let isTerminal = isatty(STDOUT_FILENO) == 1
        let color = isTerminal && !noColor && ProcessInfo.processInfo.environment["NO_COLOR"] == nil
        let client = Self.makeClient()
        do {
            if watch {
                // Runs until Ctrl-C ends the process.
                try await watchLoop(base, client: client, token: token, isTerminal: isTerminal, color: color)
            } else {
                let status = try await Self.fetchStatus(base, client: client, token: token)
                let workers = await Self.fetchWorkers(base, client: client, token: token)
                let width = TerminalSize.current(isTerminal: isTerminal).width
                print(StatusScreen.block(status, workers: workers, width: width, height: nil, now: Date(), color: color),
                      terminator: "")
            }
        } catch {
            try? await client.shutdown()
            throw error
        }
        try? await client.shutdown()
    }

    private func watchLoop(_ base: String, client: HTTPClient, token: String?, isTerminal: Bool, color: Bool) async throws {
        var last: (status: StatusReport, workers: WorkerListing)?
        var first = true
        while true {
            let size = TerminalSize.current(isTerminal: isTerminal)
            var trouble: ScreenLine?
            do {
                let status = try await Self.fetchStatus(base, client: client, token: token)
                last = (status, await Self.fetchWorkers(base, client: client, token: token))
            } catch let error as CLIError {
                // A wrong URL fails at once; a coordinator that goes away later is waited for.
                guard last != nil else { throw error }
                trouble = ScreenLine("connection lost, retrying: \(error.description)", style: StatusScreen.red)
            }
            guard let last else { continue }
            let stamp = Self.clock.string(from: Date())
            let header = ScreenLine("\(base) · \(stamp) · every \(Self.seconds(interval)) · Ctrl-C stops", style: StatusScreen.dim)
            // The header and a connection-trouble line take screen lines of their own.
            let height = size.height.map { $0 - 1 - (trouble == nil ? 0 : 1) }
            let lines = [header.fitted(size.width, color: color)]
                + StatusScreen.lines(last.status, workers: last.workers, width: size.width, height: height, now: Date(), color: color)
                + (trouble.map { [$0.fitted(size.width, color: color)] } ?? [])
            if isTerminal {
                // Home, draw each line over the old one, clear the rest of the screen: no
                // flicker, and no newline after the last line, so a full screen never scrolls.
                let home = first ? "\u{1B}[H\u{1B}[2J" : "\u{1B}[H"
                print(home + lines.joined(separator: "\u{1B}[K\n") + "\u{1B}[K\u{1B}[J", terminator: "")
            } else {
                print(lines.joined(separator: "\n") + "\n")
            }
            fflush(nil)
            first = false
            try await Task.sleep(for: .milliseconds(Int(interval * 1000)))
        }
    }

    /// The bearer token to send, from --token-file or TRIBUTARY_VIEWER_TOKEN (nil: none).
    func viewerToken() throws -> String? {
        if let tokenFile {
            guard let text = try? String(contentsOfFile: tokenFile, encoding: .utf8),
                  case let token = text.trimmingCharacters(in: .whitespacesAndNewlines), !token.isEmpty else {
                throw CLIError("cannot read a token from \(tokenFile)")
            }
            return token
        }
        return ProcessInfo.processInfo.environment["TRIBUTARY_VIEWER_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
    }

    static func seconds(_ s: Double) -> String { StatusScreen.seconds(s) }

    static let clock: DateFormatter = {
        let f = DateFormatter()
        f.dateFormat = "HH:mm:ss"
        return f
    }()
}

/// The terminal's size: columns from TIOCGWINSZ on standard output, else `COLUMNS`, else
/// 80; lines likewise (`LINES`), and none when the output is not a terminal.
struct TerminalSize: Equatable {
    var width: Int
    var height: Int?

    static func current(isTerminal: Bool) -> TerminalSize {
        var size = winsize()
        let asked = ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0
        let environment = ProcessInfo.processInfo.environment
        func variable(_ name: String) -> Int? { environment[name].flatMap(Int.init).flatMap { $0 >= 20 ? $0 : nil } }
        let width = asked && size.ws_col >= 20 ? Int(size.ws_col) : variable("COLUMNS") ?? 80
        guard isTerminal else { return TerminalSize(width: width, height: nil) }
        let height = asked && size.ws_row >= 5 ? Int(size.ws_row) : environment["LINES"].flatMap(Int.init).flatMap { $0 >= 5 ? $0 : nil }
        return TerminalSize(width: width, height: height)
    }
}
