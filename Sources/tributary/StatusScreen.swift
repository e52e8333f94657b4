import Foundation
import TributaryProtocol
import TributaryTensor

/// The worker list as `tributary status` got it from `GET /v1/workers`.
enum WorkerListing: Equatable {
    case workers([WorkerSummary])
    /// Why there is no list (an older coordinator, a refused token…), in words.
    case unavailable(String)
}

/// What `tributary status` prints, as lines that each fit `width` columns: the job and the
/// figures that survive a coordinator restart (kept in the ledger and checkpoints), then,
/// under a heading that says so, the ones the coordinator counts in memory since it started,
/// then the volunteers, most samples first, as many as fit. Pure: the same report, list,
/// size and time give the same lines.
enum StatusScreen {
    static let labelWidth = 11
    /// Workers listed when the output is not a screen (a pipe, a log file).
    static let defaultWorkerRows = 10

    /// The screen's lines (without newlines). `height`: the lines there is room for (nil
    /// when the output is not a screen); `now` dates the workers' "last seen".
    static func lines(_ status: StatusReport, workers: WorkerListing, width: Int, height: Int?, now: Date,
                      color: Bool) -> [String] {
        var lines = jobLines(status, width: width) + sinceStartLines(status)
        lines.append(labeled("workers", [.init("\(status.workers.active) active · \(status.workers.seenRecently) recent · "
                                               + "\(status.workers.total) total")]))
        // The table's header takes one line; the rest of the screen is for its rows.
        let room = height.map { max(2, $0 - lines.count - 1) } ?? defaultWorkerRows
        lines += WorkerTable.lines(workers, room: room, width: width, now: now)
        return lines.map { $0.fitted(width, color: color) }
    }

    /// The lines as one block, each ending in a newline.
    static func block(_ status: StatusReport, workers: WorkerListing, width: Int, height: Int?, now: Date,
                      color: Bool) -> String {
        lines(status, workers: workers, width: width, height: height, now: now, color: color)
            .map { $0 + "\n" }.joined()
    }

    // MARK: - The job (figures that survive a restart)

    static func jobLines(_ status: StatusReport, width: Int) -> [ScreenLine] {
        var lines: [ScreenLine] = []
        let state: ScreenLine.Part = if status.failed != nil {
            .init("failed", style: red)
        } else if status.complete {
            .init("complete", style: green)
        } else {
            .init("running")
        }
        lines.append(labeled("job", [.init(clean(status.job), style: bold, minimumWidth: 8), .init("  "), state]))

        let model = modelDescription(clean(status.model))
        let count = "\(grouped(status.parameters)) parameters"
        var modelParts: [ScreenLine.Part] = model.isEmpty ? [.init(count)] : [.init(model, minimumWidth: 30), .init(" · " + count)]
        modelParts.append(.init(" · \(status.shards) shards", dropOrder: 1))
        modelParts.append(.init(" · \(clean(status.mode))", dropOrder: 2))
        lines.append(labeled("model", modelParts))

        let total = max(0, status.totalRounds)
        let fraction = total > 0 ? min(1, max(0, Double(status.version) / Double(total))) : 0
        let barWidth = max(10, min(40, width - 46))
        let filled = status.complete ? barWidth : min(barWidth, Int(Double(barWidth) * fraction))
        let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: barWidth - filled)
        let percent = String(format: "%.0f%%", (fraction * 100).rounded(.down))
        let place = status.complete ? "done" : "round \(status.round)"
        lines.append(labeled("version", [.init(bar, style: cyan), .init(" \(status.version)/\(total) \(percent) · \(place)"),
                                         .init(" · epoch \(status.epoch)", dropOrder: 1)]))

