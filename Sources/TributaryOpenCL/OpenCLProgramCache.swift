import COpenCL
import Crypto
import Foundation

/// A built OpenCL program, released when the last reference goes.
public final class OpenCLProgram: @unchecked Sendable {
    // Unchecked: a built cl_program is immutable and usable from any thread.
    let program: cl_program
    /// True when the program came from a cached binary instead of a compile.
    public let loadedFromDisk: Bool

    init(program: cl_program, loadedFromDisk: Bool) {
        self.program = program
        self.loadedFromDisk = loadedFromDisk
    }

    deinit { clReleaseProgram(program) }
}

/// Builds OpenCL C sources at start-up and keeps the compiled binaries on disk, so that a
/// worker's second start skips the driver's compiler (seconds per program on some drivers).
///
/// A binary is keyed by SHA-256 of the device name, the driver version, the source and the
/// build options: a driver update or an edited kernel compiles afresh, and a binary that
/// no longer loads is rebuilt from source and replaced.
public struct OpenCLProgramCache: Sendable {
    /// Where binaries are kept; nil: compile every time.
    public let directory: URL?

    public init(directory: URL?) {
        self.directory = directory
    }

    /// The cache file a program would use: `<directory>/<sha256>.clbin`.
    public func fileURL(source: String, options: String, device: OpenCLDeviceInfo) -> URL? {
        guard let directory else { return nil }
        var hasher = SHA256()
        for part in [device.name, device.driverVersion, source, options] {
            hasher.update(data: Data(part.utf8))
            hasher.update(data: Data([0])) // a separator, so that parts cannot run into each other
        }
        let key = hasher.finalize().map { String(format: "%02x", $0) }.joined()
        return directory.appendingPathComponent("\(key).clbin")
    }

    /// `source` built for the context's device: from the cached binary when one loads,
    /// else compiled (and cached). `name` names the program in errors.
    public func build(name: String, source: String, options: String = "",
                      context: OpenCLContext) throws(OpenCLError) -> OpenCLProgram {
        let file = fileURL(source: source, options: options, device: context.device)
        if let file, let binary = try? Data(contentsOf: file),
           let program = Self.programFromBinary(binary, options: options, context: context) {
            return OpenCLProgram(program: program, loadedFromDisk: true)
        }
        let program = try Self.compile(name: name, source: source, options: options, context: context)
        if let file, let binary = Self.binary(of: program) {
            // The cache only saves time: a read-only or full disk leaves the worker compiling.
            try? FileManager.default.createDirectory(at: file.deletingLastPathComponent(),
                                                     withIntermediateDirectories: true)
            try? binary.write(to: file, options: .atomic)
        }
        return OpenCLProgram(program: program, loadedFromDisk: false)
    }

    static func compile(name: String, source: String, options: String,
                        context: OpenCLContext) throws(OpenCLError) -> cl_program {
        var code: cl_int = CL_SUCCESS
        let created: cl_program? = source.withCString { text in
            var strings: [UnsafePointer<CChar>?] = [text]
            var lengths = [strlen(text)]
            return clCreateProgramWithSource(context.context, 1, &strings, &lengths, &code)
        }
        guard code == CL_SUCCESS, let program = created else { throw .call("clCreateProgramWithSource", code: code) }
        var deviceID: cl_device_id? = context.device.id
        let built = clBuildProgram(program, 1, &deviceID, options, nil, nil)
        guard built == CL_SUCCESS else {
            let log = buildLog(program, device: context.device.id)
            clReleaseProgram(program)
            if built == CL_BUILD_PROGRAM_FAILURE || built == CL_INVALID_BUILD_OPTIONS {
                throw .buildFailed(program: name, log: firstLines(of: log, count: 6))
            }
            throw .call("clBuildProgram", code: built)
        }
        return program
    }

    /// A program from a cached binary, or nil when the driver refuses it (another driver
    /// build, a truncated file): the caller then compiles from source.
    static func programFromBinary(_ binary: Data, options: String, context: OpenCLContext) -> cl_program? {
        var code: cl_int = CL_SUCCESS
        var binaryStatus: cl_int = CL_SUCCESS
        var deviceID: cl_device_id? = context.device.id
        let created: cl_program? = binary.withUnsafeBytes { bytes in
            guard let base = bytes.bindMemory(to: UInt8.self).baseAddress else { return nil }
            var lengths = [bytes.count]
            var binaries: [UnsafePointer<UInt8>?] = [base]
            return clCreateProgramWithBinary(context.context, 1, &deviceID, &lengths, &binaries, &binaryStatus, &code)
        }
        guard code == CL_SUCCESS, binaryStatus == CL_SUCCESS, let program = created else { return nil }
        guard clBuildProgram(program, 1, &deviceID, options, nil, nil) == CL_SUCCESS else {
            clReleaseProgram(program)
            return nil
        }
        return program
    }

    /// The device binary of a built program (one device per program here).
    static func binary(of program: cl_program) -> Data? {
        var size = 0
        guard clGetProgramInfo(program, cl_program_info(CL_PROGRAM_BINARY_SIZES), MemoryLayout<Int>.size, &size, nil)
                == CL_SUCCESS, size > 0 else { return nil }
        var bytes = [UInt8](repeating: 0, count: size)
        let code = bytes.withUnsafeMutableBufferPointer { buffer -> cl_int in
            var pointers: [UnsafeMutablePointer<UInt8>?] = [buffer.baseAddress]
            return clGetProgramInfo(program, cl_program_info(CL_PROGRAM_BINARIES),
                                    MemoryLayout<UnsafeMutablePointer<UInt8>?>.size, &pointers, nil)
        }
        guard code == CL_SUCCESS else { return nil }
        return Data(bytes)
    }

    static func buildLog(_ program: cl_program, device: cl_device_id) -> String {
        var size = 0
        guard clGetProgramBuildInfo(program, device, cl_program_build_info(CL_PROGRAM_BUILD_LOG), 0, nil, &size)
                == CL_SUCCESS, size > 0 else { return "(no build log)" }
        var bytes = [CChar](repeating: 0, count: size)
        guard clGetProgramBuildInfo(program, device, cl_program_build_info(CL_PROGRAM_BUILD_LOG), size, &bytes, nil)
                == CL_SUCCESS else { return "(no build log)" }
        return OpenCLPlatforms.cString(bytes)
    }

    /// The first non-blank lines of a log, joined with " | " so the error stays one line.
    static func firstLines(of log: String, count: Int) -> String {
        let lines = log.split(whereSeparator: \.isNewline).map { String($0).trimmingSpaces() }.filter { !$0.isEmpty }
        return lines.isEmpty ? "(empty build log)" : lines.prefix(count).joined(separator: " | ")
    }
}
