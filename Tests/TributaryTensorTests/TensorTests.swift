import Foundation
import XCTest
@testable import TributaryTensor

final class AllocatorTests: XCTestCase {
    func testCountsCurrentAndPeakAndRefusesOverBudget() throws {
        let allocator = TensorAllocator(budgetBytes: 10_000)
        var a: Tensor? = try Tensor(shape: [1000], allocator: allocator) // 4,000 bytes
        XCTAssertEqual(allocator.currentBytes, 4000)
        let b = try Tensor(shape: [500], allocator: allocator)           // 2,000 bytes
        XCTAssertEqual(allocator.currentBytes, 6000)
        XCTAssertThrowsError(try Tensor(shape: [1001], allocator: allocator)) { error in
            XCTAssertEqual(error as? TensorAllocationError,
                           .overBudget(requestedBytes: 4004, currentBytes: 6000, budgetBytes: 10_000))
            XCTAssertTrue("\(error)".contains("budget"))
        }
        XCTAssertEqual(allocator.currentBytes, 6000, "a refused allocation takes nothing")
        a = nil
        XCTAssertEqual(allocator.currentBytes, 2000, "freeing a tensor gives its bytes back")
        XCTAssertEqual(allocator.peakBytes, 6000)
        allocator.resetPeak()
        XCTAssertEqual(allocator.peakBytes, 2000)
        _ = (a, b)
    }

    func testViewsShareStorageAndKeepItAlive() throws {
        let allocator = TensorAllocator(budgetBytes: nil)
        var t: Tensor? = try Tensor(shape: [4, 3], values: (0..<12).map(Float.init), allocator: allocator)
        let row = try XCTUnwrap(t).rows(2, 1)
        XCTAssertEqual(row.toArray(), [6, 7, 8])
        t = nil
        XCTAssertEqual(allocator.currentBytes, 48, "the view keeps the storage")
        row.data[0] = 60
        XCTAssertEqual(row.toArray(), [60, 7, 8])
    }

    func testInvalidShapesAreRefused() {
        XCTAssertThrowsError(try Tensor(shape: [-1, 3]))
        XCTAssertThrowsError(try Tensor(shape: [Int.max / 2, 4]))
        XCTAssertThrowsError(try Tensor(shape: [2, 2], values: [1, 2, 3]))
    }

    func testByteCountParsing() {
        XCTAssertEqual(ByteCount.parse("512MiB"), 512 << 20)
        XCTAssertEqual(ByteCount.parse("2GiB"), 2 << 30)
        XCTAssertEqual(ByteCount.parse("64 KiB"), 64 << 10)
        XCTAssertEqual(ByteCount.parse("1.5GiB"), 3 << 29)
        XCTAssertEqual(ByteCount.parse("1GB"), 1_000_000_000)
        XCTAssertEqual(ByteCount.parse("4096"), 4096)
        XCTAssertEqual(ByteCount.parse("512mib"), 512 << 20, "as people type it")
        XCTAssertEqual(ByteCount.parse("2 g"), 2 << 30)
        XCTAssertNil(ByteCount.parse("nanGiB"))
        XCTAssertNil(ByteCount.parse("lots"))
        XCTAssertNil(ByteCount.parse("-5MiB"))
        XCTAssertEqual(ByteCount.format(3 << 20), "3.0 MiB")
    }

    /// Large blocks freed are kept for the next request of the same size (zeroed again),
    /// and counted with the live ones against the budget: a request that would take
    /// live + cached past it unmaps cached blocks first.
    func testCachingOfLargeBlocksStaysWithinTheBudget() throws {
        let big = TensorAllocator.directMappingThreshold / 4   // floats in one large block
        let a = TensorAllocator(budgetBytes: 3 * 4 * big)
        var first: Tensor? = try Tensor(shape: [big], allocator: a)
        let address = first?.data
        first?.fill(7)
        first = nil
        XCTAssertEqual(a.currentBytes, 0)
        XCTAssertEqual(a.cachedBytes, 4 * big)
        let again = try Tensor(shape: [big], allocator: a)
        XCTAssertEqual(again.data, address, "the cached block is reused")
        XCTAssertEqual(a.cachedBytes, 0)
        XCTAssertEqual(again.toArray().max(), 0, "and zero-filled like a new one")
        // Fill the budget with live blocks of another size while one block sits in the cache.
        var other: Tensor? = try Tensor(shape: [2 * big], allocator: a)
        other = nil
        XCTAssertEqual(a.cachedBytes, 8 * big)
        let second = try Tensor(shape: [big], allocator: a)   // needs room: the cached 2·big block goes
        XCTAssertEqual(a.currentBytes, 8 * big)
        XCTAssertLessThanOrEqual(a.currentBytes + a.cachedBytes, 12 * big)
        XCTAssertEqual(a.cachedBytes, 0)
        _ = (again, second, other)
        XCTAssertThrowsError(try Tensor(shape: [2 * big], allocator: a), "live bytes still obey the budget")
        a.releaseCachedBlocks()
    }
}

