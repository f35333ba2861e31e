import CoreMetrics
import Foundation
import Prometheus

/// The Prometheus series of a node's resources, made through swift-metrics' API (Counter,
/// Gauge) on a factory that registers each with its HELP text in a swift-prometheus registry,
/// rendered in the text exposition format. Names and labels are drbd-reactor's where DRBD has
/// the quantity (its `enums = true` form: one series per state, valued 0 or 1; counters end in
/// `_total`, `drbd_peerdevice_sent_bytes_total` gaining the suffix drbd-reactor lacks), and
/// `tandem_` for what DRBD lacks. A scrape renders a fresh registry from the daemons' status, so
/// a resource whose daemon is gone leaves no stale series.
public enum StatusMetrics {
    /// One metric: its type and HELP text (every metric has one: promtool requires it).
    public struct Spec: Sendable {
        public enum Kind: Sendable { case counter, gauge }
        public var kind: Kind
        public var help: String
    }

    static func g(_ help: String) -> Spec { Spec(kind: .gauge, help: help) }
    static func c(_ help: String) -> Spec { Spec(kind: .counter, help: help) }

    /// Every metric the exporter writes.
    public static let catalog: [String: Spec] = [
        "drbd_resource_resources": g("Number of resources whose daemon answered"),
        "drbd_resource_role": g("DRBD role of the resource"),
        "drbd_resource_suspended": g("Boolean whether the resource is suspended (Tandem never suspends I/O)"),
        "drbd_resource_maypromote": g("Boolean whether the resource may be promoted to Primary"),
        "drbd_connection_state": g("DRBD connection state"),
        "drbd_connection_apinflight_bytes": g("Number of application requests in flight (not completed)"),
        "drbd_peerdevice_outofsync_bytes": g("Number of bytes currently out of sync with this peer, according to the bitmap that DRBD has for it"),
        "drbd_peerdevice_sent_bytes_total": c("Data bytes sent to this peer (writes, resync data, read replies; as on the wire)"),
        "drbd_peerdevice_received_bytes_total": c("Data bytes received from this peer (writes, resync data, read replies; as on the wire)"),
        "drbd_device_state": g("DRBD device state"),
        "drbd_device_size_bytes": g("Device size in bytes"),
        "drbd_device_read_bytes_total": c("Net data read from local hard disk"),
        "drbd_device_written_bytes_total": c("Net data written on local disk"),
        "drbd_device_alwrites_total": c("Number of updates of the activity log area of the meta data"),
        "drbd_device_bmwrites_total": c("Number of updates of the bitmap area of the meta data"),
        "drbd_device_upperpending": g("Number of block I/O requests forwarded to DRBD, but not yet answered by DRBD."),
        "drbd_device_lowerpending": g("Number of open requests to the local I/O sub-system issued by DRBD"),
        "drbd_device_client": g("Boolean whether this device is a client (i.e., intentional diskless)"),
        "drbd_device_unintentionaldiskless": g("Boolean whether the devices is unintentional diskless"),
        "drbd_device_alsuspended": g("Boolean whether the Activity-Log is suspended"),
        "drbd_device_open": g("Boolean if this device is opened"),
        "tandem_replication_state": g("DRBD 8.4 replication state of the connection (Established when connected and idle)"),
        "tandem_peer_disk_state": g("The peer's disk state as this node knows it"),
        "tandem_replication_lag_bytes": g("Application writes acknowledged by this Primary that the peer does not hold yet (the recovery point now)"),
        "tandem_replication_lag_seconds": g("Age of the oldest acknowledged application write the peer does not hold yet"),
        "tandem_replicated_data_bytes_total": c("Application write bytes replicated to the peer, before compression"),
        "tandem_replicated_wire_bytes_total": c("Application write bytes replicated to the peer, as sent (after LZ4)"),
        "tandem_resync_data_bytes_total": c("Resync data bytes sent, before compression"),
        "tandem_resync_wire_bytes_total": c("Resync data bytes sent, as sent (after LZ4)"),
        "tandem_resync_same_bytes_total": c("Resync bytes found identical by checksum (csums-alg) and not sent"),
        "tandem_resync_done_ratio": g("Fraction done of the running resync or verify (absent when none runs)"),
        "tandem_resync_total_bytes": g("Bytes the running resync moves in all"),
        "tandem_resync_rate_bytes_per_second": g("Rate of the running resync or verify"),
        "tandem_verify_total_bytes": g("Bytes the running or last verify covers"),
        "tandem_verify_done_bytes": g("Bytes the running or last verify compared"),
        "tandem_verify_found_bytes": g("Bytes the running or last verify found out of sync"),
        "tandem_activity_log_waiting_writes": g("Writes waiting for a free activity-log slot"),
        "tandem_activity_log_extents_hot": g("Activity-log extents active now"),
        "tandem_snapshot_last_timestamp_seconds": g("Unix time of the newest EBS snapshot of the resource"),
        "tandem_snapshot_age_seconds": g("Age of the newest EBS snapshot of the resource"),
        "tandem_snapshot_hold_seconds": g("How long writes were held for the last EBS snapshot"),
        "tandem_snapshots_taken_total": c("EBS snapshots taken by this daemon"),
        "tandem_snapshot_failures_total": c("EBS snapshots this daemon tried and did not get"),
        "tandem_disk_error": g("Boolean whether the disk was detached after an I/O error"),
        "tandem_split_brain": g("Boolean whether the last handshake found a split brain the policies did not resolve"),
        "tandem_tls_enabled": g("Boolean whether the replication link uses TLS"),
        "tandem_heap_in_use_bytes": g("The daemon's heap in use (allocated and not freed)"),
        "tandem_version_info": g("The exporter's Tandem release and the DRBD version it is compatible with; always 1"),
        "tandem_exporter_scrapes_total": c("Scrapes the exporter answered"),
        "tandem_exporter_daemon_errors_total": c("Daemons found on a control socket that did not answer a scrape"),
    ]

