#!/usr/bin/env python3
"""Cut small wire test vectors out of the kernel DRBD captures.

Reads a pcap(.gz) of Ethernet/IPv4/TCP frames, reassembles each TCP direction by sequence
number, splits the byte stream into DRBD packets (h80/h95/h100 headers) and keeps every packet of
the first 60 plus at most MAX_PER_TYPE packets of each command (packets with over 4 KiB of payload: one of each command per direction), so
the vector stays small but covers every packet type the capture holds. The output is the kept
packets, byte for byte, concatenated: a valid DRBD stream for the codec's round-trip test.

usage: extract-wire-vectors.py CAPTURE.pcap.gz OUT.bin
"""
import gzip, struct, sys

MAX_PER_TYPE = 4
MAX_PAYLOAD = (1 << 20) + 64

def frames(path):
    op = gzip.open if path.endswith('.gz') else open
    with op(path, 'rb') as f:
        data = f.read()
    magic = struct.unpack('<I', data[:4])[0]
    e = '<' if magic in (0xa1b2c3d4, 0xa1b23c4d) else '>'
    off = 24
    while off + 16 <= len(data):
        _, _, incl, _ = struct.unpack(e + 'IIII', data[off:off + 16])
        yield data[off + 16: off + 16 + incl]
        off += 16 + incl

def streams(path):
    segs = {}
    for fr in frames(path):
        if len(fr) < 14 or struct.unpack('>H', fr[12:14])[0] != 0x0800:
            continue
        ip = fr[14:]
        ihl = (ip[0] & 15) * 4
        if ip[9] != 6:
            continue
        total = struct.unpack('>H', ip[2:4])[0]
        src, dst = ip[12:16], ip[16:20]
        tcp = ip[ihl:total]
        sport, dport, seq = struct.unpack('>HHI', tcp[:8])
        doff = (tcp[12] >> 4) * 4
        payload = tcp[doff:]
        key = (src, sport, dst, dport)
        if payload:
            segs.setdefault(key, {})[seq] = payload
    for key, m in segs.items():
        out = bytearray()
        seqs = sorted(m)
        nxt = seqs[0]
        for s in seqs:
            p = m[s]
            if s + len(p) <= nxt:
                continue
            if s > nxt:
                break  # gap: stop this stream here
            out += p[nxt - s:]
            nxt = s + len(p)
        yield key, bytes(out)

def packets(buf):
    off = 0
    while off + 8 <= len(buf):
        if buf[off:off + 4] == b'\x86\x20\xec\x20':
            cmd, length = struct.unpack('>HI', buf[off + 6:off + 12]); h = 16
        elif buf[off:off + 4] == b'\x83\x74\x02\x67':
            cmd, length = struct.unpack('>HH', buf[off + 4:off + 8]); h = 8
        elif buf[off:off + 2] == b'\x83\x5a':
            cmd, length = struct.unpack('>HI', buf[off + 2:off + 8]); h = 8
        else:
            raise SystemExit('bad magic at %d' % off)
        if off + h + length > len(buf):
            return
        yield cmd, length, buf[off:off + h + length]
        off += h + length

def main():
    src, dst = sys.argv[1], sys.argv[2]
    kept = bytearray()
    for key, buf in sorted(streams(src)):
        counts = {}
        for i, (cmd, length, pkt) in enumerate(packets(buf)):
            cap = MAX_PER_TYPE if length <= 4096 else 1
            if i < 60 and length <= 4096:
                kept += pkt; counts[cmd] = counts.get(cmd, 0) + 1; continue
            if counts.get(cmd, 0) < cap and length <= MAX_PAYLOAD:
                kept += pkt; counts[cmd] = counts.get(cmd, 0) + 1
    open(dst, 'wb').write(kept)
    print('%s: %d bytes' % (dst, len(kept)))

main()
