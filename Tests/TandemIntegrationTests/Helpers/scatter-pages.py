#!/usr/bin/python3
"""Writes 4 KiB pages of a file (non-zero ones, drawn at random from the whole file) to distinct
random 4 KiB blocks of an NBD export: FRACTION of the export's blocks, chosen by SEED, many writes in
flight on one connection. Prints {"blocks": N, "bytes": N} and exits 0 when all succeeded.

Usage: /usr/bin/python3 scatter-pages.py URI PAGES FRACTION SEED
"""
import json, random, sys
import nbd

uri, path, fraction, seed = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
data = open(path, "rb").read()
pages = [data[i:i + 4096] for i in range(0, len(data) - 4095, 4096)]
pages = [p for p in pages if p.count(0) != 4096]
h = nbd.NBD()
h.connect_uri(uri)
blocks = h.get_size() // 4096
rng = random.Random(seed)
chosen = rng.sample(range(blocks), int(blocks * fraction))
state = {"done": 0, "failed": 0}

def cb(error):
    state["failed" if error.value else "done"] += 1
    return 1

for i, b in enumerate(chosen):
    while h.aio_in_flight() >= 64:
        h.poll(1000)
    h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(pages[rng.randrange(len(pages))])), b * 4096, completion=cb)
while h.aio_in_flight() > 0:
    h.poll(1000)
h.flush()
print(json.dumps({"blocks": state["done"], "bytes": state["done"] * 4096, "failed": state["failed"]}))
sys.exit(0 if state["failed"] == 0 else 1)
