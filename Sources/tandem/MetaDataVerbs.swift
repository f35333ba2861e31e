import ArgumentParser
import Foundation
import TandemAdapters
import TandemCodecs
import TandemDaemon

/// Resolves the resource and opens its backing disk for a meta-data verb.
struct DiskContext {
    let local: LocalResource
    let device: FileBlockDevice

    init(_ globals: GlobalOptions, resource: String, readOnly: Bool) throws {
        let config: DRBDConfig
        do { config = try ConfigLoader.load(path: globals.config) } catch { throw VerbFailure("\(error)") }
        do { local = try LocalResource(config: config, name: resource, node: globals.nodeName) } catch { throw VerbFailure("\(error)") }
        guard local.volume.metaDisk == .internal else {
            throw VerbFailure("\(resource): only 'meta-disk internal' is supported")
        }
        // Meta-data verbs open without O_EXCL on files so they can inspect a disk in use,
        // like drbdmeta; writes still take the exclusive open.
        do {
            let path = try BackingDisk.path(for: local)
            device = try FileBlockDevice(path: path, options: .init(readOnly: readOnly, exclusive: !readOnly))
        } catch { throw VerbFailure("\(error)") }
    }
}

/// Asks a yes/no question on a terminal; without one, the answer is no.
func confirm(_ question: String) -> Bool {
    guard isatty(0) == 1 else { return false }
    print("\(question) [need to type 'yes' to confirm] ", terminator: "")
    return readLine()?.trimmingCharacters(in: .whitespaces) == "yes"
}

func fail(_ error: Error) -> VerbFailure { VerbFailure("\(error)") }

struct CreateMD: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "create-md", abstract: "Write fresh DRBD v08 meta-data on the backing disk.")
    @OptionGroup var globals: GlobalOptions
    @Flag(help: "Overwrite existing meta-data or a disk that seems to hold a filesystem.") var force = false
    @Option(help: "Activity-log stripes.") var alStripes: UInt32 = 1
    @Option(name: .customLong("al-stripe-size-kB"), help: "Activity-log stripe size in KiB (multiple of 4).") var alStripeSizeKB: UInt32 = 32
    @Argument(help: "Resource name.") var resource: String

    func run() throws {
        let ctx = try DiskContext(globals, resource: resource, readOnly: false)
        guard alStripeSizeKB % 4 == 0 else { throw VerbFailure("--al-stripe-size-kB must be a multiple of 4") }
        var force = self.force
        if !force {
            if MetaDataStore.hasMetaData(ctx.device) {
                guard confirm("Valid meta-data in place on \(ctx.device.path), overwrite?") else {
                    throw VerbFailure("\(ctx.device.path): valid DRBD meta-data already present; use --force to overwrite it")
                }
                force = true
            } else if let fs = FilesystemProbe.detect(on: ctx.device) {
                guard confirm("\(ctx.device.path) seems to hold a \(fs) filesystem; destroy it?") else {
                    throw VerbFailure("\(ctx.device.path): looks like it holds a \(fs) filesystem or volume; use --force to overwrite it")
                }
                force = true
            }
        }
        do {
            let layout = try MetaDataLayout(deviceBytes: ctx.device.size, alStripes: alStripes, alStripeSize4k: alStripeSizeKB / 4)
            print("initializing activity log")
            print("initializing bitmap (\(layout.bitmapBytes / 1024) KB) to all zero")
            print("Writing meta data...")
            try MetaDataStore.create(on: ctx.device, alStripes: alStripes, alStripeSize4k: alStripeSizeKB / 4, force: force)
            print("New drbd meta data block successfully created.")
        } catch { throw fail(error) }
    }
}

struct DumpMD: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "dump-md", abstract: "Print the meta-data as drbdmeta's dump-md does.")
    @OptionGroup var globals: GlobalOptions
    @Flag(help: "Dump unclean meta-data too (marked so restore-md refuses it).") var force = false
    @Argument(help: "Resource name.") var resource: String

    func run() throws {
        let ctx = try DiskContext(globals, resource: resource, readOnly: true)
        do {
            let (sb, layout) = try MetaDataStore.readSuperblock(from: ctx.device)
            if !sb.isClean && !force {
                throw VerbFailure("\(ctx.device.path): meta-data is unclean, please apply-al first (or --force)")
            }
            let bm = try MetaDataStore.bitmapBytesForDump(ctx.device, sb, layout)
            var header = "# Tandem meta data dump\n"
            header += "# \(ISO8601DateFormatter().string(from: Date()))\n"
            header += "# \(globals.nodeName)> tandem dump-md \(resource)\n#\n\n"
            FileHandle.standardOutput.write(Data((header + MetaDataText.dumpBody(superblock: sb, layout: layout, bitmapBytes: bm)).utf8))
        } catch let e as VerbFailure { throw e } catch { throw fail(error) }
    }
}

