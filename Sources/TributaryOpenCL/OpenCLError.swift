import COpenCL

/// A failed OpenCL (or CLBlast) call, said in one line: which call, the error code's name,
/// and what to do about it.
public enum OpenCLError: Error, Equatable, CustomStringConvertible, Sendable {
    /// An OpenCL API call returned `code` (a negative CL_* value).
    case call(String, code: Int32)
    /// No OpenCL platform (no installed ICD) or no device on any platform.
    case noPlatform
    /// A program did not compile; `log` holds the first lines of the driver's build log.
    case buildFailed(program: String, log: String)
    /// A CLBlast routine returned `status` (CLBlast's codes extend OpenCL's).
    case clblast(String, status: Int32)
    /// A kernel was called with operands smaller than its size arguments say, or with
    /// sizes the kernel does not support; caught before anything is enqueued.
    case invalidArgument(String)
    /// A device buffer was refused: by the VRAM budget before the driver was asked
    /// (`driverCode` nil), or by the driver itself (CL_MEM_OBJECT_ALLOCATION_FAILURE,
    /// CL_OUT_OF_RESOURCES, or a buffer over the device's largest allocation).
    case outOfDeviceMemory(requestedBytes: Int, inUseBytes: Int, budgetBytes: Int?, driverCode: Int32?)

    public var description: String {
        switch self {
        case let .call(function, code):
            return "\(function) failed with \(Self.name(of: code)) (\(code)): \(Self.advice(for: code))"
        case .noPlatform:
            return "no OpenCL platform: install a GPU driver's OpenCL ICD, or pocl-opencl-icd to use the CPU"
        case let .buildFailed(program, log):
            return "OpenCL program \(program) did not build; build log: \(log)"
        case let .clblast(routine, status):
            let name = status > -1024 ? Self.name(of: status) : "CLBlast status \(status)"
            return "\(routine) failed with \(name) (\(status)): \(Self.advice(for: status))"
        case let .invalidArgument(what):
            return "invalid kernel argument: \(what)"
        case let .outOfDeviceMemory(requested, inUse, budget, driverCode):
            let limit = budget.map { "a budget of \($0) bytes" } ?? "no budget"
            let refusedBy = driverCode.map { "the driver refused it with \(Self.name(of: $0))" }
                ?? "over the VRAM budget"
            return "device buffer of \(requested) bytes with \(inUse) bytes in use and \(limit): \(refusedBy); "
                + "lower the micro-batch or the model size, or raise --memory-budget if the GPU has room"
        }
    }

