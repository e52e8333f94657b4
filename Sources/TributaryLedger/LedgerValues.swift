import Foundation

/// Dates are stored as integer milliseconds since 1970. Converting back gives the same `Date`
/// for any date that was itself made from whole milliseconds.
enum LedgerTime {
    static func millis(_ date: Date, _ field: String) throws(LedgerError) -> Int64 {
        let ms = (date.timeIntervalSince1970 * 1000).rounded()
        // ±2^53 ms is ±285,000 years: anything beyond is a bug, and Int64(_:) would trap on it.
        guard ms.isFinite, abs(ms) < 9.0e15 else {
            throw .invalidValue("\(field) \(date) is out of range")
        }
        return Int64(ms)
    }

    static func date(_ millis: Int64) -> Date {
        Date(timeIntervalSince1970: Double(millis) / 1000)
    }
}

/// Input checks shared by the write paths.
enum LedgerCheck {
    static func nonNegative(_ value: Int, _ what: String) throws(LedgerError) {
        if value < 0 { throw .invalidValue("\(what) is \(value); it must be ≥ 0") }
    }

    static func finite(_ value: Double, _ what: String) throws(LedgerError) {
        if !value.isFinite { throw .invalidValue("\(what) is \(value); it must be finite") }
    }
}
