#!/usr/bin/python3
"""Queues COUNT writes of SIZE bytes on one NBD connection at once (sequential offsets, wrapping
at the export's end, data cycling through 16 random buffers), prints after FIRST seconds how
many completed, then waits for all and prints the final counts; exits 0 when every write
succeeded.

Usage: /usr/bin/python3 pipeline-writes.py URI COUNT SIZE FIRST
"""
import json, os, sys, time
import nbd

uri, count, size, first = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
h = nbd.NBD()
h.connect_uri(uri)
end = h.get_size() // size * size
buffers = [nbd.Buffer.from_bytearray(bytearray(os.urandom(size))) for _ in range(16)]
state = {"done": 0, "failed": 0}

def cb(error):
    state["failed" if error.value else "done"] += 1
    return 1

for i in range(count):
    h.aio_pwrite(buffers[i % 16], (i * size) % end, completion=cb)
t0 = time.monotonic()
while time.monotonic() < t0 + first and state["done"] + state["failed"] < count:
    h.poll(100)
print(json.dumps(state), flush=True)
while state["done"] + state["failed"] < count:
    h.poll(1000)
h.flush()
print(json.dumps(state), flush=True)
h.shutdown()
sys.exit(0 if state["failed"] == 0 else 1)
