import COpenCL
import Foundation
import Synchronization
import TributaryTensor

/// An OpenCL GPU (or POCL on the CPU) as a `ComputeDevice`: models run on it unchanged.
///
/// Tensors come from `allocator`, whose host blocks each get a device copy when they are
/// allocated (`StorageResidency`): the copies count against the VRAM budget in
/// `context.allocator`, live exactly as long as their blocks, and stay on the device
/// between kernels (uploaded when the host wrote since). Kernels cannot throw, so
/// the first failure (an out-of-memory, a launch the driver refused) is kept and every
/// later call is skipped; `checkHealthy()` throws it, and callers check before using a
/// step's loss or gradients.
public final class OpenCLDevice: ComputeDevice, @unchecked Sendable {
    // Unchecked: every stored property is immutable or a Sendable reference.
    public let context: OpenCLContext
    public let operations: OpenCLKernels
    public let allocator: TensorAllocator
    let record: OpenCLDeviceRecord

    public var kind: ComputeDeviceKind { .opencl }
    public var name: String { "OpenCL: \(context.device.name) (\(context.device.platformName))" }
    public var kernels: any ComputeKernels { OpenCLComputeKernels(device: self) }
    public var deviceMemoryBudgetBytes: Int? { context.allocator.budgetBytes }
    public var deviceMemoryPeakBytes: Int? { deviceBytesPeak }
    public var overlapsDownloads: Bool { true }
    /// Its blocks' copies, and the index buffers a call uploads: the embeddings' backward
    /// takes the most, 3 int32 per position and one more (distinct tokens, their starts,
    /// their positions).
    public var planningTraits: DevicePlanningTraits {
        let operations = self.operations
        return DevicePlanningTraits(overlapsDownloads: true, holdsBlockCopies: true,
                                    callTransientBytes: { 4 * (3 * $0 + 1) }) { operations.attentionScratchShape(sequence: $0) }
    }

    /// A device on `info` with `vramBudgetBytes` of device memory (nil: what the device
    /// reports) and `memoryBudgetBytes` of host memory for the host copies.
    public init(info: OpenCLDeviceInfo, vramBudgetBytes: Int?, memoryBudgetBytes: Int?,
                cache: OpenCLProgramCache) throws(OpenCLError) {
        let context = try OpenCLContext(device: info, memoryBudgetBytes: vramBudgetBytes ?? Self.defaultBudget(info))
        let record = OpenCLDeviceRecord()
        self.context = context
        self.record = record
        operations = try OpenCLKernels(context: context, cache: cache)
        allocator = TensorAllocator(budgetBytes: memoryBudgetBytes) { count throws(TensorAllocationError) in
            do {
                return try OpenCLStorageCopy(count: count, context: context, record: record)
            } catch {
                throw .deviceMemory("\(error)")
            }
        }
    }

    /// What a device offers when no budget is given: its memory less a margin for the
    /// driver, the display and other programs (10%, at least 256 MiB).
    public static func defaultBudget(_ info: OpenCLDeviceInfo) -> Int {
        max(0, info.globalMemoryBytes - max(info.globalMemoryBytes / 10, 256 << 20))
    }

    public func checkHealthy() throws {
        if let failure = record.firstFailure { throw failure }
    }

    /// Device memory at its peak (the VRAM the budget counts), as a plain number.
    public var deviceBytesPeak: Int { context.allocator.peakBytes }
    /// Bytes of tensor values copied host → device and device → host so far (token ids
    /// and targets, which arrive with each batch, are not counted).
    public var transferredBytes: (toDevice: Int, toHost: Int) { record.transferred }
    /// Device → host copies begun without the host waiting (gradients downloaded while the
    /// device computes the next block).
    public var downloadsBegun: Int { record.downloadsBegun }
}

/// What happened on a device: the first failure of its kernels or transfers (later ones
/// follow from it), and the bytes its storage copies moved each way.
final class OpenCLDeviceRecord: Sendable {
    private let failure = Mutex<OpenCLError?>(nil)
    private let moved = Mutex((toDevice: 0, toHost: 0))
    private let begun = Mutex(0)

    var firstFailure: OpenCLError? { failure.withLock { $0 } }

    func fail(_ error: OpenCLError) {
        failure.withLock { if $0 == nil { $0 = error } }
    }

    var transferred: (toDevice: Int, toHost: Int) { moved.withLock { $0 } }

    func count(toDevice: Int = 0, toHost: Int = 0) {
        moved.withLock { $0.toDevice += toDevice; $0.toHost += toHost }
    }

    var downloadsBegun: Int { begun.withLock { $0 } }
    func countDownloadBegun() { begun.withLock { $0 += 1 } }
}
