import NIOCore
import NIOPosix

/// Serves one export over a Unix socket or TCP, several clients at once.
public final class NBDServer: @unchecked Sendable {
    private let group: EventLoopGroup
    private let backend: NBDBackend
    private var channel: Channel?
    private var attached: [Channel] = []
    private let log: @Sendable (String) -> Void
    /// Requests in flight over all the export's connections.
    private let admission = NBDAdmission()
    /// The clients that have the export open now (read on the export's event loop).
    public let openClients = NBDOpenClients()

    public init(group: EventLoopGroup, backend: NBDBackend, log: @escaping @Sendable (String) -> Void) {
        self.group = group
        self.backend = backend
        self.log = log
    }

    private var bootstrap: ServerBootstrap {
        let backend = self.backend, log = self.log, admission = self.admission, openClients = self.openClients
        return ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { ch in
                ch.eventLoop.makeCompletedFuture {
                    try ch.pipeline.syncOperations.addHandler(ByteToMessageHandler(NBDConnectionHandler(backend: backend, admission: admission, openClients: openClients, log: log)))
                    ch.writeAndFlush(NBDConnectionHandler.greeting(ch.allocator), promise: nil)
                }
            }
    }

    /// Listens on a Unix socket, replacing a stale socket file.
    public func listen(unixPath: String) throws {
        channel = try bootstrap.bind(unixDomainSocketPath: unixPath, cleanupExistingSocketFile: true).wait()
    }

    /// Listens on TCP.
    public func listen(host: String, port: Int) throws {
        channel = try bootstrap.bind(host: host, port: port).wait()
    }

    /// Serves an already connected socket in the transmission phase (the kernel client's end
    /// of a socket pair; see `KernelNBDClient`). Closing the server closes it too.
    public func serve(connectedSocket: Int32) throws {
        let backend = self.backend, log = self.log, admission = self.admission
        let ch = try ClientBootstrap(group: group)
            .channelInitializer { ch in
                ch.eventLoop.makeCompletedFuture {
                    try ch.pipeline.syncOperations.addHandler(
                        ByteToMessageHandler(NBDConnectionHandler(backend: backend, admission: admission, openClients: nil, log: log, transmissionOnly: true)))
                }
            }
            .withConnectedSocket(connectedSocket).wait()
        attached.append(ch)
    }

    public func close() {
        for ch in attached { ch.close(promise: nil) }
        attached = []
        channel?.close(promise: nil)
        channel = nil
    }
}
