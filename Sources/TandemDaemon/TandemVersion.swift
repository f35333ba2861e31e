import TandemCodecs

/// What this build is and speaks, as `tandem --version` prints it (drbdadm's KEY=VALUE lines,
/// so a script that reads drbdadm's finds the same shape): the release, the control protocol
/// the command and the daemon share, and what of DRBD it is compatible with.
public enum TandemVersion {
    public static let release = "0.19.0"

    public static var text: String {
        let f = ConnectionFeatures.tandem
        return """
            TANDEM_VERSION=\(release)
            TANDEM_CONTROL_PROTOCOL=\(ControlProtocol.version)
            DRBD_KERNEL_VERSION=8.4.11
            DRBD_PROTOCOL_VERSIONS=\(f.protocolMin)-\(f.protocolMax)
            DRBD_META_DATA=v08
            """
    }
}
