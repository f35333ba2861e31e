#!/usr/bin/python3
"""A database commit, repeated: a 4 KiB write at a random 4 KiB-aligned offset, then a flush,
one at a time (queue depth 1), for SECONDS; prints the p50 and p99 of write+flush in
microseconds as "P50 P99 COUNT". Used by scripts/bench against Tandem's export and nbdkit.

Usage: /usr/bin/python3 scripts/commit-latency.py URI SECONDS
"""
import os, random, sys, time
import nbd

uri, seconds = sys.argv[1], float(sys.argv[2])
h = nbd.NBD()
h.connect_uri(uri)
blocks = h.get_size() // 4096
buf = os.urandom(4096)
rng = random.Random(42)
lat = []
end = time.monotonic() + seconds
while time.monotonic() < end:
    off = rng.randrange(blocks) * 4096
    t0 = time.perf_counter_ns()
    h.pwrite(buf, off)
    h.flush()
    lat.append((time.perf_counter_ns() - t0) / 1000)
h.shutdown()
lat.sort()
print("%.0f %.0f %d" % (lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))], len(lat)))
