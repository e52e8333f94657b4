/// What a memory plan must know of the device that runs it, besides its budgets: the
/// size of the scratch its kernels ask a model for, and whether it hands finished
/// gradients on one block later (downloading them while the next block computes). Plans
/// walk the step's allocations with these, so their peak is the device's own.
public struct DevicePlanningTraits: Sendable {
    /// `ComputeDevice.overlapsDownloads`.
    public let overlapsDownloads: Bool
    /// `ComputeKernels.attentionScratchShape(sequence:)`.
    public let attentionScratchShape: @Sendable (_ sequence: Int) -> [Int]

    public init(overlapsDownloads: Bool, attentionScratchShape: @escaping @Sendable (_ sequence: Int) -> [Int]) {
        self.overlapsDownloads = overlapsDownloads
        self.attentionScratchShape = attentionScratchShape
    }

    /// The CPU (with the compute threads of the moment of the call): also what a coordinator
    /// plans with for workers it has not met.
    public static var cpu: DevicePlanningTraits {
        DevicePlanningTraits(overlapsDownloads: false) { CPUKernels().attentionScratchShape(sequence: $0) }
    }
}

extension ComputeDevice {
    public var planningTraits: DevicePlanningTraits {
        let kernels = self.kernels
        return DevicePlanningTraits(overlapsDownloads: overlapsDownloads) { kernels.attentionScratchShape(sequence: $0) }
    }
}
