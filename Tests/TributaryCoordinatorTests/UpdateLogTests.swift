import Foundation
import XCTest
@testable import TributaryCoordinator

/// The update log on its own: entries read back as written, a torn tail (a crash in the
/// middle of an append) is cut off before the next append, damage ends a segment's reading,
/// and pruning deletes whole rounds.
final class UpdateLogTests: XCTestCase {
    var dir = ""
    override func setUp() {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("tributary-log-\(UUID().uuidString)").path
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func entry(_ i: Int, round: Int) -> LoggedUpdate {
        LoggedUpdate(leaseID: "l-\(i)", round: round, weight: Double(i) / 3,
                     bodies: ["embeddings": (0..<(100 + i)).map { UInt8(($0 * 7 + i) & 0xFF) }, "head": [UInt8(i)]])
    }

    func testEntriesReadBackAsWrittenInOrder() throws {
        let log = try UpdateLog(directory: dir)
        for i in 0..<5 { try log.append(entry(i, round: 1 + i / 3)) }
        XCTAssertEqual(log.entries(round: 1), (0..<3).map { entry($0, round: 1) })
        XCTAssertEqual(log.entries(round: 2), (3..<5).map { entry($0, round: 2) })
        XCTAssertEqual(log.rounds(), [1, 2])
        XCTAssertEqual(log.leaseIDs(round: 2), ["l-3", "l-4"])
        // Another process (a restart) reads the same.
        XCTAssertEqual(try UpdateLog(directory: dir).entries(round: 1).count, 3)
    }

    func testATornTailIsCutOffAndTheNextAppendFollowsAWholeEntry() throws {
        var log = try UpdateLog(directory: dir)
        try log.append(entry(0, round: 4))
        try log.append(entry(1, round: 4))
        let path = "\(dir)/\(UpdateLog.segmentName(4))"
        let whole = try Data(contentsOf: URL(fileURLWithPath: path))
        log = try UpdateLog(directory: dir)  // as after a crash
        try whole.prefix(whole.count - 7).write(to: URL(fileURLWithPath: path))  // the second append torn
        XCTAssertEqual(log.entries(round: 4).map(\.leaseID), ["l-0"])
        try log.append(entry(2, round: 4))
        XCTAssertEqual(log.entries(round: 4).map(\.leaseID), ["l-0", "l-2"], "the torn bytes are gone, not in the way")
    }

    func testADamagedByteEndsTheSegmentsReading() throws {
        let log = try UpdateLog(directory: dir)
        for i in 0..<3 { try log.append(entry(i, round: 7)) }
        let path = "\(dir)/\(UpdateLog.segmentName(7))"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        let second = bytes.count / 2
        bytes[second] ^= 0x01
        try bytes.write(to: URL(fileURLWithPath: path))
        let read = log.entries(round: 7).map(\.leaseID)
        XCTAssertFalse(read.contains("l-1") && read.contains("l-2"), "a damaged entry is never returned: \(read)")
        XCTAssertEqual(read.first, "l-0")
    }

    func testPruneDeletesWholeRoundsUpToTheCheckpoint() throws {
        let log = try UpdateLog(directory: dir)
        for r in 1...6 { try log.append(entry(r, round: r)) }
        log.prune(throughRound: 4)
        XCTAssertEqual(log.rounds(), [5, 6])
        XCTAssertEqual(log.entries(round: 3), [])
        try log.append(entry(9, round: 6))
        XCTAssertEqual(log.entries(round: 6).count, 2)
        XCTAssertGreaterThan(log.byteCount(), 0)
    }
}
