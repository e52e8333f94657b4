import Foundation
import XCTest
import TributaryLedger

/// The file itself: creation, reopening, durability settings, and refusing files that are not ours.
final class LedgerStorageTests: LedgerFileTestCase {
    func testReopenedFileLedgerKeepsEverything() throws {
        let file = path("ledger.sqlite")
        let lease = makeLease("L1", unit: 2, worker: "w1")
        let update = makeUpdate(lease: lease, round: 1, samples: 64, flops: 3.0e9)
        let round = RoundRecord(round: 1, version: 1, openedAt: at(100), closedAt: at(9_100), updates: 1,
                                samples: 64, meanLoss: 2.25)
        let checkpoint = CheckpointRecord(version: 1, round: 1, path: "checkpoints/v1.safetensors", createdAt: at(9_500))
        do {
            let ledger = try Ledger(path: file)
            try ledger.setMeta("job.name", "shakespeare-char")
            try ledger.setMeta("model.version", "0")
            try ledger.setMeta("model.version", "1")  // overwrite, not a second row
            try ledger.insertWorker(makeWorker("w1", createdAt: 10))
            try ledger.insertUnits(makeUnits(epoch: 0, count: 10))
            try ledger.insertLease(lease)
            try ledger.insertLease(makeLease("L2", unit: 5, worker: "w1"))
            try ledger.recordAcceptedUpdate(update)
            try ledger.recordRejectedUpdate(workerId: "w1", reason: "stale", at: at(7_000))
            try ledger.recordRound(round)
            try ledger.recordCheckpoint(checkpoint)
        }  // the ledger is dropped here: its connection closes

        let reopened = try Ledger(path: file)
        XCTAssertEqual(try reopened.allMeta(), ["job.name": "shakespeare-char", "model.version": "1"])
        XCTAssertEqual(try reopened.meta("model.version"), "1")
        XCTAssertNil(try reopened.meta("absent"))
        var expectedWorker = makeWorker("w1", createdAt: 10)
        expectedWorker.samples = 64
        expectedWorker.flops = 3.0e9
        expectedWorker.acceptedUpdates = 1
        expectedWorker.rejectedUpdates = 1
        XCTAssertEqual(try reopened.workers(), [expectedWorker])
        XCTAssertEqual(try reopened.unitCounts(epoch: 0), [.pending: 8, .leased: 1, .done: 1])
        XCTAssertEqual(try reopened.unit(epoch: 0, index: 2),
                       UnitRecord(epoch: 0, index: 2, sampleStart: 128, sampleCount: 64, state: .done))
        var committed = lease
        committed.state = .committed
        XCTAssertEqual(try reopened.lease(id: "L1"), committed)
        XCTAssertEqual(try reopened.lease(id: "L2")?.state, .active)
        XCTAssertEqual(try reopened.updates(round: 1), [update])
        XCTAssertEqual(try reopened.rejectionCounts(), ["stale": 1])
        XCTAssertEqual(try reopened.lastRound(), round)
        XCTAssertEqual(try reopened.latestCheckpoint(), checkpoint)
    }

    func testDatesRoundTripToTheMillisecond() throws {
        let ledger = try Ledger.inMemory()
        // 0.1234567 s after the instant: stored as 123 ms.
        let precise = Date(timeIntervalSince1970: 1_700_000_000.1234567)
        var worker = makeWorker("w1")
        worker.createdAt = precise
        try ledger.insertWorker(worker)
        let stored = try XCTUnwrap(ledger.worker(id: "w1")).createdAt
        XCTAssertEqual(stored.timeIntervalSince1970, 1_700_000_000.123, accuracy: 1e-6)
        XCTAssertEqual(stored.timeIntervalSince(precise), -0.0004567, accuracy: 1e-6)
    }

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

    func testInMemoryLedgerStartsEmpty() throws {
        let ledger = try Ledger.inMemory()
        XCTAssertEqual(try ledger.workers(), [])
        XCTAssertEqual(try ledger.unitCounts(epoch: 0), [.pending: 0, .leased: 0, .done: 0])
        XCTAssertEqual(try ledger.units(epoch: 0, state: nil), [])
        XCTAssertNil(try ledger.lastRound())
        XCTAssertEqual(try ledger.rounds(limit: 10), [])
        XCTAssertNil(try ledger.latestCheckpoint())
        XCTAssertEqual(try ledger.rejectionCounts(), [:])
        XCTAssertEqual(try ledger.recoverAfterRestart(checkpointedRound: 0),
                       RecoveryReport(droppedUpdates: 0, requeuedUnits: 0, expiredLeases: 0, droppedRounds: 0))
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
