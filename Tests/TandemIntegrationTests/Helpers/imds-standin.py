# A small IMDSv2 for tests (moto's always names instance i-fake and has no block-device
# mapping): a token from PUT /latest/api/token is required on every GET; it serves the
# instance id, region and zone of an instance made in moto, role credentials made in moto's
# IAM, and a block-device mapping. It counts the requests it answers (GET /count).
# Usage: imds-standin.py PORT CONFIG.json   (CONFIG: instance, region, zone, role{...}, mapping{})
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, config = int(sys.argv[1]), json.load(open(sys.argv[2]))
TOKEN = "standin-token-7f3a"
served = {"count": 0}


class Handler(BaseHTTPRequestHandler):
    def answer(self, status, text):
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self):
        if self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            self.answer(200, TOKEN)
        else:
            self.answer(400, "bad token request")

    def do_GET(self):
        if self.path == "/count":
            return self.answer(200, str(served["count"]))
        if self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
            return self.answer(401, "Unauthorized")
        served["count"] += 1
        md = "/latest/meta-data/"
        paths = {
            md + "instance-id": config["instance"],
            md + "placement/region": config["region"],
            md + "placement/availability-zone": config["zone"],
            md + "iam/security-credentials/": "tandem-node",
            md + "iam/security-credentials/tandem-node": json.dumps(dict(config["role"], Code="Success", Type="AWS-HMAC")),
            md + "block-device-mapping/": "\n".join(config.get("mapping", {}).keys()),
        }
        for name, dev in config.get("mapping", {}).items():
            paths[md + "block-device-mapping/" + name] = dev
        if self.path in paths:
            self.answer(200, paths[self.path])
        else:
            self.answer(404, "Not Found")

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
