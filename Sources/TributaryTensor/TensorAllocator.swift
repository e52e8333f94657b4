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
    /// The device could not hold the block's copy (over its VRAM budget, or refused by the
    /// driver); the device's own words.
    case deviceMemory(String)

    public var description: String {
        switch self {
        case let .overBudget(req, cur, budget):
            return "tensor allocation of \(ByteCount.format(req)) refused: \(ByteCount.format(cur)) already in use, budget is \(ByteCount.format(budget)); raise the memory budget or shrink the model/batch"
        case let .outOfMemory(req):
            return "the system could not provide \(ByteCount.format(req)) of memory for a tensor"
        case let .invalidShape(shape):
            return "invalid tensor shape \(shape): dimensions must be non-negative and the element count must fit in memory"
        case let .deviceMemory(why):
            return why
        }
    }
}

/// The one place tensor memory comes from.
///
/// It counts the bytes currently held and the peak, and refuses an allocation that
/// would exceed its budget. A worker's memory planner sizes its plan against this
/// accountant, so every tensor byte the compute engine holds is visible here.
///
/// Large blocks are mapped from the kernel, and a freed one is kept for the next request
/// of the same size (a caching allocator, as PyTorch's): a training step asks for the
/// same buffers every time, and a fresh mapping would cost a page fault per 4 KiB. Cached
/// blocks count towards the budget with the live ones (they are resident memory): when a
/// new block would take live + cached past the budget, cached blocks are unmapped first.
/// Without a budget the cache never holds more than the peak of live bytes.
public final class TensorAllocator: Sendable {
    private struct Counters {
        var current = 0
        var peak = 0
        var budget: Int?
        var allocations = 0
        /// Freed large blocks by byte size (addresses as bit patterns), and their total.
        var cached: [Int: [Int]] = [:]
        var cachedBytes = 0
    }
    private let counters: Mutex<Counters>

    /// Memory is 64-byte aligned: one cache line, and the widest vector loads.
    public static let alignment = 64

    /// The process-wide default, unbounded unless someone sets a budget.
    public static let shared = TensorAllocator(budgetBytes: nil)

    /// Makes a block's copy on the device when a block of `count` floats is allocated.
    public typealias DeviceCopyMaker = @Sendable (_ count: Int) throws(TensorAllocationError) -> any DeviceStorageCopy

    /// Set for the host memory of a device that keeps its own copy of every block (a GPU):
    /// the copy is made with the block and freed with it, so the device holds memory
    /// exactly while the host does (what a memory plan counts), and a block the device
    /// cannot hold is refused when it is allocated.
    public let makeDeviceCopy: DeviceCopyMaker?
    /// Whether blocks carry a `StorageResidency`.
    public var tracksDeviceCopies: Bool { makeDeviceCopy != nil }

    public init(budgetBytes: Int?, deviceCopies: DeviceCopyMaker? = nil) {
        counters = Mutex(Counters(budget: budgetBytes))
        makeDeviceCopy = deviceCopies
    }

    public var currentBytes: Int { counters.withLock { $0.current } }
    public var peakBytes: Int { counters.withLock { $0.peak } }
    public var budgetBytes: Int? { counters.withLock { $0.budget } }
    public var liveAllocations: Int { counters.withLock { $0.allocations } }

    public func setBudget(_ bytes: Int?) { counters.withLock { $0.budget = bytes } }

    /// Starts a new peak measurement from what is held now.
    public func resetPeak() { counters.withLock { $0.peak = $0.current } }

    /// Tensors this large are mapped from the kernel (and cached when freed; see above)
    /// rather than taken from a malloc heap, which would keep freed memory and let the
    /// process outgrow its budget. The kernel's pages come zero-filled.
    public static let directMappingThreshold = 256 * 1024

    /// Bytes of freed blocks kept for reuse (resident, counted with the budget).
    public var cachedBytes: Int { counters.withLock { $0.cachedBytes } }

