# Writes LENGTH bytes at OFFSET of an NBD export with libnbd's client-side checks off, so the
# server alone decides (a write past the export's end must be refused by it).
# Usage: nbd-write-at.py URI OFFSET LENGTH; exit 0 if written, 1 if the server refused.
import sys
import nbd

h = nbd.NBD()
h.set_strict_mode(0)
h.connect_uri(sys.argv[1])
try:
    h.pwrite(b"\xee" * int(sys.argv[3]), int(sys.argv[2]))
except nbd.Error as e:
    print("refused:", e)
    sys.exit(1)
print("written")
