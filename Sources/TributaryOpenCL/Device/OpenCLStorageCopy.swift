import COpenCL
import Foundation
import TributaryTensor

/// A storage block's copy in device memory: one buffer the size of the block.
///
/// Uploads go on the context's transfer queue and do not block the host: a streamed step
/// decodes and uploads the next block shard while the device still computes the previous
/// one. Downloads begun with `beginCopyToHost` go there too, after a marker on the compute
/// queue, so a finished gradient comes down while the next block computes. The first
/// kernel that uses the copy waits for the transfer on the device (a barrier on the
/// compute queue), and the host waits only before it touches memory a transfer still
/// reads or writes (`waitUntilHostMayChange`).
final class OpenCLStorageCopy: DeviceStorageCopy, @unchecked Sendable {
    // Unchecked: `pending` and `ordered` are guarded by `lock`; the rest are immutable
    // references to thread-safe OpenCL objects.
    let tensor: DeviceTensor
    private let context: OpenCLContext
    private let record: OpenCLDeviceRecord
    private let lock = NSLock()
    /// The transfer in flight between host memory and this copy, if any (one at a time).
    private var pending: cl_event?
    /// Whether the compute queue already waits for `pending`.
    private var ordered = false

    init(count: Int, context: OpenCLContext, record: OpenCLDeviceRecord) throws(OpenCLError) {
        tensor = try DeviceTensor(shape: [count], allocator: context.allocator)
        self.context = context
        self.record = record
    }

    deinit { waitUntilHostMayChange() }

    func copyToHost(_ host: UnsafeMutablePointer<Float>, offset: Int, count: Int) {
        guard count > 0, record.firstFailure == nil else { return }
        orderComputeAfterTransfer()
        let size = MemoryLayout<Float>.size
        let code = clEnqueueReadBuffer(context.computeQueue, tensor.buffer, cl_bool(CL_TRUE), offset * size, count * size,
                                       host + offset, 0, nil, nil)
        if code != CL_SUCCESS { record.fail(.call("clEnqueueReadBuffer", code: code)) }
        record.count(toHost: count * size)
    }

    func copyFromHost(_ host: UnsafePointer<Float>, count: Int) {
        guard count > 0, record.firstFailure == nil else { return }
        waitUntilHostMayChange()  // one upload at a time per block
        var event: cl_event?
        let code = clEnqueueWriteBuffer(context.transferQueue, tensor.buffer, cl_bool(CL_FALSE), 0,
                                        count * MemoryLayout<Float>.size, host, 0, nil, &event)
        guard code == CL_SUCCESS, let event else {
            record.fail(.call("clEnqueueWriteBuffer", code: code))
            return
        }
        clFlush(context.transferQueue)  // start it now, not at the next wait
        lock.withLock {
            pending = event
            ordered = false
        }
        record.count(toDevice: count * MemoryLayout<Float>.size)
    }

    func beginCopyToHost(_ host: UnsafeMutablePointer<Float>, offset: Int, count: Int) {
        guard count > 0, record.firstFailure == nil else { return }
        waitUntilHostMayChange()
        // The read follows every kernel queued so far (the ones writing the block): the
        // transfer queue waits for a marker on the compute queue, which goes on computing.
        var marker: cl_event?
        var code = clEnqueueMarkerWithWaitList(context.computeQueue, 0, nil, &marker)
        guard code == CL_SUCCESS, let marker else {
            record.fail(.call("clEnqueueMarkerWithWaitList", code: code))
            return
        }
        defer { clReleaseEvent(marker) }
        clFlush(context.computeQueue)
        let size = MemoryLayout<Float>.size
        var waitFor: cl_event? = marker
        var event: cl_event?
        code = clEnqueueReadBuffer(context.transferQueue, tensor.buffer, cl_bool(CL_FALSE), offset * size, count * size,
                                   host + offset, 1, &waitFor, &event)
        guard code == CL_SUCCESS, let event else {
            record.fail(.call("clEnqueueReadBuffer", code: code))
            return
        }
        clFlush(context.transferQueue)
        lock.withLock {
            pending = event
            ordered = false
        }
        record.count(toHost: count * size)
        record.countDownloadBegun()
    }

    func fill(offset: Int, count: Int, value: Float) {
        guard count > 0, record.firstFailure == nil else { return }
        orderComputeAfterTransfer()
        var pattern = value
        let size = MemoryLayout<Float>.size
        let code = clEnqueueFillBuffer(context.computeQueue, tensor.buffer, &pattern, size, offset * size, count * size,
                                       0, nil, nil)
        if code != CL_SUCCESS { record.fail(.call("clEnqueueFillBuffer", code: code)) }
    }

    /// Makes the compute queue wait for the transfer in flight before anything enqueued
    /// after this call (once per transfer; later commands follow it in order).
    func orderComputeAfterTransfer() {
        lock.lock()
        defer { lock.unlock() }
        guard let event = pending, !ordered else { return }
        var waitFor: cl_event? = event
        let code = clEnqueueBarrierWithWaitList(context.computeQueue, 1, &waitFor, nil)
        if code != CL_SUCCESS { record.fail(.call("clEnqueueBarrierWithWaitList", code: code)) }
        ordered = true
    }

    /// Returns once no transfer reads or writes the host memory any more; one that failed
    /// on the device is recorded as the device's failure.
    func waitUntilHostMayChange() {
        lock.lock()
        defer { lock.unlock() }
        guard let event = pending else { return }
        var waitFor: cl_event? = event
        let code = clWaitForEvents(1, &waitFor)
        var status: cl_int = CL_COMPLETE
        clGetEventInfo(event, cl_event_info(CL_EVENT_COMMAND_EXECUTION_STATUS), MemoryLayout<cl_int>.size, &status, nil)
        if code != CL_SUCCESS || status < 0 {
            record.fail(.call("transfer (completion)", code: code != CL_SUCCESS ? code : status))
        }
        clReleaseEvent(event)
        pending = nil
    }
}