    /// Allocates `count` zero-filled floats.
    public func allocateFloats(_ count: Int) throws(TensorAllocationError) -> UnsafeMutablePointer<Float> {
        let (bytes, overflow) = count.multipliedReportingOverflow(by: MemoryLayout<Float>.stride)
        if count < 0 || overflow { throw .invalidShape([count]) }
        if bytes >= Self.directMappingThreshold { return try allocateMapped(bytes, count: count) }
        try reserve(bytes)
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

    private func allocateMapped(_ bytes: Int, count: Int) throws(TensorAllocationError) -> UnsafeMutablePointer<Float> {
        // Reserve, and take a cached block of this size or decide which cached blocks to
        // unmap so that live + cached stays within the budget (or the peak, unbounded).
        let outcome: Result<(reused: Int?, evicted: [(Int, Int)]), TensorAllocationError> = counters.withLock { c in
            let next = c.current + bytes
            if let budget = c.budget, next > budget {
                return .failure(.overBudget(requestedBytes: bytes, currentBytes: c.current, budgetBytes: budget))
            }
            c.current = next
            c.allocations += 1
            if next > c.peak { c.peak = next }
            if var list = c.cached[bytes], let address = list.popLast() {
                c.cached[bytes] = list.isEmpty ? nil : list
                c.cachedBytes -= bytes
                return .success((address, []))
            }
            let limit = c.budget ?? c.peak
            var evicted: [(Int, Int)] = []
            while c.current + c.cachedBytes > limit, let size = c.cached.keys.max(), var list = c.cached[size],
                  let address = list.popLast() {
                c.cached[size] = list.isEmpty ? nil : list
                c.cachedBytes -= size
                evicted.append((address, size))
            }
            return .success((nil, evicted))
        }
        let (reused, evicted) = try outcome.get()
        for (address, size) in evicted {
            if let p = UnsafeMutableRawPointer(bitPattern: address) { munmap(p, size) }
        }
        if let reused, let p = UnsafeMutableRawPointer(bitPattern: reused) {
            memset(p, 0, bytes)
            return p.bindMemory(to: Float.self, capacity: count)
        }
        let raw = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        guard let raw, raw != MAP_FAILED else {
            unreserve(bytes)
            throw .outOfMemory(requestedBytes: bytes)
        }
        return raw.bindMemory(to: Float.self, capacity: count)
    }

    public func deallocateFloats(_ pointer: UnsafeMutablePointer<Float>, count: Int) {
        let bytes = count * MemoryLayout<Float>.stride
        guard bytes >= Self.directMappingThreshold else {
            free(pointer)
            unreserve(bytes)
            return
        }
        // Live → cached: their sum, hence what the budget sees, does not change.
        let address = Int(bitPattern: UnsafeMutableRawPointer(pointer))
        counters.withLock { c in
            c.current -= bytes
            c.allocations -= 1
            c.cached[bytes, default: []].append(address)
            c.cachedBytes += bytes
        }
    }

    /// Unmaps every cached block.
    public func releaseCachedBlocks() {
        let blocks: [(Int, Int)] = counters.withLock { c in
            defer { c.cached = [:]; c.cachedBytes = 0 }
            return c.cached.flatMap { size, list in list.map { ($0, size) } }
        }
        for (address, size) in blocks {
            if let p = UnsafeMutableRawPointer(bitPattern: address) { munmap(p, size) }
        }
    }

    /// Pins glibc's mmap threshold (it otherwise rises after each large free, after which
    /// large buffers — encoded updates, shard bodies — come from heaps that keep their
    /// memory). Called by `CPUDevice`; harmless elsewhere.
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

    /// Counts `bytes` as live (refusing past the budget), unmapping cached blocks when
    /// live + cached would pass it.
    private func reserve(_ bytes: Int) throws(TensorAllocationError) {
        let outcome: Result<[(Int, Int)], TensorAllocationError> = counters.withLock { c in
            let next = c.current + bytes
            if let budget = c.budget, next > budget {
                return .failure(.overBudget(requestedBytes: bytes, currentBytes: c.current, budgetBytes: budget))
            }
            c.current = next
            c.allocations += 1
            if next > c.peak { c.peak = next }
            var evicted: [(Int, Int)] = []
            let limit = c.budget ?? c.peak
            while c.current + c.cachedBytes > limit, let size = c.cached.keys.max(), var list = c.cached[size],
                  let address = list.popLast() {
                c.cached[size] = list.isEmpty ? nil : list
                c.cachedBytes -= size
                evicted.append((address, size))
            }
            return .success(evicted)
        }
        for (address, size) in try outcome.get() {
            if let p = UnsafeMutableRawPointer(bitPattern: address) { munmap(p, size) }
        }
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

    /// Parses "4096", "64KiB", "512MiB", "2GiB", "2 GiB", "512mib" (also KB/MB/GB as decimal
    /// units; K/M/G alone are binary).
    public static func parse(_ text: String) -> Int? {
        let t = text.trimmingCharacters(in: .whitespaces).lowercased()
        let kib = 1024.0, mib = kib * 1024, gib = mib * 1024, tib = gib * 1024
        let units: [(String, Double)] = [("kib", kib), ("mib", mib), ("gib", gib), ("tib", tib),
                                         ("kb", 1e3), ("mb", 1e6), ("gb", 1e9), ("tb", 1e12),
                                         ("k", kib), ("m", mib), ("g", gib), ("t", tib), ("b", 1)]
        for (suffix, scale) in units where t.hasSuffix(suffix) {
            guard let v = Double(t.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)), v.isFinite, v >= 0,
                  v * scale < 9e18 else { return nil }
            return Int(v * scale)
        }
        guard let v = Int(t), v >= 0 else { return nil }
        return v
    }
}
