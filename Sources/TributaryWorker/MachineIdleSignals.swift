import Foundation

/// Reads what `IdlePolicy` decides on from a Linux machine. Each look compares with the
/// last one, so it is used by one watcher at a time.
/// - Input: the access times of terminals (`/dev/tty*`, `/dev/pts/*`: reading input sets
///   them; the worker's own output sets only the modification time) and input devices
///   (`/dev/input/*`), and the keyboard, mouse and touchpad lines of `/proc/interrupts`,
///   which move with a desktop's input where device times do not.
/// - CPU: busy time of all cores from `/proc/stat` less this process's own (`/proc/self/stat`).
/// - Power: `/sys/class/power_supply`: on battery when no mains supply is online and a
///   battery discharges.
/// The roots are parameters so tests can lay out a machine in a temporary directory.
public final class MachineIdleSignals: @unchecked Sendable {
    // Unchecked: used by one watcher task at a time (see above).
    let devRoot: String
    let procRoot: String
    let sysRoot: String
    /// Files whose access or modification time also counts as input (`--idle-input`).
    let extraInputFiles: [String]
    private var lastCPU: (busy: UInt64, total: UInt64, own: UInt64)?
    private var lastInterrupts: UInt64?
    private var lastInterruptMoved: Date?

    public init(devRoot: String = "/dev", procRoot: String = "/proc", sysRoot: String = "/sys", extraInputFiles: [String] = []) {
        self.devRoot = devRoot
        self.procRoot = procRoot
        self.sysRoot = sysRoot
        self.extraInputFiles = extraInputFiles
    }

    public func read(now: Date = Date()) -> IdleReadings {
        IdleReadings(secondsSinceInput: lastInput(now: now).map { max(0, now.timeIntervalSince($0)) },
                     otherCPUPercent: otherCPU(), onBattery: onBattery())
    }

    // MARK: input

    private func lastInput(now: Date) -> Date? {
        var latest: Date?
        func note(_ d: Date?) { if let d, d > (latest ?? .distantPast) { latest = d } }
        for file in terminalFiles() { note(Self.times(file)?.access) }
        for file in inputDeviceFiles() + extraInputFiles {
            if let t = Self.times(file) { note(max(t.access, t.modification)) }
        }
        if let count = inputInterrupts() {
            if let last = lastInterrupts, count != last { lastInterruptMoved = now }
            lastInterrupts = count
        }
        note(lastInterruptMoved)
        return latest
    }

    private func terminalFiles() -> [String] {
        let dev = (try? FileManager.default.contentsOfDirectory(atPath: devRoot)) ?? []
        let ttys = dev.filter { $0.hasPrefix("tty") && $0.count > 3 && $0.dropFirst(3).allSatisfy(\.isNumber) }
            .map { "\(devRoot)/\($0)" }
        let ptsDir = "\(devRoot)/pts"
        let pts = ((try? FileManager.default.contentsOfDirectory(atPath: ptsDir)) ?? [])
            .filter { !$0.isEmpty && $0.allSatisfy(\.isNumber) }.map { "\(ptsDir)/\($0)" }
        return ttys + pts
    }

    private func inputDeviceFiles() -> [String] {
        let dir = "\(devRoot)/input"
        return ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [])
            .filter { $0.hasPrefix("event") || $0.hasPrefix("mouse") || $0 == "mice" }.map { "\(dir)/\($0)" }
    }

    static func times(_ path: String) -> (access: Date, modification: Date)? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        func date(_ t: timespec) -> Date { Date(timeIntervalSince1970: Double(t.tv_sec) + Double(t.tv_nsec) / 1e9) }
        return (date(st.st_atim), date(st.st_mtim))
    }

    /// Interrupts so far on the lines that name a keyboard, mouse or touchpad controller.
    private func inputInterrupts() -> UInt64? {
        guard let text = try? String(contentsOfFile: "\(procRoot)/interrupts", encoding: .utf8) else { return nil }
        let names = ["i8042", "hid", "keyboard", "mouse", "touchpad"]
        var sum: UInt64 = 0, found = false
        for line in text.split(separator: "\n") {
            let lower = line.lowercased()
            guard names.contains(where: lower.contains) else { continue }
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.first?.hasSuffix(":") == true else { continue }
            for field in fields.dropFirst() {
                guard let n = UInt64(field) else { break }
                sum &+= n
            }
            found = true
        }
        return found ? sum : nil
    }

    // MARK: CPU

    private func otherCPU() -> Double? {
        guard let now = cpuTimes() else { return nil }
        defer { lastCPU = now }
        guard let last = lastCPU, now.total > last.total, now.busy >= last.busy else { return nil }
        let total = Double(now.total - last.total)
        let busy = Double(now.busy - last.busy)
        let own = Double(now.own &- last.own)
        return min(100, max(0, (busy - own) / total * 100))
    }

    private func cpuTimes() -> (busy: UInt64, total: UInt64, own: UInt64)? {
        guard let stat = try? String(contentsOfFile: "\(procRoot)/stat", encoding: .utf8),
              let line = stat.split(separator: "\n").first, line.hasPrefix("cpu ") else { return nil }
        let v = line.split(separator: " ").dropFirst().prefix(8).compactMap { UInt64($0) }
        guard v.count >= 5 else { return nil }
        let total = v.reduce(0, &+)
        let busy = total &- v[3] &- v[4]  // less idle and iowait
        guard let mine = try? String(contentsOfFile: "\(procRoot)/self/stat", encoding: .utf8),
              let close = mine.lastIndex(of: ")") else { return nil }
        // After the command name: state is field 3, utime 14, stime 15.
        let fields = mine[mine.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let user = UInt64(fields[11]), let system = UInt64(fields[12]) else { return nil }
        return (busy, total, user &+ system)
    }

    // MARK: power

    private func onBattery() -> Bool? {
        let dir = "\(sysRoot)/class/power_supply"
        guard let supplies = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return nil }
        func read(_ supply: String, _ name: String) -> String? {
            (try? String(contentsOfFile: "\(dir)/\(supply)/\(name)", encoding: .utf8))?
                .trimmingCharacters(in: .whitespacesAndNewlines)
        }
        var mainsOnline = false, discharging = false, battery = false
        for supply in supplies {
            switch read(supply, "type") {
            case "Mains", "USB": if read(supply, "online") == "1" { mainsOnline = true }
            case "Battery":
                battery = true
                if read(supply, "status") == "Discharging" { discharging = true }
            default: continue
            }
        }
        guard battery else { return nil }
        return !mainsOnline && discharging
    }
}
