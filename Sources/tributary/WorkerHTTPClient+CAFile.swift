import Foundation
import NIOSSL
import TributaryWorker

extension WorkerHTTPClient {
    /// The worker's HTTP client (no redirects), trusting `caFile` when given.
    static func trusting(caFile: String?) throws -> WorkerHTTPClient {
        guard let caFile else { return .shared }
        guard FileManager.default.isReadableFile(atPath: caFile) else { throw CLIError("cannot read --ca-file \(caFile)") }
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .file(caFile)
        var configuration = WorkerHTTPClient.defaultConfiguration
        configuration.tlsConfiguration = tls
        return WorkerHTTPClient(configuration)
    }
}
