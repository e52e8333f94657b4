import Foundation

extension JobConfig.Limits {
    func validate() throws {
        func positive(_ value: Double, _ key: String) throws {
            guard value > 0, value.isFinite else { throw JobConfigError.invalid("limits.\(key) must be a positive number") }
        }
        func atLeastOne(_ value: Int, _ key: String) throws {
            guard value >= 1 else { throw JobConfigError.invalid("limits.\(key) must be at least 1") }
        }
        try positive(registrationsPerMinute, "registrations_per_minute")
        try positive(lockoutSeconds, "lockout_seconds")
        try positive(publicRequestsPerSecond, "public_requests_per_second")
        try positive(connectionsPerSecond, "connections_per_second")
        try atLeastOne(connectionBurst, "connection_burst")
        try positive(idleTimeoutSeconds, "idle_timeout_seconds")
        try positive(handshakeTimeoutSeconds, "handshake_timeout_seconds")
        try atLeastOne(registrationBurst, "registration_burst")
        try atLeastOne(badJoinTokens, "bad_join_tokens")
        try atLeastOne(publicBurst, "public_burst")
        try atLeastOne(maxConnections, "max_connections")
        try atLeastOne(maxConnectionsPerAddress, "max_connections_per_address")
        try atLeastOne(maxConcurrentUploads, "max_concurrent_uploads")
    }
}
