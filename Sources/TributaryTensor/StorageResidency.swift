import Synchronization

/// A compute device's copy of one storage block (a GPU buffer of the same size).
///
/// The device creates it on the block's first use by a kernel; `StorageResidency` calls
/// these to keep host and device coherent. They cannot throw: a transfer that fails is
/// recorded by the device, whose `ComputeDevice.checkHealthy()` reports it before any
/// result of the step is used (as a CUDA context's errors are sticky).
public protocol DeviceStorageCopy: AnyObject, Sendable {
    /// Copies elements `offset ..< offset + count` to `host + offset`, after every
    /// operation queued before that writes them.
    func copyToHost(_ host: UnsafeMutablePointer<Float>, offset: Int, count: Int)
    /// Replaces the device's elements `0 ..< count` with the host's.
    func copyFromHost(_ host: UnsafePointer<Float>, count: Int)
    /// Sets elements `offset ..< offset + count` to `value` on the device.
    func fill(offset: Int, count: Int, value: Float)
    /// Starts copying elements `offset ..< offset + count` to `host + offset`, after every
    /// operation queued before that writes them, and returns without waiting: the host
    /// calls `waitUntilHostMayChange()` before it touches them.
    func beginCopyToHost(_ host: UnsafeMutablePointer<Float>, offset: Int, count: Int)
    /// Returns once no transfer still reads or writes the host's memory: called before the
    /// host reads, writes or frees the block (a device whose transfers block does nothing).
    func waitUntilHostMayChange()
}

extension DeviceStorageCopy {
    public func beginCopyToHost(_ host: UnsafeMutablePointer<Float>, offset: Int, count: Int) {
        copyToHost(host, offset: offset, count: count)
    }
    public func waitUntilHostMayChange() {}
}

/// Which copy of a storage block holds its newest values, for blocks a device computes
/// on. Kernels ask for the device copy (uploading the host's values when they are newer)
/// and mark what they write; host access through `Tensor` downloads what is newer on the
/// device first. So model code reads and writes tensors as on the CPU, and bytes cross
/// the bus only when the other side changed them: parameters once per load, the losses
/// and gradients when they are read.
public final class StorageResidency: Sendable {
    public enum Newest: Sendable { case host, device, both }

    private struct State {
        var copy: (any DeviceStorageCopy)?
        var newest: Newest = .host
    }
    private let state = Mutex(State())

    public init() {}

    /// A block whose device copy was made with it; the host's (zeroed) values are newest.
    public init(copy: any DeviceStorageCopy) {
        state.withLock { $0.copy = copy }
    }

    /// Which side holds the newest values (tests and transfer counts read it).
    public var newest: Newest { state.withLock { $0.newest } }
    /// The device copy, if a kernel has used this block.
    public var deviceCopy: (any DeviceStorageCopy)? { state.withLock { $0.copy } }

    /// The host is about to read and possibly write the whole block: the device's newer
    /// values come down first, and from now on the host's are the newest.
    func hostWillWrite(_ base: UnsafeMutablePointer<Float>, count: Int) {
        state.withLock { s in
            guard let copy = s.copy else { return }
            copy.waitUntilHostMayChange()
            if s.newest == .device { copy.copyToHost(base, offset: 0, count: count) }
            s.newest = .host
        }
    }

    /// The host memory is about to be freed: no transfer may still read it.
    func hostWillFree() {
        state.withLock { s in s.copy?.waitUntilHostMayChange() }
    }

    /// The host is about to read elements `offset ..< offset + count` only: those come down
    /// when the device's are newer, and the device copy stays valid. A read of the whole
    /// block leaves both sides equal (a second read moves nothing).
    func hostWillRead(_ base: UnsafeMutablePointer<Float>, blockCount: Int, offset: Int, count: Int) {
        state.withLock { s in
            guard let copy = s.copy else { return }
            copy.waitUntilHostMayChange()  // a download begun by `beginDownload` lands first
            guard s.newest == .device else { return }
            copy.copyToHost(base, offset: offset, count: count)
            if offset == 0 && count == blockCount { s.newest = .both }
        }
    }

    /// Starts bringing the device's newer values of the whole block down without waiting,
    /// so the transfer overlaps what the device computes next; the host's first read or
    /// write waits for it. Both sides then hold the newest values.
    func beginDownload(_ base: UnsafeMutablePointer<Float>, count: Int) {
        state.withLock { s in
            guard let copy = s.copy, s.newest == .device else { return }
            copy.beginCopyToHost(base, offset: 0, count: count)
            s.newest = .both
        }
    }

    /// Sets a range to `value` where the block lives: on the device when it has a copy (no
    /// transfer either way), else on the host.
    func fill(_ base: UnsafeMutablePointer<Float>, count: Int, offset: Int, rangeCount: Int, value: Float) {
        state.withLock { s in
            if let copy = s.copy {
                if s.newest == .host { copy.copyFromHost(base, count: count) }
                copy.fill(offset: offset, count: rangeCount, value: value)
                s.newest = .device
            } else {
                (base + offset).update(repeating: value, count: rangeCount)
            }
            // (The host is written only without a device copy, so no upload reads it.)
        }
    }

    /// The device copy for a kernel, created by `make` on first use and holding the newest
    /// values when this returns. `willWrite`: the kernel writes the block, so the device's
    /// values become the newest.
    public func deviceCopy<C: DeviceStorageCopy, E: Error>(of storage: TensorStorage, willWrite: Bool,
                                                           make: () throws(E) -> C) throws(E) -> C {
        try state.withLock { (s: inout State) throws(E) -> C in
            let copy: C
            if let existing = s.copy as? C {
                copy = existing
            } else {
                // Another device's copy (two devices in one process): its newer values first.
                if let other = s.copy {
                    other.waitUntilHostMayChange()
                    if s.newest == .device { other.copyToHost(storage.hostMemory, offset: 0, count: storage.count) }
                }
                copy = try make()
                s.copy = copy
                s.newest = .host
            }
            if s.newest == .host {
                copy.copyFromHost(storage.hostMemory, count: storage.count)
                s.newest = .both
            }
            if willWrite { s.newest = .device }
            return copy
        }
    }
}
