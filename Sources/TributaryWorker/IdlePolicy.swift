import Foundation

/// When `--only-when-idle` lets the worker compute: nobody has touched a keyboard, mouse or
/// terminal for `inputQuiet`, other programs leave the CPU mostly free, and the machine is
/// on mains power (where it can tell). A pure decision over `IdleReadings`, so each rule is
/// tested without a real machine in the state it describes.
public struct IdlePolicy: Sendable, Equatable {
    /// How long since the last user input the machine counts as idle.
    public var inputQuiet: Duration
    /// Other programs' share of all cores (percent) above which the machine is in use.
    public var maxOtherCPUPercent: Double
    /// Whether to compute on battery power.
    public var runOnBattery: Bool

    public init(inputQuiet: Duration = .seconds(180), maxOtherCPUPercent: Double = 25, runOnBattery: Bool = false) {
        self.inputQuiet = inputQuiet
        self.maxOtherCPUPercent = maxOtherCPUPercent
        self.runOnBattery = runOnBattery
    }

    /// The machine in use, and why in words; nil when the worker may compute. A reading
    /// that is not known (nil) does not hold the worker back.
    public func busyReason(_ r: IdleReadings) -> String? {
        if let since = r.secondsSinceInput, since < Double(inputQuiet.components.seconds) {
            return "the machine was used \(Int(since.rounded())) s ago (idle after \(inputQuiet.components.seconds) s)"
        }
        if let other = r.otherCPUPercent, other > maxOtherCPUPercent {
            return "other programs use \(Int(other.rounded()))% of the CPU (at most \(Int(maxOtherCPUPercent.rounded()))%)"
        }
        if r.onBattery == true && !runOnBattery {
            return "on battery power (--run-on-battery to compute anyway)"
        }
        return nil
    }
}

/// One look at the machine.
public struct IdleReadings: Sendable, Equatable {
    /// Since the last keyboard, mouse or terminal input (nil: no input device seen).
    public var secondsSinceInput: Double?
    /// Other programs' CPU use since the last look, in percent of all cores (nil: first look).
    public var otherCPUPercent: Double?
    /// nil where the machine has no battery it reports.
    public var onBattery: Bool?

    public init(secondsSinceInput: Double? = nil, otherCPUPercent: Double? = nil, onBattery: Bool? = nil) {
        self.secondsSinceInput = secondsSinceInput
        self.otherCPUPercent = otherCPUPercent
        self.onBattery = onBattery
    }
}
