import AsyncHTTPClient

/// The HTTP client a worker reaches its coordinator with. It follows no redirect: one
/// would re-post the registration body, join token included, to whatever host the
/// coordinator names (issue 12, finding 10); `CoordinatorClient` refuses a 3xx instead.
/// This type is the only way to hand the worker a client, so none can follow redirects.
public struct WorkerHTTPClient: Sendable {
    let client: HTTPClient
    private let owned: Bool

    /// Plain HTTP, and HTTPS trusting the system's roots; lives as long as the process.
    public static let shared = WorkerHTTPClient(defaultConfiguration, owned: false)

    /// Browser-like timeouts and pooling (AsyncHTTPClient's shared client's), no HTTP
    /// decompression (the protocol uses none, so a compressed answer is refused as
    /// malformed rather than inflated), and no redirects.
    public static var defaultConfiguration: HTTPClient.Configuration {
        var c = HTTPClient.Configuration.singletonConfiguration
        c.decompression = .disabled
        c.redirectConfiguration = .disallow
        // A connection that cannot be made fails its request at once (and within 10 s): the
        // daemon retries with its own back-off and says once that the coordinator is away,
        // instead of each request waiting out the client's silent reconnection attempts.
        c.connectionPool.retryConnectionEstablishment = false
        c.timeout.connect = .seconds(10)
        return c
    }

    /// A client with `configuration` (a TLS trust root, say), redirects disallowed
    /// whatever it says. Call `shutdown()` once done with it.
    public init(_ configuration: HTTPClient.Configuration) {
        self.init(configuration, owned: true)
    }

    private init(_ configuration: HTTPClient.Configuration, owned: Bool) {
        var c = configuration
        c.redirectConfiguration = .disallow
        client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: c)
        self.owned = owned
    }

    /// Closes the connections of a client made with `init(_:)` (`shared` stays open).
    public func shutdown() async throws {
        if owned { try await client.shutdown() }
    }
}
