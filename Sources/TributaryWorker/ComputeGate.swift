import Foundation
import Synchronization

/// Whether this worker may compute now. Closed while any hold is on it: the volunteer paused
/// it (`tributary worker pause`), or `--only-when-idle` found the machine in use. The daemon
/// leases nothing while it is closed, and a unit in hand when it closes is given back
/// (`interruptingWhenClosed`), so the machine is the volunteer's again within seconds.
public final class ComputeGate: Sendable {
    public enum Hold: String, Sendable, Codable, CaseIterable {
        /// The volunteer asked for it; kept across restarts (`WorkerPauseFile`).
        case paused
        /// `--only-when-idle`: someone uses the machine, or it runs on battery.
        case machineInUse = "machine_in_use"
    }

    private let holds = Mutex<[Hold: String]>([:])
    /// How often the waits look again: holds change at human speed.
    static let poll: Duration = .milliseconds(200)

    public init() {}

    /// Puts `hold` on with its reason in words, or takes it off (nil).
    public func set(_ hold: Hold, reason: String?) {
        holds.withLock { $0[hold] = reason }
    }

    public var isOpen: Bool { holds.withLock { $0.isEmpty } }

    /// The holds on the gate now and why, the volunteer's pause first.
    public var reasons: [(hold: Hold, reason: String)] {
        holds.withLock { h in Hold.allCases.compactMap { hold in h[hold].map { (hold, $0) } } }
    }

    /// Why the gate is closed, in one phrase (nil when open).
    public var closedBecause: String? { reasons.first?.reason }

    /// Returns once the gate is open; throws when the task is cancelled.
    public func waitUntilOpen() async throws {
        while !isOpen { try await Task.sleep(for: Self.poll) }
    }

    /// Returns why, once the gate is closed; nil when the task is cancelled first.
    public func waitUntilClosed() async -> String? {
        while true {
            if let why = closedBecause { return why }
            do { try await Task.sleep(for: Self.poll) } catch { return nil }
        }
    }
}

/// What finished first: the gate closing, or the unit's work.
private enum GateRace<T: Sendable>: Sendable {
    case closed(String?)
    case done(Result<T, any Error>)
}

/// A unit given back because the gate closed while it was worked on.
public struct UnitInterrupted: Error, CustomStringConvertible {
    public let reason: String
    public var description: String { "the unit was given back: \(reason)" }
}

extension ComputeGate {
    /// Runs `work` (a unit under `lease`) unless the gate closes first: then the work is
    /// cancelled and this throws `UnitInterrupted`. A unit already committing is let finish:
    /// only the commit's answer decides it, and it takes a moment.
    func interruptingWhenClosed<T: Sendable>(_ lease: HeldLease,
                                             _ work: @escaping @Sendable () async throws -> T) async throws -> T {
        let result = await withTaskGroup(of: GateRace<T>.self, returning: Result<T, any Error>.self) { group in
            group.addTask {
                do { return .done(.success(try await work())) } catch { return .done(.failure(error)) }
            }
            group.addTask { .closed(await self.waitUntilClosed()) }
            var interrupted: String?
            while let outcome = await group.next() {
                switch outcome {
                case let .closed(why?):
                    if lease.interrupt() {
                        interrupted = why
                        group.cancelAll()
                    }
                case .closed(nil):
                    continue
                case let .done(result):
                    group.cancelAll()
                    if let interrupted { return .failure(UnitInterrupted(reason: interrupted)) }
                    return result
                }
            }
            return .failure(CancellationError())
        }
        return try result.get()
    }
}
