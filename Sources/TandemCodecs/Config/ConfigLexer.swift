/// Where something is in a resource file, for error messages ("file:line:column").
public struct SourceLocation: Equatable, Sendable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int
    public init(file: String, line: Int, column: Int) { self.file = file; self.line = line; self.column = column }
    public var description: String { "\(file):\(line):\(column)" }
}

/// A token of DRBD's resource-file syntax.
public struct ConfigToken: Equatable, Sendable {
    public enum Kind: Equatable, Sendable {
        case word(String)
        case string(String)
        case openBrace, closeBrace, semicolon
        case end
    }
    public var kind: Kind
    public var location: SourceLocation

    /// How the token reads in an error message.
    public var shown: String {
        switch kind {
        case .word(let w): return "'\(w)'"
        case .string(let s): return "\"\(s)\""
        case .openBrace: return "'{'"
        case .closeBrace: return "'}'"
        case .semicolon: return "';'"
        case .end: return "end of file"
        }
    }
}

/// Splits resource-file text into tokens: words, double-quoted strings (with backslash
/// escapes), braces and semicolons; `#` starts a comment to the end of the line.
public struct ConfigLexer {
    private let bytes: [UInt8]
    private let file: String
    private var index = 0
    private var line = 1
    private var column = 1

    public init(text: String, file: String) {
        self.bytes = Array(text.utf8)
        self.file = file
    }

    private var location: SourceLocation { SourceLocation(file: file, line: line, column: column) }

    private mutating func advance() {
        if bytes[index] == UInt8(ascii: "\n") { line += 1; column = 1 } else { column += 1 }
        index += 1
    }

    /// All tokens, ending with `.end`.
    public mutating func tokenize() throws(ConfigError) -> [ConfigToken] {
        var out: [ConfigToken] = []
        while true {
            let t = try next()
            out.append(t)
            if t.kind == .end { return out }
        }
    }

    private static func isSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D || c == 0x0B || c == 0x0C }
    private static func isDelimiter(_ c: UInt8) -> Bool {
        isSpace(c) || c == UInt8(ascii: "{") || c == UInt8(ascii: "}") || c == UInt8(ascii: ";") || c == UInt8(ascii: "\"")
    }

    private mutating func next() throws(ConfigError) -> ConfigToken {
        while index < bytes.count {
            let c = bytes[index]
            if ConfigLexer.isSpace(c) { advance(); continue }
            if c == UInt8(ascii: "#") {
                while index < bytes.count && bytes[index] != UInt8(ascii: "\n") { advance() }
                continue
            }
            break
        }
        let start = location
        guard index < bytes.count else { return ConfigToken(kind: .end, location: start) }
        let c = bytes[index]
        switch c {
        case UInt8(ascii: "{"): advance(); return ConfigToken(kind: .openBrace, location: start)
        case UInt8(ascii: "}"): advance(); return ConfigToken(kind: .closeBrace, location: start)
        case UInt8(ascii: ";"): advance(); return ConfigToken(kind: .semicolon, location: start)
        case UInt8(ascii: "\""):
            advance()
            var value: [UInt8] = []
            while true {
                guard index < bytes.count else { throw ConfigError(start, "unterminated quoted string") }
                let d = bytes[index]
                if d == UInt8(ascii: "\"") { advance(); break }
                if d == UInt8(ascii: "\n") { throw ConfigError(start, "newline inside a quoted string") }
                if d == UInt8(ascii: "\\") {
                    advance()
                    guard index < bytes.count else { throw ConfigError(start, "unterminated quoted string") }
                }
                value.append(bytes[index])
                advance()
            }
            return ConfigToken(kind: .string(String(decoding: value, as: UTF8.self)), location: start)
        default:
            var value: [UInt8] = []
            while index < bytes.count && !ConfigLexer.isDelimiter(bytes[index]) {
                value.append(bytes[index])
                advance()
            }
            return ConfigToken(kind: .word(String(decoding: value, as: UTF8.self)), location: start)
        }
    }
}

/// A resource-file error: where, and what was expected or wrong.
public struct ConfigError: Error, Equatable, CustomStringConvertible {
    public var location: SourceLocation?
    public var message: String
    public init(_ location: SourceLocation?, _ message: String) { self.location = location; self.message = message }
    public var description: String { location.map { "\($0): \(message)" } ?? message }
}
