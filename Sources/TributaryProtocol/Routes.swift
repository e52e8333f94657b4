/// Paths of the HTTP API, shared by the coordinator's router and the worker's client. The
/// router builds its patterns from the same functions, passing ":lease"-style parameters.
public enum Routes {
    public static let register = "/v1/workers/register"
    public static let leases = "/v1/leases"
    public static let status = "/v1/status"
    public static let workers = "/v1/workers"
    /// The asking worker's own credit and rank (needs its bearer token).
    public static let myCredit = "/v1/workers/me"
    public static let job = "/v1/job"
    /// The image grid a U-Net job draws at each validation (PNG).
    public static let latestSamples = "/v1/samples/latest.png"

    public static func lease(_ id: String) -> String { "/v1/leases/\(id)" }
    public static func renew(_ id: String) -> String { "/v1/leases/\(id)/renew" }
    public static func batch(_ id: String) -> String { "/v1/leases/\(id)/batch" }
    public static func update(_ id: String, shard: String) -> String { "/v1/leases/\(id)/updates/\(shard)" }
    public static func commit(_ id: String) -> String { "/v1/leases/\(id)/commit" }
    public static func manifest(_ version: some CustomStringConvertible) -> String { "/v1/versions/\(version)/manifest" }
    public static func shard(_ version: some CustomStringConvertible, _ name: String) -> String { "/v1/versions/\(version)/shards/\(name)" }
    /// The deltas that take a shard from an older version (query `from`) to this one.
    public static func delta(_ version: some CustomStringConvertible, _ name: String) -> String { "/v1/versions/\(version)/shards/\(name)/delta" }
    /// The operator's route (needs the operator token).
    public static func ban(_ worker: String) -> String { "/v1/admin/workers/\(worker)/ban" }

    /// Page sizes of `GET /v1/workers`.
    public static let defaultPage = 100
    public static let maxPage = 1000

    /// Content types of the binary bodies.
    public static let tensorFrameType = "application/vnd.tributary.tensor-frame"
    public static let batchType = "application/vnd.tributary.batch"
    public static let deltaChainType = "application/vnd.tributary.delta-chain"
}
