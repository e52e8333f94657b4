import Foundation
import TributaryCompression
import TributaryModels
import TributaryPlanning
import TributaryProtocol
import TributaryTensor
import XCTest
@testable import TributaryWorker

/// Issue 12, finding 5: a job description's numbers come from the coordinator. Absurd ones
/// are refused before planning, quickly and without trapping, and the planner's work does
/// not grow with them.
final class HostileJobTests: XCTestCase {
    static func gpt(vocab: Int = 5, block: Int = 4, layers: Int = 1, heads: Int = 1, embd: Int = 4) -> ModelSpec {
        .gpt(GPTConfig(vocabSize: vocab, blockSize: block, nLayer: layers, nHead: heads, nEmbd: embd))
    }

    static func job(_ model: ModelSpec = gpt(), samples: Int = 2, micro: Int = 2, codec: String = "fp32", zstd: Int = 1) -> JobDescription {
        JobDescription(name: "hostile", model: model, samplesPerUnit: samples, microBatchSize: micro,
                       updateCodec: codec, zstdLevel: zstd)
    }

    /// Every case is refused by `UnitCompute` (what the worker builds before its first
    /// lease) with a message naming the field, within a second, under a 256 MiB budget.
    func testAbsurdJobsAreRefusedQuicklyWithoutTrapping() throws {
        let big = 1 << 62
        let cases: [(JobDescription, String)] = [
            (Self.job(Self.gpt(layers: 10_000_000)), "n_layer 10000000 is more than 10000"),
            (Self.job(Self.gpt(heads: 1 << 31, embd: 1 << 31)), "absurdly large"),
            (Self.job(Self.gpt(vocab: big)), "vocab_size"),
            (Self.job(Self.gpt(block: 1 << 40)), "absurdly large"),
            (Self.job(Self.gpt(block: big, embd: big)), "absurdly large"),
            (Self.job(Self.gpt(layers: -3)), "n_layer must be positive"),
            (Self.job(Self.gpt(heads: -1, embd: -4)), "must be positive"),
            (Self.job(.mlp(MLPConfig(inputFeatures: big, hidden: [big], classes: 10))), "absurdly large"),
            (Self.job(.mlp(MLPConfig(inputFeatures: 4, hidden: Array(repeating: 1, count: 20_000), classes: 2))),
             "more than 10000"),
            (Self.job(samples: big), "samples_per_unit is \(big)"),
            (Self.job(samples: 1 << 17), "outside 1...65536"),
            (Self.job(samples: -1), "samples_per_unit is -1"),
            (Self.job(micro: 0), "micro_batch_size is 0"),
            (Self.job(zstd: Int(Int32.max) + 1), "zstd_level is 2147483648"),
            (Self.job(codec: "lowrank:\(big)"), "update codec"),
            // One sample fits the model's bound, 65,536 of them do not: no plan at all.
            (Self.job(Self.gpt(vocab: 50_000, block: 4096, layers: 12, heads: 1, embd: 64), samples: 1 << 16, micro: 1),
             "too large to plan"),
        ]
        for (job, expected) in cases {
            let start = ContinuousClock.now
            XCTAssertThrowsError(try UnitCompute(job: job, device: CPUDevice(memoryBudgetBytes: 256 << 20),
                                                 budgetBytes: 256 << 20, stateDirectory: NSTemporaryDirectory())) { error in
                guard case let WorkerError.fatal(why) = error else { return XCTFail("\(error)") }
                XCTAssertTrue(why.contains(expected), "\(why) should name \(expected)")
            }
            let elapsed = ContinuousClock.now - start
            XCTAssertLessThan(elapsed, .seconds(1), "\(expected): refused after \(elapsed)")
        }
    }

    /// The candidate list is the same length for 100 blocks and for 10,000 (one candidate
    /// per resident-block count made it grow with n_layer, and each candidate's peak walk
    /// too: 600 blocks took 178 s before, 10,000 would have taken hours), and a job at
    /// the bounds (10,000 blocks, 65,536 samples) plans in seconds.
    func testPlanningWorkDoesNotGrowWithUntrustedNumbers() throws {
        let codec = try UpdateCodecSpec(parsing: "fp32")
        func candidates(layers: Int, samples: Int) -> Int {
            MemoryPlanner(model: Self.gpt(vocab: 2, block: 1, layers: layers, embd: 1), unitSamples: samples,
                          suggestedMicroBatch: samples, codec: codec).candidates().count
        }
        let small = candidates(layers: 100, samples: 64)
        XCTAssertEqual(candidates(layers: 10_000, samples: 64), small)
        // 2 schedules × 2 activation policies × 7 micro-batch sizes × 65 resident counts
        // × 2 upload queues, less the micro-batches-outer plans with one micro-batch.
        XCTAssertEqual(small, 2 * (4 * 7 - 2) * 65)
        // Micro-batch sizes halve, so they grow with log₂ of the (bounded) unit only.
        XCTAssertLessThanOrEqual(candidates(layers: 10_000, samples: WorkerLimits.maximumUnitSamples), 2 * 4 * 17 * 65)

        for codecName in ["fp32", "lowrank:4"] {
            let start = ContinuousClock.now
            let job = Self.job(Self.gpt(vocab: 2, block: 1, layers: 10_000, embd: 1),
                               samples: WorkerLimits.maximumUnitSamples, micro: WorkerLimits.maximumUnitSamples, codec: codecName)
            let compute = try UnitCompute(job: job, device: CPUDevice(memoryBudgetBytes: 256 << 20), budgetBytes: 256 << 20, stateDirectory: NSTemporaryDirectory())
            let elapsed = ContinuousClock.now - start
            print("planned a 10,000-block GPT, 65,536-sample unit, \(codecName), in \(elapsed): \(compute.plan)")
            XCTAssertLessThan(elapsed, .seconds(20), codecName)
            XCTAssertLessThanOrEqual(compute.plan.predictedPeakBytes, 256 << 20)
        }
    }

    /// At most 65 resident-block counts, n_layer and 0 among them, all different; every
    /// count for a model of up to 64 blocks (as before).
    func testResidentChoicesAreBoundedAndKeepTheEnds() {
        let deep = GPTConfig(vocabSize: 2, blockSize: 1, nLayer: 10_000, nHead: 1, nEmbd: 1)
        let choices = deep.residentBlockChoices
        XCTAssertEqual(choices.count, GPTConfig.residentBlockChoiceLimit + 1)
        XCTAssertEqual(choices.first, 10_000)
        XCTAssertEqual(choices.last, 0)
        XCTAssertEqual(Set(choices).count, choices.count)
        let shallow = GPTConfig(vocabSize: 2, blockSize: 1, nLayer: 5, nHead: 1, nEmbd: 1)
        XCTAssertEqual(shallow.residentBlockChoices, [5, 4, 3, 2, 1, 0])
    }
}
