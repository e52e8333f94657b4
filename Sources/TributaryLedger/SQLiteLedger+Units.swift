import Foundation
internal import GRDB

extension SQLiteLedger {
    // MARK: Work units

    /// Inserts all units in one transaction through one prepared statement. Throws `.duplicate`
    /// (and inserts none) if any (epoch, index) is already recorded or repeated in `units`.
    public func insertUnits(_ units: [UnitRecord]) throws(LedgerError) {
        for unit in units {
            try LedgerCheck.nonNegative(unit.index, "unit index")
            try LedgerCheck.nonNegative(unit.sampleStart, "unit \(unit.index) sampleStart")
            try LedgerCheck.nonNegative(unit.sampleCount, "unit \(unit.index) sampleCount")
        }
        try write("insert units") { db in
            let statement = try db.makeStatement(sql: """
                INSERT INTO unit (\(UnitRecord.columns)) VALUES (?, ?, ?, ?, ?)
                """)
            for unit in units {
                do {
                    try statement.execute(arguments: [unit.epoch, unit.index, unit.sampleStart, unit.sampleCount,
                                                      unit.state.rawValue])
                } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_PRIMARYKEY {
                    throw LedgerError.duplicate(kind: "unit", key: "epoch \(unit.epoch) index \(unit.index)")
                }
            }
        }
    }

    public func unit(epoch: Int, index: Int) throws(LedgerError) -> UnitRecord? {
        try read("read unit") { db in try SQLiteLedger.fetchUnit(db, epoch: epoch, index: index) }
    }

    /// The epoch's units in `state` (all units when nil), by index.
    public func units(epoch: Int, state: UnitState?) throws(LedgerError) -> [UnitRecord] {
        try read("read units") { db in
            let rows: [Row]
            if let state {
                rows = try Row.fetchAll(db, sql: """
                    SELECT \(UnitRecord.columns) FROM unit WHERE epoch = ? AND state = ? ORDER BY unitIndex
                    """, arguments: [epoch, state.rawValue])
            } else {
                rows = try Row.fetchAll(db, sql: """
                    SELECT \(UnitRecord.columns) FROM unit WHERE epoch = ? ORDER BY unitIndex
                    """, arguments: [epoch])
            }
            return try rows.map(UnitRecord.init(row:))
        }
    }

    /// Units of the epoch per state; every state is present, 0 when it has none.
    public func unitCounts(epoch: Int) throws(LedgerError) -> [UnitState: Int] {
        try read("count units") { db in
            var counts = Dictionary(uniqueKeysWithValues: UnitState.allCases.map { ($0, 0) })
            let rows = try Row.fetchAll(db, sql: "SELECT state, COUNT(*) FROM unit WHERE epoch = ? GROUP BY state",
                                        arguments: [epoch])
            for row in rows {
                let raw: String = try row.decode(atIndex: 0)
                guard let state = UnitState(rawValue: raw) else {
                    throw LedgerError.corruptRow(table: "unit", detail: "unknown state '\(raw)'")
                }
                counts[state] = try row.decode(atIndex: 1)
            }
            return counts
        }
    }

    static func fetchUnit(_ db: Database, epoch: Int, index: Int) throws -> UnitRecord? {
        try Row.fetchOne(db, sql: "SELECT \(UnitRecord.columns) FROM unit WHERE epoch = ? AND unitIndex = ?",
                         arguments: [epoch, index])
            .map(UnitRecord.init(row:))
    }

    // MARK: Leases

