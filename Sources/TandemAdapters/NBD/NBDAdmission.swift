import TandemEngine

/// The export's limit on NBD requests in flight over all its client connections
/// (QueueLimits.nbdRequestsTotal, nbdBytesTotal). A connection that finds no room holds its
/// requests and stops reading; it is woken when another connection's request finishes.
/// Used on the export's event loop only.
final class NBDAdmission: @unchecked Sendable {
    private(set) var requests = 0
    private(set) var bytes = 0
    private var blocked: [ObjectIdentifier: () -> Void] = [:]

    /// Whether a request of `n` payload bytes may start now (one alone always may).
    func fits(_ n: Int) -> Bool {
        requests < QueueLimits.nbdRequestsTotal && (bytes == 0 || bytes + n <= QueueLimits.nbdBytesTotal)
    }

    func take(_ n: Int) {
        requests += 1
        bytes += n
        assert(requests <= QueueLimits.nbdRequestsTotal, "NBD admission over its request limit")
    }

    func release(_ n: Int) {
        requests -= 1
        bytes -= n
        assert(requests >= 0 && bytes >= 0, "NBD admission released more than it took")
        guard !blocked.isEmpty else { return }
        let wake = blocked
        blocked.removeAll()
        for (_, w) in wake { w() }
    }

    func wakeWhenRoom(_ connection: ObjectIdentifier, _ wake: @escaping () -> Void) { blocked[connection] = wake }
    func forget(_ connection: ObjectIdentifier) { blocked[connection] = nil }
}
