import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import TributaryProtocol
import TributaryTensor

/// `tributary status URL [--watch]`: a running job at a glance, from `GET /v1/status`.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show a running coordinator's job: progress, loss, workers, units, traffic, ETA.",
        discussion: """
        URL is the coordinator's address, e.g. http://127.0.0.1:8080 (a trailing slash, a \
        missing http://, or the full …/v1/status URL are accepted). With --watch the screen \
        is redrawn every --interval seconds until Ctrl-C; when standard output is not a \
        terminal, one plain block is printed per refresh instead.
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
        let endpoint = try Self.statusURL(url)
        let token = try viewerToken()
        let isTerminal = isatty(STDOUT_FILENO) == 1
        let color = isTerminal && !noColor && ProcessInfo.processInfo.environment["NO_COLOR"] == nil
        let client = Self.makeClient()
        guard watch else {
            let status: StatusReport
            do {
                status = try await Self.fetch(endpoint, client: client, token: token)
            } catch {
                try? await client.shutdown()
                throw error
            }
            try? await client.shutdown()
            print(Self.render(status, width: Self.terminalWidth(isTerminal), color: color), terminator: "")
            return
        }
        // Runs until Ctrl-C ends the process.
        do {
            try await watchLoop(endpoint, client: client, token: token, isTerminal: isTerminal, color: color)
        } catch {
            try? await client.shutdown()
            throw error
        }
    }

    private func watchLoop(_ endpoint: String, client: HTTPClient, token: String?, isTerminal: Bool, color: Bool) async throws {
        var last: StatusReport?
        var first = true
        while true {
            let width = Self.terminalWidth(isTerminal)
            let block: String
            do {
                let status = try await Self.fetch(endpoint, client: client, token: token)
                last = status
                block = Self.render(status, width: width, color: color)
            } catch let error as CLIError {
                // A wrong URL fails at once; a coordinator that goes away later is waited for.
                guard let last else { throw error }
                block = Self.render(last, width: width, color: color)
                    + Self.paint("connection lost, retrying: \(error.description)", Self.red, color) + "\n"
            }
            let stamp = Self.clock.string(from: Date())
            let header = Self.paint("\(endpoint) · \(stamp) · every \(Self.seconds(interval)) · Ctrl-C stops", Self.dim, color)
            if isTerminal {
                // Home, draw each line over the old one, clear what is left: no flicker.
                let lines = (header + "\n" + block).split(separator: "\n", omittingEmptySubsequences: false)
                let home = first ? "\u{1B}[H\u{1B}[2J" : "\u{1B}[H"
                print(home + lines.joined(separator: "\u{1B}[K\n") + "\u{1B}[J", terminator: "")
            } else {
                print(header)
                print(block)
            }
            fflush(nil)
            first = false
            try await Task.sleep(for: .milliseconds(Int(interval * 1000)))
        }
    }

    // MARK: - Fetching

    /// The status endpoint for what the user typed: scheme optional, trailing slashes and
    /// an existing `/v1/status` tolerated.
    static func statusURL(_ text: String) throws -> String {
        var s = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !s.isEmpty else { throw CLIError("no coordinator URL given (for example http://127.0.0.1:8080)") }
        if !s.contains("://") { s = "http://" + s }
        while s.hasSuffix("/") { s.removeLast() }
        if s.hasSuffix(Routes.status) { s.removeLast(Routes.status.count) }
        while s.hasSuffix("/") { s.removeLast() }
        guard let u = URL(string: s), let scheme = u.scheme?.lowercased(), scheme == "http" || scheme == "https",
              let host = u.host, !host.isEmpty, u.query == nil, u.fragment == nil else {
            throw CLIError("'\(text)' is not the http(s) URL of a coordinator (for example http://127.0.0.1:8080)")
        }
        return s + Routes.status
    }

    /// A client that reports an unreachable coordinator at once instead of retrying the
    /// connection until the deadline (`--watch` retries on its own schedule).
    static func makeClient() -> HTTPClient {
        var pool = HTTPClient.Configuration.ConnectionPool()
        pool.retryConnectionEstablishment = false
        let configuration = HTTPClient.Configuration(timeout: .init(connect: .seconds(5), read: .seconds(10)),
                                                     connectionPool: pool)
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
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

    static func fetch(_ endpoint: String, client: HTTPClient, token: String? = nil) async throws -> StatusReport {
        var request = HTTPClientRequest(url: endpoint)
        request.headers.add(name: "Accept", value: "application/json")
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        let response: HTTPClientResponse
        let data: Data
        do {
            response = try await client.execute(request, timeout: .seconds(15))
            data = Data(try await response.body.collect(upTo: 32 << 20).readableBytesView)
        } catch {
            throw CLIError("cannot reach \(endpoint): \(transport(error))")
        }
        guard response.status.code == 200 else {
            struct Detail: Decodable { var detail: String? }
            let detail = (try? JSONDecoder().decode(Detail.self, from: data))?.detail.map { ": " + oneLine($0) } ?? ""
            throw CLIError("\(endpoint) answered HTTP \(response.status.code) \(response.status.reasonPhrase)\(detail)")
        }
        do {
            return try WireJSON.decoder().decode(StatusReport.self, from: data)
        } catch let error as DecodingError {
            throw CLIError("\(endpoint) did not answer with a status report: \(describe(error))")
        } catch {
            throw CLIError("\(endpoint) did not answer with a status report: \(oneLine(error))")
        }
    }

    private static func describe(_ error: DecodingError) -> String {
        switch error {
        case let .keyNotFound(key, ctx):
            let path = (ctx.codingPath + [key]).map(\.stringValue).joined(separator: ".")
            return "missing field '\(path)'"
        case let .typeMismatch(_, ctx), let .valueNotFound(_, ctx), let .dataCorrupted(ctx):
            let path = ctx.codingPath.map(\.stringValue).joined(separator: ".")
            let what = ctx.underlyingError == nil ? ctx.debugDescription : "invalid JSON"
            return path.isEmpty ? what : "field '\(path)': \(what)"
        @unknown default:
            return oneLine(error)
        }
    }

    private static func transport(_ error: Error) -> String {
        if let e = error as? HTTPClientError {
            if e == .connectTimeout { return "connection timed out" }
            if e == .readTimeout || e == .deadlineExceeded { return "no answer in time" }
            if e == .remoteConnectionClosed { return "the connection was closed" }
        }
        if error is NIOTooManyBytesError { return "the reply is larger than 32 MiB" }
        let text = String(describing: error)
        for known in ["Connection refused", "Network is unreachable", "No route to host", "Connection reset by peer"]
        where text.contains(known) {
            return known.lowercased()
        }
        return oneLine(text)
    }

    private static func oneLine(_ error: Error) -> String { oneLine(String(describing: error)) }

    private static func oneLine(_ text: String) -> String {
        let flat = text.split(whereSeparator: \.isNewline).joined(separator: " ")
        return flat.count > 240 ? String(flat.prefix(239)) + "…" : flat
    }

    static func terminalWidth(_ isTerminal: Bool) -> Int {
        if isTerminal {
            var size = winsize()
            if ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0, size.ws_col >= 20 { return Int(size.ws_col) }
        }
        if let columns = ProcessInfo.processInfo.environment["COLUMNS"].flatMap(Int.init), columns >= 20 { return columns }
        return 80
    }

    // MARK: - Rendering (pure)

    /// The status as a block of lines (each ending in a newline). `width` sizes the
    /// progress bar and the sparkline; `color` adds ANSI colours.
    static func render(_ status: StatusReport, width: Int, color: Bool) -> String {
        let labelWidth = 11
        let valueWidth = max(20, width - labelWidth)
        var lines: [String] = []
        func line(_ label: String, _ value: String) {
            lines.append(paint(label.padding(toLength: labelWidth, withPad: " ", startingAt: 0), dim, color) + value)
        }

        let state = status.complete ? paint("complete", green, color) : "running"
        line("job", paint(clip(clean(status.job), valueWidth - 12), bold, color) + "  " + state)
        // A model family's summary already ends with its parameter count ("…, 809,856 parameters").
        let model = clean(status.model)
        let parameters = model.hasSuffix(" parameters") ? "" : " · \(grouped(status.parameters)) parameters"
        line("model", clip("\(model)\(parameters) · \(status.shards) shards · \(clean(status.mode))", valueWidth))

        let total = max(0, status.totalRounds)
        let fraction = total > 0 ? min(1, max(0, Double(status.version) / Double(total))) : 0
        let barWidth = max(10, min(40, width - 46))
        let filled = status.complete ? barWidth : min(barWidth, Int(Double(barWidth) * fraction))
        let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: barWidth - filled)
        let percent = String(format: "%.0f%%", (fraction * 100).rounded(.down))
        let where_ = status.complete ? "done" : "round \(status.round)"
        line("version", "\(paint(bar, cyan, color)) \(status.version)/\(total) \(percent) · \(where_) · epoch \(status.epoch)")

        if let now = status.trainingLoss.last {
            let sparkWidth = max(8, min(40, width - labelWidth - 10))
            let spark = sparkline(status.trainingLoss.map(\.value), width: sparkWidth)
            line("loss", String(format: "%.4f", now.value) + "  " + paint(spark, cyan, color))
        } else {
            line("loss", "–")
        }
        if let v = status.validationLoss.last {
            line("val loss", String(format: "%.4f", v.value) + " at round \(v.round)")
        } else {
            line("val loss", "–")
        }

        let w = status.workers
        line("workers", "\(w.active) active · \(w.seenRecently) recent · \(w.total) total")
        let u = status.units
        line("units", "\(u.done) done · \(u.leased) leased · \(u.pending) pending · \(u.expired) expired (\(u.perEpoch)/epoch)")
        var speed = ProgressReporter.rate(status.samplesPerSecond, "samples/s")
        if status.tokensPerSecond > 0 { speed += " · " + ProgressReporter.rate(status.tokensPerSecond, "tokens/s") }
        line("speed", speed)

        var traffic = "in \(ByteCount.format(status.bytesIn))"
        if status.denseBytesIn > 0, status.bytesIn > 0 {
            let ratio = Double(status.denseBytesIn) / Double(status.bytesIn)
            traffic += String(format: " (×%.1f vs dense %@)", ratio, ByteCount.format(status.denseBytesIn))
        }
        traffic += " · out \(ByteCount.format(status.bytesOut))"
        line("traffic", traffic)

        let reasons = status.updatesRejected.filter { $0.value > 0 }.sorted { ($0.value, $1.key) > ($1.value, $0.key) }
        let rejectedTotal = reasons.reduce(0) { $0 + $1.value }
        var updates = "\(status.updatesAccepted) accepted · "
        if reasons.isEmpty {
            updates += "none rejected"
        } else {
            let list = reasons.map { "\(clean($0.key)) \($0.value)" }.joined(separator: ", ")
            updates += paint("\(rejectedTotal) rejected", yellow, color) + " (\(list))"
        }
        line("updates", updates)
        if let r = status.replication {
            var text = "\(r.replicas) replicas (\(r.replicaSamples) samples) · \(r.confirmed) confirmed · \(r.disputes) disputes"
            if r.replaced + r.unresolved > 0 { text += " · \(r.replaced) replaced, \(r.unresolved) held back" }
            if r.banned > 0 { text += " · " + paint("\(r.banned) banned", yellow, color) }
            line("validation", text)
        }

        let eta = status.complete ? "done" : status.etaSeconds.map { ProgressReporter.duration($0) } ?? "unknown"
        let lastRound = status.lastRoundSeconds.map { seconds($0) } ?? "–"
        line("time", "last round \(lastRound) · up \(ProgressReporter.duration(status.uptimeSeconds)) · ETA \(eta)")
        return lines.joined(separator: "\n") + "\n"
    }

    /// `values` as block characters ▁▂▃▄▅▆▇█, min–max normalised over the last `width`
    /// values; a flat series is drawn at mid height, a non-finite value as a space.
    static func sparkline(_ values: [Double], width: Int) -> String {
        guard width > 0 else { return "" }
        let shown = values.suffix(width)
        let finite = shown.filter(\.isFinite)
        guard let lo = finite.min(), let hi = finite.max() else { return String(repeating: " ", count: shown.count) }
        let levels: [Character] = ["▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"]
        return String(shown.map { v -> Character in
            guard v.isFinite else { return " " }
            guard hi > lo else { return levels[3] }
            let index = Int(((v - lo) / (hi - lo) * Double(levels.count - 1)).rounded())
            return levels[min(levels.count - 1, max(0, index))]
        })
    }

    // MARK: - Text helpers

    static let bold = "1", dim = "2", red = "31", green = "32", yellow = "33", cyan = "36"

    static func paint(_ text: String, _ code: String, _ color: Bool) -> String {
        color ? "\u{1B}[\(code)m\(text)\u{1B}[0m" : text
    }

    /// Server text without control characters (no escape sequences reach the terminal).
    static func clean(_ text: String) -> String {
        String(String.UnicodeScalarView(text.unicodeScalars.map { scalar in
            scalar.properties.generalCategory == .control ? "?" : scalar
        }))
    }

    static func clip(_ text: String, _ width: Int) -> String {
        text.count > width ? String(text.prefix(max(1, width - 1))) + "…" : text
    }

    static func grouped(_ n: Int) -> String {
        let digits = String(n.magnitude)
        var out = ""
        for (i, c) in digits.enumerated() {
            if i > 0, (digits.count - i) % 3 == 0 { out.append(",") }
            out.append(c)
        }
        return (n < 0 ? "-" : "") + out
    }

    static func seconds(_ s: Double) -> String {
        s < 60 ? String(format: "%.1fs", s) : ProgressReporter.duration(s)
    }

    static let clock: DateFormatter = {
        let f = DateFormatter()
        f.dateFormat = "HH:mm:ss"
        return f
    }()
}
