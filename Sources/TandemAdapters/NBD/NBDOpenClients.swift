/// The clients that have the export open: connections that finished the handshake (NBD_OPT_GO
/// or EXPORT_NAME) and have not closed. A Primary with an open client must not become Secondary
/// or go down (DRBD refuses while /dev/drbdN is open): the client's next write would fail.
/// The kernel client's socket (`NBDServer.serve(connectedSocket:)`) is not counted here; the
/// daemon asks the block device whether it is open. Used on the export's event loop only.
public final class NBDOpenClients: @unchecked Sendable {
    private var open: [ObjectIdentifier: String] = [:]

    public init() {}

    /// How many clients have the export open.
    public var count: Int { open.count }

    /// Where they connect from ("unix socket", "127.0.0.1:40212"), for the refusal's message.
    public var descriptions: [String] { open.values.sorted() }

    func opened(_ connection: ObjectIdentifier, from: String) {
        open[connection] = from
        assert(open.count <= 1 << 16, "more open NBD clients than any listener admits")
    }

    func closed(_ connection: ObjectIdentifier) { open[connection] = nil }
}
