import Foundation
import Logging

/// A volunteer's machine is theirs first: the worker runs at a low CPU priority. Linux
/// keeps a nice value per thread, and OpenBLAS started its threads before `main`, so every
/// thread of the process is lowered; threads started later inherit it.
enum ProcessPriority {
    static func lower(to nice: Int32, logger: Logger) {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
        var lowered = 0
        for tid in tasks.compactMap({ id_t($0) }) {
            // Only lowered: raising takes privileges a volunteer's worker should not have.
            errno = 0
            let current = getpriority(__priority_which_t(PRIO_PROCESS.rawValue), tid)
            if errno == 0, current >= nice { continue }
            if setpriority(__priority_which_t(PRIO_PROCESS.rawValue), tid, nice) == 0 { lowered += 1 }
        }
        if nice > 0 { logger.info("running at low CPU priority", metadata: ["nice": "\(nice)", "threads": "\(lowered)"]) }
    }
}
