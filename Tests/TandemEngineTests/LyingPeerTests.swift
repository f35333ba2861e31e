import Testing
import TandemCodecs
@testable import TandemEngine

/// #12 item 7: a peer that passed the handshake and then lies (packets out of order, sizes out
/// of range, a bitmap of the wrong size, acks for writes never sent, a barrier ack for an epoch
/// that does not exist) is disconnected with a clear error, and no block is taken as in sync
/// that is not: a write the lie would have "acknowledged" stays marked for the resync.
@Suite struct LyingPeerTests {
    /// Connected and in sync, node 0 Primary, one write replicated; then a second write whose
    /// P_DATA node 1 never gets (held), so it is in flight on node 0.
    static func pairWithWriteInFlight() -> EnginePair {
        var pair = EnginePair(settings: PeerBadInputTests.settings())
        for n in 0..<2 { pair.feed(n, .admin(token: 0, .connect)) }
        pair.connect()
        pair.settle()
        pair.feed(0, .admin(token: 1, .primary(force: false)))
        pair.settle()
        pair.feed(0, .appWrite(id: 100, offset: 0, data: [UInt8](repeating: 1, count: 4096), fua: false))
        pair.settle(ms: 200)
        pair.hold = { to, p in
            if to == 1, case .data(.data, _, _, _) = p { return true }
            return false
        }
        pair.feed(0, .appWrite(id: 101, offset: 1 << 20, data: [UInt8](repeating: 2, count: 4096), fua: false))
        pair.settle(ms: 100)
        return pair
    }

    /// The in-flight write (1 MiB in, bit 256) must be marked after the drop: the lie did not
    /// make it count as on the peer.
    static func expectInFlightWriteMarked(_ pair: EnginePair) {
        let marked = pair.engines[0].bitmap.isSet(256)
        #expect(marked, "the write the peer never got is not marked for the resync")
        #expect(pair.engines[0].status.connection != .connected)
    }

    @Test func anAckForAWriteNeverSentDropsTheLink() throws {
        var pair = Self.pairWithWriteInFlight()
        try #require(pair.states == [.connected, .connected], "\(pair.states)")
        #expect(pair.engines[0].bitmap.setCount == 0)
        for cmd in [PacketCommand.writeAck, .recvAck] {
            var p = Self.pairWithWriteInFlight()
            p.feed(0, .packet(.blockAck(cmd, BlockAck(sector: 2048, blockID: 0xDEAD_BEEF, size: 4096, seqNum: 7)), from: .meta))
            #expect(p.drops.contains { $0.contains("for an unknown request (block_id 3735928559)") }, "\(cmd): \(p.drops)")
            Self.expectInFlightWriteMarked(p)
        }
    }

    @Test func aBarrierAckForAnUnknownEpochDropsTheLink() throws {
        var pair = Self.pairWithWriteInFlight()
        pair.feed(0, .packet(.barrierAck(number: 0x7777, setSize: 1), from: .meta))
        #expect(pair.drops.contains { $0.contains("BarrierAck #30583 (1 writes) does not match the transfer log") }, "\(pair.drops)")
        Self.expectInFlightWriteMarked(pair)
    }

    @Test func packetsOutOfOrderDropTheLink() throws {
        // Resync and bitmap packets while Connected with nothing to sync.
        let lies: [(Packet, Socket, String)] = [
            (.syncUUID(0x1234), .data, "P_SYNC_UUID while Connected"),
            (.bitmap([UInt8](repeating: 0xFF, count: 64)), .data, "P_BITMAP while Connected"),
            (.data(.rsDataReply, DataHeader(sector: 0, blockID: BlockRequest.syncerID, seqNum: 0, flags: 0), digest: [],
                   payload: [UInt8](repeating: 9, count: 4096)), .data, "unexpected P_RS_DATA_REPLY for sector 0"),
        ]
        for (p, s, why) in lies {
            var pair = Self.pairWithWriteInFlight()
            let before = pair.disks[1]
            pair.feed(1, .packet(p, from: s))
            #expect(pair.drops.contains { $0.contains(why) }, "\(p.command): \(pair.drops)")
            #expect(pair.disks[1] == before, "\(p.command) changed the disk")
        }
    }

