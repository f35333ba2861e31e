#!/usr/bin/python3
"""Makes the seed corpora of the fuzz targets (Fuzz/Corpus/TARGET), from real inputs:

  wire      each packet of the kernel DRBD 8.4 captures (Tests/TandemCodecsTests/Vectors) on its
            own, and the first packets of each capture (up to 16 KiB) as one stream
  bitmap    the P_COMPRESSED_BITMAP bodies in the captures, and a few made here
  nbd       a client's handshake (flags, LIST, INFO, GO) and transmission requests, as qemu-io
            and nbdcopy send them, each prefixed with the phase byte the target reads first
  metadata  the superblock and activity-log blocks of meta-data drbdmeta creates
  config    the resource files of the integration tests' fixtures

Usage: Fuzz/make-seeds.py   (from the repository root; needs drbdmeta)
"""
import gzip, os, struct, subprocess, sys, tempfile

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
out = os.path.join(root, "Fuzz", "Corpus")


def put(target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def packets(stream):
    """Splits a DRBD stream into (command, bytes) by its headers."""
    i = 0
    while i + 8 <= len(stream):
        magic32 = struct.unpack(">I", stream[i:i + 4])[0]
        if magic32 == 0x83740267:  # h80
            cmd, length = struct.unpack(">HH", stream[i + 4:i + 8]); hl = 8
        elif struct.unpack(">H", stream[i:i + 2])[0] == 0x835A:  # h95
            cmd, length = struct.unpack(">HI", stream[i + 2:i + 8]); hl = 8
        elif magic32 == 0x8620EC20:  # h100
            _, cmd, length = struct.unpack(">HHI", stream[i + 4:i + 12]); hl = 16
        else:
            return
        yield cmd, stream[i:i + hl + length], stream[i + hl:i + hl + length]
        i += hl + length


vectors = os.path.join(root, "Tests", "TandemCodecsTests", "Vectors")
seen = {}
for name in sorted(os.listdir(vectors)):
    stream = gzip.open(os.path.join(vectors, name)).read()
    first = b""
    for n, (cmd, raw, body) in enumerate(packets(stream)):
        if n < 40 and len(first) + len(raw) <= 16384:
            first += raw
        if seen.get(cmd, 0) < 3 and len(raw) <= 8192:
            seen[cmd] = seen.get(cmd, 0) + 1
            put("wire", "%s-%04x-%d" % (name.split(".")[0], cmd, seen[cmd]), raw)
        if cmd == 0x24:  # P_COMPRESSED_BITMAP: encoding byte, then the code
            put("bitmap", "%s-%d" % (name.split(".")[0], n), body)
    put("wire", "%s-stream" % name.split(".")[0], first)
for n, code in enumerate([bytes([0x02, 0x0f]), bytes([0x82, 0xff, 0x01, 0x40]), bytes([0x02]) + bytes(range(1, 64))]):
    put("bitmap", "made-%d" % n, code)

# NBD: phase byte (0 flags, 1 options, 2 transmission), then what a client sends.
def opt(code, data=b""):
    return struct.pack(">QII", 0x49484156454F5054, code, len(data)) + data
def req(flags, typ, handle, offset, length, data=b""):
    return struct.pack(">IHHQQI", 0x25609513, flags, typ, handle, offset, length) + data
go = struct.pack(">I", 2) + b"r0" + struct.pack(">HH", 1, 3)
put("nbd", "handshake", b"\x00" + struct.pack(">I", 3) + opt(3) + opt(6, go) + opt(7, go))
put("nbd", "export-name", b"\x00" + struct.pack(">I", 1) + opt(1, b"r0"))
put("nbd", "options-bad", b"\x01" + opt(6, b"\x00\x00\x00\x09r0") + opt(99, b"x"))
put("nbd", "requests", b"\x02" + req(0, 1, 1, 0, 4096, b"\x5a" * 4096) + req(0, 0, 2, 4096, 512) + req(1, 3, 3, 0, 0)
    + req(0, 4, 4, 8192, 65536) + req(0, 6, 5, 0, 1 << 20) + req(0, 2, 6, 0, 0))
put("nbd", "request-bad", b"\x02" + req(0, 1, 7, 0, 1 << 26))

# Meta-data from drbdmeta: the superblock (last 4 KiB) and the activity log's first blocks.
with tempfile.TemporaryDirectory() as t:
    img = os.path.join(t, "md.img")
    with open(img, "wb") as f:
        f.truncate(16 << 20)
    subprocess.run(["/usr/sbin/drbdmeta", "--force", "0", "v08", img, "internal", "create-md"], input=b"yes\n",
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    data = open(img, "rb").read()
    put("metadata", "superblock", data[-4096:])
    al = data[-4096 - 32768:-4096]
    put("metadata", "al-first", al[:4096])
    put("metadata", "al-two", al[:8192])
    put("metadata", "zeroes", bytes(4096))

fixtures = os.path.join(root, "Tests", "TandemIntegrationTests", "Fixtures")
for name in sorted(os.listdir(fixtures)):
    if name.endswith(".res"):
        put("config", name, open(os.path.join(fixtures, name), "rb").read())
put("config", "tandem-extras.res", b"""resource r0 {
  net { protocol C; compression lz4; tls yes; tls-certificate /c.crt; tls-privkey /c.key; tls-ca /ca.crt; }
  disk { c-max-rate 100M; }
  on alpha { device "nbd+unix:///r0?socket=/run/r0.nbd"; disk /dev/vdb; address 10.0.0.1:7789; meta-disk internal; }
  on beta { device /dev/drbd0; disk ebs:vol-0123456789abcdef0; address 10.0.0.2:7789; meta-disk internal;
            ebs { region eu-west-1; snapshot-every 60; } }
}
""")
print("seed corpora written to", out)
