import Foundation
internal import PostgresNIO

extension PostgresLedger {
    // MARK: Work units

    /// Inserts all units in one transaction and one statement (arrays unnested on the server: a
    /// round trip per row would make 50,000 units take seconds). Throws `.duplicate` for the first
    /// unit, in `units` order, whose (epoch, index) is already recorded or repeats an earlier one,
    /// as SQLite's row-by-row insert does, and inserts none.
    public func insertUnits(_ units: [UnitRecord]) async throws(LedgerError) {
        for unit in units {
            try LedgerCheck.nonNegative(unit.index, "unit index")
            try LedgerCheck.nonNegative(unit.sampleStart, "unit \(unit.index) sampleStart")
            try LedgerCheck.nonNegative(unit.sampleCount, "unit \(unit.index) sampleCount")
        }
        if units.isEmpty { return }
        // Each column travels as one bound text parameter in PostgreSQL's array syntax, cast to an
        // array on the server: PostgresNIO's element-by-element array encoding takes seconds for
        // 50,000 units in a debug build. The texts hold only integers and state names.
        let epochs = Self.arrayText(units.map(\.epoch)), indices = Self.arrayText(units.map(\.index))
        let starts = Self.arrayText(units.map(\.sampleStart)), counts = Self.arrayText(units.map(\.sampleCount))
        let states = Self.arrayText(units.map(\.state.rawValue))
        var seen = Set<[Int]>(minimumCapacity: units.count)
        let firstRepeat = units.firstIndex { !seen.insert([$0.epoch, $0.index]).inserted }
        try await write("insert units") { db in
            // WITH ORDINALITY numbers the input from 1, so the earliest clash can be named.
            let stored = try await db.one("""
                SELECT min(t.ord) FROM unnest(\(epochs)::BIGINT[], \(indices)::BIGINT[]) WITH ORDINALITY AS t(epoch, idx, ord)
                JOIN unit u ON u.epoch = t.epoch AND u.unitIndex = t.idx
                """)?.decode(Int?.self).map { $0 - 1 }
            if let clash = [stored, firstRepeat].compactMap({ $0 }).min() {
                throw LedgerError.duplicate(kind: "unit", key: "epoch \(units[clash].epoch) index \(units[clash].index)")
            }
            try await db.execute("""
                INSERT INTO unit (\(unescaped: UnitRecord.columns))
                SELECT * FROM unnest(\(epochs)::BIGINT[], \(indices)::BIGINT[], \(starts)::BIGINT[], \(counts)::BIGINT[],
                                     \(states)::TEXT[])
                """)
        }
    }

    /// `{1,2,3}`: the text form of an array, for values that need no quoting (integers, state names).
    static func arrayText<Value: CustomStringConvertible>(_ values: [Value]) -> String {
        "{" + values.map(\.description).joined(separator: ",") + "}"
    }

    public func unit(epoch: Int, index: Int) async throws(LedgerError) -> UnitRecord? {
        try await read("read unit") { db in try await Self.fetchUnit(db, epoch: epoch, index: index) }
    }

    public func units(epoch: Int, state: UnitState?) async throws(LedgerError) -> [UnitRecord] {
        try await read("read units") { db in
            let rows = if let state {
                try await db.all("""
                    SELECT \(unescaped: UnitRecord.columns) FROM unit WHERE epoch = \(epoch) AND state = \(state.rawValue)
                    ORDER BY unitIndex
                    """)
            } else {
                try await db.all("SELECT \(unescaped: UnitRecord.columns) FROM unit WHERE epoch = \(epoch) ORDER BY unitIndex")
            }
            return try rows.map(UnitRecord.init(postgres:))
        }
    }

    public func unitCounts(epoch: Int) async throws(LedgerError) -> [UnitState: Int] {
        try await read("count units") { db in
            var counts = Dictionary(uniqueKeysWithValues: UnitState.allCases.map { ($0, 0) })
            for row in try await db.all("SELECT state, COUNT(*) FROM unit WHERE epoch = \(epoch) GROUP BY state") {
                let (raw, count) = try row.decode((String, Int).self)
                let state: UnitState = try decodeLedgerState(raw, table: "unit")
                counts[state] = count
            }
            return counts
        }
    }

