import Foundation
import TributaryCompression
import TributaryCoordinator
import TributaryModels
import TributaryOpenCL
import TributaryProtocol
import TributaryTensor
import TributaryTestSupport
import TributaryWorker
import XCTest

/// A worker computing on the OpenCL device (POCL in CI) next to a CPU worker, through the
/// real coordinator: with every unit replicated, each unit is computed once on each device
/// and the coordinator compares the two updates.
final class OpenCLWorkerTests: XCTestCase {
    override func setUp() { ComputeThreads.set(1) }

    private func openCL(vram: Int?) throws -> OpenCLDevice {
        guard let info = try OpenCLPlatforms.devices().first else {
            throw XCTSkip("unreachable: OpenCLPlatforms.devices() throws noPlatform when empty")
        }
        return try OpenCLDevice(info: info, vramBudgetBytes: vram, memoryBudgetBytes: nil,
                                cache: OpenCLProgramCache(directory: nil))
    }

    /// The replicas must agree within 1e-5 (relative L2 distance of the two updates; the
    /// fp32 codec's default tolerance is 1e-2): the devices differ by float rounding only
    /// (OpenCLModelTests measures ~1e-7 per gradient), a wrong kernel by far more.
    func testAnOpenCLWorkerAndACPUWorkerAgreeOnEveryUnit() async throws {
        var unboundedPlan: String?
        for vram in [nil, 160 * 1024] as [Int?] {
            let rounds = 4
            let dir = try temporaryDirectory("opencl-worker")
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let config = RunningCoordinator.config(directory: "\(dir)/coordinator") { c in
                c.model.nLayer = 2
                c.optimizer.totalRounds = rounds
                c.units.samplesPerUnit = 4
                c.units.microBatch = 2
                c.rounds.unitsPerRound = 2
                c.rounds.maxStaleness = 0
                c.aggregation.rule = .mean
                c.validation.replication = .all
                c.validation.tolerance = 1e-5
            }
            let coordinator = try await RunningCoordinator.start(config)
            let device = try openCL(vram: vram)
            let log = CapturedLog()
            let cpu = WorkerDaemon(options: WorkerOptions(coordinator: coordinator.url, joinToken: RunningCoordinator.joinToken,
                                                          name: "cpu", dataDirectory: "\(dir)/cpu"),
                                   logger: quietLogger("test.worker"))
            let gpu = WorkerDaemon(options: WorkerOptions(coordinator: coordinator.url, joinToken: RunningCoordinator.joinToken,
                                                          name: "opencl", dataDirectory: "\(dir)/opencl"),
                                   logger: log.logger("test.opencl"), device: device)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await cpu.run() }
                group.addTask { try await gpu.run() }
                try await group.waitForAll()
            }
            let status = coordinator.job.status()
            await coordinator.stop()
            let r = try XCTUnwrap(status.replication)
            let cpuUnits = await cpu.unitsDone, gpuUnits = await gpu.unitsDone
            let plan = log.all.first { $0.message == "memory plan" }?.metadata["plan"].map { "\($0)" } ?? "no plan logged"
            print("vram \(vram.map(ByteCount.format) ?? "unbounded"): \(plan); OpenCL device peak \(device.deviceBytesPeak) B; "
                  + "units cpu \(cpuUnits), opencl \(gpuUnits); confirmed \(r.confirmed), disputes \(r.disputes)")
            XCTAssertEqual(status.version, rounds)
            XCTAssertGreaterThan(gpuUnits, 0, "the OpenCL worker computed units")
            XCTAssertGreaterThan(cpuUnits, 0)
            XCTAssertEqual(r.disputes, 0, "every CPU/OpenCL pair agreed within 1e-5")
            XCTAssertEqual(r.confirmed, rounds * 2, "every unit confirmed by the other device")
            XCTAssertGreaterThan(device.deviceBytesPeak, 0)
            let execution = plan.components(separatedBy: ", upload queue").first ?? plan
            if let vram {
                XCTAssertLessThanOrEqual(device.deviceBytesPeak, vram, "the VRAM budget held")
                XCTAssertNotEqual(execution, unboundedPlan, "a small VRAM budget takes a smaller plan: \(plan)")
            } else {
                unboundedPlan = execution
            }
        }
    }

    /// A grid of VRAM budgets down to 1/16 of the unbudgeted plan's peak: each plan runs
    /// its units on the OpenCL device with the device's peak at or under the budget, its
    /// fp32 updates equal the CPU's for the same plan, and a budget below the smallest plan
    /// is refused in terms of --vram-budget before any work.
    func testEveryVRAMBudgetHoldsAndTheUpdatesEqualTheCPUs() async throws {
        // Activations far larger than the parameters, as in a long-context step.
        let spec = ModelSpec.gpt(GPTConfig(vocabSize: 17, blockSize: 64, nLayer: 4, nHead: 2, nEmbd: 32))
        let job = JobDescription(name: "vram", model: spec, samplesPerUnit: 8, microBatchSize: 8, updateCodec: "fp32", zstdLevel: 1)
        let dir = try temporaryDirectory("opencl-vram")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let published = try spec.build(seed: 3)
        var r = SeededRandom(seed: 1)
        let unit = spec.sampleShape.randomBatch(samples: 8, using: &r)
        let full = try OfflineUnitRunner(job: job, directory: "\(dir)/probe", budgetBytes: nil).plan.predictedPeakBytes
        let modelBytes = 4 * 2 * spec.parameterCount
        var plans = Set<String>()
        var accepted: [Double] = [], refused: [Double] = []
        for fraction in [1.0, 0.5, 0.25, 0.125, 0.0625, 0.01] {
            let budget = Int(Double(full) * fraction)
            let what = "VRAM budget \(budget) (\(fraction) of \(full))"
            let gpu: OfflineUnitRunner
            do {
                gpu = try OfflineUnitRunner(job: job, directory: "\(dir)/gpu-\(fraction)", budgetBytes: nil,
                                            device: openCL(vram: budget))
            } catch let WorkerError.fatal(why) {
                refused.append(fraction)
                XCTAssertTrue(why.hasPrefix("the VRAM budget is too small for this job") && why.contains("give --vram-budget at least"), why)
                continue
            }
            accepted.append(fraction)
            let cpu = try OfflineUnitRunner(job: job, directory: "\(dir)/cpu-\(fraction)", budgetBytes: budget)
            // The GPU's plan may differ from the CPU's under one budget: the VRAM budget
            // bounds the device's prediction (host memory is unbounded here), it holds one
            // more block gradient while it downloads, and its attention scratch is its own.
            XCTAssertLessThanOrEqual(try XCTUnwrap(gpu.plan.predictedDevicePeakBytes), budget, what)
            plans.insert("\(gpu.plan.execution)")
            try gpu.publish(published.parameters)
            try cpu.publish(published.parameters)
            let (gpuLoss, gpuUpdates) = try await gpu.run(unit)
            let (cpuLoss, cpuUpdates) = try await cpu.run(unit)
            let peak = try XCTUnwrap(gpu.device.deviceMemoryPeakBytes)
            let hostPeak = gpu.device.allocator.peakBytes
            print("\(what): \(gpu.plan); measured device peak \(peak) B, host peak \(hostPeak) B (parameters + gradients alone: \(modelBytes) B)")
            XCTAssertLessThanOrEqual(peak, budget, what)
            XCTAssertLessThanOrEqual(hostPeak, gpu.plan.predictedPeakBytes, what)
            // The device holds a copy of each block while the block lives, which the plan's
            // walk counts exactly, plus a kernel call's index buffers (the embeddings'
            // backward: 3 int32 per token and one), which it bounds: the measured peak lies
            // between the blocks alone and the prediction.
            let predictedDevice = try XCTUnwrap(gpu.plan.predictedDevicePeakBytes, what)
            let callBytes = 4 * (3 * 8 * 64 + 1)
            XCTAssertLessThanOrEqual(peak, predictedDevice, what)
            XCTAssertGreaterThanOrEqual(peak, predictedDevice - callBytes, what)
            XCTAssertEqual(gpuLoss, cpuLoss, accuracy: 1e-5 * max(1, abs(cpuLoss)), what)
            for (name, count) in gpu.shards {
                let a = try decode(gpuUpdates[name], count: count), b = try decode(cpuUpdates[name], count: count)
                let scale = b.map(abs).max() ?? 0
                let worst = zip(a, b).map { abs($0 - $1) }.max() ?? .infinity
                XCTAssertGreaterThan(scale, 0, "\(what) \(name)")
                XCTAssertLessThanOrEqual(worst, 1e-5 * scale, "\(what) \(name)")
            }
        }
        XCTAssertGreaterThanOrEqual(plans.count, 3, "the budgets reach different plans: \(plans)")
        XCTAssertTrue(accepted.contains(0.125), "an eighth of the unbudgeted peak still trains: accepted \(accepted)")
        XCTAssertLessThan(refused.max() ?? 1, accepted.min() ?? 0, "only budgets below every accepted one are refused")
        XCTAssertFalse(refused.isEmpty, "1% of the peak is too small")
    }

    private func decode(_ body: [UInt8]?, count: Int) throws -> [Float] {
        let body = try XCTUnwrap(body)
        var out = [Float](repeating: 0, count: count)
        try body.withUnsafeBytes { raw in
            try out.withUnsafeMutableBufferPointer { try TensorFrame.decode(raw, expectedCount: count, into: $0) }
        }
        return out
    }
}