    @Test func sizesOutOfRangeDropTheLink() throws {
        // A write beyond the end of the device.
        var pair = Self.pairWithWriteInFlight()
        let before = pair.disks[1]
        pair.feed(1, .packet(.data(.data, DataHeader(sector: EnginePair.sectors - 4, blockID: 77, seqNum: 1, flags: 0), digest: [],
                                   payload: [UInt8](repeating: 3, count: 4096)), from: .data))
        #expect(pair.drops.contains { $0.contains("peer wrote beyond the end of the device") }, "\(pair.drops)")
        #expect(pair.disks[1] == before)
        // A data area that shrank under the agreed size.
        var shrunk = Self.pairWithWriteInFlight()
        shrunk.feed(0, .packet(.sizes(Sizes(backingSectors: 1024, userSectors: 0, currentSectors: 1024, maxBioSize: 1 << 20, queueLimits: nil)), from: .data))
        shrunk.settle(ms: 100)  // the size is agreed after this node looked at its own disk
        #expect(shrunk.drops.contains { $0.contains("the peer's disk is too small") }, "\(shrunk.drops)")
        Self.expectInFlightWriteMarked(shrunk)
        #expect(shrunk.engines[0].status.sizeSectors == EnginePair.sectors, "the device shrank")
    }

    @Test func aBitmapOfTheWrongSizeDropsTheLink() throws {
        var pair = EnginePair(settings: PeerBadInputTests.settings())
        for n in 0..<2 { pair.feed(n, .admin(token: 0, .connect)) }
        pair.connect()
        pair.settle()
        pair.feed(0, .admin(token: 1, .primary(force: false)))
        pair.settle()
        pair.cut()
        for i in 0..<4 {
            pair.feed(0, .appWrite(id: UInt64(200 + i), offset: UInt64(i) * 65536, data: [UInt8](repeating: 7, count: 4096), fua: false))
        }
        pair.settle(ms: 200)
        pair.hold = { to, p in
            if to != 1 { return false }
            switch p {
            case .bitmap, .compressedBitmap: return true
            default: return false
            }
        }
        pair.connect()
        pair.settle(ms: 400)
        try #require(pair.states[1] == .wfBitMapT, "\(pair.states)")
        let bits = pair.engines[1].bitmap.setCount
        pair.feed(1, .packet(.bitmap([UInt8](repeating: 0, count: 100)), from: .data))
        #expect(pair.drops.contains { $0.contains("P_BITMAP of 100 bytes") }, "\(pair.drops)")
        #expect(pair.engines[1].bitmap.setCount >= bits, "bits were cleared by a bitmap that was refused")
        #expect(pair.engines[0].bitmap.setCount == 4, "the source lost its marks")
    }
}

/// The two connections of a link are not ordered with each other: what the peer sends on the
/// data socket after its reply on the meta socket may arrive first. Found by the crash loop: a
/// peer that granted `invalidate` sent P_SYNC_UUID (data), which overtook its reply (meta), and
/// the invalidating node dropped the link ("P_SYNC_UUID while Connected").
@Suite struct SocketOrderTests {
    @Test(arguments: ["invalidate", "restore"])
    func aSyncUUIDThatOvertakesTheReplyWaitsForIt(_ verb: String) throws {
        var pair = EnginePair(settings: PeerBadInputTests.settings())
        for n in 0..<2 { pair.feed(n, .admin(token: 0, .connect)) }
        pair.connect()
        pair.settle()
        pair.feed(0, .admin(token: 1, .primary(force: false)))
        pair.settle()
        try #require(pair.states == [.connected, .connected])
        pair.hold = { to, p in
            if to == 1, case .stateChangeReply = p { return true }
            return false
        }
        pair.feed(1, .admin(token: 9, verb == "invalidate" ? .invalidate : .restore(discardMyData: false)))
        pair.settle(ms: 300)
        #expect(pair.drops.isEmpty, "\(pair.drops)")
        try #require(pair.held.count == 1, "the reply was not held: \(pair.held.map(\.1.command))")
        // The reply arrives last.
        let held = pair.held
        pair.held = []
        pair.hold = { _, _ in false }
        for (to, p, s) in held { pair.feed(to, .packet(p, from: s)) }
        pair.settle(ms: 5000)
        #expect(pair.drops.isEmpty, "\(pair.drops)")
        #expect(pair.states == [.connected, .connected], "\(pair.states)")
        #expect(pair.engines[1].status.disk == .upToDate)
        #expect(pair.engines[0].bitmap.setCount == 0 && pair.engines[1].bitmap.setCount == 0)
        #expect(pair.disks[0] == pair.disks[1])
    }
}
