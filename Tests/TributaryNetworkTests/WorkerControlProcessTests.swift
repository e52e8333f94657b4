import Foundation
import TributaryProtocol
import XCTest

/// The volunteer's controls on a real worker process: `worker pause`, `resume` and `status`
/// over the control socket, the pause kept across a restart, the low CPU priority, and
/// the one-line refusals.
final class WorkerControlProcessTests: ProcessTestCase {
    /// Runs `tributary ARGS` to completion: its exit status and output lines.
    func tributary(_ args: [String]) async throws -> (status: Int32, lines: [String]) {
        let log = "\(dir)/cli-\(UUID().uuidString).log"
        let p = try launch(args, log: log)
        while p.isRunning { try await Task.sleep(for: .milliseconds(20)) }
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        return (p.terminationStatus, text.split(separator: "\n").map(String.init))
    }

    func workerLog(_ i: Int) -> String { (try? String(contentsOfFile: "\(dir)/worker-\(i).log", encoding: .utf8)) ?? "" }

    func testPauseResumeAndStatusOverTheControlSocketAndThePauseOutlivesARestart() async throws {
        let job = try writeJob(rounds: 100_000, checkpointEvery: 1000, unitsPerRound: 1)
        let (_, port) = try await startCoordinator(job)
        var worker = try startWorker(0, port: port)
        let data = "\(dir)/worker-0"
        _ = try await waitFor(port, timeout: 60) { $0.version >= 2 }

        // Every thread of the worker runs at nice 19 (Linux keeps it per thread).
        let tasks = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(worker.processIdentifier)/task")
        XCTAssertGreaterThan(tasks.count, 1)
        for tid in tasks {
            let stat = try String(contentsOfFile: "/proc/\(worker.processIdentifier)/task/\(tid)/stat", encoding: .utf8)
            let fields = stat[stat.index(after: try XCTUnwrap(stat.lastIndex(of: ")")))...].split(separator: " ")
            XCTAssertEqual(fields[16], "19", "thread \(tid)'s nice value")  // field 19 of stat
        }

        let paused = try await tributary(["worker", "pause", "--data-dir", data])
        XCTAssertEqual(paused.status, 0)
        XCTAssertEqual(paused.lines, ["paused; tributary worker resume to continue"])
        // Nothing is leased or committed while paused.
        try await Task.sleep(for: .milliseconds(800))
        let held = try await waitFor(port, timeout: 10) { $0.units.leased == 0 }
        try await Task.sleep(for: .seconds(1.5))
        let stillStatus = await status(port)
        let still = try XCTUnwrap(stillStatus)
        XCTAssertEqual(still.version, held.version, "no unit committed while paused")
        XCTAssertEqual(still.units.leased, 0)

        let shown = try await tributary(["worker", "status", "--data-dir", data])
        XCTAssertEqual(shown.status, 0)
        XCTAssertEqual(shown.lines.first, "paused · coordinator http://127.0.0.1:\(port)")
        XCTAssertEqual(shown.lines.dropFirst().first, "  paused by the volunteer (tributary worker resume to continue)")
        XCTAssertTrue(shown.lines.last?.hasPrefix("this run: ") == true, "\(shown.lines)")

        // Stopped and started again on the same data directory: still paused.
        kill(worker.processIdentifier, SIGINT)
        worker.waitUntilExit()
        XCTAssertEqual(worker.terminationStatus, 0)
        XCTAssertTrue(FileManager.default.fileExists(atPath: "\(data)/paused"))
        worker = try startWorker(0, port: port)
        try await Task.sleep(for: .seconds(2))
        XCTAssertTrue(workerLog(0).contains("reason=paused by the volunteer (tributary worker resume to continue) [TributaryWorker] not computing"),
                      workerLog(0))
        let restartStatus = await status(port)
        let afterRestart = try XCTUnwrap(restartStatus)
        XCTAssertEqual(afterRestart.version, held.version)

        let resumed = try await tributary(["worker", "resume", "--data-dir", data])
        XCTAssertEqual(resumed.status, 0)
        XCTAssertEqual(resumed.lines, ["resumed"])
        _ = try await waitFor(port, timeout: 60) { $0.version >= held.version + 2 }
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(data)/paused"))
        let working = try await tributary(["worker", "status", "--data-dir", data, "--json"])
        XCTAssertEqual(working.status, 0)
        let state = try JSONSerialization.jsonObject(with: Data(working.lines.joined(separator: "\n").utf8)) as? [String: Any]
        XCTAssertTrue(["computing", "waiting for work"].contains(state?["state"] as? String ?? ""), "\(working.lines)")
        kill(worker.processIdentifier, SIGINT)
        worker.waitUntilExit()
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(data)/control.sock"), "the socket goes with the worker")
    }

