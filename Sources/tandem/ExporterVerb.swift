import ArgumentParser
import CoreMetrics
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import TandemDaemon

/// `tandem exporter [--listen ADDR:PORT]`: serves Prometheus' /metrics (port 9942, drbd-reactor's)
/// for every resource whose daemon answers on a control socket in $TANDEM_RUN_DIR; needs no
/// resource file and changes nothing. A daemon that does not answer within 2 s (going down,
/// stopped) is left out of that scrape and counted; the others are served.
struct Exporter: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "exporter", abstract: "Serve Prometheus metrics of this node's resources (port 9942).")
    @Option(help: "Address and port to listen on (IPv6 in brackets: [::]:9942).") var listen = "0.0.0.0:9942"

    /// Scrapes waiting or running at once; more are answered 503 (a scrape storm costs nothing).
    static let scrapeLimit = 4
    /// How long one daemon may take to answer a scrape.
    static let daemonLimit: TimeInterval = 2

    func run() throws {
        unblockTerminationSignals()
        let (host, port) = try Self.parse(listen)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        let scraper = Scraper(pool: pool)
        let channel: Channel
        do {
            channel = try ServerBootstrap(group: group)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { ch in
                    ch.pipeline.configureHTTPServerPipeline().flatMap { ch.pipeline.addHandler(MetricsHTTPHandler(scraper: scraper)) }
                }
                .bind(host: host, port: port).wait()
        } catch { throw VerbFailure("exporter: cannot listen on \(listen): \(error)") }
        FileHandle.standardError.write(Data("tandem exporter: serving /metrics on \(listen) for the daemons in \(RuntimePaths.runDirectory)\n".utf8))
        let stop = DispatchSemaphore(value: 0)
        var sources: [DispatchSourceSignal] = []
        for sig in [SIGTERM, SIGINT] {
            signal(sig, SIG_IGN)
            let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            s.setEventHandler { stop.signal() }
            s.resume()
            sources.append(s)
        }
        stop.wait()
        try? channel.close().wait()
        try? pool.syncShutdownGracefully()
        try? group.syncShutdownGracefully()
    }

    static func parse(_ s: String) throws -> (String, Int) {
        var host = s, port = "9942"
        if s.hasPrefix("["), let close = s.firstIndex(of: "]") {
            host = String(s[s.index(after: s.startIndex)..<close])
            let rest = s[s.index(after: close)...]
            if rest.hasPrefix(":") { port = String(rest.dropFirst()) }
        } else if let colon = s.lastIndex(of: ":") {
            host = String(s[..<colon])
            port = String(s[s.index(after: colon)...])
        }
        guard let p = Int(port), (1...65535).contains(p), !host.isEmpty else {
            throw VerbFailure("exporter: --listen wants ADDR:PORT (e.g. 0.0.0.0:9942, [::]:9942), not '\(s)'", exit: .usage)
        }
        return (host, p)
    }
}

/// Reads every daemon's status and renders the metrics, one scrape at a time on its own thread
/// (the control client blocks), the exporter's own counters kept across scrapes.
final class Scraper: @unchecked Sendable {
    let pool: NIOThreadPool
    private let lock = NSLock()
    private var pending = 0
    /// The exporter's own series (swift-metrics, kept across scrapes).
    let own = StatusMetrics.Factory()
    private lazy var scrapes = CoreMetrics.Counter(label: "tandem_exporter_scrapes_total", factory: own)

    init(pool: NIOThreadPool) { self.pool = pool }

    /// Nil when too many scrapes are waiting already.
    func scrape(on loop: EventLoop) -> EventLoopFuture<String>? {
        let admitted: Bool = lock.withLock {
            guard pending < Exporter.scrapeLimit else { return false }
            pending += 1
            return true
        }
        guard admitted else { return nil }
        return pool.runIfActive(eventLoop: loop) { [self] in
            defer { lock.withLock { pending -= 1 } }
            return render()
        }
    }

    func render() -> String {
        let dir = RuntimePaths.runDirectory
        let sockets = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasSuffix(".ctl") }.sorted()
        var statuses: [StatusSnapshot] = []
        for name in sockets {
            let resource = String(name.dropLast(4))
            guard let c = ControlClient(resource: resource, answerLimit: Exporter.daemonLimit), let s = try? c.status() else {
                CoreMetrics.Counter(label: "tandem_exporter_daemon_errors_total", dimensions: [("name", resource)], factory: own).increment()
                continue
            }
            statuses.append(s)
        }
        scrapes.increment()
        return StatusMetrics.render(statuses, now: Date().timeIntervalSince1970) + own.registry.emitToString()
    }
}

/// GET /metrics (the text format), GET / (a pointer to it); anything else 404 or 405.
final class MetricsHTTPHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    let scraper: Scraper
    private var head: HTTPRequestHead?

    init(scraper: Scraper) { self.scraper = scraper }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h): head = h
        case .body: break
        case .end:
            guard let h = head else { return }
            head = nil
            answer(context, h)
        }
    }

    private func answer(_ context: ChannelHandlerContext, _ h: HTTPRequestHead) {
        let path = h.uri.split(separator: "?").first.map(String.init) ?? h.uri
        guard h.method == .GET || h.method == .HEAD else { return respond(context, h, .methodNotAllowed, "GET only\n") }
        switch path {
        case "/metrics":
            guard let f = scraper.scrape(on: context.eventLoop) else {
                return respond(context, h, .serviceUnavailable, "too many scrapes at once\n")
            }
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            f.whenComplete { r in
                switch r {
                case .success(let body): self.respond(bound.value, h, .ok, body, type: "text/plain; version=0.0.4; charset=utf-8")
                case .failure(let e): self.respond(bound.value, h, .internalServerError, "\(e)\n")
                }
            }
        case "/": respond(context, h, .ok, "Tandem exporter: metrics at /metrics\n")
        default: respond(context, h, .notFound, "not found; metrics at /metrics\n")
        }
    }

    private func respond(_ context: ChannelHandlerContext, _ request: HTTPRequestHead, _ status: HTTPResponseStatus, _ body: String,
                         type: String = "text/plain; charset=utf-8") {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: type)
        headers.add(name: "Content-Length", value: "\(body.utf8.count)")
        let keepAlive = request.isKeepAlive
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: status, headers: headers))), promise: nil)
        if request.method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
        }
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            if !keepAlive { context.close(promise: nil) }
        }
    }
}
