/// Why a packet or a stream was refused. Every case names what was wrong so the daemon can log
/// it and drop the connection; decoding never traps and never allocates from an untrusted length.
public enum WireError: Error, Equatable, Sendable, CustomStringConvertible {
    case badMagic(UInt32)
    case headerPadNotZero
    case unknownCommand(UInt16)
    case tooLong(command: PacketCommand, length: Int, limit: Int)
    case badLength(command: PacketCommand, length: Int)
    case truncated(command: PacketCommand, needed: Int, got: Int)
    case badString(command: PacketCommand)
    case unexpected(command: PacketCommand, while: String)
    case badValue(command: PacketCommand, field: String, value: UInt64)

    public var description: String {
        switch self {
        case .badMagic(let m): return "wrong magic value 0x\(String(m, radix: 16)) in packet header"
        case .headerPadNotZero: return "header padding is not zero"
        case .unknownCommand(let c): return "unknown packet command 0x\(String(c, radix: 16))"
        case .tooLong(let c, let l, let lim): return "\(c) of \(l) bytes exceeds the limit of \(lim)"
        case .badLength(let c, let l): return "\(c) has a wrong length (\(l) bytes)"
        case .truncated(let c, let n, let g): return "\(c) is truncated: needs \(n) bytes, has \(g)"
        case .badString(let c): return "\(c) carries a string that is not NUL-terminated or too long"
        case .unexpected(let c, let w): return "unexpected \(c) while \(w)"
        case .badValue(let c, let f, let v): return "\(c) has an invalid \(f) (\(v))"
        }
    }
}
