import ArgumentParser
import Foundation
import Logging
import Synchronization
import TributaryCoordinator
import TributaryProtocol
import TributaryTensor
import TributaryWorker

/// `tributary bench attacks`: honest training's rounds/s with no attack and during each
/// attack of issue 12 (findings 2, 4, 7, 8, 9), measured in one run against the shipped
/// defaults of `limits`, `leases` and `aggregation`.
struct AttackBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "attacks",
        abstract: "Honest training's rounds/s, undisturbed and under each attack a stranger can mount.")

    @Option(help: "Seconds measured per scenario.") var seconds = 10.0
    @Option(help: "Repeats of every scenario.") var repeats = 3
    @Option(help: "Honest workers.") var workers = 3
    @Flag(help: "Lift the per-address limits and the lease limits (not the checks in the code paths), to see what they buy.")
    var unprotected = false
    @Option(help: "Scenarios (comma-separated): clean-sync, squat, clean, worker-list, idle-connections, stalled-uploads, flood.")
    var scenarios = AttackScenario.allCases.map(\.rawValue).joined(separator: ",")

    func run() async throws {
        guard seconds >= 2, seconds <= 300, (1...10).contains(repeats), (1...16).contains(workers) else {
            throw ValidationError("--seconds must lie in 2...300, --repeats in 1...10, --workers in 1...16")
        }
        let chosen = try scenarios.split(separator: ",").map { name in
            guard let s = AttackScenario(rawValue: String(name)) else {
                throw ValidationError("unknown scenario '\(name)'; choose from \(AttackScenario.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return s
        }
        ComputeThreads.set(1)
        print("scenario           rounds/s (each run)          median   vs clean")
        var cleanMedian: [RoundMode: Double] = [:]
        for scenario in chosen {
            var rates: [Double] = []
            for _ in 0..<repeats { rates.append(try await measure(scenario)) }
            let median = rates.sorted()[rates.count / 2]
            if scenario == .clean || scenario == .cleanSync { cleanMedian[scenario.mode] = median }
            let ratio = cleanMedian[scenario.mode].map { String(format: "%.2fx", median / $0) } ?? "–"
            print(scenario.rawValue.padding(toLength: 19, withPad: " ", startingAt: 0)
                  + rates.map { String(format: "%6.2f", $0) }.joined(separator: " ").padding(toLength: 29, withPad: " ", startingAt: 0)
                  + String(format: "%6.2f", median) + "   " + ratio)
            fflush(nil)   // each scenario's line as it is measured
        }
    }

    /// Rounds per second of `workers` honest workers while `scenario` runs.
    func measure(_ scenario: AttackScenario) async throws -> Double {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tributary-attack-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var config = JobConfig()
        config.name = "attack-bench"
        config.validation.replication = .off  // issue 12's figures: honest throughput under transport attacks
        config.model.nLayer = 1
        config.model.nHead = 2
        config.model.nEmbd = 32
        config.model.blockSize = 16
        config.units.samplesPerUnit = 4
        config.optimizer.totalRounds = 1_000_000
        // Async rounds (each update a round) keep the workers busy, so rounds/s follows the
        // coordinator's capacity; sync rounds (a barrier per round) are what a squatter stalls.
        config.rounds.mode = scenario.mode
        config.rounds.unitsPerRound = workers
        config.rounds.maxStaleness = 2 * workers
        config.storage.dataDirectory = "\(dir)/coordinator"
        config.storage.checkpointEveryRounds = 1_000_000
        config.storage.validationEveryRounds = 1_000_000
        config.auth.joinToken = "attack-bench-join-token"
        if scenario == .workerList { config.limits.registrationBurst = 2_100 }
        if unprotected {
            let huge = 1_000_000
            config.limits.registrationBurst = huge
            config.limits.badJoinTokens = huge
            config.limits.publicBurst = huge
            config.limits.publicRequestsPerSecond = Double(huge)
            config.limits.connectionBurst = huge
            config.limits.connectionsPerSecond = Double(huge)
            config.limits.maxConnectionsPerAddress = huge
            config.limits.maxConnections = huge
            config.limits.idleTimeoutSeconds = 86_400
            config.leases.maxPerWorker = huge
            config.leases.maxLifetimeSeconds = 1e9
        }
        var logger = Logger(label: "bench.attacks")
        logger.logLevel = .critical
        let coordinator = try await EmbeddedCoordinator.start(config, logger: logger)
        let attack = try await AttackRun.start(scenario, against: coordinator, joinToken: config.auth.joinToken ?? "")
        let honest = (0..<workers).map { i in
            WorkerDaemon(options: WorkerOptions(coordinator: coordinator.url, joinToken: config.auth.joinToken ?? "",
                                                name: "honest-\(i)", dataDirectory: "\(dir)/worker-\(i)"),
                         logger: logger)
        }
        let running = Task {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for daemon in honest { group.addTask { try await daemon.run() } }
                try await group.waitForAll()
            }
        }
        try await Task.sleep(for: .seconds(3))   // registration and memory planning
        let v0 = coordinator.job.status().version
        let t0 = Date()
        try await Task.sleep(for: .seconds(seconds))
        let rate = Double(coordinator.job.status().version - v0) / Date().timeIntervalSince(t0)
        for daemon in honest { await daemon.requestStop() }
        running.cancel()
        _ = try? await running.value
        await attack.stop()
        await coordinator.stop()
        return rate
    }
}

enum AttackScenario: String, CaseIterable {
    /// Sync rounds, nobody attacking: the reference for `squat`.
    case cleanSync = "clean-sync"
    /// Finding 2: one worker takes a unit and renews its lease forever, and asks for more.
    case squat
    /// Async rounds, nobody attacking: the reference for the rest.
    case clean
    /// Finding 4: 2,000 registered workers, four clients polling /v1/workers without pause.
    case workerList = "worker-list"
    /// Finding 7: 1,100 idle connections from one address, reopened when closed.
    case idleConnections = "idle-connections"
    /// Finding 8: 1,000 uploads with made-up lease ids that never send their body.
    case stalledUploads = "stalled-uploads"
    /// Finding 9: 8 threads requesting /v1/status as fast as they can, and wrong join tokens.
    case flood

    var mode: RoundMode { self == .cleanSync || self == .squat ? .sync : .async }
}
