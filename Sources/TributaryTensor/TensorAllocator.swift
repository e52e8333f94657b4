import CMalloc
import Foundation
import Synchronization

/// Raised when tensor memory cannot be provided.
public enum TensorAllocationError: Error, CustomStringConvertible, Equatable {
    /// The allocation would take the accountant past its byte budget.
    case overBudget(requestedBytes: Int, currentBytes: Int, budgetBytes: Int)
    /// The system allocator returned nothing.
    case outOfMemory(requestedBytes: Int)
    /// A shape with a negative dimension or an element count that overflows.
    case invalidShape([Int])

    public var description: String {
        switch self {
        case let .overBudget(req, cur, budget):
            return "tensor allocation of \(ByteCount.format(req)) refused: \(ByteCount.format(cur)) already in use, budget is \(ByteCount.format(budget)); raise the memory budget or shrink the model/batch"
        case let .outOfMemory(req):
            return "the system could not provide \(ByteCount.format(req)) of memory for a tensor"
        case let .invalidShape(shape):
            return "invalid tensor shape \(shape): dimensions must be non-negative and the element count must fit in memory"
        }
    }
}

/// The one place tensor memory comes from.
///
/// It counts the bytes currently held and the peak, and refuses an allocation that
/// would exceed its budget. A worker's memory planner sizes its plan against this
/// accountant, so every tensor byte the compute engine holds is visible here.
public final class TensorAllocator: Sendable {
    private struct Counters {
        var current = 0
        var peak = 0
        var budget: Int?
        var allocations = 0
    }
    private let counters: Mutex<Counters>

    /// Memory is 64-byte aligned: one cache line, and the widest vector loads.
    public static let alignment = 64

    /// The process-wide default, unbounded unless someone sets a budget.
    public static let shared = TensorAllocator(budgetBytes: nil)

    public init(budgetBytes: Int?) {
        counters = Mutex(Counters(budget: budgetBytes))
    }

    public var currentBytes: Int { counters.withLock { $0.current } }
    public var peakBytes: Int { counters.withLock { $0.peak } }
    public var budgetBytes: Int? { counters.withLock { $0.budget } }
    public var liveAllocations: Int { counters.withLock { $0.allocations } }

    public func setBudget(_ bytes: Int?) { counters.withLock { $0.budget = bytes } }

    /// Starts a new peak measurement from what is held now.
    public func resetPeak() { counters.withLock { $0.peak = $0.current } }

    /// Tensors this large are mapped from the kernel directly and unmapped when freed, so
    /// their memory goes back to the OS at once (a malloc heap would keep it, and a
    /// budgeted worker's resident size would drift above its budget); the kernel's pages
    /// also come zero-filled, so no memset is needed.
    public static let directMappingThreshold = 256 * 1024

    /// Allocates `count` zero-filled floats.
    public func allocateFloats(_ count: Int) throws(TensorAllocationError) -> UnsafeMutablePointer<Float> {
        let (bytes, overflow) = count.multipliedReportingOverflow(by: MemoryLayout<Float>.stride)
        if count < 0 || overflow { throw .invalidShape([count]) }
        try reserve(bytes)
        if bytes >= Self.directMappingThreshold {
            let raw = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
            guard let raw, raw != MAP_FAILED else {
                unreserve(bytes)
                throw .outOfMemory(requestedBytes: bytes)
            }
            return raw.bindMemory(to: Float.self, capacity: count)
        }
        // posix_memalign refuses size 0 on some platforms; keep one line for empty tensors.
        var raw: UnsafeMutableRawPointer?
        let rc = posix_memalign(&raw, Self.alignment, max(bytes, Self.alignment))
        guard rc == 0, let raw else {
            unreserve(bytes)
            throw .outOfMemory(requestedBytes: bytes)
        }
        memset(raw, 0, max(bytes, Self.alignment))
        return raw.bindMemory(to: Float.self, capacity: max(count, 1))
    }

    public func deallocateFloats(_ pointer: UnsafeMutablePointer<Float>, count: Int) {
        let bytes = count * MemoryLayout<Float>.stride
        if bytes >= Self.directMappingThreshold {
            munmap(UnsafeMutableRawPointer(pointer), bytes)
        } else {
            free(pointer)
        }
        unreserve(bytes)
    }

    /// Pins glibc's mmap threshold (it otherwise rises after each large free, after which
    /// large buffers — encoded updates, shard bodies — come from heaps that keep their
    /// memory). Called once by a budgeted device; harmless elsewhere.
    public static func returnLargeBuffersToTheSystem() {
        #if os(Linux)
        _ = mallopt(M_MMAP_THRESHOLD, Int32(directMappingThreshold))
        #endif
    }

    /// Counts `bytes` held outside tensors against the budget (an encoded update waiting
    /// for upload, a shard body being decoded), so the budget covers them too. Give them
    /// back with `releaseBytes`.
    public func reserveBytes(_ bytes: Int) throws(TensorAllocationError) {
        if bytes < 0 { throw .invalidShape([bytes]) }
        try reserve(bytes)
    }

    public func releaseBytes(_ bytes: Int) { unreserve(bytes) }

    /// Runs `body` with `bytes` reserved, released afterwards whatever happens.
    public func withReservedBytes<R>(_ bytes: Int, _ body: () throws -> R) throws -> R {
        try reserveBytes(bytes)
        defer { releaseBytes(bytes) }
        return try body()
    }

    private func reserve(_ bytes: Int) throws(TensorAllocationError) {
        let refusal: TensorAllocationError? = counters.withLock { c in
            let next = c.current + bytes
            if let budget = c.budget, next > budget {
                return .overBudget(requestedBytes: bytes, currentBytes: c.current, budgetBytes: budget)
            }
            c.current = next
            c.allocations += 1
            if next > c.peak { c.peak = next }
            return nil
        }
        if let refusal { throw refusal }
    }

    private func unreserve(_ bytes: Int) {
        counters.withLock { c in
            c.current -= bytes
            c.allocations -= 1
        }
    }
}

/// Human-readable byte sizes and parsing of sizes such as "512MiB".
public enum ByteCount {
    public static func format(_ bytes: Int) -> String {
        let b = Double(bytes)
        let kib = 1024.0, mib = kib * 1024, gib = mib * 1024
        if b >= gib { return String(format: "%.2f GiB", b / gib) }
        if b >= mib { return String(format: "%.1f MiB", b / mib) }
        if b >= kib { return String(format: "%.1f KiB", b / kib) }
        return "\(bytes) B"
    }

    /// Parses "4096", "64KiB", "512MiB", "2GiB" (also KB/MB/GB as decimal units).
    public static func parse(_ text: String) -> Int? {
        let t = text.trimmingCharacters(in: .whitespaces)
        let kib = 1024.0, mib = kib * 1024, gib = mib * 1024, tib = gib * 1024
        let units: [(String, Double)] = [("KiB", kib), ("MiB", mib), ("GiB", gib), ("TiB", tib),
                                         ("KB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12),
                                         ("K", kib), ("M", mib), ("G", gib), ("B", 1)]
        for (suffix, scale) in units where t.hasSuffix(suffix) {
            guard let v = Double(t.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)), v >= 0,
                  v * scale < 9e18 else { return nil }
            return Int(v * scale)
        }
        guard let v = Int(t), v >= 0 else { return nil }
        return v
    }
}