final class BLASTests: XCTestCase {
    /// C = αAB + βC in double precision, row-major, with transposes.
    func naive(_ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
               _ a: [Float], _ lda: Int, _ b: [Float], _ ldb: Int, _ beta: Float, _ c: [Float], _ ldc: Int) -> [Float] {
        var out = c
        for i in 0..<m {
            for j in 0..<n {
                var s = 0.0
                for p in 0..<k {
                    let av = transA ? a[p * lda + i] : a[i * lda + p]
                    let bv = transB ? b[j * ldb + p] : b[p * ldb + j]
                    s += Double(av) * Double(bv)
                }
                out[i * ldc + j] = Float(Double(alpha) * s + Double(beta) * Double(c[i * ldc + j]))
            }
        }
        return out
    }

    func testPanelSplitProductsMatchTheNaiveProduct() throws {
        // Shapes above the parallel threshold, split by rows (m large) and by columns (m small).
        var rng = SeededRandom(seed: 3)
        for threads in [1, 2, 3] {
            ComputeThreads.set(threads)
            for (m, n, k) in [(200, 150, 90), (9, 700, 400)] {
                for transA in [false, true] {
                    for transB in [false, true] {
                        let lda = (transA ? m : k) + 3, ldb = (transB ? k : n) + 1, ldc = n + 2
                        let a = (0..<((transA ? k : m) * lda)).map { _ in rng.nextGaussian() }
                        let b = (0..<((transB ? n : k) * ldb)).map { _ in rng.nextGaussian() }
                        let c0 = (0..<(m * ldc)).map { _ in rng.nextGaussian() }
                        var c = c0
                        a.withUnsafeBufferPointer { ap in
                            b.withUnsafeBufferPointer { bp in
                                c.withUnsafeMutableBufferPointer { cp in
                                    BLAS.sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 0.5,
                                               a: ap.baseAddress!, lda: lda, b: bp.baseAddress!, ldb: ldb,
                                               beta: 0.25, c: cp.baseAddress!, ldc: ldc)
                                }
                            }
                        }
                        let expected = naive(transA, transB, m, n, k, 0.5, a, lda, b, ldb, 0.25, c0, ldc)
                        for i in 0..<m {
                            for j in 0..<ldc {
                                // Padding columns beyond n must be untouched.
                                let tol: Float = j < n ? 1e-3 * (1 + abs(expected[i * ldc + j])) : 0
                                XCTAssertEqual(c[i * ldc + j], expected[i * ldc + j], accuracy: tol,
                                               "threads \(threads) \(m)×\(n)×\(k) tA \(transA) tB \(transB) at \(i),\(j)")
                            }
                        }
                    }
                }
            }
        }
        ComputeThreads.set(2)
    }
}

final class FastMathTests: XCTestCase {
    func testExpAndTanhAgainstLibm() {
        var worstExp = 0.0, worstTanh = 0.0
        var x: Float = -80
        while x < 80 {
            let e = Double(FastMath.exp(x)), ref = Foundation.exp(Double(x))
            worstExp = max(worstExp, abs(e - ref) / ref)
            if abs(x) < 20 {
                worstTanh = max(worstTanh, abs(Double(FastMath.tanh(x)) - Foundation.tanh(Double(x))))
            }
            x += 0.013
        }
        XCTAssertLessThan(worstExp, 4e-7, "relative error of exp")
        XCTAssertLessThan(worstTanh, 3e-7, "absolute error of tanh")
        XCTAssertEqual(FastMath.exp(-200), 0, accuracy: 1e-37, "underflow clamps instead of producing garbage")
        XCTAssertTrue(FastMath.exp(200).isFinite)
    }

    func testReductions() {
        let values = (0..<37).map { Float($0) * 0.5 - 4 }
        values.withUnsafeBufferPointer { p in
            let b = p.baseAddress!
            XCTAssertEqual(FastMath.sum(b, 37), values.reduce(0, +), accuracy: 1e-4)
            XCTAssertEqual(FastMath.dot(b, b, 37), values.reduce(0) { $0 + $1 * $1 }, accuracy: 1e-3)
            XCTAssertEqual(FastMath.maximum(b, 37), 14)
            XCTAssertEqual(FastMath.maximum(b, 5), -2)
        }
    }
}

final class SeededRandomTests: XCTestCase {
    func testDeterministicAndDistinctStreams() {
        var a = SeededRandom(seed: 42), b = SeededRandom(seed: 42), c = SeededRandom(seed: 42, stream: 1)
        let xa = (0..<5).map { _ in a.next() }, xb = (0..<5).map { _ in b.next() }, xc = (0..<5).map { _ in c.next() }
        XCTAssertEqual(xa, xb)
        XCTAssertNotEqual(xa, xc)
        var r = SeededRandom(seed: 7)
        let p = r.permutation(count: 1000)
        XCTAssertEqual(p.sorted(), Array(0..<1000))
        XCTAssertNotEqual(p, Array(0..<1000))
        // Gaussian moments over 200k draws.
        var g = SeededRandom(seed: 9)
        let n = 200_000
        var s = 0.0, s2 = 0.0
        for _ in 0..<n { let v = Double(g.nextGaussian()); s += v; s2 += v * v }
        XCTAssertEqual(s / Double(n), 0, accuracy: 0.01)
        XCTAssertEqual(s2 / Double(n), 1, accuracy: 0.02)
    }

    func testCodableRoundTripContinuesTheStream() throws {
        var r = SeededRandom(seed: 11)
        _ = r.next()
        var copy = try JSONDecoder().decode(SeededRandom.self, from: JSONEncoder().encode(r))
        XCTAssertEqual(r.next(), copy.next())
    }
}
