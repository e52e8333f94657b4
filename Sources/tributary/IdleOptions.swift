import ArgumentParser
import Foundation
import TributaryWorker

/// `--only-when-idle` and its thresholds.
struct IdleOptions: ParsableArguments {
    @Flag(name: .customLong("only-when-idle"),
          help: "Compute only while nobody uses the machine, other programs leave the CPU free, and it is on mains power.")
    var onlyWhenIdle = false
    @Option(name: .customLong("idle-after"), help: "With --only-when-idle: time without keyboard, mouse or terminal input, e.g. 180s, 5m.")
    var idleAfter = "3m"
    @Option(name: .customLong("idle-max-cpu"), help: "With --only-when-idle: other programs' CPU use (percent of all cores) above which the machine is busy.")
    var idleMaxCPU = 25.0
    @Flag(name: .customLong("run-on-battery"), help: "With --only-when-idle: compute on battery power too.")
    var runOnBattery = false
    @Option(name: .customLong("idle-input"), help: "With --only-when-idle: a file whose access or modification time also counts as input (repeatable).")
    var idleInput: [String] = []

    /// The policy, or nil without --only-when-idle; a threshold that cannot be is refused.
    func policy() throws -> IdlePolicy? {
        guard onlyWhenIdle else { return nil }
        guard let seconds = Self.seconds(idleAfter), seconds >= 0 else {
            throw CLIError("--idle-after takes a time such as 90s, 5m or 1h, not '\(idleAfter)'")
        }
        guard idleMaxCPU.isFinite, (0...100).contains(idleMaxCPU) else { throw CLIError("--idle-max-cpu must be 0 to 100") }
        return IdlePolicy(inputQuiet: .seconds(seconds), maxOtherCPUPercent: idleMaxCPU, runOnBattery: runOnBattery)
    }

    func signals() -> MachineIdleSignals { MachineIdleSignals(extraInputFiles: idleInput) }

    /// "90", "90s", "5m", "1h" in seconds.
    static func seconds(_ text: String) -> Int? {
        let t = text.trimmingCharacters(in: .whitespaces).lowercased()
        for (suffix, scale) in [("h", 3600), ("m", 60), ("s", 1)] where t.hasSuffix(suffix) {
            return Int(t.dropLast()).flatMap { $0.multipliedReportingOverflow(by: scale).overflow ? nil : $0 * scale }
        }
        return Int(t)
    }
}
