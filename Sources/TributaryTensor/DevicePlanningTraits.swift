/// What a memory plan must know of the device that runs it, besides its budgets: the
/// size of the scratch its kernels ask a model for, whether it hands finished gradients
/// on one block later (downloading them while the next block computes), and whether it
/// keeps its own copy of every block (a GPU), whose memory the plan then predicts too.
/// Plans walk the step's allocations with these, so their peaks are the device's own.
public struct DevicePlanningTraits: Sendable {
    /// `ComputeDevice.overlapsDownloads`.
    public let overlapsDownloads: Bool
    /// `ComputeKernels.attentionScratchShape(sequence:)`.
    public let attentionScratchShape: @Sendable (_ sequence: Int) -> [Int]
    /// Every tensor block has a copy in the device's memory for exactly as long as the
    /// block lives (`TensorAllocator.makeDeviceCopy`).
    public let holdsBlockCopies: Bool
    /// The most device memory a kernel takes for its call alone, beyond the blocks (index
    /// buffers such as token ids), for a step of `positions` tokens or rows.
    public let callTransientBytes: @Sendable (_ positions: Int) -> Int

    public init(overlapsDownloads: Bool, holdsBlockCopies: Bool = false,
                callTransientBytes: @escaping @Sendable (_ positions: Int) -> Int = { _ in 0 },
                attentionScratchShape: @escaping @Sendable (_ sequence: Int) -> [Int]) {
        self.overlapsDownloads = overlapsDownloads
        self.holdsBlockCopies = holdsBlockCopies
        self.callTransientBytes = callTransientBytes
        self.attentionScratchShape = attentionScratchShape
    }

    /// The CPU (with the compute threads of the moment of the call): also what a coordinator
    /// plans with for workers it has not met.
    public static var cpu: DevicePlanningTraits {
        DevicePlanningTraits(overlapsDownloads: false) { CPUKernels().attentionScratchShape(sequence: $0) }
    }
}

extension ComputeDevice {
    /// A device without memory of its own, or one whose calls take none beyond its blocks.
    public var planningTraits: DevicePlanningTraits {
        let kernels = self.kernels
        return DevicePlanningTraits(overlapsDownloads: overlapsDownloads, holdsBlockCopies: allocator.tracksDeviceCopies) {
            kernels.attentionScratchShape(sequence: $0)
        }
    }
}
