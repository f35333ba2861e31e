/// Splits a TCP byte stream into packets. It reads the header, checks the command and the
/// announced length against that command's limit *before* waiting for the payload, and so never
/// buffers more than one legal packet. A refused header is fatal for the connection.
public struct PacketFramer: Sendable {
    /// The header the receiver accepts: nil = any (offline decoding), .h80 = either 8-byte
    /// header (before agreement and for versions < 100), .h100 = h100 only.
    public var expecting: HeaderFormat?
    /// Length of the agreed data-integrity digest; 0 when none.
    public var digestSize: Int
    private var buffer: [UInt8] = []
    private var start = 0

    public init(expecting: HeaderFormat? = .h80, digestSize: Int = 0) {
        self.expecting = expecting; self.digestSize = digestSize
    }

    /// Bytes received but not yet returned as packets.
    public var pendingBytes: Int { buffer.count - start }

    /// Adds received bytes. Concrete (not generic) so the copy is one memcpy even when called
    /// from another module.
    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        compact()
        buffer.append(contentsOf: bytes)
    }

    public mutating func append(_ bytes: [UInt8]) {
        compact()
        buffer.append(contentsOf: bytes)
    }

    private mutating func compact() {
        if start > 0 && start == buffer.count { buffer.removeAll(keepingCapacity: true); start = 0 }
    }

    /// The next complete packet with its header, or nil if more bytes are needed.
    public mutating func next() throws(WireError) -> (header: PacketHeader, packet: Packet)? {
        guard let h = try PacketHeader.decode(buffer, at: start, expecting: expecting) else { return nil }
        guard let command = PacketCommand(rawValue: h.rawCommand) else { throw .unknownCommand(h.rawCommand) }
        guard h.length <= command.payloadLimit else {
            throw .tooLong(command: command, length: h.length, limit: command.payloadLimit)
        }
        let total = h.format.size + h.length
        guard buffer.count - start >= total else { return nil }
        let body = buffer[(start + h.format.size)..<(start + total)]
        start += total
        let packet = try Packet.decode(command: command, body: body, digestSize: digestSize)
        if start > 1 << 20 { buffer.removeFirst(start); start = 0 }
        return (h, packet)
    }
}
