import Foundation
import TributaryCoordinator
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
            if let vram {
                XCTAssertLessThanOrEqual(device.deviceBytesPeak, vram, "the VRAM budget held")
                XCTAssertTrue(plan.contains("activations recomputed"), "a small VRAM budget recomputes activations: \(plan)")
            }
        }
    }
}
