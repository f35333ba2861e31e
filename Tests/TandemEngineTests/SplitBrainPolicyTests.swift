import Testing
@testable import TandemEngine

/// The after-sb decisions (drbd_asb_recover_0p/1p/2p): each policy's outcome, and that both
/// nodes, deciding apart on mirrored inputs, always agree (one source, one target, or both
/// unresolved), whatever the policies, roles, change counts and tie-breaker.
@Suite struct SplitBrainPolicyTests {
    typealias A = AfterSplitBrain

    func input(_ p0: A = .disconnect, _ p1: A = .disconnect, _ p2: A = .disconnect, primary: Bool = false, peerPrimary: Bool = false,
               was: Bool = false, peerWas: Bool = false, mine: UInt64 = 0, peer: UInt64 = 0, rc: Bool = false) -> SplitBrainPolicy.Input {
        .init(after0p: p0, after1p: p1, after2p: p2, iAmPrimary: primary, peerIsPrimary: peerPrimary, iWasPrimary: was,
              peerWasPrimary: peerWas, myChanges: mine, peerChanges: peer, resolveConflicts: rc)
    }

    /// The peer's view: roles, markers and counts swapped, discard-local/remote swapped (the
    /// peer's file names the same node), the tie-breaker on the other side.
    func mirror(_ i: SplitBrainPolicy.Input) -> SplitBrainPolicy.Input {
        func swap(_ a: A) -> A { a == .discardLocal ? .discardRemote : a == .discardRemote ? .discardLocal : a }
        return .init(after0p: swap(i.after0p), after1p: i.after1p, after2p: i.after2p, iAmPrimary: i.peerIsPrimary,
                     peerIsPrimary: i.iAmPrimary, iWasPrimary: i.peerWasPrimary, peerWasPrimary: i.iWasPrimary,
                     myChanges: i.peerChanges, peerChanges: i.myChanges, resolveConflicts: !i.resolveConflicts)
    }

    func result(_ i: SplitBrainPolicy.Input) -> Int { SplitBrainPolicy.decide(i).result }

    @Test func noPrimaries() {
        #expect(result(input(.disconnect, mine: 3, peer: 5)) == -100)
        #expect(result(input(.discardYoungerPrimary, was: true, peerWas: false)) == 1)
        #expect(result(input(.discardYoungerPrimary, was: false, peerWas: true)) == -1)
        #expect(result(input(.discardOlderPrimary, was: true, peerWas: false)) == -1)
        #expect(result(input(.discardOlderPrimary, was: false, peerWas: true)) == 1)
        // Neither (or both) Primary at the split: the change counts decide.
        #expect(result(input(.discardYoungerPrimary, was: true, peerWas: true, mine: 0, peer: 4)) == -1)
        #expect(result(input(.discardOlderPrimary, mine: 9, peer: 4)) == 1)
        #expect(result(input(.discardZeroChanges, mine: 0, peer: 4)) == -1)
        #expect(result(input(.discardZeroChanges, mine: 4, peer: 0)) == 1)
        #expect(result(input(.discardZeroChanges, mine: 4, peer: 5)) == -100)
        #expect(result(input(.discardZeroChanges, mine: 0, peer: 0, rc: true)) == -1)
        #expect(result(input(.discardZeroChanges, mine: 0, peer: 0, rc: false)) == 1)
        #expect(result(input(.discardLeastChanges, mine: 4, peer: 5)) == -1)
        #expect(result(input(.discardLeastChanges, mine: 6, peer: 5)) == 1)
        #expect(result(input(.discardLeastChanges, mine: 5, peer: 5, rc: true)) == -1)
        #expect(result(input(.discardLocal, mine: 0, peer: 5)) == -1)
        #expect(result(input(.discardRemote, mine: 9, peer: 0)) == 1)
    }

    @Test func onePrimary() {
        #expect(result(input(.discardLeastChanges, .disconnect, primary: true, mine: 1, peer: 9)) == -100)
        #expect(result(input(.disconnect, .discardSecondary, primary: true)) == 1)
        #expect(result(input(.disconnect, .discardSecondary, peerPrimary: true)) == -1)
        // consensus: only when after-sb-0pri would discard the Secondary.
        #expect(result(input(.discardLeastChanges, .consensus, primary: true, mine: 9, peer: 1)) == 1)
        #expect(result(input(.discardLeastChanges, .consensus, primary: true, mine: 1, peer: 9)) == -100)
        #expect(result(input(.discardLeastChanges, .consensus, peerPrimary: true, mine: 1, peer: 9)) == -1)
        // violently-as0p: after-sb-0pri's answer even against the Primary.
        #expect(result(input(.discardLeastChanges, .violentlyAs0p, primary: true, mine: 1, peer: 9)) == -1)
        // call-pri-lost-after-sb: a losing Primary must yield.
        let lost = SplitBrainPolicy.decide(input(.discardLeastChanges, .callPriLostAfterSB, primary: true, mine: 1, peer: 9))
        #expect(lost.result == -1 && lost.primaryMustYield)
        let won = SplitBrainPolicy.decide(input(.discardLeastChanges, .callPriLostAfterSB, peerPrimary: true, mine: 1, peer: 9))
        #expect(won.result == -1 && !won.primaryMustYield)
    }

    @Test func twoPrimaries() {
        #expect(result(input(.discardLeastChanges, .disconnect, .disconnect, primary: true, peerPrimary: true, mine: 1, peer: 9)) == -100)
        let lost = SplitBrainPolicy.decide(input(.discardYoungerPrimary, .disconnect, .callPriLostAfterSB, primary: true, peerPrimary: true,
                                                 was: false, peerWas: true))
        #expect(lost.result == -1 && lost.primaryMustYield)
        let won = SplitBrainPolicy.decide(mirror(input(.discardYoungerPrimary, .disconnect, .callPriLostAfterSB, primary: true,
                                                       peerPrimary: true, was: false, peerWas: true)))
        #expect(won.result == 1 && !won.primaryMustYield)
        #expect(result(input(.discardOlderPrimary, .disconnect, .violentlyAs0p, primary: true, peerPrimary: true, was: true)) == -1)
    }

    /// Every combination: the two nodes' answers mirror each other, and at most one Primary yields.
    @Test func bothNodesAlwaysAgree() {
        var checked = 0
        for p0 in A.zeroPrimaries { for p1 in A.onePrimary { for p2 in A.twoPrimaries {
            for roles in 0..<4 { for marks in 0..<4 { for (m, p) in [(0, 0), (0, 3), (3, 0), (2, 5), (5, 5)] {
                for rc in [false, true] {
                    let i = input(p0, p1, p2, primary: roles & 1 != 0, peerPrimary: roles & 2 != 0, was: marks & 1 != 0,
                                  peerWas: marks & 2 != 0, mine: UInt64(m), peer: UInt64(p), rc: rc)
                    let a = SplitBrainPolicy.decide(i), b = SplitBrainPolicy.decide(mirror(i))
                    #expect(a.result == (b.result == -100 ? -100 : -b.result), "\(i) → \(a) vs \(b)")
                    #expect(!(a.primaryMustYield && b.primaryMustYield))
                    if a.primaryMustYield { #expect(i.iAmPrimary && a.result == -1) }
                    checked += 1
                }
            } } }
        } } }
        #expect(checked > 10_000)
    }
}
