import COpenCL
import Foundation

/// Creates every device buffer and counts it against a VRAM budget, as `TensorAllocator`
/// does for host memory: the planner sizes a plan against `budgetBytes`, and a request
/// that would pass it is refused here, before the driver is asked (drivers allocate
/// lazily and some overcommit, so their own refusal may come late or never).
public final class DeviceAllocator: @unchecked Sendable {
    // Unchecked: the counters are guarded by `lock`; `context` is an OpenCL handle, which
    // OpenCL allows every thread to use.
    public let budgetBytes: Int?
    /// The device's largest single buffer; a larger request is refused like one over budget.
    public let maxAllocationBytes: Int
    let context: cl_context
    private let lock = NSLock()
    private var current = 0
    private var peak = 0

    init(context: cl_context, budgetBytes: Int?, maxAllocationBytes: Int) {
        clRetainContext(context)
        self.context = context
        self.budgetBytes = budgetBytes
        self.maxAllocationBytes = maxAllocationBytes
    }

    deinit { clReleaseContext(context) }

    /// Bytes held by live buffers.
    public var currentBytes: Int { lock.withLock { current } }
    /// The most bytes held at once since creation (or `resetPeak`).
    public var peakBytes: Int { lock.withLock { peak } }
    public func resetPeak() { lock.withLock { peak = current } }

    /// A new uninitialised buffer of `bytes` (at least 1), counted until `release`.
    func allocate(bytes requested: Int) throws(OpenCLError) -> cl_mem {
        // OpenCL refuses empty buffers; an empty tensor still gets a 4-byte one.
        let bytes = max(requested, MemoryLayout<Float>.size)
        lock.lock()
        let inUse = current
        if let budgetBytes, inUse + bytes > budgetBytes {
            lock.unlock()
            throw .outOfDeviceMemory(requestedBytes: bytes, inUseBytes: inUse, budgetBytes: budgetBytes, driverCode: nil)
        }
        // Reserved before the driver call so that two threads cannot both pass the check.
        current += bytes
        peak = max(peak, current)
        lock.unlock()
        if bytes > maxAllocationBytes {
            release(bytes: bytes)
            throw .outOfDeviceMemory(requestedBytes: bytes, inUseBytes: inUse, budgetBytes: budgetBytes,
                                     driverCode: CL_INVALID_BUFFER_SIZE)
        }
        var code: cl_int = CL_SUCCESS
        let buffer = clCreateBuffer(context, cl_mem_flags(CL_MEM_READ_WRITE), bytes, nil, &code)
        guard code == CL_SUCCESS, let buffer else {
            release(bytes: bytes)
            if code == CL_MEM_OBJECT_ALLOCATION_FAILURE || code == CL_OUT_OF_RESOURCES || code == CL_INVALID_BUFFER_SIZE {
                throw .outOfDeviceMemory(requestedBytes: bytes, inUseBytes: inUse, budgetBytes: budgetBytes, driverCode: code)
            }
            throw .call("clCreateBuffer", code: code)
        }
        return buffer
    }

    func release(bytes: Int) {
        lock.withLock { current -= bytes }
    }

    /// Bytes a buffer for `count` floats (or 32-bit ints) takes, as `allocate` counts it.
    static func bytes(forElements count: Int) -> Int { max(count, 1) * MemoryLayout<Float>.size }
}

/// A dense row-major buffer of 32-bit values on the device (fp32 activations and weights;
/// the kernels' token ids and targets are the same size, as Int32). Its memory returns to
/// the allocator when the last reference goes away.
public final class DeviceTensor: @unchecked Sendable {
    // Unchecked: a cl_mem may be used from any thread; ordering is the queue's job.
    public let shape: [Int]
    public let count: Int
    let buffer: cl_mem
    /// Where this tensor starts in `buffer`, in elements (0 unless it is a view).
    let offset: Int
    let allocator: DeviceAllocator
    /// Bytes counted against the allocator's budget (0 for a view: its owner counts them).
    public let byteCount: Int
    /// A view keeps the tensor owning its buffer alive.
    private let owner: DeviceTensor?

    init(shape: [Int], allocator: DeviceAllocator) throws(OpenCLError) {
        var n = 1
        for d in shape {
            let (m, overflow) = n.multipliedReportingOverflow(by: d)
            guard d >= 0, !overflow else { throw .invalidArgument("tensor shape \(shape)") }
            n = m
        }
        byteCount = DeviceAllocator.bytes(forElements: n)
        buffer = try allocator.allocate(bytes: byteCount)
        self.shape = shape
        count = n
        offset = 0
        owner = nil
        self.allocator = allocator
    }

    /// `count` elements of `parent` from element `offset` on, sharing its buffer.
    init(viewing parent: DeviceTensor, offset: Int, count: Int) throws(OpenCLError) {
        guard offset >= 0, count >= 0, offset <= parent.count - count else {
            throw .invalidArgument("a view of \(count) values at \(offset) in a tensor of \(parent.count)")
        }
        buffer = parent.buffer
        self.offset = parent.offset + offset
        self.count = count
        shape = [count]
        byteCount = 0
        allocator = parent.allocator
        owner = parent.owner ?? parent
    }

    deinit {
        guard owner == nil else { return }
        clReleaseMemObject(buffer)
        allocator.release(bytes: byteCount)
    }
}