    func testControlCommandsWithNoWorkerRunningSayItInOneLine() async throws {
        let missing = "\(dir)/nobody"
        for verb in ["pause", "resume", "status"] {
            let r = try await tributary(["worker", verb, "--data-dir", missing])
            XCTAssertEqual(r.status, 1, verb)
            XCTAssertEqual(r.lines, ["Error: no worker is running on \(missing) (no control socket there); start one with tributary worker --data-dir \(missing)"])
        }
    }

    /// `--memory-budget 2 GiB`, as people type it, is a size; nonsense is refused in one line.
    func testSizesAndThresholdsAsPeopleTypeThem() async throws {
        let job = try writeJob(rounds: 3, checkpointEvery: 1000)
        let (_, port) = try await startCoordinator(job)
        let spaced = try await tributary(["worker", "--coordinator", "http://127.0.0.1:\(port)", "--join-token", "process-token",
                                          "--data-dir", "\(dir)/spaced", "--memory-budget", "2", "GiB", "--threads", "1",
                                          "--max-units", "1"])
        XCTAssertEqual(spaced.status, 0, "\(spaced.lines)")
        XCTAssertTrue(spaced.lines.contains { $0.contains("budget=2.00 GiB") }, "\(spaced.lines)")
        let lower = try await tributary(["worker", "--coordinator", "http://127.0.0.1:\(port)", "--join-token", "process-token",
                                         "--data-dir", "\(dir)/lower", "--memory-budget", "512mib", "--max-units", "1"])
        XCTAssertTrue(lower.lines.contains { $0.contains("budget=512.0 MiB") }, "\(lower.lines)")

        let bad = try await tributary(["worker", "--coordinator", "http://127.0.0.1:\(port)", "--join-token", "process-token",
                                       "--data-dir", "\(dir)/bad", "--memory-budget", "lots"])
        XCTAssertEqual(bad.status, 1)
        XCTAssertEqual(bad.lines.count, 1, "one line, no usage text")
        XCTAssertEqual(bad.lines.first, "Error: --memory-budget takes a size such as 512MiB or 2 GiB, not 'lots'")
        let idle = try await tributary(["worker", "--coordinator", "http://127.0.0.1:\(port)", "--join-token", "process-token",
                                        "--data-dir", "\(dir)/idle", "--only-when-idle", "--idle-after", "soon"])
        XCTAssertEqual(idle.status, 1)
        XCTAssertEqual(idle.lines.first, "Error: --idle-after takes a time such as 90s, 5m or 1h, not 'soon'")
        let grace = try await tributary(["worker", "--coordinator", "http://127.0.0.1:\(port)", "--join-token", "process-token",
                                         "--data-dir", "\(dir)/grace", "--grace-seconds", "nan"])
        XCTAssertEqual(grace.status, 1)
        XCTAssertEqual(grace.lines, ["Error: --grace-seconds must be 0 to 86400"], "not a crash")
    }

    /// `--device opencl` runs units on the OpenCL device (POCL here) through the real
    /// binary; a device that does not exist or a budget that makes no sense is one line,
    /// exit 1, before anything is leased.
    func testDeviceOpenCLComputesUnitsAndBadDevicesAreOneLine() async throws {
        let job = try writeJob(rounds: 3, checkpointEvery: 1000)
        let (_, port) = try await startCoordinator(job)
        let common = ["worker", "--coordinator", "http://127.0.0.1:\(port)", "--join-token", "process-token", "--threads", "1"]
        let gpu = try await tributary(common + ["--data-dir", "\(dir)/opencl", "--device", "opencl", "--vram-budget", "64", "MiB",
                                                "--max-units", "2"])
        XCTAssertEqual(gpu.status, 0, "\(gpu.lines)")
        XCTAssertTrue(gpu.lines.contains { $0.contains("device=OpenCL: ") && $0.contains("vram_budget=64.0 MiB") }, "\(gpu.lines)")
        XCTAssertEqual(gpu.lines.filter { $0.hasPrefix("unit ") }.count, 2, "\(gpu.lines)")
        XCTAssertTrue(FileManager.default.fileExists(atPath: "\(dir)/opencl/opencl-cache"), "compiled kernels are cached")

        let refusals: [([String], String)] = [
            (["--device", "opencl:9"], "Error: --device opencl:9: this machine has "),
            (["--device", "cuda"], "Error: --device takes cpu, opencl or opencl:N, not 'cuda'"),
            (["--vram-budget", "1GiB"], "Error: --vram-budget is for --device opencl; the CPU uses --memory-budget"),
            (["--device", "opencl", "--vram-budget", "lots"], "Error: --vram-budget takes a size such as 6GiB, not 'lots'"),
            (["--device", "opencl", "--vram-budget", "1000TiB"], "Error: --vram-budget 1024000.00 GiB is more than "),
        ]
        for (arguments, expected) in refusals {
            let r = try await tributary(common + ["--data-dir", "\(dir)/refused"] + arguments)
            XCTAssertEqual(r.status, 1, "\(arguments)")
            XCTAssertEqual(r.lines.count, 1, "one line: \(r.lines)")
            XCTAssertTrue(r.lines.first?.hasPrefix(expected) == true, "\(arguments): \(r.lines)")
        }
        // A VRAM budget the job cannot fit: said in terms of that budget, before a lease.
        let small = try await tributary(common + ["--data-dir", "\(dir)/small", "--device", "opencl", "--vram-budget", "4KiB"])
        XCTAssertEqual(small.status, 1)
        XCTAssertTrue(small.lines.last?.hasPrefix("Error: the VRAM budget is too small for this job: its smallest plan (") == true,
                      "\(small.lines)")
        XCTAssertTrue(small.lines.last?.contains("the VRAM budget is 4.0 KiB; give --vram-budget at least ") == true, "\(small.lines)")
        let leased = await status(port)
        XCTAssertEqual(try XCTUnwrap(leased).units.leased, 0, "nothing was leased by a refused start")
    }

