import Foundation
import Synchronization
import TributaryTensor
@testable import TributaryWorker
import XCTest

/// A gate the test opens to let one upload finish.
final class UploadGate: Sendable {
    let sent = Mutex<[String]>([])
    let started = Mutex<[String]>([])
    let open = Mutex<Set<String>>([])
    let failing: String?

    init(failing: String? = nil) { self.failing = failing }

    func send(_ shard: String, _ body: [UInt8]) async throws {
        started.withLock { $0.append(shard) }
        while !open.withLock({ $0.contains(shard) }) { try await Task.sleep(for: .milliseconds(2)) }
        if shard == failing { throw ClientError.protocolViolation("injected failure for \(shard)") }
        sent.withLock { $0.append(shard) }
    }

    func release(_ shard: String) { _ = open.withLock { $0.insert(shard) } }
}

final class UploadQueueTests: XCTestCase {
    /// Uploads run behind the producer, in order, within the queue's byte capacity, with
    /// the queued bytes counted against the allocator's budget.
    func testUploadsOverlapTheProducerWithinTheirCapacity() async throws {
        let allocator = TensorAllocator(budgetBytes: 10_000)
        let gate = UploadGate()
        let queue = UploadQueue(capacity: 250, allocator: allocator, send: gate.send)
        try await queue.submit("a", [UInt8](repeating: 1, count: 100))
        try await queue.submit("b", [UInt8](repeating: 2, count: 100))
        // Both queued without waiting for the network: the producer went on.
        XCTAssertEqual(allocator.currentBytes, 200)
        let third = Task { try await queue.submit("c", [UInt8](repeating: 3, count: 100)) }
        try await Task.sleep(for: .milliseconds(50))
        XCTAssertEqual(allocator.currentBytes, 200, "c waits: a, b and c would exceed 250 bytes")
        XCTAssertEqual(gate.started.withLock { $0 }, ["a"], "one upload at a time, in order")
        gate.release("a")
        try await third.value
        XCTAssertEqual(allocator.currentBytes, 200, "a's bytes went back, c's are held")
        gate.release("b")
        gate.release("c")
        try await queue.finish()
        XCTAssertEqual(gate.sent.withLock { $0 }, ["a", "b", "c"])
        XCTAssertEqual(allocator.currentBytes, 0)
        let sentBytes = await queue.bytesSent
        XCTAssertEqual(sentBytes, 300)
    }

    /// A failed upload fails the unit; nothing after it is sent, and its bytes are released.
    func testAFailedUploadStopsTheRest() async throws {
        let allocator = TensorAllocator(budgetBytes: nil)
        let gate = UploadGate(failing: "b")
        let queue = UploadQueue(capacity: 1_000, allocator: allocator, send: gate.send)
        for name in ["a", "b", "c"] { try await queue.submit(name, [UInt8](repeating: 0, count: 10)) }
        for name in ["a", "b", "c"] { gate.release(name) }
        do {
            try await queue.finish()
            XCTFail("the failure must surface")
        } catch ClientError.protocolViolation(let why) {
            XCTAssertTrue(why.contains("b"))
        }
        try await Task.sleep(for: .milliseconds(20))
        XCTAssertEqual(gate.sent.withLock { $0 }, ["a"])
        XCTAssertEqual(allocator.currentBytes, 0)
    }

    /// A unit cancelled while it waits for its uploads (its lease was lost) cancels them:
    /// the wait ends at once instead of when the stuck upload would have timed out.
    func testCancellingTheWaitCancelsTheUploads() async throws {
        let allocator = TensorAllocator(budgetBytes: nil)
        let gate = UploadGate()  // never opened: the upload hangs
        let queue = UploadQueue(capacity: 1_000, allocator: allocator, send: gate.send)
        try await queue.submit("a", [UInt8](repeating: 0, count: 10))
        let waiting = Task { try await queue.finish() }
        while gate.started.withLock({ $0 }).isEmpty { try await Task.sleep(for: .milliseconds(2)) }
        let cancelledAt = ContinuousClock.now
        waiting.cancel()
        let result = await waiting.result
        XCTAssertLessThan(cancelledAt.duration(to: .now), .milliseconds(500))
        XCTAssertThrowsError(try result.get()) { XCTAssertTrue($0 is CancellationError, "\($0)") }
        try await Task.sleep(for: .milliseconds(20))
        XCTAssertEqual(gate.sent.withLock { $0 }, [], "the upload was cancelled, not completed")
        XCTAssertEqual(allocator.currentBytes, 0, "its bytes went back")
    }
}
