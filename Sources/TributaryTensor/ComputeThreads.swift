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

    /// OpenBLAS itself stays single-threaded; `BLAS.sgemm` splits large products over
    /// this many threads of the project's pool (see `BLAS`).
    public static func set(_ threads: Int) {
        let n = max(1, threads)
        configured.store(n, ordering: .relaxed)
        openblas_set_num_threads(1)
    }

    /// OpenBLAS's kernel family, e.g. "Haswell" or "SkylakeX".
    public static var blasCoreName: String {
        guard let p = openblas_get_corename() else { return "unknown" }
        return String(cString: p)
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
/// to its AVX2 ("Haswell") kernels, although the CPU runs its AVX-512 ("SkylakeX")
/// kernels almost twice as fast; some environments also pin `OPENBLAS_CORETYPE=Haswell`
/// machine-wide. OpenBLAS reads the variable only when it loads, so the executable calls
/// `recommendedCoreType()` at start and, when it names a faster family than the one
/// loaded, re-executes itself once with the variable set.
///
/// `TRIBUTARY_BLAS_CORETYPE` decides: unset or `auto` upgrades to the best family the CPU
/// supports (never downgrades); `inherit` keeps whatever OPENBLAS_CORETYPE says; any
/// other value is passed to OpenBLAS as the core type.
public enum BLASCoreSelection {
    public static let environmentKey = "OPENBLAS_CORETYPE"
    public static let policyKey = "TRIBUTARY_BLAS_CORETYPE"
    /// Set on the re-executed process so that a refused core type cannot cause a loop.
    public static let reexecutedKey = "TRIBUTARY_BLAS_REEXECUTED"

    /// The core type to re-execute with, or nil to keep the loaded kernels.
    public static func recommendedCoreType() -> String? {
        let env = ProcessInfo.processInfo.environment
        if env[reexecutedKey] != nil { return nil }
        let loaded = ComputeThreads.blasCoreName.lowercased()
        switch env[policyKey]?.lowercased() {
        case "inherit":
            return nil
        case let pinned? where pinned != "auto" && !pinned.isEmpty:
            return loaded == pinned ? nil : env[policyKey]
        default:
            break
        }
        let flags = cpuFlags()
        let hasAVX512 = ["avx512f", "avx512bw", "avx512dq", "avx512vl"].allSatisfy(flags.contains)
        guard hasAVX512 else { return nil }
        let avx512Families = ["skylakex", "cooperlake", "sapphirerapids"]
        if avx512Families.contains(where: loaded.contains) { return nil }
        return "SkylakeX"
    }

    /// CPU feature flags from /proc/cpuinfo (Linux); empty elsewhere.
    public static func cpuFlags() -> Set<String> {
        // /proc files report a size of 0, so read until EOF rather than by size.
        let fd = open("/proc/cpuinfo", O_RDONLY)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16_384)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        let text = String(decoding: bytes, as: UTF8.self)
        for line in text.split(separator: "\n") where line.hasPrefix("flags") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            return Set(line[line.index(after: colon)...].split(separator: " ").map(String.init))
        }
        return []
    }
}
