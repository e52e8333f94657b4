import COpenBLAS
import Dispatch
import Foundation
import Synchronization

/// How many threads the compute engine uses: OpenBLAS's pool and the project's own
/// parallel loops share one setting, so `--threads 2` means two cores, not four.
public enum ComputeThreads {
    private static let configured = Atomic<Int>(0)

    /// The thread count in force (defaults to the number of active processors).
    public static var count: Int {
        let n = configured.load(ordering: .relaxed)
        return n > 0 ? n : max(1, ProcessInfo.processInfo.activeProcessorCount)
    }

    public static func set(_ threads: Int) {
        let n = max(1, threads)
        configured.store(n, ordering: .relaxed)
        openblas_set_num_threads(Int32(n))
    }

    /// OpenBLAS's kernel family, e.g. "Haswell" or "SkylakeX".
    public static var blasCoreName: String {
        guard let p = openblas_get_corename() else { return "unknown" }
        return String(cString: p)
    }

    /// Runs `body` with OpenBLAS restricted to one thread, for regions where the
    /// project's own loop already spreads independent small products over the cores.
    @inlinable
    public static func withSingleThreadedBLAS<R>(_ body: () throws -> R) rethrows -> R {
        let n = count
        if n > 1 { openblas_set_num_threads(1) }
        defer { if n > 1 { openblas_set_num_threads(Int32(n)) } }
        return try body()
    }
}

/// Parallel loops over index ranges, split into one contiguous chunk per thread.
public enum Parallel {
    /// Calls `body(range)` for disjoint ranges covering 0..<count. Runs inline when the
    /// work is too small to pay for waking threads (`minPerThread` items per thread).
    @inlinable
    public static func forRanges(_ count: Int, minPerThread: Int = 1, _ body: (Range<Int>) -> Void) {
        guard count > 0 else { return }
        let threads = min(ComputeThreads.count, max(1, count / max(1, minPerThread)))
        if threads <= 1 {
            body(0..<count)
            return
        }
        let chunk = (count + threads - 1) / threads
        runConcurrently(threads) { t in
            let lo = t * chunk
            let hi = min(count, lo + chunk)
            if lo < hi { body(lo..<hi) }
        }
    }

    /// Calls `body(threadIndex, range)`; the thread index lets a loop use per-thread scratch.
    @inlinable
    public static func forThreadRanges(_ count: Int, threads requested: Int, _ body: (Int, Range<Int>) -> Void) {
        guard count > 0 else { return }
        let threads = max(1, min(requested, count))
        if threads == 1 {
            body(0, 0..<count)
            return
        }
        let chunk = (count + threads - 1) / threads
        runConcurrently(threads) { t in
            let lo = t * chunk
            let hi = min(count, lo + chunk)
            if lo < hi { body(t, lo..<hi) }
        }
    }

    /// Runs `body(0..<iterations)` concurrently and returns when all are done.
    ///
    /// The kernels hand in closures that capture raw pointers and write disjoint index
    /// ranges; that partitioning, not the type system, is what makes them safe to run in
    /// parallel, so the closure is passed to Dispatch as `@Sendable` here, in one place.
    @inlinable
    public static func runConcurrently(_ iterations: Int, _ body: (Int) -> Void) {
        withoutActuallyEscaping(body) { escapable in
            let shared = unsafeBitCast(escapable, to: (@Sendable (Int) -> Void).self)
            DispatchQueue.concurrentPerform(iterations: iterations, execute: shared)
        }
    }
}

/// Chooses OpenBLAS's kernels for this CPU.
///
/// Debian's OpenBLAS 0.3.21 does not recognise recent AMD cores (Zen 4/5) and falls back
/// to its AVX2 kernels, although the CPU runs its AVX-512 ("SkylakeX") kernels almost
/// twice as fast. OpenBLAS reads `OPENBLAS_CORETYPE` only when it loads, so the
/// executable calls `recommendedCoreType()` at start and, when it names a better choice
/// than the one loaded, re-executes itself once with the variable set.
public enum BLASCoreSelection {
    public static let environmentKey = "OPENBLAS_CORETYPE"

    /// The core type to request, or nil when the loaded kernels are already right
    /// or the user has chosen explicitly.
    public static func recommendedCoreType() -> String? {
        if ProcessInfo.processInfo.environment[environmentKey] != nil { return nil }
        let flags = cpuFlags()
        let hasAVX512 = ["avx512f", "avx512bw", "avx512dq", "avx512vl"].allSatisfy(flags.contains)
        guard hasAVX512 else { return nil }
        let loaded = ComputeThreads.blasCoreName.lowercased()
        if loaded.contains("skylakex") || loaded.contains("cooperlake") || loaded.contains("sapphire") { return nil }
        return "SkylakeX"
    }

    /// CPU feature flags from /proc/cpuinfo (Linux); empty elsewhere.
    public static func cpuFlags() -> Set<String> {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return [] }
        for line in text.split(separator: "\n") where line.hasPrefix("flags") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            return Set(line[line.index(after: colon)...].split(separator: " ").map(String.init))
        }
        return []
    }
}