        if let now = status.trainingLoss.last {
            let spark = sparkline(status.trainingLoss.map(\.value), width: max(8, min(40, width - labelWidth - 10)))
            lines.append(labeled("loss", [.init(String(format: "%.4f", now.value) + "  "), .init(spark, style: cyan)]))
        } else {
            lines.append(labeled("loss", [.init("–")]))
        }
        if let v = status.validationLoss.last {
            lines.append(labeled("val loss", [.init(String(format: "%.4f", v.value) + " at round \(v.round)")]))
        } else {
            lines.append(labeled("val loss", [.init("–")]))
        }
        let u = status.units
        lines.append(labeled("units", [.init("\(u.done) done · \(u.leased) leased · \(u.pending) pending"),
                                       .init(" (\(u.perEpoch)/epoch)", dropOrder: 1)]))
        let eta = status.complete ? "done" : status.etaSeconds.map { ProgressReporter.duration($0) } ?? "unknown"
        let lastRound = status.lastRoundSeconds.map { seconds($0) } ?? "–"
        lines.append(labeled("time", [.init("last round \(lastRound) · ETA \(eta)")]))
        return lines
    }

    /// A model family's summary ends with its parameter count ("…, 809,856 parameters");
    /// the screen says the count once, itself, so the summary's is left out.
    static func modelDescription(_ model: String) -> String {
        guard model.hasSuffix(" parameters") else { return model }
        guard let comma = model.range(of: ", ", options: .backwards) else { return "" }
        return String(model[..<comma.lowerBound])
    }

    // MARK: - Since the coordinator started (counted in memory)

    /// The figures a coordinator counts in memory: a restart sets them back to zero, so they
    /// stand under a heading that says since when.
    static func sinceStartLines(_ status: StatusReport) -> [ScreenLine] {
        var lines = [ScreenLine([.init("since coordinator start \(ProgressReporter.duration(status.uptimeSeconds))", style: bold),
                                 .init(" (a restart resets these)", dropOrder: 1)])]
        var speed = ProgressReporter.rate(status.samplesPerSecond, "samples/s")
        if status.tokensPerSecond > 0 { speed += " · " + ProgressReporter.rate(status.tokensPerSecond, "tokens/s") }
        lines.append(labeled("speed", [.init(speed), .init(" (last minute)", dropOrder: 1)]))

        var traffic: [ScreenLine.Part] = [.init("in \(ByteCount.format(status.bytesIn))")]
        if status.denseBytesIn > 0, status.bytesIn > 0 {
            let ratio = Double(status.denseBytesIn) / Double(status.bytesIn)
            traffic.append(.init(String(format: " (×%.1f vs dense %@)", ratio, ByteCount.format(status.denseBytesIn)), dropOrder: 1))
        }
        traffic.append(.init(" · out \(ByteCount.format(status.bytesOut))"))
        lines.append(labeled("traffic", traffic))

        let reasons = status.updatesRejected.filter { $0.value > 0 }.sorted { ($0.value, $1.key) > ($1.value, $0.key) }
        let rejected = reasons.reduce(0) { $0 + $1.value }
        var updates: [ScreenLine.Part] = [.init("\(status.updatesAccepted) accepted · ")]
        if reasons.isEmpty {
            updates.append(.init("none rejected"))
        } else {
            updates.append(.init("\(rejected) rejected", style: yellow))
            updates.append(.init(" (" + reasons.map { "\(clean($0.key)) \($0.value)" }.joined(separator: ", ") + ")"))
        }
        lines.append(labeled("updates", updates))
        lines.append(labeled("leases", [.init("\(status.units.expired) expired")]))

        if let r = status.replication {
            lines.append(labeled("validation", [.init("\(r.replicas) replicas"), .init(" (\(r.replicaSamples) samples)", dropOrder: 1),
                                                .init(" · \(r.confirmed) confirmed · \(r.disputes) disputes")]))
            var outcomes: [ScreenLine.Part] = []
            if r.replaced + r.unresolved > 0 { outcomes.append(.init("\(r.replaced) replaced · \(r.unresolved) held back")) }
            if r.banned > 0 {
                if !outcomes.isEmpty { outcomes.append(.init(" · ")) }
                outcomes.append(.init("\(r.banned) banned", style: yellow))
            }
            if !outcomes.isEmpty { lines.append(labeled("", outcomes)) }
        }
        return lines
    }

    // MARK: - Pieces

    static func labeled(_ label: String, _ parts: [ScreenLine.Part]) -> ScreenLine {
        ScreenLine([.init(label.padding(toLength: labelWidth, withPad: " ", startingAt: 0), style: dim)] + parts)
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

    static let bold = "1", dim = "2", red = "31", green = "32", yellow = "33", cyan = "36"

    static func paint(_ text: String, _ code: String?, _ color: Bool) -> String {
        guard color, let code, !text.isEmpty else { return text }
        return "\u{1B}[\(code)m\(text)\u{1B}[0m"
    }

    /// Server text without control characters (no escape sequences reach the terminal).
    static func clean(_ text: String) -> String {
        String(String.UnicodeScalarView(text.unicodeScalars.map { scalar in
            switch scalar.properties.generalCategory {
            case .control, .lineSeparator, .paragraphSeparator: return "?"
            default: return scalar
            }
        }))
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
}
