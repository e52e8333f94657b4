import Foundation

/// Progress output: an updating bar with rate and ETA on a terminal, plain lines otherwise
/// (logs and pipes get one complete line per report).
struct ProgressReporter {
    let isTerminal = isatty(STDOUT_FILENO) == 1
    let total: Int

    /// "1 worker", "2 workers", "0 workers".
    static func count(_ n: Int, _ noun: String) -> String { "\(n.formatted()) \(noun)\(n == 1 ? "" : "s")" }

    func update(done: Int, rate: String, eta: Double, detail: String) {
        if isTerminal {
            let width = 24
            let filled = total > 0 ? min(width, width * done / total) : 0
            let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
            print("\r\u{1B}[2K[\(bar)] \(done)/\(total) \(detail) \(rate) ETA \(Self.duration(eta))", terminator: "")
            fflush(nil)
        } else {
            print("\(done)/\(total) \(detail) \(rate) ETA \(Self.duration(eta))")
            fflush(nil) // reach pipes and log files as it happens
        }
    }

    /// Prints a line that stays (ends the bar's line first on a terminal).
    func line(_ text: String) {
        if isTerminal { print("\r\u{1B}[2K", terminator: "") }
        print(text)
        fflush(nil)
    }

    static func duration(_ seconds: Double) -> String {
        // A coordinator's figure may be anything: beyond 30,000 years it is not a duration.
        guard seconds.isFinite, seconds >= 0, seconds < 1e12 else { return "--" }
        let s = Int(seconds.rounded())
        if s >= 3600 { return "\(s / 3600)h\(String(format: "%02d", (s % 3600) / 60))m" }
        if s >= 60 { return "\(s / 60)m\(String(format: "%02d", s % 60))s" }
        return "\(s)s"
    }

    /// "812 FLOP", "4.1 TFLOP", "250 PFLOP": steps of 1,000, one decimal below 100.
    static func flops(_ count: Double) -> String {
        guard count.isFinite, count >= 0 else { return "? FLOP" }
        let units = ["FLOP", "kFLOP", "MFLOP", "GFLOP", "TFLOP", "PFLOP", "EFLOP", "ZFLOP", "YFLOP"]
        var value = count, step = 0
        // 999.7 kFLOP reads 1.0 MFLOP, not 1000 kFLOP.
        while value >= 999.5, step < units.count - 1 {
            value /= 1000
            step += 1
        }
        let whole = step == 0 || (value * 10).rounded() >= 1000
        return String(format: whole ? "%.0f %@" : "%.1f %@", value, units[step])
    }

    static func rate(_ perSecond: Double, _ unit: String) -> String {
        if perSecond >= 1e6 { return String(format: "%.2fM %@", perSecond / 1e6, unit) }
        if perSecond >= 1e4 { return String(format: "%.1fk %@", perSecond / 1e3, unit) }
        return String(format: "%.0f %@", perSecond, unit)
    }
}