    /// The CL_* name of an OpenCL error code (cl.h's spelling, so it can be searched for).
    public static func name(of code: Int32) -> String {
        switch code {
        case CL_SUCCESS: return "CL_SUCCESS"
        case CL_DEVICE_NOT_FOUND: return "CL_DEVICE_NOT_FOUND"
        case CL_DEVICE_NOT_AVAILABLE: return "CL_DEVICE_NOT_AVAILABLE"
        case CL_COMPILER_NOT_AVAILABLE: return "CL_COMPILER_NOT_AVAILABLE"
        case CL_MEM_OBJECT_ALLOCATION_FAILURE: return "CL_MEM_OBJECT_ALLOCATION_FAILURE"
        case CL_OUT_OF_RESOURCES: return "CL_OUT_OF_RESOURCES"
        case CL_OUT_OF_HOST_MEMORY: return "CL_OUT_OF_HOST_MEMORY"
        case CL_PROFILING_INFO_NOT_AVAILABLE: return "CL_PROFILING_INFO_NOT_AVAILABLE"
        case CL_MEM_COPY_OVERLAP: return "CL_MEM_COPY_OVERLAP"
        case CL_IMAGE_FORMAT_MISMATCH: return "CL_IMAGE_FORMAT_MISMATCH"
        case CL_IMAGE_FORMAT_NOT_SUPPORTED: return "CL_IMAGE_FORMAT_NOT_SUPPORTED"
        case CL_BUILD_PROGRAM_FAILURE: return "CL_BUILD_PROGRAM_FAILURE"
        case CL_MAP_FAILURE: return "CL_MAP_FAILURE"
        case CL_MISALIGNED_SUB_BUFFER_OFFSET: return "CL_MISALIGNED_SUB_BUFFER_OFFSET"
        case CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST: return "CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST"
        case CL_COMPILE_PROGRAM_FAILURE: return "CL_COMPILE_PROGRAM_FAILURE"
        case CL_LINKER_NOT_AVAILABLE: return "CL_LINKER_NOT_AVAILABLE"
        case CL_LINK_PROGRAM_FAILURE: return "CL_LINK_PROGRAM_FAILURE"
        case CL_DEVICE_PARTITION_FAILED: return "CL_DEVICE_PARTITION_FAILED"
        case CL_KERNEL_ARG_INFO_NOT_AVAILABLE: return "CL_KERNEL_ARG_INFO_NOT_AVAILABLE"
        case CL_INVALID_VALUE: return "CL_INVALID_VALUE"
        case CL_INVALID_DEVICE_TYPE: return "CL_INVALID_DEVICE_TYPE"
        case CL_INVALID_PLATFORM: return "CL_INVALID_PLATFORM"
        case CL_INVALID_DEVICE: return "CL_INVALID_DEVICE"
        case CL_INVALID_CONTEXT: return "CL_INVALID_CONTEXT"
        case CL_INVALID_QUEUE_PROPERTIES: return "CL_INVALID_QUEUE_PROPERTIES"
        case CL_INVALID_COMMAND_QUEUE: return "CL_INVALID_COMMAND_QUEUE"
        case CL_INVALID_HOST_PTR: return "CL_INVALID_HOST_PTR"
        case CL_INVALID_MEM_OBJECT: return "CL_INVALID_MEM_OBJECT"
        case CL_INVALID_BINARY: return "CL_INVALID_BINARY"
        case CL_INVALID_BUILD_OPTIONS: return "CL_INVALID_BUILD_OPTIONS"
        case CL_INVALID_PROGRAM: return "CL_INVALID_PROGRAM"
        case CL_INVALID_PROGRAM_EXECUTABLE: return "CL_INVALID_PROGRAM_EXECUTABLE"
        case CL_INVALID_KERNEL_NAME: return "CL_INVALID_KERNEL_NAME"
        case CL_INVALID_KERNEL_DEFINITION: return "CL_INVALID_KERNEL_DEFINITION"
        case CL_INVALID_KERNEL: return "CL_INVALID_KERNEL"
        case CL_INVALID_ARG_INDEX: return "CL_INVALID_ARG_INDEX"
        case CL_INVALID_ARG_VALUE: return "CL_INVALID_ARG_VALUE"
        case CL_INVALID_ARG_SIZE: return "CL_INVALID_ARG_SIZE"
        case CL_INVALID_KERNEL_ARGS: return "CL_INVALID_KERNEL_ARGS"
        case CL_INVALID_WORK_DIMENSION: return "CL_INVALID_WORK_DIMENSION"
        case CL_INVALID_WORK_GROUP_SIZE: return "CL_INVALID_WORK_GROUP_SIZE"
        case CL_INVALID_WORK_ITEM_SIZE: return "CL_INVALID_WORK_ITEM_SIZE"
        case CL_INVALID_GLOBAL_OFFSET: return "CL_INVALID_GLOBAL_OFFSET"
        case CL_INVALID_EVENT_WAIT_LIST: return "CL_INVALID_EVENT_WAIT_LIST"
        case CL_INVALID_EVENT: return "CL_INVALID_EVENT"
        case CL_INVALID_OPERATION: return "CL_INVALID_OPERATION"
        case CL_INVALID_BUFFER_SIZE: return "CL_INVALID_BUFFER_SIZE"
        case CL_INVALID_GLOBAL_WORK_SIZE: return "CL_INVALID_GLOBAL_WORK_SIZE"
        case CL_INVALID_PROPERTY: return "CL_INVALID_PROPERTY"
        case -1001: return "CL_PLATFORM_NOT_FOUND_KHR" // the ICD loader found no platform
        default: return "OpenCL error"
        }
    }

    /// What an operator can do about a code, in a few words.
    static func advice(for code: Int32) -> String {
        switch code {
        case CL_MEM_OBJECT_ALLOCATION_FAILURE, CL_OUT_OF_RESOURCES:
            return "the device is out of memory or resources; lower --memory-budget or the micro-batch, or close other GPU programs"
        case CL_OUT_OF_HOST_MEMORY:
            return "the host is out of memory; lower the memory budget or free RAM"
        case CL_DEVICE_NOT_AVAILABLE, CL_DEVICE_NOT_FOUND:
            return "the device is missing or busy; check `clinfo -l` and the GPU driver"
        case CL_COMPILER_NOT_AVAILABLE, CL_BUILD_PROGRAM_FAILURE, CL_INVALID_BINARY:
            return "the driver could not build a kernel; update the GPU driver, or clear the kernel cache"
        case -1001:
            return "no OpenCL platform: install a GPU driver's OpenCL ICD, or pocl-opencl-icd to use the CPU"
        default:
            return "a driver or program error; report it with `clinfo -l` output"
        }
    }
}

/// Throws `OpenCLError.call` unless an OpenCL call returned CL_SUCCESS.
@inline(__always)
func check(_ code: cl_int, _ function: String) throws(OpenCLError) {
    guard code == CL_SUCCESS else { throw .call(function, code: code) }
}