    /// `--only-when-idle`: input on the machine (here a file the test touches, as a terminal's
    /// time moves when someone types) stops the worker within seconds; quiet resumes it.
    func testOnlyWhenIdleStopsWhenTheVolunteerReturnsAndResumesWhenTheyLeave() async throws {
        let job = try writeJob(rounds: 100_000, checkpointEvery: 1000, unitsPerRound: 1)
        let (_, port) = try await startCoordinator(job)
        let activity = "\(dir)/keyboard"
        FileManager.default.createFile(atPath: activity, contents: nil)
        try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(-3600)], ofItemAtPath: activity)
        _ = try launch(["worker", "--coordinator", "http://127.0.0.1:\(port)", "--join-token", "process-token",
                        "--data-dir", "\(dir)/worker-0", "--threads", "1", "--only-when-idle", "--idle-after", "4s",
                        "--idle-max-cpu", "100", "--idle-input", activity], log: "\(dir)/worker-0.log")
        _ = try await waitFor(port, timeout: 60) { $0.version >= 2 }
        try FileManager.default.setAttributes([.modificationDate: Date()], ofItemAtPath: activity)
        let touched = Date()
        // The machine is looked at every 2 s: the unit in hand is given back by the next look.
        while !workerLog(0).contains("the machine is in use; giving it back"), Date().timeIntervalSince(touched) < 10 {
            try await Task.sleep(for: .milliseconds(50))
        }
        XCTAssertLessThan(Date().timeIntervalSince(touched), 3, workerLog(0))
        let quiet = try await waitFor(port, timeout: 3) { $0.units.leased == 0 }
        try await Task.sleep(for: .seconds(1.5))
        let laterStatus = await status(port)
        let later = try XCTUnwrap(laterStatus)
        XCTAssertEqual(later.version, quiet.version, "nothing computed while the volunteer is at the machine")
        XCTAssertTrue(workerLog(0).contains("[TributaryWorker] not computing"), workerLog(0))
        // Input 4 s old and 10 s of quiet after it: work resumes.
        _ = try await waitFor(port, timeout: 40) { $0.version > later.version }
        XCTAssertTrue(workerLog(0).contains("the machine is idle"), workerLog(0))
    }

    /// `worker --list-devices` names the CPU and every OpenCL device with its memory (POCL,
    /// OpenCL on the CPU, is installed for the tests by `Deploy/install-deps.sh --tests`).
    func testListDevicesShowsTheCPUAndTheOpenCLDevices() async throws {
        let listed = try await tributary(["worker", "--list-devices"])
        XCTAssertEqual(listed.status, 0)
        XCTAssertTrue(listed.lines.first?.hasPrefix("cpu: this machine's processor (") == true, "\(listed.lines)")
        let pocl = listed.lines.first { $0.hasPrefix("opencl:0: ") && $0.hasSuffix("platform Portable Computing Language)") }
        XCTAssertNotNil(pocl, "\(listed.lines)")
        XCTAssertTrue(pocl?.contains(" GiB, max buffer ") == true, "\(listed.lines)")
        let none = try await tributary(["worker", "--join-token", "x"])
        XCTAssertEqual(none.status, 1)
        XCTAssertEqual(none.lines, ["Error: give the coordinator's URL: --coordinator http://HOST:8470"])
    }
}
