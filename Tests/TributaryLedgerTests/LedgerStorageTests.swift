import Foundation
import XCTest
import TributaryLedger

/// SQLite only: the file itself, its durability settings, and refusing files that are not ours.
/// (What every store must do, reopening included, is in LedgerPersistenceTests.)
final class LedgerStorageTests: LedgerFileTestCase {
    func testDurabilitySettingsAndVisibilityAcrossInstances() throws {
        let file = path("ledger.sqlite")
        let first = try Ledger(path: file)
        XCTAssertEqual(try first.durability(), LedgerDurability(journalMode: "wal", synchronous: 2))
        try first.insertWorker(makeWorker("w1"))
        try first.setMeta("epoch", "3")

        // A second instance on the same file, while the first is still open, sees committed data.
        let second = try Ledger(path: file)
        XCTAssertEqual(try second.durability(), LedgerDurability(journalMode: "wal", synchronous: 2))
        XCTAssertEqual(try second.worker(id: "w1")?.name, "volunteer w1")
        XCTAssertEqual(try second.meta("epoch"), "3")
        try second.insertUnits(makeUnits(epoch: 3, count: 7))
        XCTAssertEqual(try first.unitCounts(epoch: 3)[.pending], 7)
        XCTAssertTrue(FileManager.default.fileExists(atPath: file + "-wal"))

        let memory = try Ledger.inMemory()
        XCTAssertEqual(try memory.durability().synchronous, 2)
        XCTAssertEqual(memory.location, ":memory:")
    }

    func testEmptyFileBecomesALedger() throws {
        let file = path("touched.sqlite")
        XCTAssertTrue(FileManager.default.createFile(atPath: file, contents: Data()))
        let ledger = try Ledger(path: file)
        try ledger.setMeta("k", "v")
        XCTAssertEqual(try Ledger(path: file).meta("k"), "v")
    }

    func testRandomBytesAreRefusedAndLeftAlone() throws {
        let file = path("random.bin")
        var generator = SplitMix64(seed: 42)
        let bytes = Data((0..<8_192).map { _ in UInt8(truncatingIfNeeded: generator.next()) })
        try bytes.write(to: URL(fileURLWithPath: file))
        assertLedgerError(try Ledger(path: file), .notALedger(path: file, reason: "not a SQLite database"))
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: file)), bytes)
    }

    func testForeignSQLiteDatabaseIsRefusedAndLeftAlone() throws {
        let file = path("notes.sqlite")
        let bytes = foreignSQLiteDatabase()
        try bytes.write(to: URL(fileURLWithPath: file))
        XCTAssertThrowsError(try Ledger(path: file)) { error in
            guard case let .notALedger(path, reason)? = error as? LedgerError else {
                return XCTFail("expected notALedger, got \(error)")
            }
            XCTAssertEqual(path, file)
            XCTAssertEqual(reason, "SQLite database with unrelated tables: notes")
            XCTAssertEqual(String(describing: error),
                           "\(file) is not a Tributary ledger (SQLite database with unrelated tables: notes); "
                           + "give the coordinator its own data directory or move the file away")
        }
        // Not converted to WAL, not migrated: byte for byte what the other program wrote.
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: file)), bytes)
        XCTAssertFalse(FileManager.default.fileExists(atPath: file + "-wal"))
    }

    func testNewerSchemaAndOtherApplicationAreRefused() throws {
        let file = path("ledger.sqlite")
        do {
            let ledger = try Ledger(path: file)
            try ledger.insertWorker(makeWorker("w1"))
        }
        // The last connection checkpointed the WAL into the file on close.
        XCTAssertFalse(FileManager.default.fileExists(atPath: file + "-wal"))

        // SQLite header: user_version is the big-endian Int32 at offset 60, application_id at 68.
        try patchHeader(file, offset: 60, value: 2)
        assertLedgerError(try Ledger(path: file), .newerSchema(path: file, found: 2, supported: 1))
        try patchHeader(file, offset: 60, value: 1)
        XCTAssertEqual(try Ledger(path: file).worker(id: "w1")?.id, "w1")

        try patchHeader(file, offset: 68, value: 0x1234_5678)
        assertLedgerError(try Ledger(path: file),
                          .notALedger(path: file, reason: "SQLite database of another application, application_id 0x12345678"))
    }

    func testUnopenablePathIsAClearError() throws {
        let file = path("missing-directory/ledger.sqlite")
        XCTAssertThrowsError(try Ledger(path: file)) { error in
            guard case .cannotOpen(let path, _)? = error as? LedgerError else {
                return XCTFail("expected cannotOpen, got \(error)")
            }
            XCTAssertEqual(path, file)
            XCTAssertFalse(String(describing: error).contains("\n"))
        }
    }

    private func patchHeader(_ file: String, offset: Int, value: UInt32) throws {
        let url = URL(fileURLWithPath: file)
        var data = try Data(contentsOf: url)
        withUnsafeBytes(of: value.bigEndian) { data.replaceSubrange(offset..<offset + 4, with: $0) }
        try data.write(to: url)
    }
}

/// A 2-page SQLite database written by another program (Python's sqlite3, page size 512) with a
/// single table `notes (id INTEGER PRIMARY KEY, body TEXT)` holding one row; only the non-zero
/// byte runs are listed.
private func foreignSQLiteDatabase() -> Data {
    let runs: [(Int, String)] = [
        (0x000, "53514c69746520666f726d617420330002000101004020200000000200000002"),
        (0x02b, "0100000004"),
        (0x03b, "01"),
        (0x05f, "02002e63010d0000000101b20001b2"),
        (0x1b2, "4c010617171701797461626c656e6f7465736e6f74657302435245415445205441424c45206e6f74657320"
            + "28696420494e5445474552205052494d415259204b45592c20626f64792054455854290d0000000101f60001f6"),
        (0x3f6, "080103001768656c6c6f"),
    ]
    var bytes = [UInt8](repeating: 0, count: 1_024)
    for (offset, hex) in runs {
        var position = offset
        var digits = hex.makeIterator()
        while let high = digits.next(), let low = digits.next() {
            bytes[position] = UInt8(String([high, low]), radix: 16) ?? 0
            position += 1
        }
    }
    return Data(bytes)
}

/// Deterministic bytes for the not-a-database test.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
