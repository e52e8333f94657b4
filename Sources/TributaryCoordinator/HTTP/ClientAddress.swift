import NIOCore

/// The key a client is counted under for rate limits and connection caps: its IPv4
/// address, or its IPv6 /64 (one home connection gets a whole /64, so single IPv6
/// addresses would cost an attacker nothing).
enum ClientAddress {
    static func key(_ address: SocketAddress?) -> String {
        guard let address else { return "unknown" }
        switch address {
        case let .v4(v4):
            return address.ipAddress ?? "\(v4)"
        case let .v6(v6):
            let bytes = withUnsafeBytes(of: v6.address.sin6_addr) { Array($0) }
            // An IPv4-mapped address (::ffff:a.b.c.d) is that IPv4 client.
            if bytes.count == 16, bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xff, bytes[11] == 0xff {
                return bytes[12..<16].map(String.init).joined(separator: ".")
            }
            let prefix = stride(from: 0, to: min(8, bytes.count), by: 2).map { i in
                String(UInt16(bytes[i]) << 8 | UInt16(bytes[i + 1]), radix: 16)
            }
            return prefix.joined(separator: ":") + "::/64"
        case .unixDomainSocket:
            return "unix"
        }
    }
}
