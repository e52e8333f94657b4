import Foundation
import TributaryCoordinator
import TributaryLedger
import TributaryTensor
import XCTest
import Yams
#if TRIBUTARY_CLI_TESTS
@testable import tributary
#endif

/// The service files in Deploy/ (systemd units, the container image, compose, Kubernetes): read
/// by the tools that will read them in production, run with the built binary, and checked
/// against each other (a worker's cgroup limits against its --threads and --memory-budget, the
/// job files against JobConfig, the image's packages against ldd). Every external validator is
/// first shown a broken copy it must refuse: a check that passes everything proves nothing.
/// Tools come from Deploy/install-deps.sh --tests; a test skips, saying so, when one is missing.
final class DeployFilesTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    /// What the process needs beyond its budget: the runtime, libraries, network buffers, page
    /// cache. Every file that caps a worker's memory says budget + this.
    static let overheadBytes = 300 << 20
    static let kubernetesVersion = "1.30.0"

    var dir = ""

    override func setUp() async throws { dir = try temporaryDirectory("deploy") }
    override func tearDown() async throws { try? FileManager.default.removeItem(atPath: dir) }

    static func read(_ path: String) throws -> String {
        try String(contentsOfFile: "\(root)/\(path)", encoding: .utf8)
    }

    func write(_ text: String, _ name: String) throws -> String {
        let path = "\(dir)/\(name)"
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// The worker's --grace-seconds default, which every stop timeout must exceed.
    static var workerGraceSeconds: Double {
        #if TRIBUTARY_CLI_TESTS
        return (try? WorkerRun.parse(["--coordinator", "http://x"]).graceSeconds) ?? 30
        #else
        return 30
        #endif
    }

    // MARK: - systemd

    func testSystemdUnitsPassVerifyAndTheSecurityThreshold() async throws {
        let analyze = try ExternalTool.require("systemd-analyze", for: "Deploy/systemd")
        let exe = try ProcessTestCase.executable().path
        // Copies that run the built binary: verify fails when ExecStart's program is missing.
        var units: [String] = []
        for name in ["tributary-coordinator.service", "tributary-worker@.service"] {
            let text = try Self.read("Deploy/systemd/\(name)").replacingOccurrences(of: "/usr/local/bin/tributary", with: exe)
            units.append(try write(text, "units/\(name)"))
        }
        // systemd only warns about a misspelt or invalid directive (exit 0): stderr counts too.
        func verify(_ path: String) async throws -> String? {
            let r = try await ExternalTool.run(analyze, ["verify", "--man=no", path])
            return r.status == 0 && r.output.isEmpty ? nil : "exit \(r.status): \(r.output)"
        }
        func security(_ path: String) async throws -> ExternalTool.Finished {
            // Exposure at most 2.0 of 10 ("OK"); the units score about 1.2.
            let r = try await ExternalTool.run(analyze, ["security", "--offline=yes", "--threshold=20", "--no-pager", path])
            if r.output.contains("unrecognized option") { throw XCTSkip("this systemd-analyze has no offline security check") }
            return r
        }
        let worker = try String(contentsOfFile: units[1], encoding: .utf8)
        let misspelt = try write(worker.replacingOccurrences(of: "ProtectSystem=strict", with: "ProtectSytem=strict"), "broken/a@.service")
        let finding = try await verify(misspelt)
        XCTAssertTrue(finding?.contains("ProtectSytem") ?? false, "verify let a misspelt directive through: \(finding ?? "nothing")")
        let sandbox = ["NoNewPrivileges", "ProtectSystem", "PrivateUsers", "SystemCallFilter", "DynamicUser", "ProtectHome"]
        let open = worker.split(separator: "\n").filter { line in !sandbox.contains { line.hasPrefix($0 + "=") } }
        let exposed = try await security(try write(open.joined(separator: "\n"), "broken/b@.service"))
        XCTAssertNotEqual(exposed.status, 0, "a unit without its sandbox passed the threshold")

        for unit in units {
            let finding = try await verify(unit)
            XCTAssertNil(finding, unit)
            let r = try await security(unit)
            XCTAssertEqual(r.status, 0, r.output.split(separator: "\n").filter { $0.contains("✗") || $0.contains("Overall") }.joined(separator: "\n"))
        }
    }

    func testWorkerUnitLimitsMatchItsThreadsAndBudget() throws {
        let unit = Self.unitSettings(try Self.read("Deploy/systemd/tributary-worker@.service"))
        let defaults = Self.assignments(unit["Environment"]?.joined(separator: " ") ?? "", separator: " ")
        let example = Self.assignments(try Self.read("Deploy/systemd/worker.env"), separator: "\n")
        XCTAssertEqual(example["THREADS"], defaults["THREADS"], "worker.env and the unit's defaults agree")
        XCTAssertEqual(example["MEMORY_BUDGET"], defaults["MEMORY_BUDGET"])
        XCTAssertNotNil(example["COORDINATOR"])
        let threads = try XCTUnwrap(defaults["THREADS"].flatMap { Int($0) })
        let budget = try XCTUnwrap(defaults["MEMORY_BUDGET"].flatMap(ByteCount.parse))
        XCTAssertEqual(unit["CPUQuota"], ["\(threads * 100)%"], "CPUQuota = THREADS x 100%")
        let memoryMax = try XCTUnwrap(unit["MemoryMax"]?.first)
        XCTAssertEqual(Self.bytes(memoryMax, units: ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30]), budget + Self.overheadBytes,
                       "MemoryMax = MEMORY_BUDGET + 300 MiB")
        XCTAssertEqual(unit["Nice"], ["19"])

        let exec = try XCTUnwrap(unit["ExecStart"]?.first)
        for part in ["--threads ${THREADS}", "--memory-budget ${MEMORY_BUDGET}", "--join-token-file %d/join-token",
                     "--data-dir %S/tributary-worker/%i", "--coordinator ${COORDINATOR}"] {
            XCTAssertTrue(exec.contains(part), "ExecStart passes \(part)")
        }
        XCTAssertEqual(unit["StateDirectory"], ["tributary-worker/%i"])
        for u in [unit, Self.unitSettings(try Self.read("Deploy/systemd/tributary-coordinator.service"))] {
            XCTAssertTrue(u["LoadCredential"]?.first?.hasPrefix("join-token:") ?? false, "the join token is a credential")
            XCTAssertTrue(["SIGINT", "SIGTERM"].contains(u["KillSignal"]?.first ?? ""))
            XCTAssertEqual(u["Restart"], ["on-failure"])
            XCTAssertEqual(u["DynamicUser"], ["yes"])
            let stop = try XCTUnwrap(u["TimeoutStopSec"]?.first.flatMap { Double($0.replacingOccurrences(of: "s", with: "")) })
            XCTAssertGreaterThan(stop, Self.workerGraceSeconds, "stopping outwaits the worker's grace period")
        }
    }

    // MARK: - Command lines

    /// Every command line the files run, run with the built binary: an unknown option or a bad
    /// value exits 64 with usage; a good line gets as far as its first file (made to fail, so
    /// nothing starts).
    func testEveryCommandLineParsesWithTheBuiltBinary() async throws {
        let exe = try ProcessTestCase.executable().path
        let token = try write("a-join-token-for-the-test\n", "token")
        let blocker = try write("a file where a directory should be", "file")
        func fake(_ args: [String]) -> [String] {
            var out = args
            for (i, arg) in args.enumerated().dropLast() {
                switch arg {
                case "--job": out[i + 1] = "\(dir)/missing/job.yaml"
                case "--join-token-file": out[i + 1] = token
                case "--data-dir": out[i + 1] = "\(blocker)/data"
                default: break
                }
            }
            return out
        }
        func run(_ args: [String], _ origin: String) async throws {
            let r = try await ExternalTool.run(exe, fake(args), timeout: 30, environment: ["TRIBUTARY_BLAS_CORETYPE": "inherit"])
            let expected = args.first == "worker" ? "cannot create the data directory" : "cannot read job file"
            XCTAssertTrue(r.status == 1 && r.output.contains(expected),
                          "\(origin): \(args.joined(separator: " ")) → exit \(r.status): \(r.output)")
        }
        let lines = try Self.commandLines()
        XCTAssertEqual(lines.count, 6, lines.map(\.origin).joined(separator: ", "))
        for line in lines { try await run(line.args, line.origin) }
        // The check is live: an option the binary does not have is a usage error.
        let worker = try XCTUnwrap(lines.first { $0.args.first == "worker" })
        let r = try await ExternalTool.run(exe, fake(worker.args + ["--nicee", "19"]), timeout: 30)
        XCTAssertEqual(r.status, 64, r.output)
    }

    /// The coordinator and worker command lines of the systemd units, compose and Kubernetes.
    static func commandLines() throws -> [(origin: String, args: [String])] {
        var lines: [(String, [String])] = []
        for name in ["tributary-coordinator.service", "tributary-worker@.service"] {
            let unit = unitSettings(try read("Deploy/systemd/\(name)"))
            let defaults = assignments(unit["Environment"]?.joined(separator: " ") ?? "", separator: " ")
            let exec = try XCTUnwrap(unit["ExecStart"]?.first)
            let words = exec.split(separator: " ").dropFirst().map { word -> String in
                var w = String(word)
                for (k, v) in defaults.merging(["COORDINATOR": "http://127.0.0.1:9"], uniquingKeysWith: { a, _ in a }) {
                    w = w.replacingOccurrences(of: "${\(k)}", with: v)
                }
                return w.replacingOccurrences(of: "%i", with: "1").replacingOccurrences(of: "%H", with: "host")
            }
            lines.append((name, words))
        }
        let compose = try yaml("Deploy/compose/compose.yaml")
        for service in ["coordinator", "worker"] {
            lines.append(("compose \(service)", try XCTUnwrap(ContractSpec.dig(compose, "services", service, "command") as? [String])))
        }
        for file in ["coordinator.yaml", "worker.yaml"] {
            for doc in try yamlDocuments("Deploy/kubernetes/\(file)") {
                guard let containers = ContractSpec.dig(doc, "spec", "template", "spec", "containers") as? [[String: Any]] else { continue }
                let args = try XCTUnwrap(containers.first?["args"] as? [String])
                lines.append(("kubernetes \(file)", args.map { $0.replacingOccurrences(of: "$(POD_NAME)", with: "pod-0") }))
            }
        }
        return lines
    }

    // MARK: - Job files

    /// The example U-Net job loads: a U-Net on a data directory beside the file, the token
    /// from a file, and a coordinator that would plan it (a misspelt key is refused).
    func testTheMNISTUNetExampleJobLoads() throws {
        let text = try Self.read("Deploy/jobs/mnist-unet.yaml")
        let job = try write(text, "jobs/mnist-unet.yaml")
        _ = try write("a-join-token-of-24-characters\n", "jobs/join-token.txt")
        let c = try JobConfig.load(path: job)
        XCTAssertEqual(c.model.type, "unet")
        XCTAssertEqual(c.model.baseChannels, 16)
        XCTAssertEqual(c.data.source, "\(dir)/jobs/mnist", "relative to the job file")
        XCTAssertEqual(try c.joinToken(), "a-join-token-of-24-characters")
        XCTAssertEqual(c.compression.codec, "int8:256")
        XCTAssertThrowsError(try JobConfig.load(path: try write(text.replacingOccurrences(of: "base_channels", with: "base_channel"),
                                                                "broken/mnist-unet.yaml")))
    }

    func testComposeAndKubernetesJobFilesLoad() throws {
        let composeText = try Self.read("Deploy/compose/job.yaml")
        let secrets = "\(dir)/secrets"
        _ = try write("compose-join-token-1234567890\n", "secrets/join-token")
        _ = try write("db-secret\n", "secrets/db-password")
        let composeJob = try write(composeText.replacingOccurrences(of: "/run/secrets/", with: "\(secrets)/"), "compose/job.yaml")
        let c = try JobConfig.load(path: composeJob)
        XCTAssertEqual(try c.ledgerLocation(), .postgres(PostgresLedgerSettings(
            endpoint: .tcp(host: "db", port: 5432), user: "tributary", database: "tributary", password: "db-secret", tls: .disable)))
        XCTAssertEqual(try c.joinToken(), "compose-join-token-1234567890")
        XCTAssertEqual(try c.listenAddress().host, "0.0.0.0")
        XCTAssertEqual(try c.listenAddress().port, 8470)
        XCTAssertEqual(c.storage.dataDirectory, "/data")
        // The loader is live: a misspelt key is refused.
        let misspelt = try write(try String(contentsOfFile: composeJob, encoding: .utf8)
            .replacingOccurrences(of: "  ledger: postgres", with: "  ledgr: postgres"), "broken/job.yaml")
        XCTAssertThrowsError(try JobConfig.load(path: misspelt))

        // The db service is the database the URL names, with the password the URL reads.
        let compose = try Self.yaml("Deploy/compose/compose.yaml")
        let db = try XCTUnwrap(ContractSpec.dig(compose, "services", "db", "environment") as? [String: Any])
        XCTAssertEqual(db["POSTGRES_USER"] as? String, "tributary")
        XCTAssertEqual(db["POSTGRES_DB"] as? String, "tributary")
        XCTAssertEqual(db["POSTGRES_PASSWORD_FILE"] as? String, "/run/secrets/db-password")
        XCTAssertTrue(composeText.contains("password_file=/run/secrets/db-password"))
        XCTAssertTrue(composeText.contains("join_token_file: /run/secrets/join-token"))

        let configMap = try XCTUnwrap(try Self.yamlDocuments("Deploy/kubernetes/job-configmap.yaml").first)
        let k8sText = try XCTUnwrap(ContractSpec.dig(configMap, "data", "job.yaml") as? String)
        _ = try write("k8s-join-token-1234567890\n", "k8s/join-token")
        let k8sJob = try write(k8sText.replacingOccurrences(of: "/run/secrets/tributary/", with: "\(dir)/k8s/"), "k8s/job.yaml")
        let k = try JobConfig.load(path: k8sJob)
        XCTAssertEqual(try k.ledgerLocation(), .sqlite(path: "/data/ledger.sqlite"), "SQLite on the StatefulSet's volume")
        XCTAssertEqual(try k.joinToken(), "k8s-join-token-1234567890")
        XCTAssertEqual(try k.listenAddress().host, "0.0.0.0")
        XCTAssertEqual(try k.listenAddress().port, 8470)
    }

    // MARK: - Compose

    func testComposeFileMatchesTheComposeSpecification() async throws {
        let checker = try ExternalTool.require("check-jsonschema", for: "Deploy/compose/compose.yaml")
        func check(_ path: String) async throws -> ExternalTool.Finished {
            try await ExternalTool.run(checker, ["--builtin-schema", "vendor.compose-spec", path])
        }
        let text = try Self.read("Deploy/compose/compose.yaml")
        let broken = try await check(try write(text.replacingOccurrences(of: "stop_grace_period: 45s", with: "stop_grace_periodd: 45s"),
                                               "broken/compose.yaml"))
        XCTAssertNotEqual(broken.status, 0, "a misspelt key passed: \(broken.output)")
        let r = try await check("\(Self.root)/Deploy/compose/compose.yaml")
        XCTAssertEqual(r.status, 0, r.output)

        // What the schema cannot see: names that refer to each other, and the worker's limits.
        let compose = try Self.yaml("Deploy/compose/compose.yaml")
        let services = try XCTUnwrap(compose["services"] as? [String: [String: Any]])
        let secrets = Set((compose["secrets"] as? [String: Any])?.keys.map { $0 } ?? [])
        let volumes = Set((compose["volumes"] as? [String: Any])?.keys.map { $0 } ?? [])
        for (name, service) in services {
            for secret in service["secrets"] as? [String] ?? [] { XCTAssertTrue(secrets.contains(secret), "\(name): secret \(secret)") }
            for dependency in (service["depends_on"] as? [String: Any])?.keys.map({ $0 }) ?? [] {
                XCTAssertNotNil(services[dependency], "\(name) depends on \(dependency)")
            }
            for mount in service["volumes"] as? [String] ?? [] {
                let source = String(mount.split(separator: ":")[0])
                if source.hasPrefix(".") {
                    XCTAssertTrue(FileManager.default.fileExists(atPath: "\(Self.root)/Deploy/compose/\(source)"), "\(name): \(mount)")
                } else {
                    XCTAssertTrue(volumes.contains(source), "\(name): volume \(source)")
                }
            }
        }
        for secret in secrets {
            let file = try XCTUnwrap(ContractSpec.dig(compose, "secrets", secret, "file") as? String)
            XCTAssertTrue(file.hasPrefix("./secrets/"), "\(secret): \(file)")
        }
        XCTAssertTrue(try Self.read(".gitignore").split(separator: "\n").contains("/Deploy/compose/secrets/"),
                      "git ignores the compose secrets")

        let worker = try XCTUnwrap(services["worker"])
        let command = try XCTUnwrap(worker["command"] as? [String])
        let limits = try XCTUnwrap(ContractSpec.dig(worker, "deploy", "resources", "limits") as? [String: Any])
        XCTAssertEqual(limits["cpus"] as? String, Self.option("--threads", in: command), "cpus = --threads")
        let budget = try XCTUnwrap(Self.option("--memory-budget", in: command).flatMap(ByteCount.parse))
        XCTAssertEqual(Self.bytes(limits["memory"] as? String ?? "", units: ["k": 1 << 10, "m": 1 << 20, "g": 1 << 30,
                                                                                       "K": 1 << 10, "M": 1 << 20, "G": 1 << 30]),
                       budget + Self.overheadBytes, "memory = --memory-budget + 300 MiB")
        XCTAssertNotNil(ContractSpec.dig(worker, "deploy", "replicas"))
        XCTAssertGreaterThan(Self.seconds(worker["stop_grace_period"] as? String ?? ""), Self.workerGraceSeconds)
        let health = try XCTUnwrap(ContractSpec.dig(services["coordinator"] ?? [:], "healthcheck", "test") as? [String])
        XCTAssertEqual(Array(health.dropFirst()), ["tributary", "status", "http://127.0.0.1:8470"], "GET /v1/status")
    }

    // MARK: - Kubernetes

    func testKubernetesManifestsMatchTheSchema() async throws {
        let validator = try ExternalTool.require("kubernetes-validate", for: "Deploy/kubernetes")
        func validate(_ paths: [String]) async throws -> ExternalTool.Finished {
            try await ExternalTool.run(validator, ["--strict", "-k", Self.kubernetesVersion] + paths)
        }
        let worker = try Self.read("Deploy/kubernetes/worker.yaml")
        let broken = try await validate([try write(worker.replacingOccurrences(of: "runAsNonRoot", with: "runAsNonRooot"), "broken/worker.yaml")])
        XCTAssertNotEqual(broken.status, 0, "a misspelt field passed: \(broken.output)")

        let files = try FileManager.default.contentsOfDirectory(atPath: "\(Self.root)/Deploy/kubernetes")
            .filter { $0.hasSuffix(".yaml") }.sorted()
        let r = try await validate(files.map { "\(Self.root)/Deploy/kubernetes/\($0)" })
        XCTAssertEqual(r.status, 0, r.output)
        let documents = try files.flatMap { try Self.yamlDocuments("Deploy/kubernetes/\($0)") }
        XCTAssertEqual(r.output.components(separatedBy: " passed for resource ").count - 1, documents.count, r.output)

        func object(_ kind: String) throws -> [String: Any] {
            try XCTUnwrap(documents.first { $0["kind"] as? String == kind }, "a \(kind)")
        }
        let (service, statefulSet, deployment) = (try object("Service"), try object("StatefulSet"), try object("Deployment"))
        let secretName = try XCTUnwrap(ContractSpec.dig(try object("Secret"), "metadata", "name") as? String)
        let configMapName = try XCTUnwrap(ContractSpec.dig(try object("ConfigMap"), "metadata", "name") as? String)
        let uid = try Self.imageUser()
        for workload in [statefulSet, deployment] {
            let pod = try XCTUnwrap(ContractSpec.dig(workload, "spec", "template", "spec") as? [String: Any])
            let container = try XCTUnwrap((pod["containers"] as? [[String: Any]])?.first)
            let args = try XCTUnwrap(container["args"] as? [String])
            XCTAssertEqual(ContractSpec.dig(pod, "securityContext", "runAsNonRoot") as? Bool, true)
            XCTAssertEqual(ContractSpec.dig(pod, "securityContext", "runAsUser") as? Int, uid, "the image's user")
            XCTAssertEqual(ContractSpec.dig(container, "securityContext", "allowPrivilegeEscalation") as? Bool, false)
            XCTAssertEqual(ContractSpec.dig(workload, "spec", "selector", "matchLabels") as? [String: String],
                           ContractSpec.dig(workload, "spec", "template", "metadata", "labels") as? [String: String])
            // The join token: the Secret, mounted where the command line (or the job) reads it.
            let volumes = pod["volumes"] as? [[String: Any]] ?? []
            let tokenVolume = try XCTUnwrap(volumes.first { ContractSpec.dig($0, "secret", "secretName") as? String == secretName })
            let mounts = container["volumeMounts"] as? [[String: Any]] ?? []
            let tokenMount = try XCTUnwrap(mounts.first { $0["name"] as? String == tokenVolume["name"] as? String }?["mountPath"] as? String)
            let dataMount = try XCTUnwrap(mounts.first { $0["name"] as? String == "data" }?["mountPath"] as? String)
            XCTAssertEqual(Self.option("--data-dir", in: args), dataMount)
            if args.first == "worker" {
                XCTAssertEqual(Self.option("--join-token-file", in: args), "\(tokenMount)/join-token")
                let resources = try XCTUnwrap(container["resources"] as? [String: [String: Any]])
                for bound in ["requests", "limits"] {
                    XCTAssertEqual(resources[bound]?["cpu"] as? String, Self.option("--threads", in: args), "\(bound).cpu = --threads")
                    let budget = try XCTUnwrap(Self.option("--memory-budget", in: args).flatMap(ByteCount.parse))
                    XCTAssertEqual(Self.bytes(resources[bound]?["memory"] as? String ?? "", units: ["Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30]),
                                   budget + Self.overheadBytes, "\(bound).memory = --memory-budget + 300 MiB")
                }
                XCTAssertGreaterThan(Double(pod["terminationGracePeriodSeconds"] as? Int ?? 0), Self.workerGraceSeconds)
            } else {
                let jobVolume = try XCTUnwrap(volumes.first { ContractSpec.dig($0, "configMap", "name") as? String == configMapName })
                let jobMount = try XCTUnwrap(mounts.first { $0["name"] as? String == jobVolume["name"] as? String }?["mountPath"] as? String)
                XCTAssertEqual(Self.option("--job", in: args), "\(jobMount)/job.yaml")
                let job = try XCTUnwrap(ContractSpec.dig(try object("ConfigMap"), "data", "job.yaml") as? String)
                XCTAssertTrue(job.contains("join_token_file: \(tokenMount)/join-token"))
                let claims = ContractSpec.dig(workload, "spec", "volumeClaimTemplates") as? [[String: Any]] ?? []
                XCTAssertTrue(claims.contains { ContractSpec.dig($0, "metadata", "name") as? String == "data" }, "data on a claim")
                let port = try XCTUnwrap((container["ports"] as? [[String: Any]])?.first)
                XCTAssertEqual(port["containerPort"] as? Int, 8470)
                for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
                    XCTAssertEqual(ContractSpec.dig(container, probe, "httpGet", "path") as? String, "/v1/status", probe)
                    XCTAssertEqual(ContractSpec.dig(container, probe, "httpGet", "port") as? String, port["name"] as? String, probe)
                }
                let selector = try XCTUnwrap(ContractSpec.dig(service, "spec", "selector") as? [String: String])
                let labels = try XCTUnwrap(ContractSpec.dig(workload, "spec", "template", "metadata", "labels") as? [String: String])
                XCTAssertTrue(selector.allSatisfy { labels[$0.key] == $0.value }, "the Service selects the coordinator")
                XCTAssertEqual(ContractSpec.dig(workload, "spec", "serviceName") as? String, ContractSpec.dig(service, "metadata", "name") as? String)
            }
        }
    }

    // MARK: - Container image

    func testContainerImageHasEveryLibraryTheBinaryLinks() async throws {
        let dockerfile = try Self.read("Deploy/container/Dockerfile")
        guard let ldd = ExternalTool.find("ldd"), let dpkg = ExternalTool.find("dpkg") else {
            throw XCTSkip("ldd or dpkg not found: the image's packages are checked on Debian")
        }
        let exe = try ProcessTestCase.executable().path
        let linked = try await ExternalTool.run(ldd, [exe])
        XCTAssertEqual(linked.status, 0, linked.output)
        var needed: Set<String> = []
        for library in Self.systemLibraries(ldd: linked.stdout) {
            needed.insert(try await Self.package(owning: library, dpkg: dpkg))
        }
        XCTAssertTrue(needed.isSuperset(of: ["libopenblas0-pthread", "libsqlite3-0", "libzstd1", "zlib1g"]), "\(needed.sorted())")
        XCTAssertEqual(Self.missingRuntimePackages(dockerfile, needed: needed), [], "add them to the runtime stage's apt-get install")
        // The check is live: a runtime stage without SQLite misses it.
        XCTAssertEqual(Self.missingRuntimePackages(dockerfile.replacingOccurrences(of: "libsqlite3-0", with: ""), needed: needed),
                       ["libsqlite3-0"])

        // The build stage: the tests' toolchain, the static Swift runtime, the same -dev packages.
        let version = try await ExternalTool.run("/usr/bin/env", ["swift", "--version"])
        if version.status == 0, let match = version.output.range(of: #"Swift version [0-9.]+"#, options: .regularExpression) {
            let toolchain = version.output[match].dropFirst("Swift version ".count)
            XCTAssertTrue(dockerfile.contains("ARG SWIFT_VERSION=\(toolchain)\n"), "the image builds with Swift \(toolchain)")
        }
        XCTAssertTrue(dockerfile.contains("FROM swift:${SWIFT_VERSION}-bookworm AS build"))
        XCTAssertTrue(dockerfile.contains("RUN bash Deploy/install-deps.sh"))
        XCTAssertTrue(dockerfile.contains("swift build -c release --static-swift-stdlib --product tributary"))
        XCTAssertTrue(dockerfile.contains("\nFROM debian:bookworm-slim\n"))
        XCTAssertNotEqual(try Self.imageUser(), 0, "a non-root user")
        for line in ["EXPOSE 8470", #"VOLUME ["/data"]"#, #"ENTRYPOINT ["/usr/local/bin/tributary"]"#] {
            XCTAssertTrue(dockerfile.contains("\n\(line)\n"), line)
        }
        let ignored = try Self.read(".dockerignore").split(separator: "\n")
        XCTAssertTrue(ignored.contains(".build*") && ignored.contains(".git"), "the build context leaves out .build and .git")
    }

    /// Libraries ldd names that the image must provide: not the Swift runtime (linked into the
    /// binary by --static-swift-stdlib; it is whatever sits beside libswiftCore.so) nor the
    /// kernel's vDSO.
    static func systemLibraries(ldd: String) -> [String] {
        let paths = ldd.split(separator: "\n").compactMap { line -> String? in
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if let arrow = words.firstIndex(of: "=>"), arrow + 1 < words.count, words[arrow + 1].hasPrefix("/") { return String(words[arrow + 1]) }
            return words.first.flatMap { $0.hasPrefix("/") ? String($0) : nil }
        }
        let swiftRuntime = paths.first { $0.hasSuffix("/libswiftCore.so") }.map { ($0 as NSString).deletingLastPathComponent + "/" }
        return paths.filter { path in swiftRuntime.map { !path.hasPrefix($0) } ?? true }
    }

    /// The Debian package that installed `library` (through symlinks such as OpenBLAS's
    /// alternatives, and either side of the merged /usr).
    static func package(owning library: String, dpkg: String) async throws -> String {
        let real = URL(fileURLWithPath: library).resolvingSymlinksInPath().path
        var candidates = [library, real]
        for path in [library, real] where path.hasPrefix("/usr/") { candidates.append(String(path.dropFirst(4))) }
        for path in [library, real] where !path.hasPrefix("/usr/") { candidates.append("/usr" + path) }
        for path in candidates {
            let r = try await ExternalTool.run(dpkg, ["-S", path])
            if r.status == 0, let name = r.stdout.split(separator: ":").first { return String(name) }
        }
        XCTFail("no Debian package owns \(library)")
        return library
    }

    /// Packages in `needed` that the runtime stage's `apt-get install` does not name. libc6 is
    /// in every Debian image (dpkg itself needs it).
    static func missingRuntimePackages(_ dockerfile: String, needed: Set<String>) -> [String] {
        let runtime = dockerfile.components(separatedBy: "\nFROM ").last ?? ""
        let install = runtime.components(separatedBy: "apt-get install").dropFirst().first?.components(separatedBy: "&&").first ?? ""
        let listed = Set(install.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\\" }).map(String.init).filter { !$0.hasPrefix("-") })
        return needed.subtracting(listed).subtracting(["libc6"]).sorted()
    }

    /// The numeric user the image runs as (`USER uid:gid`).
    static func imageUser() throws -> Int {
        let dockerfile = try read("Deploy/container/Dockerfile")
        let line = try XCTUnwrap(dockerfile.split(separator: "\n").last { $0.hasPrefix("USER ") }, "the image names a USER")
        return try XCTUnwrap(Int(line.dropFirst(5).split(separator: ":")[0]), "USER is numeric (runAsNonRoot needs that)")
    }

    // MARK: - Reading the files

    /// A unit file's settings, each key's values in order (continuation lines are not used).
    static func unitSettings(_ text: String) -> [String: [String]] {
        var settings: [String: [String]] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") && !line.hasPrefix("[") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            settings[String(line[..<eq]), default: []].append(String(line[line.index(after: eq)...]))
        }
        return settings
    }

    /// KEY=VALUE pairs (comments skipped).
    static func assignments(_ text: String, separator: Character) -> [String: String] {
        var out: [String: String] = [:]
        for item in text.split(separator: separator) where !item.hasPrefix("#") {
            let parts = item.split(separator: "=", maxSplits: 1)
            if parts.count == 2 { out[String(parts[0])] = String(parts[1]) }
        }
        return out
    }

    static func option(_ name: String, in args: [String]) -> String? {
        args.firstIndex(of: name).flatMap { $0 + 1 < args.count ? args[$0 + 1] : nil }
    }

    /// "1324M" with the given unit suffixes (all binary); nil if malformed.
    static func bytes(_ text: String, units: [String: Int]) -> Int? {
        for (suffix, factor) in units where text.hasSuffix(suffix) {
            return Int(text.dropLast(suffix.count)).map { $0 * factor }
        }
        return Int(text)
    }

    /// Compose durations such as "45s" or "2m".
    static func seconds(_ text: String) -> Double {
        if text.hasSuffix("m") { return (Double(text.dropLast()) ?? 0) * 60 }
        return Double(text.replacingOccurrences(of: "s", with: "")) ?? 0
    }

    static func yaml(_ path: String) throws -> [String: Any] {
        let parsed = try XCTUnwrap(try Yams.load(yaml: try read(path)), "\(path) is empty")
        return try XCTUnwrap(ContractSpec.normalize(parsed) as? [String: Any], "\(path) is not a mapping")
    }

    static func yamlDocuments(_ path: String) throws -> [[String: Any]] {
        try Yams.load_all(yaml: try read(path)).compactMap { ContractSpec.normalize($0) as? [String: Any] }
    }
}
