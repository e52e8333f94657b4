import Foundation
import XCTest
@testable import TributaryWorker

/// `--only-when-idle` reads a machine laid out in a temporary directory: terminals, input
/// devices, /proc and /sys as Linux has them, in the states a volunteer's laptop goes through.
final class IdleSignalsTests: XCTestCase {
    var root = ""

    override func setUp() async throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("idle-\(UUID().uuidString)").path
        for d in ["dev/pts", "dev/input", "proc/self", "sys/class/power_supply/AC", "sys/class/power_supply/BAT0"] {
            try FileManager.default.createDirectory(atPath: "\(root)/\(d)", withIntermediateDirectories: true)
        }
    }

    override func tearDown() async throws { try? FileManager.default.removeItem(atPath: root) }

    func write(_ path: String, _ text: String) throws { try text.write(toFile: "\(root)/\(path)", atomically: true, encoding: .utf8) }

    func setTimes(_ path: String, access: Date, modification: Date) {
        var times = [timespec(tv_sec: Int(access.timeIntervalSince1970), tv_nsec: 0),
                     timespec(tv_sec: Int(modification.timeIntervalSince1970), tv_nsec: 0)]
        XCTAssertEqual(utimensat(AT_FDCWD, "\(root)/\(path)", &times, 0), 0)
    }

    var signals: MachineIdleSignals {
        MachineIdleSignals(devRoot: "\(root)/dev", procRoot: "\(root)/proc", sysRoot: "\(root)/sys")
    }

    func cpu(user: Int, idle: Int, ownTicks: Int) throws {
        try write("proc/stat", "cpu  \(user) 0 0 \(idle) 0 0 0 0 0 0\ncpu0 1 0 0 1 0 0 0 0 0 0\n")
        // The command name may hold spaces and parentheses: fields count from the last ')'.
        try write("proc/self/stat", "4242 (tributary (w) x) S 1 1 1 0 -1 4194304 1 0 0 0 \(ownTicks) 0 0 0 39 19 7 0\n")
    }

    /// A terminal's access time is input (reading keystrokes); its modification time is the
    /// worker's own output and must not count.
    func testTerminalInputIsItsAccessTimeNotItsModificationTime() throws {
        let now = Date()
        try write("dev/pts/3", "")
        try write("dev/tty2", "")
        setTimes("dev/pts/3", access: now.addingTimeInterval(-42), modification: now.addingTimeInterval(-1))
        setTimes("dev/tty2", access: now.addingTimeInterval(-600), modification: now.addingTimeInterval(-600))
        let r = signals.read(now: now)
        XCTAssertEqual(try XCTUnwrap(r.secondsSinceInput), 42, accuracy: 1)
        XCTAssertNil(r.otherCPUPercent, "no /proc/stat")
        XCTAssertNil(r.onBattery, "supplies without a type are not a battery")
    }

    func testInputDevicesAndExtraFilesCountBothTimes() throws {
        let now = Date()
        try write("dev/input/event4", "")
        setTimes("dev/input/event4", access: now.addingTimeInterval(-900), modification: now.addingTimeInterval(-30))
        XCTAssertEqual(try XCTUnwrap(signals.read(now: now).secondsSinceInput), 30, accuracy: 1)
        try write("activity", "")
        setTimes("activity", access: now.addingTimeInterval(-7), modification: now.addingTimeInterval(-7))
        let withExtra = MachineIdleSignals(devRoot: "\(root)/dev", procRoot: "\(root)/proc", sysRoot: "\(root)/sys",
                                           extraInputFiles: ["\(root)/activity"])
        XCTAssertEqual(try XCTUnwrap(withExtra.read(now: now).secondsSinceInput), 7, accuracy: 1)
    }

    /// A desktop's keyboard and touchpad show in /proc/interrupts: a count that moved is input now.
    func testKeyboardInterruptsThatMoveAreInputNow() throws {
        let s = signals
        let t0 = Date()
        let table = { (kbd: Int) in "           CPU0       CPU1\n  0:         40          0   IO-APIC   2-edge      timer\n"
            + "  1:       \(kbd)         12   IO-APIC   1-edge      i8042\n 16:     900     100  IO-APIC  16-fasteoi   ehci_hcd:usb1\n" }
        try write("proc/interrupts", table(500))
        XCTAssertNil(s.read(now: t0).secondsSinceInput, "the first look has nothing to compare with")
        try write("proc/interrupts", table(500))
        XCTAssertNil(s.read(now: t0.addingTimeInterval(2)).secondsSinceInput, "no key pressed")
        try write("proc/interrupts", table(517))
        XCTAssertEqual(try XCTUnwrap(s.read(now: t0.addingTimeInterval(4)).secondsSinceInput), 0, accuracy: 0.01)
        try write("proc/interrupts", table(517))
        XCTAssertEqual(try XCTUnwrap(s.read(now: t0.addingTimeInterval(10)).secondsSinceInput), 6, accuracy: 0.01,
                       "since the look that saw the keys")
    }

    /// Other programs' share: all cores' busy time less this process's own.
    func testOtherProgramsCPUExcludesTheWorkersOwn() throws {
        let s = signals
        try cpu(user: 1000, idle: 9000, ownTicks: 100)
        XCTAssertNil(s.read().otherCPUPercent, "a share needs two looks")
        // 200 ticks pass: 150 busy, of which 110 are the worker's own: others use 40 of 200.
        try cpu(user: 1150, idle: 9050, ownTicks: 210)
        XCTAssertEqual(try XCTUnwrap(s.read().otherCPUPercent), 20, accuracy: 1e-9)
        // The worker alone keeps the machine busy: others use nothing.
        try cpu(user: 1350, idle: 9050, ownTicks: 410)
        XCTAssertEqual(try XCTUnwrap(s.read().otherCPUPercent), 0, accuracy: 1e-9)
    }

    func testBatteryIsWhenNoMainsIsOnlineAndTheBatteryDischarges() throws {
        try write("sys/class/power_supply/AC/type", "Mains\n")
        try write("sys/class/power_supply/BAT0/type", "Battery\n")
        try write("sys/class/power_supply/AC/online", "0\n")
        try write("sys/class/power_supply/BAT0/status", "Discharging\n")
        XCTAssertEqual(signals.read().onBattery, true)
        try write("sys/class/power_supply/AC/online", "1\n")
        try write("sys/class/power_supply/BAT0/status", "Charging\n")
        XCTAssertEqual(signals.read().onBattery, false)
        try FileManager.default.removeItem(atPath: "\(root)/sys/class/power_supply/BAT0")
        XCTAssertNil(signals.read().onBattery, "a desktop has no battery")
    }

    func testThePolicySaysWhyTheMachineIsInUse() {
        let policy = IdlePolicy(inputQuiet: .seconds(180), maxOtherCPUPercent: 25, runOnBattery: false)
        XCTAssertNil(policy.busyReason(IdleReadings(secondsSinceInput: 181, otherCPUPercent: 24, onBattery: false)))
        XCTAssertNil(policy.busyReason(IdleReadings()), "what cannot be read does not hold the worker back")
        XCTAssertEqual(policy.busyReason(IdleReadings(secondsSinceInput: 12.4)), "the machine was used 12 s ago (idle after 180 s)")
        XCTAssertEqual(policy.busyReason(IdleReadings(secondsSinceInput: 500, otherCPUPercent: 63.2)),
                       "other programs use 63% of the CPU (at most 25%)")
        XCTAssertEqual(policy.busyReason(IdleReadings(onBattery: true)), "on battery power (--run-on-battery to compute anyway)")
        var onBattery = policy
        onBattery.runOnBattery = true
        XCTAssertNil(onBattery.busyReason(IdleReadings(onBattery: true)))
    }
}
