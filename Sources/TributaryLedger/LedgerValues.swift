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

    /// A worker row's values, checked; returns its two times in milliseconds.
    static func worker(_ worker: WorkerRecord) throws(LedgerError) -> (createdAt: Int64, lastSeenAt: Int64) {
        try nonNegative(worker.samples, "worker samples")
        try nonNegative(worker.acceptedUpdates, "worker acceptedUpdates")
        try nonNegative(worker.rejectedUpdates, "worker rejectedUpdates")
        try finite(worker.flops, "worker flops")
        return (try LedgerTime.millis(worker.createdAt, "worker createdAt"),
                try LedgerTime.millis(worker.lastSeenAt, "worker lastSeenAt"))
    }

    /// An accepted update's values, checked; returns its time in milliseconds.
    static func update(_ update: UpdateRecord) throws(LedgerError) -> Int64 {
        try nonNegative(update.samples, "update samples")
        try nonNegative(update.bytes, "update bytes")
        try finite(update.loss, "update loss")
        try finite(update.weight, "update weight")
        try finite(update.flops, "update flops")
        if update.flops < 0 { throw .invalidValue("update flops is \(update.flops); it must be ≥ 0") }
        return try LedgerTime.millis(update.acceptedAt, "update acceptedAt")
    }

    /// The unit an update is for may still take one. Checked inside the accepting transaction.
    static func notDone(_ unit: UnitRecord, _ update: UpdateRecord) throws(LedgerError) {
        if unit.state == .done { throw .unitAlreadyDone(epoch: update.epoch, index: update.unitIndex) }
    }

    /// The lease an update names is for that unit and that worker.
    static func matches(_ lease: LeaseRecord, _ update: UpdateRecord) throws(LedgerError) {
        if lease.epoch != update.epoch || lease.unitIndex != update.unitIndex {
            throw .leaseMismatch(
                leaseId: lease.id,
                detail: "it is for unit \(lease.unitIndex) of epoch \(lease.epoch), the update for unit \(update.unitIndex) of epoch \(update.epoch)")
        }
        if lease.workerId != update.workerId {
            throw .leaseMismatch(leaseId: lease.id, detail: "it was issued to worker '\(lease.workerId)', not '\(update.workerId)'")
        }
    }
}
