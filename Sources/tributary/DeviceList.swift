import Foundation
import TributaryOpenCL

/// `tributary worker --list-devices`: what a worker could compute on besides the CPU.
enum DeviceList {
    static func print() throws {
        Swift.print("cpu: this machine's processor (\(ProcessInfo.processInfo.activeProcessorCount) cores) — what workers use today")
        do {
            for line in try OpenCLPlatforms.describe() { Swift.print("opencl:\(line)") }
        } catch {
            Swift.print("opencl: none (\(error))")
        }
    }
}
