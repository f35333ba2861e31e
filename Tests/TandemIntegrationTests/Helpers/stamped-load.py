#!/usr/bin/python3
"""A write load whose every acknowledged write can be checked afterwards.

Writes 4 KiB blocks at random block numbers below BLOCKS on an NBD export, DEPTH at a time,
never two in flight to the same block, until the file STOP exists (or SECONDS have passed).
Each block's data is its block number and the write's sequence number (two 8-byte big-endian
values) repeated. Each write is appended to ACKLOG as "block seq sent" when issued and as
"block seq ok|err" once the server answered it (a write sent and never answered, as when the
server is killed, may or may not have landed). Sequence numbers start after SEQ_BASE (default
0), so several runs can share one log. Exits 0 after every write in flight was answered; prints
one JSON object with the counts.

Usage: /usr/bin/python3 stamped-load.py URI BLOCKS DEPTH SECONDS STOP ACKLOG [SEQ_BASE]
Check the disks with check-stamps.py.
"""
import json, os, random, sys, time
import nbd

uri, blocks, depth, seconds, stop, acklog = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5], sys.argv[6]
h = nbd.NBD()
h.connect_uri(uri)
rng = random.Random(os.getpid())
inflight = set()
state = {"ok": 0, "err": 0, "seq": int(sys.argv[7]) if len(sys.argv) > 7 else 0}
base = state["seq"]
log = open(acklog, "a", buffering=1)


def completion(block, seq):
    def cb(error):
        inflight.discard(block)
        ok = error.value == 0
        state["ok" if ok else "err"] += 1
        log.write("%d %d %s\n" % (block, seq, "ok" if ok else "err"))
        return 1
    return cb


deadline = time.monotonic() + seconds
while time.monotonic() < deadline and not os.path.exists(stop):
    while len(inflight) < depth:
        b = rng.randrange(blocks)
        if b in inflight:
            continue
        state["seq"] += 1
        seq = state["seq"]
        data = bytearray((b.to_bytes(8, "big") + seq.to_bytes(8, "big")) * 256)
        inflight.add(b)
        log.write("%d %d sent\n" % (b, seq))
        h.aio_pwrite(nbd.Buffer.from_bytearray(data), b * 4096, completion=completion(b, seq))
    h.poll(100)
while inflight:
    h.poll(1000)
h.flush()
log.close()
print(json.dumps({"issued": state["seq"] - base, "ok": state["ok"], "err": state["err"]}), flush=True)
