/// Every queue Tandem keeps, and its limit, in one place. Where DRBD has an option for a limit
/// the option sets it (max-buffers, max-epoch-size, al-extents, sndbuf-size); these are the
/// others. A queue at its limit pushes back on whoever fills it (the NBD server stops reading
/// its client, the transport stops reading the peer, a write waits to start); nothing is
/// dropped.
public enum QueueLimits {
    /// NBD requests a client connection may have in flight, and their payload bytes (a single
    /// request larger than the byte limit is still taken, alone).
    public static let nbdRequestsPerConnection = 128
    public static let nbdBytesPerConnection = 32 << 20
    /// The same over all connections of an export.
    public static let nbdRequestsTotal = 512
    public static let nbdBytesTotal = 64 << 20
    /// Requests in the primary's transfer log (EngineSettings.transferLogLimit): issued and not
    /// yet retired (completed and, when replicated, their epoch acknowledged).
    public static let transferLog = 16_384
    /// Packets the peer may send before the handshake completes (DRBD sends about six).
    public static let packetsBeforeHandshake = 64
    /// Packets the secondary holds behind a barrier it is completing; reading stops long
    /// before (max-buffers), so only a peer that ignores TCP's flow control could reach it.
    public static let packetsBehindBarrier = 65_536
    /// What one received packet counts against max-buffers besides its payload.
    public static let packetOverhead = 256
}
