/// Numbers of the NBD protocol (newstyle fixed handshake, simple replies), as the NBD
/// project's protocol document defines them.
public enum NBDProtocol {
    public static let initMagic: UInt64 = 0x4E42_444D_4147_4943      // "NBDMAGIC"
    public static let optionMagic: UInt64 = 0x4948_4156_454F_5054    // "IHAVEOPT"
    public static let optionReplyMagic: UInt64 = 0x0003_E889_0455_65A9
    public static let requestMagic: UInt32 = 0x2560_9513
    public static let simpleReplyMagic: UInt32 = 0x6744_6698

    // Handshake flags (server) and client flags.
    public static let flagFixedNewstyle: UInt16 = 1, flagNoZeroes: UInt16 = 2
    public static let clientFixedNewstyle: UInt32 = 1, clientNoZeroes: UInt32 = 2

    // Options.
    public static let optExportName: UInt32 = 1, optAbort: UInt32 = 2, optList: UInt32 = 3
    public static let optInfo: UInt32 = 6, optGo: UInt32 = 7

    // Option replies.
    public static let repAck: UInt32 = 1, repServer: UInt32 = 2, repInfo: UInt32 = 3
    public static let repErrUnsup: UInt32 = 0x8000_0001, repErrPolicy: UInt32 = 0x8000_0002
    public static let repErrInvalid: UInt32 = 0x8000_0003, repErrUnknown: UInt32 = 0x8000_0006

    // Info types.
    public static let infoExport: UInt16 = 0, infoName: UInt16 = 1, infoBlockSize: UInt16 = 3

    // Transmission flags.
    public static let tfHasFlags: UInt16 = 1, tfReadOnly: UInt16 = 2, tfSendFlush: UInt16 = 4, tfSendFUA: UInt16 = 8
    public static let tfSendTrim: UInt16 = 32, tfSendWriteZeroes: UInt16 = 64, tfCanMultiConn: UInt16 = 256

    /// What every export offers (read-only is added on a secondary).
    public static let servedFlags = tfHasFlags | tfSendFlush | tfSendFUA | tfSendTrim | tfSendWriteZeroes | tfCanMultiConn

    // Command flags.
    public static let cmdFlagFUA: UInt16 = 1, cmdFlagNoHole: UInt16 = 2

    // Errors (Linux errno values, as the protocol uses them).
    public static let ePerm: UInt32 = 1, eIO: UInt32 = 5, eNoMem: UInt32 = 12, eInval: UInt32 = 22
    public static let eNoSpc: UInt32 = 28, eOverflow: UInt32 = 75, eNotSup: UInt32 = 95, eShutdown: UInt32 = 108

    /// Block sizes the export advertises: 512 minimum, 4096 preferred, 32 MiB per request.
    public static let minimumBlock: UInt32 = 512, preferredBlock: UInt32 = 4096, maximumPayload: UInt32 = 32 << 20
}

/// One transmission-phase command.
public enum NBDCommand: UInt16, Sendable {
    case read = 0, write = 1, disconnect = 2, flush = 3, trim = 4, cache = 5, writeZeroes = 6
}

/// A validated request handed to the export's backend.
public struct NBDRequest: Sendable {
    public var command: NBDCommand
    public var fua: Bool
    public var noHole: Bool
    public var handle: UInt64
    public var offset: UInt64
    public var length: UInt32
    public var data: [UInt8]
}

/// The backend's answer: an errno (0 = success) and, for reads, the data.
public struct NBDReply: Sendable {
    public var error: UInt32
    public var data: [UInt8]
    public init(error: UInt32 = 0, data: [UInt8] = []) { self.error = error; self.data = data }
}

/// What an NBD export serves: the replicated device on the primary.
public protocol NBDBackend: AnyObject, Sendable {
    var exportName: String { get }
    var sizeBytes: UInt64 { get }
    /// False on a secondary: writes are refused with EPERM.
    var writable: Bool { get }
    /// Carries out a request and calls `reply` once, from any thread.
    func handle(_ request: NBDRequest, reply: @escaping @Sendable (NBDReply) -> Void)
}
