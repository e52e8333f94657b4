import ArgumentParser
import Foundation
import Logging
import TributaryCompression
import TributaryCoordinator
import TributaryModels
import TributaryProtocol
import TributaryTensor

/// `tributary bench robustness`: a real coordinator job (no HTTP) with simulated honest and
/// hostile workers in one process; the final validation loss of each aggregation rule under
/// each attack, against the same rule's clean run and the mean's.
struct RobustnessBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "robustness",
        abstract: "Final validation loss under hostile workers, per aggregation rule and attack (issue 13).")

    @Option(help: "Sync rounds per run.") var rounds = 40
    @Option(help: "Workers in all (one unit each per round).") var workers = 5
    @Option(help: "How many of them are hostile.") var hostile = 1
    @Option(help: "Comma-separated rules: mean, centered_clip, trimmed_mean, median.")
    var rules = "mean,centered_clip,trimmed_mean,median"
    @Option(help: "Comma-separated attacks: \(RobustnessAttack.allCases.map(\.rawValue).joined(separator: ", ")).")
    var attacks = RobustnessAttack.allCases.map(\.rawValue).joined(separator: ",")
    @Option(help: "Training text (default: ../shared tinyshakespeare when present, else builtin:arithmetic).")
    var data: String?
    @Option(name: .customLong("n-embd"), help: "Width of the GPT (2 layers).") var nEmbd = 64
    @Option(help: "Repeats of every run (different data seeds).") var repeats = 1
    @Option(help: "Validation by replication: adaptive (the default for public jobs), all, off.")
    var replication: ReplicationMode = .adaptive
    @Option(help: "Rounds: sync (units_per_round = workers) or async (one update per round).")
    var mode: RoundMode = .sync
    @Flag(help: "Hostile workers lease again after every unit, as often as they can.")
    var greedy = false

    func run() async throws {
        let ruleList = try rules.split(separator: ",").map { name -> AggregationRule in
            guard let r = AggregationRule(rawValue: String(name)) else { throw ValidationError("unknown rule \(name)") }
            return r
        }
        let attackList = try attacks.split(separator: ",").map { name -> RobustnessAttack in
            guard let a = RobustnessAttack(rawValue: String(name)) else { throw ValidationError("unknown attack \(name)") }
            return a
        }
        guard (2...32).contains(workers), (0..<workers).contains(hostile), (1...10_000).contains(rounds),
              (1...10).contains(repeats) else {
            throw ValidationError("--workers in 2...32, --hostile below --workers, --rounds in 1...10000, --repeats in 1...10")
        }
        let shared = "../shared/data/tinyshakespeare/input.txt"
        let source = data ?? (FileManager.default.fileExists(atPath: shared) ? shared : "builtin:arithmetic")
        print("# robustness bench: GPT 2×\(nEmbd) on \(source), \(rounds) \(mode.rawValue) rounds\(mode == .sync ? " of \(workers) units" : ""), \(hostile) of \(workers) workers hostile (\(Int((100 * Double(hostile) / Double(workers)).rounded()))%), \(mode.rawValue), replication \(replication.rawValue)\(greedy ? ", greedy hostile leasing" : ""), \(repeats) repeat(s)")
        print("rule           attack            final val loss   vs rule clean   vs mean clean   hostile acc/ref   hostile credit   banned   replication (run / 2nd half)")
        fflush(nil)
        for r in 0..<repeats {
            var meanClean: Double?
            for rule in ruleList {
                let clean = try await RobustnessRun(settings: self, source: source, rule: rule, attack: nil, seed: UInt64(7 + r)).run()
                if rule == .mean { meanClean = clean.loss }
                print(Self.row(rule, "none (clean)", clean, ruleClean: clean.loss, meanClean: meanClean))
                fflush(nil)
                for attack in attackList {
                    let result = try await RobustnessRun(settings: self, source: source, rule: rule, attack: attack,
                                                         seed: UInt64(7 + r)).run()
                    print(Self.row(rule, attack.rawValue, result, ruleClean: clean.loss, meanClean: meanClean))
                    fflush(nil)
                }
            }
        }
    }

    static func row(_ rule: AggregationRule, _ attack: String, _ r: RobustnessRun.Result, ruleClean: Double,
                    meanClean: Double?) -> String {
        func pct(_ base: Double?) -> String {
            guard let base, base > 0 else { return "—" }
            return String(format: "%+.2f%%", 100 * (r.loss / base - 1))
        }
        let name = rule.rawValue.padding(toLength: 14, withPad: " ", startingAt: 0)
        let a = attack.padding(toLength: 17, withPad: " ", startingAt: 0)
        let counts = "\(r.hostileAccepted)/\(r.hostileRefused)".padding(toLength: 15, withPad: " ", startingAt: 0)
        let credit = "\(r.hostileCredit)".padding(toLength: 14, withPad: " ", startingAt: 0)
        func share(_ a: Int, _ b: Int) -> String { b > 0 ? String(format: "%.1f%%", 100 * Double(a) / Double(b)) : "—" }
        let cost = "\(share(r.replicaSamples, r.countedSamples)) / \(share(r.lateReplicaSamples, r.lateCountedSamples))"
        return "\(name) \(a) \(String(format: "%14.4f", r.loss))   \(pct(ruleClean).padding(toLength: 13, withPad: " ", startingAt: 0))   \(pct(meanClean).padding(toLength: 13, withPad: " ", startingAt: 0))   \(counts)   \(credit)   \(r.hostileBanned)        \(cost)"
    }
}

/// What a hostile worker sends instead of its honest gradient g.
enum RobustnessAttack: String, CaseIterable, Sendable {
    case signFlip = "sign_flip"          // −g, with the norm of g
    case scale = "scale"                 // 100 g
    case noise = "noise"                 // g + noise of 10 ‖g‖
    case zeros = "zeros"                 // 0
    case replay = "replay"               // its first accepted update's bodies, again and again
    case stale = "stale"                 // g computed on the parameters of 10 versions ago
    case littleIsEnough = "little"       // μ − 1.5 σ, from two of its own gradients (Baruch et al. 2019)
    case innerProduct = "ipm"            // −0.5 μ (Xie et al. 2020)
    case falseLoss = "false_loss"        // g, reporting loss 0
}
extension ReplicationMode: ExpressibleByArgument {}
extension RoundMode: ExpressibleByArgument {}
