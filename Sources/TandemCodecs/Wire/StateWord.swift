/// A node's role as DRBD names it.
public enum Role: UInt32, Sendable, CustomStringConvertible {
    case unknown = 0, primary = 1, secondary = 2
    public var description: String { ["Unknown", "Primary", "Secondary"][Int(rawValue)] }
}

/// DRBD 8.4's connection states (`enum drbd_conns`), with DRBD's spellings.
public enum ConnectionState: UInt32, Sendable, CustomStringConvertible, CaseIterable {
    case standAlone = 0, disconnecting, unconnected, timeout, brokenPipe, networkFailure, protocolError
    case tearDown, wfConnection, wfReportParams, connected, startingSyncS, startingSyncT, wfBitMapS
    case wfBitMapT, wfSyncUUID, syncSource, syncTarget, verifyS, verifyT, pausedSyncS, pausedSyncT
    case ahead, behind

    public var description: String {
        ["StandAlone", "Disconnecting", "Unconnected", "Timeout", "BrokenPipe", "NetworkFailure",
         "ProtocolError", "TearDown", "WFConnection", "WFReportParams", "Connected", "StartingSyncS",
         "StartingSyncT", "WFBitMapS", "WFBitMapT", "WFSyncUUID", "SyncSource", "SyncTarget", "VerifyS",
         "VerifyT", "PausedSyncS", "PausedSyncT", "Ahead", "Behind"][Int(rawValue)]
    }
    /// Connected or any state past it (sync, verify, ahead/behind).
    public var isConnected: Bool { rawValue >= ConnectionState.connected.rawValue }
    public var isSyncing: Bool { [.syncSource, .syncTarget, .pausedSyncS, .pausedSyncT].contains(self) }
}

/// DRBD 8.4's disk states (`enum drbd_disk_state`), with DRBD's spellings.
public enum DiskState: UInt32, Sendable, CustomStringConvertible, CaseIterable, Comparable {
    case diskless = 0, attaching, failed, negotiating, inconsistent, outdated, dUnknown, consistent, upToDate
    public var description: String {
        ["Diskless", "Attaching", "Failed", "Negotiating", "Inconsistent", "Outdated", "DUnknown",
         "Consistent", "UpToDate"][Int(rawValue)]
    }
    public static func < (a: DiskState, b: DiskState) -> Bool { a.rawValue < b.rawValue }
}

/// DRBD's state word (`union drbd_state`) as carried in P_STATE and state-change requests:
/// role 2 bits, peer 2, conn 5, disk 4, pdsk 4, then single-bit suspend/pause flags.
public struct StateWord: Sendable, Equatable, CustomStringConvertible {
    public var raw: UInt32
    public init(raw: UInt32) { self.raw = raw }

    public init(role: Role, peer: Role, conn: ConnectionState, disk: DiskState, pdsk: DiskState) {
        raw = role.rawValue | peer.rawValue << 2 | conn.rawValue << 4 | disk.rawValue << 9 | pdsk.rawValue << 13
    }

    public var role: Role? { Role(rawValue: raw & 3) }
    public var peer: Role? { Role(rawValue: raw >> 2 & 3) }
    public var conn: ConnectionState? { ConnectionState(rawValue: raw >> 4 & 31) }
    public var disk: DiskState? { DiskState(rawValue: raw >> 9 & 15) }
    public var pdsk: DiskState? { DiskState(rawValue: raw >> 13 & 15) }
    /// aftr_isp | user_isp: the sender's sync is paused (the receiver's peer_isp).
    public var syncPaused: Bool { raw & (1 << 18 | 1 << 20) != 0 }

    public static let roleMask: UInt32 = 3, peerMask: UInt32 = 3 << 2, connMask: UInt32 = 31 << 4
    public static let diskMask: UInt32 = 15 << 9, pdskMask: UInt32 = 15 << 13

    public var description: String {
        "\(role.map { "\($0)" } ?? "?")/\(peer.map { "\($0)" } ?? "?") \(conn.map { "\($0)" } ?? "?") \(disk.map { "\($0)" } ?? "?")/\(pdsk.map { "\($0)" } ?? "?")"
    }
}
