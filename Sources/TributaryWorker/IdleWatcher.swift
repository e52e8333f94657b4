import Foundation
import Logging

/// `--only-when-idle`: looks at the machine every `interval` and holds the gate closed while
/// it is in use, so the unit in hand is given back within seconds of the volunteer's return.
/// Once in use, the machine must look idle for `settle` before work resumes, so a pause in
/// typing does not start and stop units.
public struct IdleWatcher: Sendable {
    public let policy: IdlePolicy
    public let signals: MachineIdleSignals
    public var interval: Duration = .seconds(2)
    public var settle: Duration = .seconds(10)

    public init(policy: IdlePolicy, signals: MachineIdleSignals = MachineIdleSignals()) {
        self.policy = policy
        self.signals = signals
    }

    public static let firstLook = "looking at whether the machine is idle"

    /// Runs until cancelled. The gate is held from the start until a look says idle.
    public func run(gate: ComputeGate, logger: Logger) async {
        gate.set(.machineInUse, reason: Self.firstLook)
        _ = signals.read()  // CPU use is the difference between two looks
        var idleSince: ContinuousClock.Instant?
        var first = true
        while !Task.isCancelled {
            do { try await Task.sleep(for: first ? .seconds(1) : interval) } catch { return }
            let now = ContinuousClock.now
            let held = gate.reasons.first { $0.hold == .machineInUse }?.reason
            if let why = policy.busyReason(signals.read()) {
                idleSince = nil
                if held == nil { logger.notice("the machine is in use; giving it back", metadata: ["reason": "\(why)"]) }
                gate.set(.machineInUse, reason: why)
            } else if held != nil {
                let since = idleSince ?? now
                idleSince = since
                if first || since.duration(to: now) >= settle {
                    gate.set(.machineInUse, reason: nil)
                    logger.info("the machine is idle")
                }
            }
            first = false
        }
    }
}
