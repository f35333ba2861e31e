#!/usr/bin/python3
"""Checks a disk (or image) against stamped-load.py's acknowledgement logs: each block written
must hold the last write acknowledged for it, or a later one that failed or was never answered
(whose data may or may not have landed). Prints one JSON object: blocks checked, blocks wrong (with the first few), and
the number of acknowledged writes in the logs. Exits 1 when a block is wrong.

Usage: /usr/bin/python3 check-stamps.py DISK ACKLOG...
"""
import json, sys

disk, logs = sys.argv[1], sys.argv[2:]
last_ok = {}
failed_after = {}
answered = set()
sent = {}
acks = 0
for path in logs:
    for line in open(path):
        parts = line.split()
        if len(parts) != 3:
            continue  # a line cut short by a kill
        b, seq, result = int(parts[0]), int(parts[1]), parts[2]
        if result == "sent":
            sent[seq] = b
            continue
        answered.add(seq)
        if result == "ok":
            acks += 1
            if seq > last_ok.get(b, 0):
                last_ok[b] = seq
        else:
            failed_after.setdefault(b, set()).add(seq)
for seq, b in sent.items():
    if seq not in answered:
        failed_after.setdefault(b, set()).add(seq)
wrong = []
with open(disk, "rb") as f:
    for b, seq in sorted(last_ok.items()):
        f.seek(b * 4096)
        data = f.read(4096)
        got_block, got_seq = int.from_bytes(data[0:8], "big"), int.from_bytes(data[8:16], "big")
        uniform = data == data[0:16] * 256
        allowed = {seq} | {s for s in failed_after.get(b, ()) if s > seq}
        if not uniform or got_block != b or got_seq not in allowed:
            wrong.append({"block": b, "expected": seq, "found": got_seq if uniform and got_block == b else "other data"})
print(json.dumps({"blocks": len(last_ok), "acks": acks, "wrong": len(wrong), "first": wrong[:5]}))
sys.exit(1 if wrong else 0)
