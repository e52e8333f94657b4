import HummingbirdCore
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOSSL
import NIOTLS

/// Open connections per client address, capped: one address opening a thousand idle
/// connections would otherwise use up the server's file descriptors.
final class ConnectionCounter: Sendable {
    let perAddress: Int
    private let counts = NIOLockedValueBox([String: Int]())

    init(perAddress: Int) { self.perAddress = perAddress }

    /// Counts a new connection from `key`; false (not counted) when it has too many.
    func open(_ key: String) -> Bool {
        counts.withLockedValue { table in
            let n = table[key, default: 0]
            guard n < perAddress else { return false }
            table[key] = n + 1
            return true
        }
    }

    func close(_ key: String) {
        counts.withLockedValue { table in
            let n = table[key, default: 1] - 1
            table[key] = n > 0 ? n : nil
        }
    }

    func count(_ key: String) -> Int { counts.withLockedValue { $0[key, default: 0] } }
}

struct TooManyConnections: Error {}

/// Wraps the HTTP child channel: refuses a connection past its address's cap, and closes
/// a TLS connection whose handshake has not completed within `handshakeTimeout` (the
/// HTTP idle timeouts only start once a protocol was negotiated).
struct GuardedChildChannel<Base: ServerChildChannel>: ServerChildChannel {
    typealias Value = Base.Value
    let base: Base
    let counter: ConnectionCounter
    let newConnections: AddressRateLimiter
    let handshakeTimeout: TimeAmount?
    let logger: Logger

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let key = ClientAddress.key(channel.remoteAddress)
        // Refused as cheaply as possible: closed before any TLS or HTTP work.
        guard newConnections.take(key) == nil, counter.open(key) else {
            self.logger.notice("connection refused: too many (or too frequent) from one address", metadata: ["address": "\(key)"])
            // Closed here: a failed set-up alone leaves the socket open.
            channel.close(promise: nil)
            return channel.eventLoop.makeFailedFuture(TooManyConnections())
        }
        channel.closeFuture.whenComplete { [counter] _ in counter.close(key) }
        guard let handshakeTimeout else { return base.setup(channel: channel, logger: logger) }
        let deadline = channel.eventLoop.scheduleTask(in: handshakeTimeout) { channel.close(promise: nil) }
        return base.setup(channel: channel, logger: logger).flatMapThrowing { value in
            let operations = channel.pipeline.syncOperations
            let tls = try operations.handler(type: NIOSSLServerHandler.self)
            try operations.addHandler(HandshakeWatcher(deadline: deadline), position: .after(tls))
            return value
        }
    }

    func handle(value: Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}

/// Sits right after the TLS handler: the handshake's completion cancels the deadline.
final class HandshakeWatcher: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    let deadline: Scheduled<Void>

    init(deadline: Scheduled<Void>) { self.deadline = deadline }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        context.fireUserInboundEventTriggered(event)
        if case .handshakeCompleted = event as? TLSUserEvent {
            deadline.cancel()
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }
}
