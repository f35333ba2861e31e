# An HTTP proxy in front of moto_server that holds one EC2 action for a while: the EBS
# snapshot test reads the volume while CreateSnapshot is in flight (moto answers at once). It
# writes MARKER when a held request arrives and forwards every request unchanged (the Host
# header included, so the SigV4 signature still matches).
# Usage: delay-proxy.py PORT UPSTREAM_PORT ACTION SECONDS MARKER
import http.client
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, upstream, action, seconds, marker = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), sys.argv[5]


class Handler(BaseHTTPRequestHandler):
    def forward(self, method):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if ("Action=" + action).encode() in body:
            open(marker, "a").write("held\n")
            time.sleep(seconds)
        conn = http.client.HTTPConnection("127.0.0.1", upstream, timeout=60)
        conn.request(method, self.path, body=body, headers={k: v for k, v in self.headers.items()})
        r = conn.getresponse()
        data = r.read()
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        self.forward("POST")

    def do_GET(self):
        self.forward("GET")

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
