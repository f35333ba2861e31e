/// Why an operator verb did not do what it asked, and of what kind, so the command can exit as
/// drbdadm does: a refused state change (11) differs from a promotion that retrying cannot
/// fix (17: the data this node holds is not good enough), and from an operation that was
/// accepted and then failed. A plain string literal is a refused state change, the common case.
public struct AdminRefusal: Error, Sendable, Equatable, CustomStringConvertible, ExpressibleByStringInterpolation {
    public enum Kind: String, Sendable, Codable, Equatable {
        /// The state change was refused; nothing changed (drbdsetup's exit 11).
        case refused
        /// `primary` cannot succeed by retrying: the local data is not UpToDate or not known to
        /// be (drbdsetup's exit 17).
        case cannotPromote
        /// The verb ran and failed on the way (a snapshot call, a handler).
        case failed
    }

    public var message: String
    public var kind: Kind

    public init(_ message: String, kind: Kind = .refused) {
        self.message = message
        self.kind = kind
    }

    public init(stringLiteral value: String) { self.init(value) }
    public init(stringInterpolation: DefaultStringInterpolation) { self.init(String(stringInterpolation: stringInterpolation)) }

    public static func cannotPromote(_ message: String) -> AdminRefusal { AdminRefusal(message, kind: .cannotPromote) }
    public static func failed(_ message: String) -> AdminRefusal { AdminRefusal(message, kind: .failed) }

    public var description: String { message }
}
