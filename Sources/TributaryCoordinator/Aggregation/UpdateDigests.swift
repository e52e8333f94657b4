import Crypto
import TributaryProtocol

/// The SHA-256 of recently accepted updates (their bodies in layout order) and the unit each
/// was accepted for: a worker that sends an accepted update again for another unit (a replay,
/// credit without compute) is refused. Bounded: the newest `capacity` digests are kept, and
/// rebuilt by recovery from the update log.
struct UpdateDigests {
    let capacity: Int
    private var owners: [String: String] = [:]
    private var order: [String] = []
    private var head = 0

    init(capacity: Int = 8192) { self.capacity = max(1, capacity) }

    static func digest(_ bodies: [String: [UInt8]], layout: ShardLayout) -> String {
        var hasher = SHA256()
        for shard in layout.shards {
            hasher.update(data: Array(shard.name.utf8))
            hasher.update(data: bodies[shard.name] ?? [])
        }
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }

    /// The unit ("epoch/index") an identical update was accepted for, if any.
    func owner(of digest: String) -> String? { owners[digest] }

    mutating func note(_ digest: String, unit: String) {
        if owners[digest] != nil { return }
        if order.count < capacity {
            order.append(digest)
        } else {
            owners[order[head]] = nil
            order[head] = digest
            head = (head + 1) % capacity
        }
        owners[digest] = unit
    }
}
