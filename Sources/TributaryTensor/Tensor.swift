/// Owns one block of tensor memory and gives it back to its allocator when the last
/// tensor viewing it goes away.
public final class TensorStorage: @unchecked Sendable {
    // Unchecked: the memory is shared mutable state by design. Kernels write disjoint
    // ranges from parallel loops; callers never mutate one tensor from two tasks at once.
    /// The host copy as it is. When a device computes on this block (`residency` is set)
    /// it may be stale: read and write through `Tensor`, which brings it up to date.
    public let hostMemory: UnsafeMutablePointer<Float>
    public let count: Int
    public let allocator: TensorAllocator
    /// Set when the allocator's device keeps its own copy of each block (a GPU).
    public let residency: StorageResidency?

    public init(count: Int, allocator: TensorAllocator) throws(TensorAllocationError) {
        let memory = try allocator.allocateFloats(count)
        if let make = allocator.makeDeviceCopy, count > 0 {
            do {
                residency = StorageResidency(copy: try make(count))
            } catch {
                allocator.deallocateFloats(memory, count: count)
                throw error
            }
        } else {
            residency = allocator.tracksDeviceCopies ? StorageResidency() : nil
        }
        hostMemory = memory
        self.count = count
        self.allocator = allocator
    }

    /// The whole block for the host to read and write (the device's newer values first).
    public var base: UnsafeMutablePointer<Float> {
        residency?.hostWillWrite(hostMemory, count: count)
        return hostMemory
    }

    /// Starts bringing a device's newer values down without waiting (a GPU computing on,
    /// the host reading later); on the CPU there is nothing to bring.
    public func beginDownload() {
        residency?.beginDownload(hostMemory, count: count)
    }

    deinit {
        residency?.hostWillFree()
        allocator.deallocateFloats(hostMemory, count: count)
    }
}

/// A dense, row-major fp32 tensor: a shape over a contiguous range of a storage block.
public struct Tensor: @unchecked Sendable {
    public let shape: [Int]
    public let count: Int
    public let storage: TensorStorage
    public let offset: Int

    /// A new zero-filled tensor.
    public init(shape: [Int], allocator: TensorAllocator = .shared) throws(TensorAllocationError) {
        let n = try Tensor.elementCount(shape)
        storage = try TensorStorage(count: n, allocator: allocator)
        self.shape = shape
        count = n
        offset = 0
    }

    /// A tensor with the given values.
    public init(shape: [Int], values: [Float], allocator: TensorAllocator = .shared) throws(TensorAllocationError) {
        try self.init(shape: shape, allocator: allocator)
        guard values.count == count else { throw .invalidShape(shape) }
        values.withUnsafeBufferPointer { src in
            guard let p = src.baseAddress else { return }
            data.update(from: p, count: count)
        }
    }

    /// A view of `count` elements starting at `offset` within a storage block.
    public init(viewing storage: TensorStorage, offset: Int, shape: [Int]) throws(TensorAllocationError) {
        let n = try Tensor.elementCount(shape)
        guard offset >= 0, offset + n <= storage.count else { throw .invalidShape(shape) }
        self.storage = storage
        self.offset = offset
        self.shape = shape
        count = n
    }

    /// All of a storage block as one flat tensor (views into it follow with `rows`).
    public init(flat storage: TensorStorage) {
        self.init(unchecked: storage, offset: 0, shape: [storage.count], count: storage.count)
    }

    public static func elementCount(_ shape: [Int]) throws(TensorAllocationError) -> Int {
        var n = 1
        for d in shape {
            guard d >= 0 else { throw .invalidShape(shape) }
            let (m, o) = n.multipliedReportingOverflow(by: d)
            guard !o, m < Int(Int32.max) * 64 else { throw .invalidShape(shape) }
            n = m
        }
        return n
    }

    /// The values on the host, to read and write. On a device that keeps its own copy, the
    /// device's newer values come down first and the host's become the newest.
    public var data: UnsafeMutablePointer<Float> {
        guard let residency = storage.residency else { return storage.hostMemory + offset }
        residency.hostWillWrite(storage.hostMemory, count: storage.count)
        return storage.hostMemory + offset
    }

    /// The values on the host, to read only: on a device, only this view's elements come
    /// down, and the device's copy stays the one kernels use.
    public var readableData: UnsafePointer<Float> {
        if let residency = storage.residency {
            residency.hostWillRead(storage.hostMemory, blockCount: storage.count, offset: offset, count: count)
        }
        return UnsafePointer(storage.hostMemory + offset)
    }
    public var byteCount: Int { count * MemoryLayout<Float>.stride }
    public var buffer: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: data, count: count) }

    public func toArray() -> [Float] { Array(UnsafeBufferPointer(start: readableData, count: count)) }

    public func fill(_ value: Float) {
        guard let residency = storage.residency else {
            (storage.hostMemory + offset).update(repeating: value, count: count)
            return
        }
        residency.fill(storage.hostMemory, count: storage.count, offset: offset, rangeCount: count, value: value)
    }
    public func zero() { fill(0) }

    /// Copies another tensor's values (the element counts must match).
    public func copy(from other: Tensor) {
        precondition(other.count == count, "copy between tensors of \(other.count) and \(count) elements")
        data.update(from: other.readableData, count: count)
    }

    public func copy(from values: [Float]) {
        precondition(values.count == count, "copy of \(values.count) values into a tensor of \(count)")
        values.withUnsafeBufferPointer { src in
            if let p = src.baseAddress { data.update(from: p, count: count) }
        }
    }

    /// A view of rows `start..<start+rows` of the leading dimension.
    public func rows(_ start: Int, _ rows: Int) -> Tensor {
        let rowSize = shape.dropFirst().reduce(1, *)
        var s = shape
        s[0] = rows
        // Cannot fail: the range lies inside this tensor.
        return Tensor(unchecked: storage, offset: offset + start * rowSize, shape: s, count: rows * rowSize)
    }

    /// The same elements under another shape with the same element count.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        let n = newShape.reduce(1, *)
        precondition(n == count, "reshape \(shape) to \(newShape)")
        return Tensor(unchecked: storage, offset: offset, shape: newShape, count: n)
    }

    init(unchecked storage: TensorStorage, offset: Int, shape: [Int], count: Int) {
        self.storage = storage
        self.offset = offset
        self.shape = shape
        self.count = count
    }
}
