#!/usr/bin/python3
"""Sends 4 KiB writes to an NBD export all at once (pipelined, in the order given), waits up to
WAIT seconds for them, and prints one JSON object: the offsets whose writes completed without
error and those that failed. Writes still in flight are left in flight (the process exits
without waiting), as an application killed with the server would leave them.

Usage: /usr/bin/python3 aio-writes.py URI WAIT_SECONDS OFFSET...
Data of the write at offset o: the 8-byte big-endian value o + 1, repeated.
"""
import json, os, sys, time
import nbd

uri, wait = sys.argv[1], float(sys.argv[2])
offsets = [int(o) for o in sys.argv[3:]]
h = nbd.NBD()
h.connect_uri(uri)
done, failed = [], []

def callback(offset):
    def cb(error):
        (failed if error.value else done).append(offset)
        return 1
    return cb

for o in offsets:
    h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray((o + 1).to_bytes(8, "big") * 512)), o, completion=callback(o))
deadline = time.monotonic() + wait
while time.monotonic() < deadline and len(done) + len(failed) < len(offsets):
    h.poll(100)
print(json.dumps({"done": sorted(done), "failed": sorted(failed)}), flush=True)
os._exit(0)
