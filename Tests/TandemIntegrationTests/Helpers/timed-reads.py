#!/usr/bin/python3
"""Reads COUNT blocks of SIZE bytes one at a time at random offsets in [LO, HI) of an NBD
export, compares each with the same bytes of FILE (the reference copy), and prints one JSON
line: the reads done, how many differed, and the p50 and p99 latency in microseconds.

Usage: /usr/bin/python3 timed-reads.py URI FILE LO HI COUNT SIZE
"""
import json, random, sys, time
import nbd

uri, ref, lo, hi, count, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
h = nbd.NBD()
h.connect_uri(uri)
rng = random.Random(7)
lat, differ = [], 0
with open(ref, "rb") as f:
    for _ in range(count):
        off = rng.randrange(lo // size, hi // size) * size
        t0 = time.monotonic()
        got = h.pread(size, off)
        lat.append((time.monotonic() - t0) * 1e6)
        f.seek(off)
        if got != f.read(size):
            differ += 1
lat.sort()
print(json.dumps({"reads": count, "differ": differ, "p50_us": round(lat[len(lat) // 2]), "p99_us": round(lat[len(lat) * 99 // 100])}))
