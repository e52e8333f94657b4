import Foundation
import TributaryOpenCL

/// `tributary worker --list-devices`: what a worker could compute on besides the CPU.
enum DeviceList {
    static func print() throws {
        Swift.print("cpu: this machine's processor (\(ProcessInfo.processInfo.activeProcessorCount) cores) — the default, --device cpu")
        do {
            // "opencl:N: name (…)": N is what --device opencl:N takes.
            for line in try OpenCLPlatforms.describe() { Swift.print("opencl:\(line)") }
        } catch {
            Swift.print("opencl: none (\(error))")
        }
    }
}