    /// The states each enum metric has a series for.
    public static let roles = ["Unknown", "Primary", "Secondary"]
    public static let connectionStates = ["StandAlone", "Disconnecting", "Unconnected", "Timeout", "BrokenPipe", "NetworkFailure",
                                          "ProtocolError", "TearDown", "Connecting", "Connected"]
    public static let replicationStates = ["Off", "Established", "StartingSyncS", "StartingSyncT", "WFBitMapS", "WFBitMapT",
                                           "WFSyncUUID", "SyncSource", "SyncTarget", "VerifyS", "VerifyT", "PausedSyncS",
                                           "PausedSyncT", "Ahead", "Behind"]
    public static let diskStates = ["Diskless", "Attaching", "Detaching", "Failed", "Negotiating", "Inconsistent", "Outdated",
                                    "DUnknown", "Consistent", "UpToDate"]

    /// DRBD 8.4's connection state as DRBD 9's connection state (drbd-reactor's enum) and
    /// replication state.
    public static func split(_ cstate: String) -> (connection: String, replication: String) {
        switch cstate {
        case "WFConnection", "WFReportParams": return ("Connecting", "Off")
        case "Connected": return ("Connected", "Established")
        case _ where replicationStates.contains(cstate): return ("Connected", cstate)
        default: return (connectionStates.contains(cstate) ? cstate : "Unconnected", "Off")
        }
    }

    /// A swift-metrics factory onto a swift-prometheus registry that gives every metric the
    /// HELP text of the catalog (swift-prometheus' own factory registers none).
    public final class Factory: MetricsFactory, @unchecked Sendable {
        public let registry: PrometheusCollectorRegistry
        public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) { self.registry = registry }

        func help(_ label: String) -> String {
            guard let spec = StatusMetrics.catalog[label] else {
                assertionFailure("metric \(label) is not in StatusMetrics.catalog")
                return "Tandem metric \(label)"
            }
            return spec.help
        }

