import XCTest
import TributaryTensor
@testable import TributaryData

final class EpochScheduleTests: XCTestCase {
    func testBatchesAreTheSeededPermutation() throws {
        let schedule = try EpochSchedule(sampleCount: 10, batchSize: 3, seed: 99)
        XCTAssertEqual(schedule.batchesPerEpoch, 3)  // sample count 10, last incomplete batch dropped
        var rng = SeededRandom(seed: 99, stream: 1)
        let expected = rng.permutation(count: 10)
        XCTAssertEqual(schedule.batch(epoch: 1, index: 0), Array(expected[0..<3]))
        XCTAssertEqual(schedule.batch(epoch: 1, index: 2), Array(expected[6..<9]))
        // Global step 4 = epoch 1, batch 1.
        XCTAssertEqual(schedule.batch(step: 4), Array(expected[3..<6]))
    }

    func testEachEpochVisitsEverySampleOnce() throws {
        let schedule = try EpochSchedule(sampleCount: 1000, batchSize: 10, seed: 5)
        var orders: [[Int]] = []
        for epoch in 0..<3 {
            var seen: [Int] = []
            for index in 0..<schedule.batchesPerEpoch { seen += schedule.batch(epoch: epoch, index: index) }
            XCTAssertEqual(seen.count, 1000)
            XCTAssertEqual(seen.sorted(), Array(0..<1000))
            orders.append(seen)
        }
        XCTAssertNotEqual(orders[0], orders[1])
        XCTAssertNotEqual(orders[1], orders[2])
        XCTAssertNotEqual(orders[0], Array(0..<1000))
        // Steps walk through the epochs in order.
        let steps = (0..<300).flatMap { schedule.batch(step: $0) }
        XCTAssertEqual(steps, orders.flatMap { $0 })
    }

    func testDeterministicAcrossInstancesAndSeeds() throws {
        let a = try EpochSchedule(sampleCount: 257, batchSize: 16, seed: 1234)
        let b = try EpochSchedule(sampleCount: 257, batchSize: 16, seed: 1234)
        let c = try EpochSchedule(sampleCount: 257, batchSize: 16, seed: 1235)
        XCTAssertEqual(a.batchesPerEpoch, 16)
        // Different access orders (which exercise the cache) give the same answers.
        for step in [0, 40, 3, 17, 16, 200, 1] { XCTAssertEqual(a.batch(step: step), b.batch(step: step)) }
        for step in (0..<40).reversed() { XCTAssertEqual(a.batch(step: step), b.batch(step: step)) }
        XCTAssertNotEqual(a.batch(step: 0), c.batch(step: 0))
    }

    func testConcurrentUseAgrees() async throws {
        let schedule = try EpochSchedule(sampleCount: 5000, batchSize: 50, seed: 3)
        let reference = (0..<400).map { try? EpochSchedule(sampleCount: 5000, batchSize: 50, seed: 3).batch(step: $0) }
        let results = await withTaskGroup(of: (Int, [Int]).self) { group in
            for step in 0..<400 { group.addTask { (step, schedule.batch(step: (step * 37) % 400)) } }
            var out = [[Int]](repeating: [], count: 400)
            for await (step, batch) in group { out[step] = batch }
            return out
        }
        for step in 0..<400 { XCTAssertEqual(results[step], reference[(step * 37) % 400]) }
    }

    func testInvalidArguments() {
        assertDatasetError(.invalidArgument, ["batch size must be positive"]) {
            try EpochSchedule(sampleCount: 10, batchSize: 0, seed: 1)
        }
        assertDatasetError(.invalidArgument, ["batch size 11 is larger than the 10 samples"]) {
            try EpochSchedule(sampleCount: 10, batchSize: 11, seed: 1)
        }
    }
}
