import ArgumentParser
import Foundation
import TributaryOpenCL
import TributaryProtocol
import TributaryTensor

/// `--device cpu|opencl[:N]` and `--vram-budget`: where a worker, `train` or `bench
/// compute` runs its kernels.
struct DeviceOptions: ParsableArguments {
    @Option(help: "Where to compute: cpu, or opencl[:N] (an OpenCL GPU; N from --list-devices, default 0).")
    var device = "cpu"
    @Option(name: .customLong("vram-budget"), parsing: .upToNextOption,
            help: "Device memory an OpenCL device may use, e.g. 6GiB (default: what it reports, less 10%).")
    var vramBudget: [String] = []

    /// Where compiled kernels are cached for commands without a data directory (a
    /// worker caches them in its own).
    static var userCacheDirectory: String { "\(NSHomeDirectory())/.cache/tributary/opencl" }

    enum Choice: Equatable {
        case cpu
        case openCL(index: Int)
    }

    func choice() throws -> Choice {
        let text = device.lowercased()
        if text == "cpu" {
            guard vramBudget.isEmpty else { throw CLIError("--vram-budget is for --device opencl; the CPU uses --memory-budget") }
            return .cpu
        }
        if text == "opencl" { return .openCL(index: 0) }
        if text.hasPrefix("opencl:"), let index = Int(text.dropFirst("opencl:".count)), index >= 0 {
            return .openCL(index: index)
        }
        throw CLIError("--device takes cpu, opencl or opencl:N, not '\(LogSafe.escape(device))'")
    }

    /// The chosen device, with kernels built (cached under `cacheDirectory`); every
    /// failure is one line that says what to do, before anything is leased.
    func make(memoryBudgetBytes: Int?, cacheDirectory: String?) throws -> any ComputeDevice {
        guard case let .openCL(index) = try choice() else { return CPUDevice(memoryBudgetBytes: memoryBudgetBytes) }
        var vram: Int?
        if !vramBudget.isEmpty {
            guard let bytes = ByteCount.parse(vramBudget.joined(separator: " ")), bytes > 0 else {
                throw CLIError("--vram-budget takes a size such as 6GiB, not '\(vramBudget.joined(separator: " "))'")
            }
            vram = bytes
        }
        let devices: [OpenCLDeviceInfo]
        do { devices = try OpenCLPlatforms.devices() } catch { throw CLIError("--device \(device): \(error)") }
        guard !devices.isEmpty else { throw CLIError("--device \(device): \(OpenCLError.noPlatform)") }
        guard index < devices.count else {
            let has = devices.count == 1 ? "one OpenCL device, opencl:0" : "\(devices.count) OpenCL devices, opencl:0 to opencl:\(devices.count - 1)"
            throw CLIError("--device opencl:\(index): this machine has \(has); tributary worker --list-devices lists them")
        }
        let info = devices[index]
        if let vram, vram > info.globalMemoryBytes {
            throw CLIError("--vram-budget \(ByteCount.format(vram)) is more than \(info.name)'s \(ByteCount.format(info.globalMemoryBytes))")
        }
        let cache = OpenCLProgramCache(directory: cacheDirectory.map { URL(fileURLWithPath: $0) })
        do {
            return try OpenCLDevice(info: info, vramBudgetBytes: vram, memoryBudgetBytes: memoryBudgetBytes, cache: cache)
        } catch {
            throw CLIError("--device \(device): \(error)")
        }
    }
}
