/// What `adjust` may change in a running engine: the settings the engine reads afresh each
/// time it uses them (the resync controller, timeouts, the split-brain policies for the next
/// handshake, compression, congestion, digests for the next verify or resync). Anything else
/// (the protocol, sizes and limits that bound what is in flight, the activity log, flushes)
/// needs down and up: the engine's invariants were set up for it.
public enum SettingsAdjustment {
    /// EngineSettings' fields by the DRBD option that sets them, and whether a running node
    /// may take a new value.
    static let fields: [String: (option: String, live: Bool)] = [
        "wireProtocol": ("protocol", false),
        "afterSB0p": ("after-sb-0pri", true), "afterSB1p": ("after-sb-1pri", true), "afterSB2p": ("after-sb-2pri", true),
        "alwaysAsbp": ("always-asbp", true),
        "fencing": ("fencing", false),
        "onIOError": ("on-io-error", true),
        "discardMyData": ("discard-my-data", false),
        "userSizeSectors": ("size", false),
        "snapshotHoldMs": ("snapshot-hold-limit", true),
        "beforeSnapshotHandler": ("before-snapshot", false),
        "beforeSnapshotLimitMs": ("before-snapshot", false),
        "verifyAlg": ("verify-alg", true), "csumsAlg": ("csums-alg", true), "integrityAlg": ("data-integrity-alg", false),
        "csumsAfterCrashOnly": ("csums-after-crash-only", true),
        "resyncRateKiB": ("resync-rate", true),
        "cPlanAhead": ("c-plan-ahead", true), "cDelayTarget": ("c-delay-target", true), "cFillTarget": ("c-fill-target", true),
        "cMaxRateKiB": ("c-max-rate", true), "cMinRateKiB": ("c-min-rate", true),
        "maxBioSize": ("max-bio-size", false),
        "maxEpochSize": ("max-epoch-size", false),
        "pingIntervalMs": ("ping-int", true), "pingTimeoutMs": ("ping-timeout", true),
        "requestTimeoutMs": ("timeout and ko-count", true),
        "diskFlushes": ("disk-flushes", false),
        "maxBuffers": ("max-buffers", false),
        "alExtents": ("al-extents", false),
        "bitmapWritebackMs": ("bitmap write-back", false), "resyncBitmapWritebackMs": ("bitmap write-back", false),
        "transferLogLimit": ("transfer log", false),
        "onCongestion": ("on-congestion", true),
        "compression": ("compression", true),
        "autoCompressBelowBytesPerSecond": ("compression auto", true),
        "congestionFillBytes": ("congestion-fill", true),
        "restoreWaitMs": ("wfc-timeout", true),
        "congestionExtents": ("congestion-extents", true),
    ]

    /// The options whose values differ between `old` and `new`: those a running engine takes,
    /// and those that need down and up. A field not in `fields` counts as needing down and up.
    public static func differences(_ old: EngineSettings, _ new: EngineSettings) -> (live: [String], needsRestart: [String]) {
        var live: Set<String> = [], restart: Set<String> = []
        let a = Mirror(reflecting: old).children, b = Mirror(reflecting: new).children
        for (x, y) in zip(a, b) {
            guard let label = x.label, String(describing: x.value) != String(describing: y.value) else { continue }
            if let f = fields[label] { if f.live { live.insert(f.option) } else { restart.insert(f.option) } }
            else { restart.insert(label) }
        }
        return (live.sorted(), restart.sorted())
    }
}
