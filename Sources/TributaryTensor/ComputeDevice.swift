/// What kind of hardware runs a worker's kernels.
public enum ComputeDeviceKind: String, Sendable, Codable {
    case cpu
    case opencl
}

/// Where a worker computes, with its own memory budget and its own kernels: the CPU
/// (BLAS and our kernels) or an OpenCL GPU (`TributaryOpenCL.OpenCLDevice`), whose
/// allocator's blocks carry a device copy (`StorageResidency`) and whose `kernels` run
/// there (see `ComputeKernels` for what a device implements). The memory planner sizes
/// its plan against `allocator.budgetBytes` and `deviceMemoryBudgetBytes`.
public protocol ComputeDevice: Sendable {
    var kind: ComputeDeviceKind { get }
    /// A human-readable name for logs ("CPU, 2 threads").
    var name: String { get }
    /// Every tensor the device's compute holds comes from here; its budget is the
    /// device's memory budget (nil: unbounded).
    var allocator: TensorAllocator { get }
    /// Every operation a model runs goes through these (one call per layer operation).
    var kernels: any ComputeKernels { get }
    /// The device memory a step may use, when the device has its own (a GPU's VRAM budget).
    var deviceMemoryBudgetBytes: Int? { get }
    /// The most device memory held at once (nil without device memory of its own).
    var deviceMemoryPeakBytes: Int? { get }
    /// Whether a finished gradient is worth downloading while the device computes the next
    /// block (a GPU): a streamed step then hands each block's gradient on one block later,
    /// holding one more block gradient, which its memory plan counts.
    var overlapsDownloads: Bool { get }
    /// What its memory plans must know of it (`DevicePlanningTraits`).
    var planningTraits: DevicePlanningTraits { get }
    /// Throws the first failure since the device was made (a kernel or transfer that did
    /// not run), if any. Kernels cannot throw, so a device records its failures and every
    /// caller checks here before a step's loss or gradients are used: a failed step must
    /// never become an update.
    func checkHealthy() throws
}

extension ComputeDevice {
    /// What a plan with no prediction of the device's own memory must fit as a whole (local
    /// steps): `memoryBudgetBytes` and, on a device with memory of its own, its budget too
    /// (every tensor of the step has its copy there). Other plans predict each side apart.
    public func planningBudget(memoryBudgetBytes: Int?) -> Int? {
        [memoryBudgetBytes, deviceMemoryBudgetBytes].compactMap { $0 }.min()
    }

    public var deviceMemoryBudgetBytes: Int? { nil }
    public var deviceMemoryPeakBytes: Int? { nil }
    public var overlapsDownloads: Bool { false }
    public func checkHealthy() throws {}
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
