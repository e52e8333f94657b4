import Foundation

/// The emulated wide-area network of `bench wan`, built with iproute2: a namespace for the
/// coordinator, one per worker, each worker joined to the coordinator by its own veth pair
/// shaped in both directions (tc tbf for the rate, tc netem for the delay when the kernel
/// has it), and one unshaped pair from this namespace to the coordinator's for watching it.
struct WANNetwork {
    let ip: String
    let tc: String
    let workers: Int

    let coordinatorNamespace = "trib-wan-c"
    func workerNamespace(_ i: Int) -> String { "trib-wan-w\(i)" }
    func coordinatorAddress(worker i: Int) -> String { "10.89.\(i).1" }
    func workerAddress(_ i: Int) -> String { "10.89.\(i).2" }
    let monitorAddress = "10.89.250.1"

    static func tool(_ name: String) -> String? {
        ["/usr/sbin/", "/sbin/", "/usr/bin/", "/bin/"].map { $0 + name }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    static func ownExecutable() throws -> String {
        let path = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        guard FileManager.default.isExecutableFile(atPath: path) else { throw CLIError("cannot find this program's executable (\(path))") }
        return path
    }

    @discardableResult
    private func sh(_ tool: String, _ args: [String], check: Bool = true) throws -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = args
        p.standardOutput = FileHandle.nullDevice
        let errors = Pipe()
        p.standardError = errors
        try p.run()
        p.waitUntilExit()
        if check, p.terminationStatus != 0 {
            let why = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                .trimmingCharacters(in: .whitespacesAndNewlines)
            throw CLIError("\((tool as NSString).lastPathComponent) \(args.joined(separator: " ")) failed: \(why)")
        }
        return p.terminationStatus
    }

    /// Whether this kernel has the netem qdisc (containers' kernels often lack it).
    func hasNetem() -> Bool {
        let probe = "trib-wan-probe"
        defer { _ = try? sh(ip, ["netns", "del", probe], check: false) }
        guard (try? sh(ip, ["netns", "add", probe])) != nil,
              (try? sh(ip, ["-n", probe, "link", "add", "p0", "type", "veth", "peer", "name", "p1"])) != nil else { return false }
        return (try? sh(tc, ["-n", probe, "qdisc", "add", "dev", "p0", "root", "netem", "delay", "1ms"], check: false)) == 0
    }

    func create(upMbit: Double, slowUpMbit: Double, downMbit: Double, delayMs: Int) throws {
        destroy()
        let c = coordinatorNamespace
        try sh(ip, ["netns", "add", c])
        try sh(ip, ["-n", c, "link", "set", "lo", "up"])
        try sh(ip, ["link", "add", "twm0", "type", "veth", "peer", "name", "twm1"])
        try sh(ip, ["link", "set", "twm1", "netns", c])
        try sh(ip, ["addr", "add", "10.89.250.2/24", "dev", "twm0"])
        try sh(ip, ["link", "set", "twm0", "up"])
        try sh(ip, ["-n", c, "addr", "add", "\(monitorAddress)/24", "dev", "twm1"])
        try sh(ip, ["-n", c, "link", "set", "twm1", "up"])
        for i in 0..<workers {
            let w = workerNamespace(i), cSide = "twc\(i)", wSide = "tww\(i)"
            try sh(ip, ["netns", "add", w])
            try sh(ip, ["-n", w, "link", "set", "lo", "up"])
            try sh(ip, ["-n", c, "link", "add", cSide, "type", "veth", "peer", "name", wSide])
            try sh(ip, ["-n", c, "link", "set", wSide, "netns", w])
            try sh(ip, ["-n", c, "addr", "add", "\(coordinatorAddress(worker: i))/24", "dev", cSide])
            try sh(ip, ["-n", w, "addr", "add", "\(workerAddress(i))/24", "dev", wSide])
            try sh(ip, ["-n", c, "link", "set", cSide, "up"])
            try sh(ip, ["-n", w, "link", "set", wSide, "up"])
            try shape(namespace: w, device: wSide, mbit: i == 0 ? slowUpMbit : upMbit, delayMs: delayMs)
            try shape(namespace: c, device: cSide, mbit: downMbit, delayMs: delayMs)
        }
    }

    /// Egress of `device`: delayed by netem (when asked) and limited to `mbit` by a token bucket.
    private func shape(namespace: String, device: String, mbit: Double, delayMs: Int) throws {
        let rate = "\(Int(mbit * 1000))kbit"
        // A burst of 10 ms at the rate (at least 16 KiB), a queue of 200 ms.
        let burst = "\(max(16_384, Int(mbit * 1_000_000 / 8 / 100)))"
        if delayMs > 0 {
            try sh(tc, ["-n", namespace, "qdisc", "add", "dev", device, "root", "handle", "1:", "netem", "delay", "\(delayMs)ms"])
            try sh(tc, ["-n", namespace, "qdisc", "add", "dev", device, "parent", "1:", "handle", "10:", "tbf", "rate", rate,
                        "burst", burst, "latency", "200ms"])
        } else {
            try sh(tc, ["-n", namespace, "qdisc", "add", "dev", device, "root", "tbf", "rate", rate, "burst", burst, "latency", "200ms"])
        }
    }

    /// Removes the namespaces (their links go with them) and the watching link.
    func destroy() {
        _ = try? sh(ip, ["link", "del", "twm0"], check: false)
        _ = try? sh(ip, ["netns", "del", coordinatorNamespace], check: false)
        for i in 0..<workers { _ = try? sh(ip, ["netns", "del", workerNamespace(i)], check: false) }
    }

    /// Starts `exe args` inside `namespace`, its output to `log`.
    func run(in namespace: String, _ exe: String, _ args: [String], log: String) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: ip)
        p.arguments = ["netns", "exec", namespace, exe] + args
        FileManager.default.createFile(atPath: log, contents: nil)
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        p.standardOutput = out
        p.standardError = out
        try p.run()
        return p
    }

    /// SIGTERM, then SIGKILL after 5 s.
    static func stop(_ processes: [Process]) {
        for p in processes where p.isRunning { p.terminate() }
        let deadline = Date().addingTimeInterval(5)
        while processes.contains(where: \.isRunning), Date() < deadline { usleep(50_000) }
        for p in processes where p.isRunning { kill(p.processIdentifier, SIGKILL) }
        for p in processes { p.waitUntilExit() }
    }
}
