/// What kind of hardware runs a worker's kernels.
public enum ComputeDeviceKind: String, Sendable, Codable {
    case cpu
}

/// Where a worker computes, with its own memory budget and its own kernels. Today the
/// only device is the CPU (BLAS and our kernels); a GPU backend slots in as another
/// conformer whose allocator accounts VRAM and whose `kernels` run there (see
/// `ComputeKernels` for what it must implement). The memory planner sizes its plan
/// against `allocator.budgetBytes` whatever the device.
public protocol ComputeDevice: Sendable {
    var kind: ComputeDeviceKind { get }
    /// A human-readable name for logs ("CPU, 2 threads").
    var name: String { get }
    /// Every tensor the device's compute holds comes from here; its budget is the
    /// device's memory budget (nil: unbounded).
    var allocator: TensorAllocator { get }
    /// Every operation a model runs goes through these (one call per layer operation).
    var kernels: any ComputeKernels { get }
}

/// The host CPU: kernels run on `ComputeThreads`, memory is ordinary RAM.
public struct CPUDevice: ComputeDevice {
    public let allocator: TensorAllocator
    public var kind: ComputeDeviceKind { .cpu }
    public var name: String { "CPU, \(ComputeThreads.count) threads" }
    public var kernels: any ComputeKernels { CPUKernels() }

    public init(memoryBudgetBytes: Int?) {
        allocator = TensorAllocator(budgetBytes: memoryBudgetBytes)
        TensorAllocator.returnLargeBuffersToTheSystem()
    }

    /// The CPU computing into an existing allocator (models built with `allocator:`).
    public init(allocator: TensorAllocator) {
        self.allocator = allocator
    }
}
