import ArgumentParser
import Foundation
import NIOCore
import NIOPosix

/// A TCP relay that holds every chunk for a fixed time in each direction: the one-way delay
/// of a home connection, for `bench wan` on kernels without `tc netem` (the rate limits stay
/// with `tc tbf`). Chunks leave in the order they came (equal delays fire in order).
final class DelayedForwarder: ChannelInboundHandler, @unchecked Sendable {
    // Unchecked: each instance is used on its channel's event loop only.
    typealias InboundIn = ByteBuffer
    let delay: TimeAmount
    var partner: Channel?
    private var pending: [ByteBuffer] = []

    init(delay: TimeAmount) { self.delay = delay }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        guard let partner else {
            pending.append(buffer)
            return
        }
        schedule(buffer, to: partner, on: context.eventLoop)
    }

    func attach(_ partner: Channel, on loop: EventLoop) {
        self.partner = partner
        for b in pending { schedule(b, to: partner, on: loop) }
        pending = []
    }

    private func schedule(_ buffer: ByteBuffer, to partner: Channel, on loop: EventLoop) {
        loop.scheduleTask(in: delay) { partner.writeAndFlush(buffer, promise: nil) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        let partner = self.partner
        // Closed after the data still in flight has gone.
        context.eventLoop.scheduleTask(in: delay) { partner?.close(promise: nil) }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

struct DelayRelayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wan-relay", abstract: "A TCP relay adding a fixed delay each way (used by `bench wan`).", shouldDisplay: false)

    @Option(help: "HOST:PORT to listen on.") var listen: String
    @Option(help: "HOST:PORT to forward to.") var to: String
    @Option(name: .customLong("delay-ms"), help: "One-way delay in milliseconds.") var delayMs = 40

    func run() async throws {
        func split(_ s: String) throws -> (String, Int) {
            guard let colon = s.lastIndex(of: ":"), let port = Int(s[s.index(after: colon)...]) else {
                throw ValidationError("expected HOST:PORT, got \(s)")
            }
            return (String(s[..<colon]), port)
        }
        let (listenHost, listenPort) = try split(listen), (toHost, toPort) = try split(to)
        let delay = TimeAmount.milliseconds(Int64(delayMs))
        let group = MultiThreadedEventLoopGroup.singleton
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { inbound in
                let inboundSide = DelayedForwarder(delay: delay)
                return inbound.pipeline.addHandler(inboundSide).flatMap {
                    let outboundSide = DelayedForwarder(delay: delay)
                    outboundSide.partner = inbound
                    return ClientBootstrap(group: inbound.eventLoop)
                        .channelOption(.socketOption(.tcp_nodelay), value: 1)
                        .channelInitializer { $0.pipeline.addHandler(outboundSide) }
                        .connect(host: toHost, port: toPort)
                        .map { outbound in inboundSide.attach(outbound, on: inbound.eventLoop) }
                        .flatMapError { _ in inbound.close() }
                }
            }
            .bind(host: listenHost, port: listenPort).get()
        try await server.closeFuture.get()
    }
}
