import COpenCL

/// An OpenCL context on one device, with its queues and its VRAM allocator.
///
/// Kernels run on `computeQueue`, which is in order: each operation sees the results of
/// the ones enqueued before it, so callers need no events. A model's storage blocks go up
/// on `transferQueue` without blocking the host (`OpenCLStorageCopy`), the compute queue
/// waiting for them on the device; reads block, which keeps the "synchronous as seen by
/// the caller" contract of `ComputeKernels`.
public final class OpenCLContext: @unchecked Sendable {
    // Unchecked: OpenCL handles may be used from any thread (OpenCL 1.2 makes every API
    // call thread-safe except clSetKernelArg, which `OpenCLKernels` serialises).
    public let device: OpenCLDeviceInfo
    public let allocator: DeviceAllocator
    let context: cl_context
    let computeQueue: cl_command_queue
    let transferQueue: cl_command_queue

    /// A context on `device` whose buffers are limited to `memoryBudgetBytes` (nil: the
    /// driver's limits only).
    public init(device: OpenCLDeviceInfo, memoryBudgetBytes: Int?) throws(OpenCLError) {
        var code: cl_int = CL_SUCCESS
        var deviceID: cl_device_id? = device.id
        guard let context = clCreateContext(nil, 1, &deviceID, nil, nil, &code), code == CL_SUCCESS else {
            throw .call("clCreateContext", code: code)
        }
        guard let compute = clCreateCommandQueue(context, device.id, 0, &code), code == CL_SUCCESS else {
            clReleaseContext(context)
            throw .call("clCreateCommandQueue", code: code)
        }
        guard let transfer = clCreateCommandQueue(context, device.id, 0, &code), code == CL_SUCCESS else {
            clReleaseCommandQueue(compute)
            clReleaseContext(context)
            throw .call("clCreateCommandQueue", code: code)
        }
        self.device = device
        self.context = context
        computeQueue = compute
        transferQueue = transfer
        allocator = DeviceAllocator(context: context, budgetBytes: memoryBudgetBytes,
                                    maxAllocationBytes: device.maxAllocationBytes)
    }

    /// A context on the first device of the first platform (`OpenCLPlatforms.devices()`'s order).
    public convenience init(memoryBudgetBytes: Int? = nil) throws(OpenCLError) {
        let devices = try OpenCLPlatforms.devices()
        guard let first = devices.first else { throw .noPlatform }
        try self.init(device: first, memoryBudgetBytes: memoryBudgetBytes)
    }

    deinit {
        clFinish(computeQueue)
        clFinish(transferQueue)
        clReleaseCommandQueue(transferQueue)
        clReleaseCommandQueue(computeQueue)
        clReleaseContext(context)
    }

    // MARK: Buffers

    /// A zero-filled tensor (as `Tensor(shape:)` is on the host).
    public func zeros(shape: [Int]) throws(OpenCLError) -> DeviceTensor {
        let tensor = try DeviceTensor(shape: shape, allocator: allocator)
        var zero: Float = 0
        try check(clEnqueueFillBuffer(computeQueue, tensor.buffer, &zero, MemoryLayout<Float>.size, 0,
                                      tensor.byteCount, 0, nil, nil), "clEnqueueFillBuffer")
        return tensor
    }

    /// A tensor holding `values` (their count must match the shape's).
    public func upload(_ values: [Float], shape: [Int]) throws(OpenCLError) -> DeviceTensor {
        let tensor = try DeviceTensor(shape: shape, allocator: allocator)
        try upload(values, into: tensor)
        return tensor
    }

    /// Replaces a tensor's values; returns when the host array may be reused.
    public func upload(_ values: [Float], into tensor: DeviceTensor) throws(OpenCLError) {
        guard values.count == tensor.count else {
            throw .invalidArgument("\(values.count) values for a tensor of \(tensor.count)")
        }
        try write(values, into: tensor)
    }

    /// 32-bit integers (token ids, targets) in a device buffer of the same size as floats.
    func uploadIndices(_ values: ArraySlice<Int32>) throws(OpenCLError) -> DeviceTensor {
        let tensor = try DeviceTensor(shape: [values.count], allocator: allocator)
        try write(Array(values), into: tensor)
        return tensor
    }

    private func write<T: BitwiseCopyable>(_ values: [T], into tensor: DeviceTensor) throws(OpenCLError) {
        guard !values.isEmpty else { return }
        let code = values.withUnsafeBytes { bytes in
            clEnqueueWriteBuffer(computeQueue, tensor.buffer, cl_bool(CL_TRUE), tensor.offset * MemoryLayout<Float>.size,
                                 bytes.count, bytes.baseAddress, 0, nil, nil)
        }
        try check(code, "clEnqueueWriteBuffer")
    }

    /// A tensor's values, after every operation enqueued before (the read blocks).
    public func download(_ tensor: DeviceTensor) throws(OpenCLError) -> [Float] {
        try download(tensor, count: tensor.count)
    }

    /// The first `count` values of a tensor.
    public func download(_ tensor: DeviceTensor, count: Int) throws(OpenCLError) -> [Float] {
        guard count >= 0, count <= tensor.count else {
            throw .invalidArgument("reading \(count) values of a tensor of \(tensor.count)")
        }
        var values = [Float](repeating: 0, count: count)
        guard count > 0 else { return values }
        let code = values.withUnsafeMutableBytes { bytes in
            clEnqueueReadBuffer(computeQueue, tensor.buffer, cl_bool(CL_TRUE), tensor.offset * MemoryLayout<Float>.size,
                                bytes.count, bytes.baseAddress, 0, nil, nil)
        }
        try check(code, "clEnqueueReadBuffer")
        return values
    }

    /// Waits until both queues have run everything enqueued so far.
    public func finish() throws(OpenCLError) {
        try check(clFinish(computeQueue), "clFinish")
        try check(clFinish(transferQueue), "clFinish")
    }
}