    /// Records a lease and, if it is active, marks its unit leased, in one transaction.
    /// Refuses a lease on a done unit (`.unitAlreadyDone`), an unknown unit or worker, or a reused id.
    public func insertLease(_ lease: LeaseRecord) throws(LedgerError) {
        let issuedAt = try LedgerTime.millis(lease.issuedAt, "lease issuedAt")
        let deadline = try LedgerTime.millis(lease.deadline, "lease deadline")
        try write("insert lease") { db in
            guard let unit = try SQLiteLedger.fetchUnit(db, epoch: lease.epoch, index: lease.unitIndex) else {
                throw LedgerError.unknownUnit(epoch: lease.epoch, index: lease.unitIndex)
            }
            if unit.state == .done {
                throw LedgerError.unitAlreadyDone(epoch: lease.epoch, index: lease.unitIndex)
            }
            if try Bool.fetchOne(db, sql: "SELECT 1 FROM worker WHERE id = ?", arguments: [lease.workerId]) != true {
                throw LedgerError.unknownWorker(id: lease.workerId)
            }
            if try Bool.fetchOne(db, sql: "SELECT 1 FROM lease WHERE id = ?", arguments: [lease.id]) == true {
                throw LedgerError.duplicate(kind: "lease", key: lease.id)
            }
            try db.execute(sql: """
                INSERT INTO lease (\(LeaseRecord.columns)) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [lease.id, lease.epoch, lease.unitIndex, lease.workerId, lease.baseVersion,
                                 issuedAt, deadline, lease.state.rawValue])
            if lease.state == .active {
                try db.execute(sql: "UPDATE unit SET state = 'leased' WHERE epoch = ? AND unitIndex = ?",
                               arguments: [lease.epoch, lease.unitIndex])
            }
        }
    }

    public func lease(id: String) throws(LedgerError) -> LeaseRecord? {
        try read("read lease") { db in try SQLiteLedger.fetchLease(db, id: id) }
    }

    /// The leases of one unit, oldest first (a unit may be leased again after a lease expires).
    public func leases(epoch: Int, unitIndex: Int) throws(LedgerError) -> [LeaseRecord] {
        try read("read leases") { db in
            try Row.fetchAll(db, sql: """
                SELECT \(LeaseRecord.columns) FROM lease WHERE epoch = ? AND unitIndex = ? ORDER BY issuedAt, rowid
                """, arguments: [epoch, unitIndex])
                .map(LeaseRecord.init(row:))
        }
    }

    /// All active leases, by deadline: what the coordinator must watch after a restart or sweep.
    public func activeLeases() throws(LedgerError) -> [LeaseRecord] {
        try read("read leases") { db in
            try Row.fetchAll(db, sql: """
                SELECT \(LeaseRecord.columns) FROM lease WHERE state = 'active' ORDER BY deadline, rowid
                """)
                .map(LeaseRecord.init(row:))
        }
    }

    /// Changes an active lease's state and, when given, its deadline (`.active` with a new deadline
    /// renews it). `.expired` and `.released` put the unit back to pending unless it is done or
    /// another lease on it is still active. A lease that has ended cannot change state again
    /// (`.leaseNotActive`); setting the state it already has is a no-op.
    public func setLeaseState(id: String, _ state: LeaseState, deadline: Date? = nil) throws(LedgerError) {
        let deadlineMillis: Int64? = if let deadline { try LedgerTime.millis(deadline, "lease deadline") } else { nil }
        try write("set lease state") { db in
            guard let lease = try SQLiteLedger.fetchLease(db, id: id) else { throw LedgerError.unknownLease(id: id) }
            if lease.state != .active {
                if lease.state == state { return }
                throw LedgerError.leaseNotActive(id: id, state: lease.state)
            }
            try db.execute(sql: "UPDATE lease SET state = ?, deadline = coalesce(?, deadline) WHERE id = ?",
                           arguments: [state.rawValue, deadlineMillis, id])
            if state == .expired || state == .released {
                try db.execute(sql: """
                    UPDATE unit SET state = 'pending'
                    WHERE epoch = ? AND unitIndex = ? AND state = 'leased'
                      AND NOT EXISTS (SELECT 1 FROM lease
                                      WHERE lease.epoch = unit.epoch AND lease.unitIndex = unit.unitIndex
                                        AND lease.state = 'active')
                    """, arguments: [lease.epoch, lease.unitIndex])
            }
        }
    }

    static func fetchLease(_ db: Database, id: String) throws -> LeaseRecord? {
        try Row.fetchOne(db, sql: "SELECT \(LeaseRecord.columns) FROM lease WHERE id = ?", arguments: [id])
            .map(LeaseRecord.init(row:))
    }
}
