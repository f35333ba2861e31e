import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif

/// An XML document as a small tree (element name, text, children), parsed with Foundation's
/// XMLParser: the EC2 Query API answers in XML, and the few fields Tandem reads are found by
/// path. Namespaces are dropped from names (EC2 puts everything in one).
public final class XMLTree: @unchecked Sendable {
    public let name: String
    public internal(set) var text = ""
    public internal(set) var children: [XMLTree] = []

    init(name: String) { self.name = name }

    public enum Failure: Error, CustomStringConvertible {
        case malformed(String)
        public var description: String {
            switch self { case .malformed(let why): "malformed XML from AWS: \(why)" }
        }
    }

    /// Parses `data`; the root element.
    public static func parse(_ data: [UInt8]) throws -> XMLTree {
        let builder = Builder()
        let parser = XMLParser(data: Data(data))
        parser.shouldProcessNamespaces = false
        parser.delegate = builder
        guard parser.parse(), let root = builder.root else {
            throw Failure.malformed(parser.parserError.map { "\($0)" } ?? "no root element")
        }
        return root
    }

    /// The first child of this name.
    public func child(_ name: String) -> XMLTree? { children.first { $0.name == name } }
    /// Children of this name.
    public func all(_ name: String) -> [XMLTree] { children.filter { $0.name == name } }
    /// The element at a path of child names.
    public func at(_ path: String...) -> XMLTree? {
        var node: XMLTree? = self
        for p in path { node = node?.child(p) }
        return node
    }
    /// The text of the child of this name, trimmed.
    public func string(_ name: String) -> String? {
        child(name).map { $0.text.trimmingCharacters(in: .whitespacesAndNewlines) }
    }
    /// EC2's lists: `<name><item>...</item>...</name>`.
    public func items(_ name: String) -> [XMLTree] { child(name)?.all("item") ?? [] }

    final class Builder: NSObject, XMLParserDelegate {
        var root: XMLTree?
        var stack: [XMLTree] = []
        /// Deeper than any EC2 answer: a document nested more is refused.
        static let depthLimit = 64

        func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?,
                    qualifiedName qName: String?, attributes attributeDict: [String: String] = [:]) {
            guard stack.count < Self.depthLimit else { parser.abortParsing(); return }
            let local = elementName.split(separator: ":").last.map(String.init) ?? elementName
            let node = XMLTree(name: local)
            if let parent = stack.last { parent.children.append(node) } else if root == nil { root = node }
            stack.append(node)
        }

        func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName qName: String?) {
            _ = stack.popLast()
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) {
            stack.last?.text += string
        }
    }
}
