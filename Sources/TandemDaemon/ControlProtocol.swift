import Foundation
import TandemEngine

/// The control socket's messages, shared by the daemon and the `tandem` command so both read
/// and write the same types: one JSON request a line from the command, JSON lines back. Every
/// message carries the protocol version; a daemon and a command of different versions refuse
/// each other with the reason instead of guessing at fields.
///
/// The exchange: the command sends a `ControlRequest`; the daemon answers at once with an
/// `accepted` reply for verbs that take time (so a client can tell a working daemon from a
/// wedged one within its short limit), then the final reply (`ok`, or `error` with its kind).
/// `status` is answered at once with the status. `events` answers with the current state and
/// then streams event lines (JSON objects with a `type`) until the client closes.
public enum ControlProtocol {
    /// Bumped when a message's meaning changes; both sides must agree.
    public static let version = 1
    /// No line on the control socket is longer (the daemon closes a connection that sends one).
    public static let maxLineBytes = 65536
}

/// The verbs the daemon takes over its control socket.
public enum ControlVerb: String, Codable, Sendable, CaseIterable {
    case status, primary, secondary, connect, disconnect, resync
    case pauseSync = "pause-sync", resumeSync = "resume-sync"
    case verify, invalidate, outdate, restore
    case invalidateRemote = "invalidate-remote"
    case resize, snapshot, down, events, adjust

    /// Verbs the daemon answers in one step, with nothing to wait for: no `accepted` reply.
    public var answeredAtOnce: Bool { self == .status || self == .events }
}

/// One request from the command.
public struct ControlRequest: Codable, Sendable, Equatable {
    public var version: Int
    public var verb: ControlVerb
    /// `primary --force`, `snapshot --force`.
    public var force: Bool?
    /// `connect --discard-my-data`, `restore --discard-my-data`.
    public var discardMyData: Bool?
    /// `verify --start SECTOR`.
    public var startSector: UInt64?
    /// `adjust`: the resource file to read and the node to read it as (the command's -c, --node).
    public var config: String?
    public var node: String?

    public init(_ verb: ControlVerb, force: Bool? = nil, discardMyData: Bool? = nil, startSector: UInt64? = nil,
                config: String? = nil, node: String? = nil) {
        version = ControlProtocol.version
        self.verb = verb
        self.force = force
        self.discardMyData = discardMyData
        self.startSector = startSector
        self.config = config
        self.node = node
    }

    enum CodingKeys: String, CodingKey {
        case version, verb, force, config, node
        case discardMyData = "discard-my-data"
        case startSector = "start-sector"
    }

    /// Decodes one request line, or says what is wrong with it (for the reply): malformed,
    /// of another protocol version, or an unknown verb.
    public static func decode(line: String) -> Result<ControlRequest, ControlError> {
        let data = Data(line.utf8)
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            return .failure(ControlError("malformed control request (not a JSON object)", kind: .badRequest))
        }
        guard let v = object["version"] as? Int else {
            return .failure(ControlError("control request without a protocol version: the command is older than this daemon (protocol \(ControlProtocol.version)); use the tandem binary the daemon runs", kind: .versionMismatch))
        }
        guard v == ControlProtocol.version else {
            return .failure(ControlError("control protocol \(v) is not this daemon's (\(ControlProtocol.version)): use the tandem binary the daemon runs, or restart the daemon after an upgrade", kind: .versionMismatch))
        }
        guard let verb = object["verb"] as? String else {
            return .failure(ControlError("control request without a verb", kind: .badRequest))
        }
        guard ControlVerb(rawValue: verb) != nil else {
            return .failure(ControlError("unknown control verb '\(verb)'", kind: .badRequest))
        }
        // Each field's type, named (the decoder's own words for a bad number are no help).
        for key in ["force", "discard-my-data"] where object[key] != nil && !(object[key] is Bool) {
            return .failure(ControlError("malformed control request: \(key) must be true or false", kind: .badRequest))
        }
        if let v = object["start-sector"], !((v as? Int).map { $0 >= 0 } ?? false) {
            return .failure(ControlError("malformed control request: start-sector must be a sector number (0 or more)", kind: .badRequest))
        }
        do { return .success(try JSONDecoder().decode(ControlRequest.self, from: data)) } catch {
            return .failure(ControlError("malformed control request: \(ControlError.describe(error))", kind: .badRequest))
        }
    }
}

/// Why a control request failed, and of what kind (the command's exit code follows the kind).
public struct ControlError: Error, Codable, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Codable, Sendable {
        /// A state change was refused; nothing changed (exit 11, as drbdsetup).
        case refused
        /// `primary` cannot succeed by retrying (exit 17, as drbdsetup).
        case cannotPromote = "cannot-promote"
        /// The verb ran and failed (exit 10).
        case failed
        /// The daemon could not read the request (exit 20: the command and daemon disagree).
        case badRequest = "bad-request"
        /// The command and the daemon speak different protocol versions (exit 20).
        case versionMismatch = "version-mismatch"
    }

    public var message: String
    public var kind: Kind

    public init(_ message: String, kind: Kind) {
        self.message = message
        self.kind = kind
    }

    public init(_ refusal: AdminRefusal) {
        message = refusal.message
        kind = switch refusal.kind {
        case .refused: .refused
        case .cannotPromote: .cannotPromote
        case .failed: .failed
        }
    }

    public var description: String { message }

    static func describe(_ error: Error) -> String {
        switch error {
        case DecodingError.typeMismatch(_, let c), DecodingError.valueNotFound(_, let c),
             DecodingError.keyNotFound(_, let c), DecodingError.dataCorrupted(let c):
            let path = c.codingPath.map(\.stringValue).joined(separator: ".")
            return path.isEmpty ? c.debugDescription : "\(path): \(c.debugDescription)"
        default: return "\(error)"
        }
    }
}

/// One answer from the daemon.
public struct ControlReply: Codable, Sendable {
    public var version: Int
    /// True when the verb did what it asked; false with `error`; nil on an `accepted` reply.
    public var ok: Bool?
    /// The request was read and is being carried out; the final reply follows.
    public var accepted: Bool?
    public var error: ControlError?
    /// `status` (and the first line of `events`).
    public var status: StatusSnapshot?
    /// What the verb produced (`snapshot`: the snapshot's id).
    public var result: String?

    public init(ok: Bool? = nil, accepted: Bool? = nil, error: ControlError? = nil, status: StatusSnapshot? = nil, result: String? = nil) {
        version = ControlProtocol.version
        self.ok = ok
        self.accepted = accepted
        self.error = error
        self.status = status
        self.result = result
    }

    public static let acceptedReply = ControlReply(accepted: true)
    public static func failure(_ e: ControlError) -> ControlReply { ControlReply(ok: false, error: e) }

    /// The reply as one line (no newline), keys sorted so it reads the same every time.
    public var line: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: (try? encoder.encode(self)) ?? Data(#"{"ok":false}"#.utf8), as: UTF8.self)
    }

    /// Reads a reply line; a line that is not one (another version, garbage) is an error.
    public static func decode(line: String) throws(ControlError) -> ControlReply {
        let data = Data(line.utf8)
        if let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
           let v = object["version"] as? Int, v != ControlProtocol.version {
            throw ControlError("the daemon speaks control protocol \(v), this command \(ControlProtocol.version): use the tandem binary the daemon runs, or restart the daemon after an upgrade", kind: .versionMismatch)
        }
        do { return try JSONDecoder().decode(ControlReply.self, from: data) } catch {
            throw ControlError("unreadable reply from the daemon: \(ControlError.describe(error))", kind: .badRequest)
        }
    }
}