    static func fetchUnit(_ db: PostgresSession, epoch: Int, index: Int) async throws -> UnitRecord? {
        try await db.one("""
            SELECT \(unescaped: UnitRecord.columns) FROM unit WHERE epoch = \(epoch) AND unitIndex = \(index)
            """).map(UnitRecord.init(postgres:))
    }

    // MARK: Leases

    public func insertLease(_ lease: LeaseRecord) async throws(LedgerError) {
        let issuedAt = try LedgerTime.millis(lease.issuedAt, "lease issuedAt")
        let deadline = try LedgerTime.millis(lease.deadline, "lease deadline")
        try await write("insert lease") { db in
            guard let unit = try await Self.fetchUnit(db, epoch: lease.epoch, index: lease.unitIndex) else {
                throw LedgerError.unknownUnit(epoch: lease.epoch, index: lease.unitIndex)
            }
            if unit.state == .done {
                throw LedgerError.unitAlreadyDone(epoch: lease.epoch, index: lease.unitIndex)
            }
            if try await !db.exists("SELECT 1 FROM worker WHERE id = \(lease.workerId)") {
                throw LedgerError.unknownWorker(id: lease.workerId)
            }
            if try await db.exists("SELECT 1 FROM lease WHERE id = \(lease.id)") {
                throw LedgerError.duplicate(kind: "lease", key: lease.id)
            }
            try await db.execute("""
                INSERT INTO lease (\(unescaped: LeaseRecord.columns))
                VALUES (\(lease.id), \(lease.epoch), \(lease.unitIndex), \(lease.workerId), \(lease.baseVersion),
                        \(issuedAt), \(deadline), \(lease.state.rawValue))
                """)
            if lease.state == .active {
                try await db.execute("""
                    UPDATE unit SET state = 'leased' WHERE epoch = \(lease.epoch) AND unitIndex = \(lease.unitIndex)
                    """)
            }
        }
    }

    public func lease(id: String) async throws(LedgerError) -> LeaseRecord? {
        try await read("read lease") { db in try await Self.fetchLease(db, id: id) }
    }

    public func leases(epoch: Int, unitIndex: Int) async throws(LedgerError) -> [LeaseRecord] {
        try await read("read leases") { db in
            try await db.all("""
                SELECT \(unescaped: LeaseRecord.columns) FROM lease WHERE epoch = \(epoch) AND unitIndex = \(unitIndex)
                ORDER BY issuedAt, seq
                """).map(LeaseRecord.init(postgres:))
        }
    }

    public func activeLeases() async throws(LedgerError) -> [LeaseRecord] {
        try await read("read leases") { db in
            try await db.all("""
                SELECT \(unescaped: LeaseRecord.columns) FROM lease WHERE state = 'active' ORDER BY deadline, seq
                """).map(LeaseRecord.init(postgres:))
        }
    }

    public func setLeaseState(id: String, _ state: LeaseState, deadline: Date? = nil) async throws(LedgerError) {
        let deadlineMillis: Int64? = if let deadline { try LedgerTime.millis(deadline, "lease deadline") } else { nil }
        try await write("set lease state") { db in
            guard let lease = try await Self.fetchLease(db, id: id) else { throw LedgerError.unknownLease(id: id) }
            if lease.state != .active {
                if lease.state == state { return }
                throw LedgerError.leaseNotActive(id: id, state: lease.state)
            }
            try await db.execute("""
                UPDATE lease SET state = \(state.rawValue), deadline = coalesce(\(deadlineMillis)::BIGINT, deadline)
                WHERE id = \(id)
                """)
            if state == .expired || state == .released {
                try await db.execute("""
                    UPDATE unit SET state = 'pending'
                    WHERE epoch = \(lease.epoch) AND unitIndex = \(lease.unitIndex) AND state = 'leased'
                      AND NOT EXISTS (SELECT 1 FROM lease
                                      WHERE lease.epoch = unit.epoch AND lease.unitIndex = unit.unitIndex
                                        AND lease.state = 'active')
                    """)
            }
        }
    }

    static func fetchLease(_ db: PostgresSession, id: String) async throws -> LeaseRecord? {
        try await db.one("SELECT \(unescaped: LeaseRecord.columns) FROM lease WHERE id = \(id)")
            .map(LeaseRecord.init(postgres:))
    }
}
