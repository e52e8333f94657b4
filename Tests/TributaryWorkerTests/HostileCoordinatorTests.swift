import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import TributaryCompression
import TributaryModels
import TributaryProtocol
import TributaryTensor
@testable import TributaryWorker
import XCTest

/// Issue 12's worker-side findings, each replayed by a hostile coordinator on loopback.
final class HostileCoordinatorTests: XCTestCase {
    /// Runs a worker against `url` for `seconds`, then cancels it.
    static func runWorker(_ url: String, seconds: Double, budget: Int? = nil) async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tributary-hostile-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let options = WorkerOptions(coordinator: url, joinToken: "join-secret", dataDirectory: dir, memoryBudgetBytes: budget)
        var logger = Logger(label: "test.worker")
        logger.logLevel = .critical
        let daemon = WorkerDaemon(options: options, logger: logger)
        let task = Task { try await daemon.run() }
        try await Task.sleep(for: .seconds(seconds))
        task.cancel()
        _ = await task.result
    }

    func expectViolation(_ body: () async throws -> Void, mentioning parts: [String],
                         file: StaticString = #filePath, line: UInt = #line) async {
        do {
            try await body()
            XCTFail("accepted", file: file, line: line)
        } catch let ClientError.protocolViolation(why) {
            for p in parts { XCTAssertTrue(why.contains(p), "\(why) should mention \(p)", file: file, line: line) }
        } catch {
            XCTFail("\(error)", file: file, line: line)
        }
    }

    // MARK: Finding 10: redirects are never followed

    /// A coordinator that redirects registration to another origin: the other server sees
    /// no request at all (before: the registration, join token included, then the leases),
    /// and the worker is told to fix --coordinator.
    func testRedirectsAreNeverFollowed() async throws {
        let elsewhere = try await HostileCoordinator.start { _, _ in try HostileCoordinator.registered() }
        let target = elsewhere.url
        // Every kind of redirect in turn; 307 and 308 would re-post the body, join token included.
        let redirecting = try await HostileCoordinator.start { request, log in
            let status: [HTTPResponse.Status] = [.temporaryRedirect, .permanentRedirect, .movedPermanently, .found, .seeOther]
            return Response(status: status[log.requests.count % status.count], headers: [.location: target + request.uri.path])
        }
        try await Self.runWorker(redirecting.url, seconds: 1.5)
        // Given a configuration that says to follow them, the worker's client still does not.
        var following = WorkerHTTPClient.defaultConfiguration
        following.redirectConfiguration = .follow(max: 5, allowCycles: false)
        let http = WorkerHTTPClient(following)
        let client = CoordinatorClient(base: redirecting.url, http: http)
        await expectViolation({
            let _: RegisterResponse = try await client.json(.POST, Routes.register, body: RegisterRequest(joinToken: "join-secret"))
        }, mentioning: ["redirected", "to \(target)\(Routes.register)", "set --coordinator"])
        try await http.shutdown()
        await redirecting.stop()
        await elsewhere.stop()
        print("redirecting coordinator saw \(redirecting.log.requests.count) requests, the other origin \(elsewhere.log.requests.count)")
        XCTAssertEqual(elsewhere.log.requests, [])
        XCTAssertGreaterThanOrEqual(redirecting.log.count("POST \(Routes.register)"), 2)
    }
}
