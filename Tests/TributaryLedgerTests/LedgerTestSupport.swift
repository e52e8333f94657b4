import Foundation
import XCTest
import TributaryLedger

/// A date `ms` milliseconds after a fixed instant: whole milliseconds round-trip exactly.
func at(_ ms: Int64) -> Date {
    Date(timeIntervalSince1970: Double(1_700_000_000_000 + ms) / 1000)
}

func makeWorker(_ id: String, createdAt: Int64 = 0) -> WorkerRecord {
    WorkerRecord(id: id, name: "volunteer \(id)", tokenHash: "sha256:\(id)-hash",
                 createdAt: at(createdAt), lastSeenAt: at(createdAt))
}

func makeUnits(epoch: Int, count: Int, unitSize: Int = 64) -> [UnitRecord] {
    (0..<count).map { UnitRecord(epoch: epoch, index: $0, sampleStart: $0 * unitSize, sampleCount: unitSize) }
}

func makeLease(_ id: String, epoch: Int = 0, unit: Int, worker: String, baseVersion: Int = 0,
               issuedAt: Int64 = 1_000) -> LeaseRecord {
    LeaseRecord(id: id, epoch: epoch, unitIndex: unit, workerId: worker, baseVersion: baseVersion,
                issuedAt: at(issuedAt), deadline: at(issuedAt + 60_000))
}

func makeUpdate(lease: LeaseRecord, round: Int, samples: Int, flops: Double, loss: Double = 2.5,
                acceptedAt: Int64 = 5_000) -> UpdateRecord {
    UpdateRecord(leaseId: lease.id, epoch: lease.epoch, unitIndex: lease.unitIndex, workerId: lease.workerId,
                 baseVersion: lease.baseVersion, round: round, samples: samples, loss: loss, weight: 1,
                 flops: flops, bytes: 4_096, acceptedAt: at(acceptedAt))
}

func assertLedgerError<T>(_ expression: @autoclosure () throws -> T, _ expected: LedgerError,
                          file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertThrowsError(try expression(), file: file, line: line) { error in
        XCTAssertEqual(error as? LedgerError, expected, file: file, line: line)
    }
}

/// A fresh directory per test, removed afterwards.
class LedgerFileTestCase: XCTestCase {
    private(set) var directory = URL(fileURLWithPath: NSTemporaryDirectory())

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("tributary-ledger-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    func path(_ name: String) -> String {
        directory.appendingPathComponent(name).path
    }
}

// MARK: Assertions on async store calls
// XCTAssert* take synchronous autoclosures; these take async ones, so that each store call stays
// inside its assertion. Messages name the store kind the current `forEachStore` body runs on.

private func tagged(_ message: String) -> String {
    guard let kind = StoreKind.current else { return message }
    return message.isEmpty ? "[\(kind.rawValue)]" : "[\(kind.rawValue)] \(message)"
}

func expectEqual<T: Equatable>(_ expression: @autoclosure () async throws -> T, _ expected: @autoclosure () -> T,
                               _ message: String = "", file: StaticString = #filePath, line: UInt = #line) async {
    do {
        let value = try await expression()
        XCTAssertEqual(value, expected(), tagged(message), file: file, line: line)
    } catch {
        XCTFail(tagged("threw \(error) \(message)"), file: file, line: line)
    }
}

func expectNil<T>(_ expression: @autoclosure () async throws -> T?, _ message: String = "",
                  file: StaticString = #filePath, line: UInt = #line) async {
    do {
        let value = try await expression()
        XCTAssertNil(value, tagged(message), file: file, line: line)
    } catch {
        XCTFail(tagged("threw \(error) \(message)"), file: file, line: line)
    }
}

/// Fails unless the expression throws; hands the error to `check`.
func expectThrows<T>(_ expression: @autoclosure () async throws -> T, file: StaticString = #filePath, line: UInt = #line,
                     _ check: (any Error) -> Void = { _ in }) async {
    do {
        let value = try await expression()
        XCTFail(tagged("expected an error, got \(value)"), file: file, line: line)
    } catch {
        check(error)
    }
}

func expectLedgerError<T>(_ expression: @autoclosure () async throws -> T, _ expected: LedgerError,
                          file: StaticString = #filePath, line: UInt = #line) async {
    await expectThrows(try await expression(), file: file, line: line) { error in
        XCTAssertEqual(error as? LedgerError, expected, tagged(""), file: file, line: line)
    }
}

/// XCTUnwrap for a value already awaited (XCTUnwrap's autoclosure cannot await).
func unwrap<T>(_ value: T?, file: StaticString = #filePath, line: UInt = #line) throws -> T {
    try XCTUnwrap(value, tagged("unexpectedly nil"), file: file, line: line)
}
