import TributaryOpenCL
import TributaryTensor
import XCTest

/// The one place the tests find their OpenCL device. No platform is a failure, not a skip:
/// CI runs every kernel for real on POCL, and a missing ICD must not pass silently.
enum OpenCLTestDevice {
    static let missingPlatform = "no OpenCL platform: run `bash Deploy/install-deps.sh --tests` (installs pocl-opencl-icd, OpenCL on the CPU)"

    /// Kernels on the first device, built once per test process (POCL compiles each
    /// program in about a second).
    static let shared: Result<OpenCLKernels, OpenCLError> = Result { () throws(OpenCLError) -> OpenCLKernels in
        let context = try OpenCLContext(memoryBudgetBytes: nil)
        return try OpenCLKernels(context: context, cache: OpenCLProgramCache(directory: nil))
    }

    /// Kernels on the first device; a missing platform throws the one line to act on.
    static func kernels() throws -> OpenCLKernels {
        do {
            return try shared.get()
        } catch .noPlatform {
            throw MissingPlatform()
        }
    }

    /// The first device, for tests that make their own context.
    static func device() throws -> OpenCLDeviceInfo {
        do throws(OpenCLError) {
            guard let first = try OpenCLPlatforms.devices().first else { throw .noPlatform }
            return first
        } catch .noPlatform {
            throw MissingPlatform()
        }
    }

    /// Thrown instead of `OpenCLError.noPlatform`, so that the test fails with what to run.
    struct MissingPlatform: Error, CustomStringConvertible {
        var description: String { missingPlatform }
    }
}

/// Random operands and the comparison the kernel tests share.
struct Operands {
    var random: SeededRandom

    init(seed: UInt64) { random = SeededRandom(seed: seed) }

    /// Gaussian values scaled by `scale`.
    mutating func values(_ count: Int, scale: Float = 1) -> [Float] {
        (0..<count).map { _ in random.nextGaussian() * scale }
    }

    mutating func indices(_ count: Int, below bound: Int) -> [Int32] {
        (0..<count).map { _ in Int32(random.nextIndex(below: bound)) }
    }
}

/// The largest difference between two arrays, relative to the reference's magnitude where
/// that is above 1 (absolute below it, so values near zero do not inflate it).
func maxError(_ actual: [Float], _ expected: [Float]) -> Float {
    guard actual.count == expected.count else { return .infinity }
    var worst: Float = 0
    for (a, e) in zip(actual, expected) {
        let error = abs(a - e) / max(1, abs(e))
        worst = max(worst, error.isNaN ? .infinity : error)
    }
    return worst
}

/// Asserts `actual` ≈ `expected` within `tolerance` (as `maxError` measures it), that the
/// reference is not trivially all zeros, and prints the measured error for the record.
func assertClose(_ actual: [Float], _ expected: [Float], tolerance: Float, _ what: String,
                 file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(actual.count, expected.count, what, file: file, line: line)
    guard actual.count == expected.count else { return }
    XCTAssertTrue(expected.contains { $0 != 0 }, "\(what): the reference is all zeros, the test proves nothing",
                  file: file, line: line)
    let error = maxError(actual, expected)
    print("max error \(what): \(error)")
    XCTAssertLessThanOrEqual(error, tolerance, what, file: file, line: line)
}