/// Reads the superblock of a resource's disk and prints it with `format` (get-gi, show-gi).
func printSuperblock(_ globals: GlobalOptions, _ resource: String, _ format: (Superblock) -> String) throws {
    let ctx = try DiskContext(globals, resource: resource, readOnly: true)
    do {
        let (sb, _) = try MetaDataStore.readSuperblock(from: ctx.device)
        print(format(sb), terminator: "")
    } catch { throw fail(error) }
}

struct GetGI: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "get-gi", abstract: "Print the generation identifiers (UUIDs and flags) in one line.")
    @OptionGroup var globals: GlobalOptions
    @Argument(help: "Resource name.") var resource: String
    func run() throws { try printSuperblock(globals, resource, MetaDataText.generationLine) }
}

struct ShowGI: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show-gi", abstract: "Explain the generation identifiers.")
    @OptionGroup var globals: GlobalOptions
    @Argument(help: "Resource name.") var resource: String
    func run() throws { try printSuperblock(globals, resource, MetaDataText.showGenerations) }
}

struct WipeMD: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "wipe-md", abstract: "Destroy the meta-data on the backing disk.")
    @OptionGroup var globals: GlobalOptions
    @Flag(help: "Do not ask.") var force = false
    @Argument(help: "Resource name.") var resource: String

    func run() throws {
        let ctx = try DiskContext(globals, resource: resource, readOnly: false)
        guard force || confirm("Do you really want to wipe out the DRBD meta data on \(ctx.device.path)?") else {
            throw VerbFailure("\(ctx.device.path): not wiping meta-data without confirmation; use --force")
        }
        do {
            try MetaDataStore.wipe(on: ctx.device)
            print("Wiping meta data...")
            print("DRBD meta data block successfully wiped out.")
        } catch { throw fail(error) }
    }
}

struct ApplyAL: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "apply-al", abstract: "Apply the activity log to the bitmap after a crash.")
    @OptionGroup var globals: GlobalOptions
    @Argument(help: "Resource name.") var resource: String

    func run() throws {
        let ctx = try DiskContext(globals, resource: resource, readOnly: false)
        do {
            let r = try MetaDataStore.applyActivityLog(on: ctx.device)
            if r.wasClean { print("Nothing to do.") }
            else {
                print("Marked additional \(MetaDataText.humanSize(kib: r.bitsAdded * 4)) as out-of-sync based on AL (\(r.hotExtents.count) extents).")
            }
        } catch { throw fail(error) }
    }
}

struct Dump: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "dump", abstract: "Print a resource in DRBD syntax, as drbdadm dump does.")
    @OptionGroup var globals: GlobalOptions
    @Argument(help: "Resource name, or 'all'.") var resource: String = "all"
    @Flag(name: .customLong("show-secrets"), help: "Print shared-secret's value (by default it is printed as <hidden>).")
    var showSecrets = false

    func run() throws {
        let config: DRBDConfig
        do { config = try ConfigLoader.load(path: globals.config) } catch { throw fail(error) }
        let node = globals.nodeName
        if resource == "all" {
            let mine = config.resources.filter { $0.host(named: node) != nil }
            guard !mine.isEmpty else { throw VerbFailure("no resources defined for this host (\(node))") }
            for r in mine { print(ConfigDumper.dump(r, node: node, showSecrets: showSecrets), terminator: "") }
            return
        }
        do {
            let local = try LocalResource(config: config, name: resource, node: node, opensDisks: false)
            print(ConfigDumper.dump(local.resource, node: node, showSecrets: showSecrets), terminator: "")
        } catch { throw fail(error) }
    }
}

/// `sh-resources`: the names of the resources this node has a part in, on one line (drbdadm's
/// verb of that name; shell completion and scripts use it).
struct ShResources: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "sh-resources", abstract: "Print the names of this node's resources (drbdadm sh-resources).")
    @OptionGroup var globals: GlobalOptions

    func run() throws {
        let config: DRBDConfig
        do { config = try ConfigLoader.load(path: globals.config) } catch { throw fail(error) }
        let node = globals.nodeName
        print(config.resources.filter { $0.host(named: node) != nil }.map(\.name).joined(separator: " "))
    }
}
