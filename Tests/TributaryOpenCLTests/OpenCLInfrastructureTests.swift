import Foundation
@testable import TributaryOpenCL
import XCTest

/// Devices, the VRAM allocator and the program cache.
final class OpenCLInfrastructureTests: XCTestCase {
    func testDescribeListsThePOCLDevice() throws {
        let device = try OpenCLTestDevice.device()
        let lines = try OpenCLPlatforms.describe()
        print(lines.joined(separator: "\n"))
        XCTAssertEqual(lines.count, try OpenCLPlatforms.devices().count)
        XCTAssertTrue(lines[0].hasPrefix("0: \(device.name) ("), lines[0])
        // CI (and this project's test machines) have POCL, OpenCL on the CPU, whatever else is there.
        let pocl = try XCTUnwrap(lines.first { $0.contains("platform Portable Computing Language") },
                                 "POCL is missing from \(lines)")
        XCTAssertTrue(pocl.contains("(CPU, "), pocl)
        XCTAssertTrue(pocl.contains(" compute units; driver "), pocl)
        XCTAssertGreaterThan(device.globalMemoryBytes, 0)
        XCTAssertGreaterThan(device.maxAllocationBytes, 0)
        XCTAssertGreaterThan(device.computeUnits, 0)
    }

    func testNoPlatformIsSaidWithWhatToInstall() {
        XCTAssertEqual(OpenCLError.noPlatform.description,
                       "no OpenCL platform: install a GPU driver's OpenCL ICD, or pocl-opencl-icd to use the CPU")
        let outOfResources = OpenCLError.call("clCreateBuffer", code: -5).description
        XCTAssertTrue(outOfResources.hasPrefix("clCreateBuffer failed with CL_OUT_OF_RESOURCES (-5): the device is out of memory"),
                      outOfResources)
    }

    // MARK: Allocator

    func testTheAllocatorRefusesOneByteOverTheBudgetAndCountsThePeak() throws {
        let device = try OpenCLTestDevice.device()
        // Room for 1,000 floats and 3 bytes: a further float is one byte over.
        let context = try OpenCLContext(device: device, memoryBudgetBytes: 4003)
        let allocator = context.allocator
        var big: DeviceTensor? = try context.zeros(shape: [10, 100])
        XCTAssertEqual(allocator.currentBytes, 4000)
        XCTAssertThrowsError(try context.zeros(shape: [1])) { error in
            XCTAssertEqual(error as? OpenCLError,
                           .outOfDeviceMemory(requestedBytes: 4, inUseBytes: 4000, budgetBytes: 4003, driverCode: nil))
            XCTAssertTrue("\(error)".contains("over the VRAM budget"), "\(error)")
        }
        XCTAssertEqual(allocator.currentBytes, 4000, "a refused request takes nothing")
        big = nil
        XCTAssertEqual(allocator.currentBytes, 0, "a tensor's bytes come back when it goes")
        let a = try context.zeros(shape: [600])
        let b = try context.upload([Float](repeating: 1, count: 400), shape: [400])
        XCTAssertEqual(allocator.currentBytes, 4000, "exactly the budget less 3 bytes fits")
        XCTAssertEqual(allocator.peakBytes, 4000, "the peak is the bytes allocated at once")
        XCTAssertEqual(try context.download(b), [Float](repeating: 1, count: 400))
        _ = (a, b, big)
    }

    func testTheDriversLargestBufferIsRefusedAsOutOfDeviceMemory() throws {
        let device = try OpenCLTestDevice.device()
        let context = try OpenCLContext(device: device, memoryBudgetBytes: nil)
        let tooLarge = device.maxAllocationBytes / 4 + 1
        XCTAssertThrowsError(try context.zeros(shape: [tooLarge])) { error in
            guard case let .outOfDeviceMemory(requested, inUse, budget, driverCode)? = error as? OpenCLError else {
                return XCTFail("\(error)")
            }
            XCTAssertEqual(requested, tooLarge * 4)
            XCTAssertEqual(inUse, 0)
            XCTAssertNil(budget)
            XCTAssertNotNil(driverCode)
        }
        XCTAssertEqual(context.allocator.currentBytes, 0)
    }

