import Foundation
import COpenCL

/// One OpenCL device as its driver describes it.
/// Unchecked Sendable: `id` is a process-lifetime handle that OpenCL accepts from any thread.
public struct OpenCLDeviceInfo: @unchecked Sendable, Equatable {
    public let platformName: String
    public let name: String
    public let vendor: String
    /// "GPU", "CPU", "accelerator" or "other".
    public let type: String
    public let globalMemoryBytes: Int
    /// The largest single buffer the driver allows (CL_DEVICE_MAX_MEM_ALLOC_SIZE).
    public let maxAllocationBytes: Int
    public let computeUnits: Int
    public let driverVersion: String
    /// The handle to pass to `OpenCLContext` (valid for the life of the process).
    let id: cl_device_id

    public static func == (a: OpenCLDeviceInfo, b: OpenCLDeviceInfo) -> Bool { a.id == b.id }
}

/// The OpenCL platforms (drivers) installed and their devices.
public enum OpenCLPlatforms {
    /// Every device of every platform, in platform order; `.noPlatform` when there is none.
    public static func devices() throws(OpenCLError) -> [OpenCLDeviceInfo] {
        var platformCount: cl_uint = 0
        let found = clGetPlatformIDs(0, nil, &platformCount)
        // The ICD loader says CL_PLATFORM_NOT_FOUND_KHR (-1001) when no ICD is installed.
        guard found == CL_SUCCESS, platformCount > 0 else { throw .noPlatform }
        var platforms = [cl_platform_id?](repeating: nil, count: Int(platformCount))
        try check(clGetPlatformIDs(platformCount, &platforms, nil), "clGetPlatformIDs")

        var devices: [OpenCLDeviceInfo] = []
        for case let platform? in platforms {
            let platformName = try platformString(platform, cl_platform_info(CL_PLATFORM_NAME))
            var deviceCount: cl_uint = 0
            let counted = clGetDeviceIDs(platform, cl_device_type(CL_DEVICE_TYPE_ALL), 0, nil, &deviceCount)
            // A platform without devices (a driver installed for absent hardware) is skipped.
            if counted == CL_DEVICE_NOT_FOUND || deviceCount == 0 { continue }
            try check(counted, "clGetDeviceIDs")
            var ids = [cl_device_id?](repeating: nil, count: Int(deviceCount))
            try check(clGetDeviceIDs(platform, cl_device_type(CL_DEVICE_TYPE_ALL), deviceCount, &ids, nil), "clGetDeviceIDs")
            for case let id? in ids {
                devices.append(try info(id, platformName: platformName))
            }
        }
        guard !devices.isEmpty else { throw .noPlatform }
        return devices
    }

    /// One line per device, for `tributary worker --list-devices`:
    /// "0: NVIDIA GeForce RTX 3060 (GPU, NVIDIA Corporation; 12.0 GiB, max buffer 3.0 GiB, 28 compute units; driver 535.1; platform NVIDIA CUDA)".
    public static func describe() throws(OpenCLError) -> [String] {
        try devices().enumerated().map { index, d in
            "\(index): \(d.name) (\(d.type), \(d.vendor); \(gibibytes(d.globalMemoryBytes)), max buffer "
                + "\(gibibytes(d.maxAllocationBytes)), \(d.computeUnits) compute units; driver \(d.driverVersion); "
                + "platform \(d.platformName))"
        }
    }

    /// In doubles: a driver's figure is not trusted to leave room for integer arithmetic.
    static func gibibytes(_ bytes: Int) -> String {
        String(format: "%.1f GiB", Double(bytes) / 1_073_741_824)
    }

    static func info(_ id: cl_device_id, platformName: String) throws(OpenCLError) -> OpenCLDeviceInfo {
        let type: cl_device_type = try deviceValue(id, cl_device_info(CL_DEVICE_TYPE))
        let typeName: String
        if type & cl_device_type(CL_DEVICE_TYPE_GPU) != 0 { typeName = "GPU" }
        else if type & cl_device_type(CL_DEVICE_TYPE_CPU) != 0 { typeName = "CPU" }
        else if type & cl_device_type(CL_DEVICE_TYPE_ACCELERATOR) != 0 { typeName = "accelerator" }
        else { typeName = "other" }
        let global: cl_ulong = try deviceValue(id, cl_device_info(CL_DEVICE_GLOBAL_MEM_SIZE))
        let maxAlloc: cl_ulong = try deviceValue(id, cl_device_info(CL_DEVICE_MAX_MEM_ALLOC_SIZE))
        let units: cl_uint = try deviceValue(id, cl_device_info(CL_DEVICE_MAX_COMPUTE_UNITS))
        return OpenCLDeviceInfo(
            platformName: platformName,
            name: try deviceString(id, cl_device_info(CL_DEVICE_NAME)),
            vendor: try deviceString(id, cl_device_info(CL_DEVICE_VENDOR)),
            type: typeName,
            globalMemoryBytes: Int(clamping: global),
            maxAllocationBytes: Int(clamping: maxAlloc),
            computeUnits: Int(units),
            driverVersion: try deviceString(id, cl_device_info(CL_DRIVER_VERSION)),
            id: id)
    }

    static func deviceValue<T: BitwiseCopyable>(_ id: cl_device_id, _ param: cl_device_info) throws(OpenCLError) -> T {
        var value = [UInt8](repeating: 0, count: MemoryLayout<T>.size)
        try check(clGetDeviceInfo(id, param, value.count, &value, nil), "clGetDeviceInfo")
        return value.withUnsafeBytes { $0.loadUnaligned(as: T.self) }
    }

    static func deviceString(_ id: cl_device_id, _ param: cl_device_info) throws(OpenCLError) -> String {
        var size = 0
        try check(clGetDeviceInfo(id, param, 0, nil, &size), "clGetDeviceInfo")
        var bytes = [CChar](repeating: 0, count: max(1, size))
        try check(clGetDeviceInfo(id, param, size, &bytes, nil), "clGetDeviceInfo")
        return cString(bytes)
    }

    static func platformString(_ id: cl_platform_id, _ param: cl_platform_info) throws(OpenCLError) -> String {
        var size = 0
        try check(clGetPlatformInfo(id, param, 0, nil, &size), "clGetPlatformInfo")
        var bytes = [CChar](repeating: 0, count: max(1, size))
        try check(clGetPlatformInfo(id, param, size, &bytes, nil), "clGetPlatformInfo")
        return cString(bytes)
    }

    /// A NUL-terminated C string without its terminator; drivers pad some with spaces.
    static func cString(_ bytes: [CChar]) -> String {
        let text = bytes.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        return String(decoding: text, as: UTF8.self).trimmingSpaces()
    }
}

extension String {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while s.first == " " { s = s.dropFirst() }
        while s.last == " " { s = s.dropLast() }
        return String(s)
    }
}
