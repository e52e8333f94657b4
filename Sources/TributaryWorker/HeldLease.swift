import Foundation
import NIOCore
import Synchronization

/// The lease a worker holds: its deadline as the coordinator last gave it (at the grant or
/// the latest renewal), kept on this machine's monotonic clock. A deadline is the
/// coordinator's wall-clock time, and a volunteer's clock may be tens of seconds off; with
/// leases of a few seconds that would make the worker renew too late, so the time left is
/// measured against the coordinator's own clock (the answer's `Date` header) once, when the
/// deadline arrives, and counted down locally from there.
final class HeldLease: Sendable {
    let id: String
    private let state: Mutex<State>

    private struct State {
        var deadline: ContinuousClock.Instant
        var renewals = 0
        var phase = Phase.working
    }

    enum Phase: Sendable, Equatable {
        /// Downloading, computing, uploading: the heartbeat may abandon the unit.
        case working
        /// The commit is on its way: only its answer decides the unit's fate now.
        case committing
        /// The lease is lost (a renewal was refused, or its deadline passed unrenewed).
        case abandoned
        /// The worker gives the unit back: the volunteer paused it, or the machine is in use.
        case interrupted
    }

    /// How far past the deadline as estimated here the lease may still be alive: the
    /// coordinator's clock is known to a second or so (`remaining`), and the answer took a
    /// while to arrive.
    static let margin: Duration = .seconds(2)
    /// Renewals at most this often, however little time is left.
    static let minimumBeat: Duration = .milliseconds(500)
    /// A request under the lease gets at least this long (a lease nearly over still
    /// deserves a real attempt at its commit) and at most the client's usual 60 s.
    static let minimumRequestTimeout: Duration = .seconds(5)
    static let maximumRequestTimeout: Duration = .seconds(60)
    /// A renewal that takes longer than this is retried at the next beat instead.
    static let maximumRenewalTimeout: Duration = .seconds(5)
    /// No span computed from a coordinator's deadline is taken beyond this (a hostile or
    /// broken deadline must not overflow a `Duration`).
    static let longestSpan: Double = 86_400

    init(id: String, deadline: Date, coordinatorDate: Date?, localNow: Date = Date(),
         at instant: ContinuousClock.Instant = .now) {
        self.id = id
        let left = Self.remaining(until: deadline, coordinatorDate: coordinatorDate, localNow: localNow)
        state = Mutex(State(deadline: instant.advanced(by: left)))
    }

    /// Time from the answer's arrival to `deadline`, on the coordinator's clock when its
    /// `Date` header is known. The header names a whole second, and a server may cache it
    /// for a second (Hummingbird does), so the coordinator's clock read 0 to 2 s past it:
    /// one second past is taken, within a second of the truth either way.
    static func remaining(until deadline: Date, coordinatorDate: Date?, localNow: Date) -> Duration {
        let now = coordinatorDate.map { $0.addingTimeInterval(1) } ?? localNow
        let seconds = deadline.timeIntervalSince(now)
        guard seconds.isFinite else { return .zero }
        return .seconds(min(longestSpan, max(-longestSpan, seconds)))
    }

    /// A renewal's answer: the new deadline.
    func extend(to deadline: Date, coordinatorDate: Date?, localNow: Date = Date(),
                at instant: ContinuousClock.Instant = .now) {
        let left = Self.remaining(until: deadline, coordinatorDate: coordinatorDate, localNow: localNow)
        state.withLock {
            $0.deadline = instant.advanced(by: left)
            $0.renewals += 1
        }
    }

    var deadline: ContinuousClock.Instant { state.withLock { $0.deadline } }
    var renewals: Int { state.withLock { $0.renewals } }
    var phase: Phase { state.withLock { $0.phase } }

    /// Until the deadline (negative once it passed).
    func timeLeft(at instant: ContinuousClock.Instant = .now) -> Duration { instant.duration(to: deadline) }

    /// Whether the lease has surely ended: its deadline and the margin passed with no renewal.
    func isPastDeadline(at instant: ContinuousClock.Instant = .now) -> Bool { timeLeft(at: instant) < .zero - Self.margin }

    /// The wait before the next renewal: a third of the time left, so that two more
    /// attempts fit before the deadline if one fails; never less than `minimumBeat`.
    func nextBeat(at instant: ContinuousClock.Instant = .now) -> Duration {
        max(Self.minimumBeat, timeLeft(at: instant) / 3)
    }

    /// The timeout of a request made under the lease (the commit): until the deadline plus
    /// the margin, within `minimumRequestTimeout`…`maximumRequestTimeout`. A request that
    /// outlives the lease could only be refused.
    func requestTimeout(at instant: ContinuousClock.Instant = .now) -> TimeAmount {
        Self.timeAmount(min(Self.maximumRequestTimeout, max(Self.minimumRequestTimeout, timeLeft(at: instant) + Self.margin)))
    }

    /// A renewal's timeout: the time left plus the margin, within 1…5 s.
    func renewalTimeout(at instant: ContinuousClock.Instant = .now) -> TimeAmount {
        Self.timeAmount(min(Self.maximumRenewalTimeout, max(.seconds(1), timeLeft(at: instant) + Self.margin)))
    }

    /// The unit is about to commit; false if the lease was already abandoned.
    func beginCommit() -> Bool {
        state.withLock {
            guard $0.phase == .working else { return $0.phase == .committing }
            $0.phase = .committing
            return true
        }
    }

    /// The lease is lost; false if the unit is already committing (its answer decides).
    func abandon() -> Bool {
        state.withLock {
            guard $0.phase != .committing else { return false }
            $0.phase = .abandoned
            return true
        }
    }

    /// The worker gives the unit back; false if it is already committing or lost.
    func interrupt() -> Bool {
        state.withLock {
            guard $0.phase == .working else { return false }
            $0.phase = .interrupted
            return true
        }
    }

    static func timeAmount(_ d: Duration) -> TimeAmount {
        let (seconds, attoseconds) = d.components
        return .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}

/// An HTTP `Date` header (RFC 9110's IMF-fixdate, "Sun, 06 Nov 1994 08:49:37 GMT"), the
/// only form a current server sends; anything else reads as unknown.
enum HTTPDate {
    static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    static func parse(_ text: String) -> Date? {
        let parts = text.split(separator: " ")
        guard parts.count == 6, parts[5] == "GMT", let day = Int(parts[1]), let year = Int(parts[3]),
              let month = months.firstIndex(of: String(parts[2])) else { return nil }
        let clock = parts[4].split(separator: ":").compactMap { Int($0) }
        guard clock.count == 3, (1...31).contains(day), (1970...9999).contains(year), (0...23).contains(clock[0]),
              (0...59).contains(clock[1]), (0...60).contains(clock[2]) else { return nil }
        let days = daysSinceEpoch(year: year, month: month + 1, day: day)
        return Date(timeIntervalSince1970: Double(days * 86_400 + clock[0] * 3_600 + clock[1] * 60 + clock[2]))
    }

    /// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's days_from_civil):
    /// plain arithmetic, so no calendar or formatter object is shared between tasks.
    static func daysSinceEpoch(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * ((month + 9) % 12) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }
}