    func testOperandsSmallerThanTheirSizesAreRefusedBeforeAnythingRuns() throws {
        let kernels = try OpenCLTestDevice.kernels()
        let context = kernels.context
        // A kernel reading past a buffer would corrupt device memory instead of trapping.
        let input = try context.upload([Float](repeating: 1, count: 6), shape: [2, 3])
        let weight = try context.upload([Float](repeating: 1, count: 12), shape: [4, 3])
        let out = try context.zeros(shape: [7])
        XCTAssertThrowsError(try kernels.linearForward(out: out, input: input, weight: weight, bias: nil,
                                                       rows: 2, inFeatures: 3, outFeatures: 4)) { error in
            XCTAssertEqual(error as? OpenCLError, .invalidArgument("out holds 7 values, the operation needs 8"))
        }
        XCTAssertEqual(try context.download(out), [Float](repeating: 0, count: 7), "nothing was written")
        XCTAssertThrowsError(try kernels.attentionForward(out: out, probs: out, qkv: input, batch: 1, sequence: 1,
                                                          heads: 2, channels: 3)) { error in
            XCTAssertEqual(error as? OpenCLError, .invalidArgument("3 channels do not split into 2 heads"))
        }
    }

    // MARK: Program cache

    func testTheCacheReusesABinaryOnTheSecondBuild() throws {
        let device = try OpenCLTestDevice.device()
        let context = try OpenCLContext(device: device, memoryBudgetBytes: nil)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tributary-cl-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let cache = OpenCLProgramCache(directory: directory)

        let first = try OpenCLKernels(context: context, cache: cache)
        XCTAssertEqual(first.programs.map(\.loadedFromDisk), [Bool](repeating: false, count: first.programs.count))
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        XCTAssertEqual(files.count, first.programs.count, "one binary per program")

        let second = try OpenCLKernels(context: context, cache: cache)
        XCTAssertEqual(second.programs.map(\.loadedFromDisk), [Bool](repeating: true, count: second.programs.count),
                       "every program loads from disk the second time")
        // And the loaded binaries run.
        let a = try context.upload([1, 2, 3], shape: [3])
        let b = try context.upload([10, 20, 30], shape: [3])
        try second.add(out: a, a, b, count: 3)
        XCTAssertEqual(try context.download(a), [11, 22, 33])

        // Other options are another key: compiled afresh.
        let options = try cache.build(name: "elementwise", source: ElementwiseSource.text, options: "-cl-mad-enable",
                                      context: context)
        XCTAssertFalse(options.loadedFromDisk)
    }

    func testADamagedCachedBinaryIsRebuiltFromSourceAndReplaced() throws {
        let device = try OpenCLTestDevice.device()
        let context = try OpenCLContext(device: device, memoryBudgetBytes: nil)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tributary-cl-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let cache = OpenCLProgramCache(directory: directory)
        let file = try XCTUnwrap(cache.fileURL(source: ElementwiseSource.text, options: "", device: device))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try Data("not a program binary".utf8).write(to: file)

        let rebuilt = try cache.build(name: "elementwise", source: ElementwiseSource.text, context: context)
        XCTAssertFalse(rebuilt.loadedFromDisk, "a binary the driver refuses is compiled afresh")
        XCTAssertNotEqual(try Data(contentsOf: file), Data("not a program binary".utf8), "and replaced")
        XCTAssertTrue(try cache.build(name: "elementwise", source: ElementwiseSource.text, context: context).loadedFromDisk)
    }

    func testKernelsMayBeCalledFromSeveralThreadsAtOnce() async throws {
        let kernels = try OpenCLTestDevice.kernels()
        // clSetKernelArg on a shared kernel is not thread-safe; OpenCLKernels serialises it.
        let results = try await withThrowingTaskGroup(of: [Float].self) { group in
            for task in 0..<8 {
                group.addTask {
                    let a = try kernels.context.upload([Float](repeating: Float(task), count: 1000), shape: [1000])
                    let b = try kernels.context.upload([Float](repeating: 1, count: 1000), shape: [1000])
                    for _ in 0..<50 { try kernels.accumulate(a, b, count: 1000) }
                    return try kernels.context.download(a)
                }
            }
            var all: [[Float]] = []
            for try await result in group { all.append(result) }
            return all
        }
        XCTAssertEqual(Set(results.map { $0[0] }), Set((0..<8).map { Float($0 + 50) }))
        XCTAssertTrue(results.allSatisfy { Set($0).count == 1 }, "every element of a tensor got all 50 additions")
    }

    func testASyntaxErrorReportsTheBuildLog() throws {
        let device = try OpenCLTestDevice.device()
        let context = try OpenCLContext(device: device, memoryBudgetBytes: nil)
        let broken = "__kernel void broken(__global float* x) { x[0] = ; }"
        XCTAssertThrowsError(try OpenCLProgramCache(directory: nil).build(name: "broken", source: broken, context: context)) { error in
            guard case let .buildFailed(program, log)? = error as? OpenCLError else { return XCTFail("\(error)") }
            XCTAssertEqual(program, "broken")
            XCTAssertTrue(log.contains("error"), log)
            XCTAssertFalse(log.contains("\n"), "the log's first lines on one line: \(log)")
            XCTAssertTrue("\(error)".hasPrefix("OpenCL program broken did not build; build log: "), "\(error)")
        }
    }
}
