import Foundation
import XCTest
@testable import TributaryLedger

/// A ledger call that never answers must not hold the coordinator forever.
final class PostgresDeadlineTests: XCTestCase {
    func testAnswerInTimeIsReturned() async throws {
        let value = try await PostgresDeadline.run(seconds: 5) { 42 }
        XCTAssertEqual(value, 42)
    }

    func testACallThatIgnoresCancellationStillEndsAtTheDeadline() async throws {
        let clock = ContinuousClock()
        let start = clock.now
        do {
            _ = try await PostgresDeadline.run(seconds: 0.3) { () async throws -> Int in
                // Waits without checking for cancellation, as a wedged pool would.
                await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                    DispatchQueue.global().asyncAfter(deadline: .now() + 2) { c.resume() }
                }
                return 1
            }
            XCTFail("the deadline passed first")
        } catch is PostgresDeadline.Expired {
            XCTAssertLessThan(clock.now - start, .milliseconds(1500), "the caller is freed at the deadline")
        }
    }

    func testErrorsPassThrough() async {
        struct Refused: Error {}
        do {
            _ = try await PostgresDeadline.run(seconds: 5) { () async throws -> Int in throw Refused() }
            XCTFail("the error reaches the caller")
        } catch {
            XCTAssertTrue(error is Refused)
        }
    }
}