        public func makeCounter(label: String, dimensions: [(String, String)]) -> CounterHandler {
            registry.makeCounter(name: label, labels: dimensions, help: help(label))
        }

        public func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> FloatingPointCounterHandler {
            registry.makeCounter(name: label, labels: dimensions, help: help(label))
        }

        public func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> RecorderHandler {
            // Only gauges are made (aggregate recorders would be histograms, which Tandem has none of).
            registry.makeGauge(name: label, labels: dimensions, help: help(label))
        }

        public func makeMeter(label: String, dimensions: [(String, String)]) -> MeterHandler {
            registry.makeGauge(name: label, labels: dimensions, help: help(label))
        }

        public func makeTimer(label: String, dimensions: [(String, String)]) -> TimerHandler {
            registry.makeDurationHistogram(name: label, labels: dimensions, buckets: [.milliseconds(1), .seconds(1)], help: help(label))
        }

        public func destroyCounter(_ handler: CounterHandler) {
            if let c = handler as? Prometheus.Counter { registry.unregisterCounter(c) }
        }
        public func destroyFloatingPointCounter(_ handler: FloatingPointCounterHandler) {
            if let c = handler as? Prometheus.Counter { registry.unregisterCounter(c) }
        }
        public func destroyRecorder(_ handler: RecorderHandler) {
            if let g = handler as? Prometheus.Gauge { registry.unregisterGauge(g) }
        }
        public func destroyMeter(_ handler: MeterHandler) {
            if let g = handler as? Prometheus.Gauge { registry.unregisterGauge(g) }
        }
        public func destroyTimer(_ handler: TimerHandler) {
            if let h = handler as? DurationHistogram { registry.unregisterDurationHistogram(h) }
        }
    }

    /// The series of these daemons' status, into `factory`'s registry. `now`: Unix seconds, for
    /// snapshot ages.
    public static func record(_ statuses: [StatusSnapshot], into factory: Factory, now: Double) {
        func gauge(_ name: String, _ labels: [(String, String)], _ value: Double) {
            CoreMetrics.Gauge(label: name, dimensions: labels, factory: factory).record(value)
        }
        func counter(_ name: String, _ labels: [(String, String)], _ value: UInt64) {
            CoreMetrics.Counter(label: name, dimensions: labels, factory: factory).increment(by: Int64(clamping: value))
        }
        func flag(_ b: Bool) -> Double { b ? 1 : 0 }
        func enumeration(_ name: String, _ labels: [(String, String)], _ states: [String], _ current: String) {
            for st in states { gauge(name, labels + [(name, st)], flag(st == current)) }
        }

        gauge("tandem_version_info", [("version", TandemVersion.release), ("drbd", "8.4.11")], 1)
        gauge("drbd_resource_resources", [], Double(statuses.count))
        for s in statuses.sorted(by: { $0.resource < $1.resource }) {
            let res = [("name", s.resource)]
            let conn = res + [("conn_name", s.peer), ("peer_node_id", "\(s.peerNodeID ?? 1)")]
            let peerDevice = conn + [("volume", "0")]
            let device = res + [("volume", "0"), ("minor", "\(s.minor ?? 0)")]
            let (cstate, rstate) = split(s.connection)

            enumeration("drbd_resource_role", res, roles, s.role)
            gauge("drbd_resource_suspended", res, 0)
            gauge("drbd_resource_maypromote", res, flag(s.role != "Primary" && s.disk == "UpToDate" && s.peerRole != "Primary"))

            enumeration("drbd_connection_state", conn, connectionStates, cstate)
            enumeration("tandem_replication_state", conn, replicationStates, rstate)
            gauge("drbd_connection_apinflight_bytes", conn, Double(s.apInFlightBytes ?? 0))

            gauge("drbd_peerdevice_outofsync_bytes", peerDevice, Double(s.outOfSyncKiB * 1024))
            counter("drbd_peerdevice_sent_bytes_total", peerDevice, s.sentBytes ?? 0)
            counter("drbd_peerdevice_received_bytes_total", peerDevice, s.receivedBytes ?? 0)
            enumeration("tandem_peer_disk_state", peerDevice, diskStates, s.peerDisk)

            enumeration("drbd_device_state", device, diskStates, s.disk)
            gauge("drbd_device_size_bytes", device, Double(s.sizeKiB * 1024))
            counter("drbd_device_read_bytes_total", device, s.diskReadBytes ?? 0)
            counter("drbd_device_written_bytes_total", device, s.diskWrittenBytes ?? 0)
            counter("drbd_device_alwrites_total", device, s.alWrites ?? 0)
            counter("drbd_device_bmwrites_total", device, s.bitmapWrites ?? 0)
            gauge("drbd_device_upperpending", device, Double(s.appRequestsPending ?? 0))
            gauge("drbd_device_lowerpending", device, Double(s.diskRequestsPending ?? 0))
            gauge("drbd_device_client", device, 0)
            gauge("drbd_device_unintentionaldiskless", device, flag(s.disk == "Diskless"))
            gauge("drbd_device_alsuspended", device, 0)
            gauge("drbd_device_open", device, flag((s.exportOpen ?? 0) > 0))

            gauge("tandem_replication_lag_bytes", res, Double(s.replicationLagBytes ?? 0))
            gauge("tandem_replication_lag_seconds", res, s.replicationLagSeconds ?? 0)
            counter("tandem_replicated_data_bytes_total", res, s.replicatedDataKiB * 1024)
            counter("tandem_replicated_wire_bytes_total", res, s.replicatedWireKiB * 1024)
            counter("tandem_resync_data_bytes_total", res, s.resyncDataKiB * 1024)
            counter("tandem_resync_wire_bytes_total", res, s.resyncWireKiB * 1024)
            counter("tandem_resync_same_bytes_total", res, (s.resyncSameKiB ?? 0) * 1024)
            if let d = s.done { gauge("tandem_resync_done_ratio", res, d / 100) }
            if let t = s.resyncTotalKiB { gauge("tandem_resync_total_bytes", res, Double(t * 1024)) }
            if let r = s.syncRateKiB { gauge("tandem_resync_rate_bytes_per_second", res, Double(r * 1024)) }
            if let t = s.verifyTotalKiB {
                gauge("tandem_verify_total_bytes", res, Double(t * 1024))
                gauge("tandem_verify_done_bytes", res, Double((s.verifyDoneKiB ?? 0) * 1024))
                gauge("tandem_verify_found_bytes", res, Double((s.verifyFoundKiB ?? 0) * 1024))
            }
            gauge("tandem_activity_log_waiting_writes", res, Double(s.alWritesWaiting))
            gauge("tandem_activity_log_extents_hot", res, Double(s.alExtentsHot))
            if let t = s.lastSnapshotTime {
                gauge("tandem_snapshot_last_timestamp_seconds", res, t)
                gauge("tandem_snapshot_age_seconds", res, max(0, now - t))
            }
            if let h = s.lastSnapshotHoldMs { gauge("tandem_snapshot_hold_seconds", res, Double(h) / 1000) }
            if let n = s.snapshotsTaken { counter("tandem_snapshots_taken_total", res, n) }
            if let n = s.snapshotsFailed { counter("tandem_snapshot_failures_total", res, n) }
            gauge("tandem_disk_error", res, flag(s.diskError != nil))
            gauge("tandem_split_brain", res, flag(s.splitBrain == true))
            gauge("tandem_tls_enabled", res, flag(s.tls != nil))
            if let h = s.heapInUseKiB { gauge("tandem_heap_in_use_bytes", res, Double(h * 1024)) }
        }
    }

    /// The text exposition of these daemons' status.
    public static func render(_ statuses: [StatusSnapshot], now: Double) -> String {
        let factory = Factory()
        record(statuses, into: factory, now: now)
        return factory.registry.emitToString()
    }
}
