import Foundation
import TributaryProtocol

/// The volunteers under `tributary status`: most samples first, as many rows as there is
/// room for, then "and K more". Columns that do not fit the width are left out, least
/// telling first; names are cut to what is left.
enum WorkerTable {
    /// Names are never cut shorter than this while a column can still be left out.
    static let minimumNameWidth = 10

    struct Column {
        let header: String
        let cells: [String]
        let rightAligned: Bool
        /// Left out when the table is too wide; 1 goes first, nil never.
        let dropOrder: Int?
        var width: Int { cells.reduce(TerminalText.width(header)) { max($0, TerminalText.width($1)) } }
    }

    /// `room`: the lines there is space for below the header (rows and the "more" line).
    static func lines(_ listing: WorkerListing, room: Int, width: Int, now: Date) -> [ScreenLine] {
        let all: [WorkerSummary]
        switch listing {
        case let .unavailable(why):
            return [ScreenLine("  no worker list: \(StatusScreen.clean(why))")]
        case let .workers(list):
            all = list
        }
        guard !all.isEmpty else { return [ScreenLine("  no volunteer has joined yet")] }
        let ranked = all.enumerated().sorted { ($1.element.samples, $0.offset) < ($0.element.samples, $1.offset) }.map(\.element)
        let jobSamples = all.reduce(0) { $0 + max(0, $1.samples) }
        let shown = ranked.count <= room ? ranked : Array(ranked.prefix(max(1, room - 1)))

        var columns = [
            Column(header: "samples", cells: shown.map { StatusScreen.grouped($0.samples) }, rightAligned: true, dropOrder: nil),
            Column(header: "share", cells: shown.map { share($0.samples, of: jobSamples) }, rightAligned: true, dropOrder: 5),
            Column(header: "accepted", cells: shown.map { StatusScreen.grouped($0.acceptedUpdates) }, rightAligned: true, dropOrder: 2),
            Column(header: "refused", cells: shown.map { StatusScreen.grouped($0.rejectedUpdates) }, rightAligned: true, dropOrder: 1),
            Column(header: "last seen", cells: shown.map { ago(now.timeIntervalSince($0.lastSeen)) }, rightAligned: false, dropOrder: 3),
            Column(header: "state", cells: shown.map(state), rightAligned: false, dropOrder: 4),
        ]
        let names = shown.map { StatusScreen.clean($0.name.isEmpty ? $0.id : $0.name) }
        let widestName = names.reduce(TerminalText.width("worker")) { max($0, TerminalText.width($1)) }
        func nameRoom(for columns: [Column]) -> Int { width - 2 - columns.reduce(0) { $0 + 2 + $1.width } }
        while nameRoom(for: columns) < min(widestName, minimumNameWidth),
              let drop = columns.indices.compactMap({ i in columns[i].dropOrder.map { (index: i, order: $0) } })
                  .min(by: { $0.order < $1.order })?.index {
            columns.remove(at: drop)
        }
        let nameWidth = max(1, min(widestName, nameRoom(for: columns)))

        func row(_ name: String, _ cells: [String], style: (Int) -> String?) -> ScreenLine {
            var parts = [ScreenLine.Part("  " + TerminalText.pad(name, to: nameWidth), style: style(-1))]
            for (i, (column, cell)) in zip(columns, cells).enumerated() {
                parts.append(.init("  " + TerminalText.pad(cell, to: column.width, right: column.rightAligned), style: style(i)))
            }
            return ScreenLine(trimmed(parts))
        }
        var lines = [row("worker", columns.map(\.header)) { _ in StatusScreen.dim }]
        let stateColumn = columns.firstIndex { $0.header == "state" }
        for (i, name) in names.enumerated() {
            lines.append(row(name, columns.map { $0.cells[i] }) { column in
                guard column == stateColumn else { return nil }
                switch shown[i] {
                case let w where w.banned == true: return StatusScreen.yellow
                case let w where w.active: return StatusScreen.green
                default: return nil
                }
            })
        }
        if shown.count < ranked.count {
            let rest = ranked.dropFirst(shown.count)
            let samples = rest.reduce(0) { $0 + max(0, $1.samples) }
            let detail = jobSamples > 0 ? " (\(ProgressReporter.count(samples, "sample")), \(share(samples, of: jobSamples)))" : ""
            lines.append(ScreenLine([.init("  and \(rest.count) more"), .init(detail, dropOrder: 1)]))
        }
        return lines
    }

    /// The row without the spaces that pad its last cell.
    static func trimmed(_ parts: [ScreenLine.Part]) -> [ScreenLine.Part] {
        guard var last = parts.last else { return parts }
        while last.text.hasSuffix(" ") { last.text.removeLast() }
        return parts.dropLast() + [last]
    }

    static func share(_ samples: Int, of total: Int) -> String {
        total > 0 ? String(format: "%.1f%%", 100 * Double(samples) / Double(total)) : "–"
    }

    static func state(_ worker: WorkerSummary) -> String {
        worker.banned == true ? "banned" : worker.active ? "active" : "idle"
    }

    /// "just now", "42s ago", "5m ago", "3h ago", "2d ago" (a clock ahead of ours reads "just now").
    static func ago(_ seconds: Double) -> String {
        guard seconds.isFinite, seconds >= 1 else { return "just now" }
        let s = Int(min(seconds, 1e12))
        if s < 60 { return "\(s)s ago" }
        if s < 3600 { return "\(s / 60)m ago" }
        if s < 86400 { return "\(s / 3600)h ago" }
        return "\(s / 86400)d ago"
    }
}
