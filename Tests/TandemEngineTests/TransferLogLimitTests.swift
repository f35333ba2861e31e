import Testing
import TandemCodecs
@testable import TandemEngine

/// The transfer log's limit (EngineSettings.transferLogLimit): requests beyond it wait to
/// start, none is lost, and no more than the limit are ever issued at once.
@Suite struct TransferLogLimitTests {
    @Test func writesBeyondTheLimitWaitAndAllComplete() {
        var settings = EngineSettings()
        settings.transferLogLimit = 4
        var engine = ReplicationEngine(settings: settings, backingSectors: 16384,
                                       persistent: PersistentState(current: 0x1234, consistent: true, wasUpToDate: true),
                                       bitmap: OutOfSyncBitmap(bitCount: 2048))
        var pending: [UInt64] = []  // tokens of operations issued, not completed
        var writesIssued = 0, maxWritesInFlight = 0, writesInFlight = 0
        var completed: [UInt64: String?] = [:]
        var writeTokens = Set<UInt64>()
        func feed(_ e: EngineEvent) {
            for a in engine.handle(e) {
                switch a {
                case .disk(let t, .write):
                    pending.append(t); writeTokens.insert(t)
                    writesIssued += 1; writesInFlight += 1
                    maxWritesInFlight = max(maxWritesInFlight, writesInFlight)
                case .disk(let t, _), .metaData(let t, _): pending.append(t)
                case .completeApp(let id, let error): completed[id] = error
                default: break
                }
            }
        }
        feed(.admin(token: 1, .primary(force: false)))
        #expect(engine.status.role == .primary)
        for id in UInt64(1)...20 { feed(.appWrite(id: id, offset: id * 8192, data: [UInt8](repeating: UInt8(id), count: 4096), fua: false)) }
        #expect(engine.status.writesInFlight == 20)
        #expect(writesIssued <= 4)
        while !pending.isEmpty {
            let t = pending.removeFirst()
            if writeTokens.remove(t) != nil { writesInFlight -= 1 }
            feed(.diskDone(token: t, result: .ok))
        }
        #expect(completed.count == 20 && completed.values.allSatisfy { $0 == nil })
        #expect(writesIssued == 20)
        #expect(maxWritesInFlight <= 4, "\(maxWritesInFlight) writes were in flight with a transfer log of 4")
        #expect(engine.status.writesInFlight == 0 && engine.violations == 0)
    }
}
