import NIOCore

/// What an NBD client sends, cut out of its byte stream with no I/O: the client flags, then
/// option requests (newstyle fixed handshake), then transmission requests with their write
/// payloads. Lengths are checked before anything is buffered for them (an option's data at most
/// 4 KiB, a write's payload at most NBDProtocol.maximumPayload), so a client cannot make the
/// server hold more. NBDConnectionHandler drives it and answers; the fuzz target feeds it bytes.
public struct NBDStreamParser {
    public enum Phase: Equatable { case clientFlags, options, transmission }

    /// One request of the transmission phase as it arrived.
    public struct Request: Equatable {
        public var flags: UInt16
        public var type: UInt16
        public var handle: UInt64
        public var offset: UInt64
        public var length: UInt32
        public var data: [UInt8]
    }

    public enum Item: Equatable {
        case clientFlags(noZeroes: Bool)
        case option(code: UInt32, data: [UInt8])
        case request(Request)
    }

    /// The stream cannot go on (the connection is closed).
    public enum Failure: Error, Equatable, CustomStringConvertible {
        case notFixedNewstyle
        case badOptionHeader
        case badRequestMagic(UInt32)
        case oversizedWrite(UInt32)

        public var description: String {
            switch self {
            case .notFixedNewstyle: "client does not speak fixed newstyle"
            case .badOptionHeader: "bad option header"
            case .badRequestMagic(let m): "bad request magic 0x\(String(m, radix: 16))"
            case .oversizedWrite(let n): "write of \(n) bytes exceeds the \(NBDProtocol.maximumPayload)-byte limit"
            }
        }
    }

    public static let optionDataLimit: UInt32 = 4096

    /// Where the stream is; the handler moves it to `.transmission` when an option ends the
    /// handshake (EXPORT_NAME, GO).
    public var phase: Phase

    public init(phase: Phase = .clientFlags) { self.phase = phase }

    /// The next whole item in `buffer` (consumed), or nil until more bytes arrive.
    public mutating func next(_ buffer: inout ByteBuffer) throws(Failure) -> Item? {
        switch phase {
        case .clientFlags:
            guard let flags = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return nil }
            guard flags & NBDProtocol.clientFixedNewstyle != 0 else { throw .notFixedNewstyle }
            buffer.moveReaderIndex(forwardBy: 4)
            phase = .options
            return .clientFlags(noZeroes: flags & NBDProtocol.clientNoZeroes != 0)
        case .options:
            guard buffer.readableBytes >= 16 else { return nil }
            let magic: UInt64 = buffer.getInteger(at: buffer.readerIndex)!
            let option: UInt32 = buffer.getInteger(at: buffer.readerIndex + 8)!
            let length: UInt32 = buffer.getInteger(at: buffer.readerIndex + 12)!
            guard magic == NBDProtocol.optionMagic, length <= Self.optionDataLimit else { throw .badOptionHeader }
            guard buffer.readableBytes >= 16 + Int(length) else { return nil }
            buffer.moveReaderIndex(forwardBy: 16)
            return .option(code: option, data: buffer.readBytes(length: Int(length))!)
        case .transmission:
            guard buffer.readableBytes >= 28 else { return nil }
            let i = buffer.readerIndex
            let magic: UInt32 = buffer.getInteger(at: i)!
            guard magic == NBDProtocol.requestMagic else { throw .badRequestMagic(magic) }
            var r = Request(flags: buffer.getInteger(at: i + 4)!, type: buffer.getInteger(at: i + 6)!,
                            handle: buffer.getInteger(at: i + 8)!, offset: buffer.getInteger(at: i + 16)!,
                            length: buffer.getInteger(at: i + 24)!, data: [])
            let payload = r.type == NBDCommand.write.rawValue ? Int(r.length) : 0
            guard payload <= Int(NBDProtocol.maximumPayload) else { throw .oversizedWrite(r.length) }
            guard buffer.readableBytes >= 28 + payload else { return nil }
            buffer.moveReaderIndex(forwardBy: 28)
            if payload > 0 { r.data = buffer.readBytes(length: payload)! }
            return .request(r)
        }
    }

    /// The data of NBD_OPT_INFO and NBD_OPT_GO: the export name and the information requests,
    /// or nil when the lengths in it do not add up.
    public static func infoRequest(_ data: [UInt8]) -> (name: String, infos: [UInt16])? {
        guard data.count >= 6 else { return nil }
        let nameLength = Int(UInt32(data[0]) << 24 | UInt32(data[1]) << 16 | UInt32(data[2]) << 8 | UInt32(data[3]))
        guard nameLength <= data.count - 6 else { return nil }
        let name = String(decoding: data[4..<(4 + nameLength)], as: UTF8.self)
        let nInfo = Int(UInt16(data[4 + nameLength]) << 8 | UInt16(data[5 + nameLength]))
        guard data.count == 4 + nameLength + 2 + 2 * nInfo else { return nil }
        let infos = (0..<nInfo).map { k in UInt16(data[6 + nameLength + 2 * k]) << 8 | UInt16(data[7 + nameLength + 2 * k]) }
        return (name, infos)
    }
}
