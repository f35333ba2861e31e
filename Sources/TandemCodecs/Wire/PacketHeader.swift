/// The three DRBD header formats. Before the feature handshake every packet uses h80; once a
/// protocol version of 100 or more is agreed every packet on both sockets uses h100.
public enum HeaderFormat: Sendable, Equatable {
    /// 8 bytes: magic 0x83740267, command u16, length u16.
    case h80
    /// 8 bytes: magic 0x835A, command u16, length u32 (for big packets, versions 95..99).
    case h95
    /// 16 bytes: magic 0x8620EC20, volume u16, command u16, length u32, pad u32 (= 0).
    case h100

    public var size: Int { self == .h100 ? 16 : 8 }

    /// The header a sender uses for a payload of `length` bytes at an agreed protocol version.
    public static func forSending(agreedVersion: Int, length: Int) -> HeaderFormat {
        if agreedVersion >= 100 { return .h100 }
        if agreedVersion >= 95 && length > 32768 { return .h95 }
        return .h80
    }
}

/// One decoded packet header: which command, for which volume, how many payload bytes follow.
public struct PacketHeader: Sendable, Equatable {
    public static let magic80: UInt32 = 0x8374_0267
    public static let magic95: UInt16 = 0x835A
    public static let magic100: UInt32 = 0x8620_EC20

    public var format: HeaderFormat
    public var volume: UInt16
    public var rawCommand: UInt16
    public var length: Int

    public init(format: HeaderFormat, volume: UInt16 = 0, command: PacketCommand, length: Int) {
        self.format = format; self.volume = volume; rawCommand = command.rawValue; self.length = length
    }

    public func encode(into w: inout WireWriter) {
        switch format {
        case .h80: w.u32(Self.magic80); w.u16(rawCommand); w.u16(UInt16(length))
        case .h95: w.u16(Self.magic95); w.u16(rawCommand); w.u32(UInt32(length))
        case .h100: w.u32(Self.magic100); w.u16(volume); w.u16(rawCommand); w.u32(UInt32(length)); w.u32(0)
        }
    }

    /// How many bytes the receiver must have before it can decode the header, given what it
    /// accepts: 16 once h100 is agreed, else 8.
    public static func needed(expecting format: HeaderFormat?) -> Int { format == .h100 ? 16 : 8 }

    /// Decodes a header at the start of `bytes`. `expecting == .h100` accepts only h100 (the
    /// kernel's rule after agreeing on version 100+); `.h80`/`.h95` accept either 8-byte header;
    /// `nil` accepts all three (for offline decoding of captures).
    public static func decode(_ bytes: [UInt8], at offset: Int = 0, expecting: HeaderFormat?) throws(WireError) -> PacketHeader? {
        let avail = bytes.count - offset
        guard avail >= 8 else { return nil }
        let m32: UInt32 = ByteIO.readBE(bytes, offset)
        if m32 == magic100 && expecting != .h80 && expecting != .h95 {
            guard avail >= 16 else { return nil }
            let pad: UInt32 = ByteIO.readBE(bytes, offset + 12)
            guard pad == 0 else { throw .headerPadNotZero }
            return PacketHeader(format: .h100, volume: ByteIO.readBE(bytes, offset + 4),
                                rawCommand: ByteIO.readBE(bytes, offset + 6), length: Int(ByteIO.readBE(bytes, offset + 8) as UInt32))
        }
        if expecting != .h100 {
            if m32 == magic80 {
                return PacketHeader(format: .h80, volume: 0, rawCommand: ByteIO.readBE(bytes, offset + 4),
                                    length: Int(ByteIO.readBE(bytes, offset + 6) as UInt16))
            }
            if UInt16(m32 >> 16) == magic95 {
                return PacketHeader(format: .h95, volume: 0, rawCommand: ByteIO.readBE(bytes, offset + 2),
                                    length: Int(ByteIO.readBE(bytes, offset + 4) as UInt32))
            }
        }
        throw .badMagic(m32)
    }

    init(format: HeaderFormat, volume: UInt16, rawCommand: UInt16, length: Int) {
        self.format = format; self.volume = volume; self.rawCommand = rawCommand; self.length = length
    }
}
