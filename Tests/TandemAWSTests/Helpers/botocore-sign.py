# The oracle for SigV4Tests: signs each request of a JSON-lines file with botocore's own
# SigV4Auth (at the request's given time) and prints, a JSON line each, botocore's canonical
# request, string to sign, Authorization header, and the timestamp Python makes of the epoch.
# Usage: botocore-sign.py REQUESTS.jsonl
import datetime
import json
import sys

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

for line in open(sys.argv[1], encoding="utf-8"):
    r = json.loads(line)
    creds = Credentials(r["key"], r["secret"], r.get("token"))
    req = AWSRequest(method=r["method"], url="http://" + r["host"] + r["path"],
                     data=bytes.fromhex(r["body"]), params=[tuple(p) for p in r["query"]])
    for name, value in r["headers"]:
        req.headers[name] = value  # repeated names append, as on the wire
    stamp = datetime.datetime.fromtimestamp(r["epoch"], datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    auth = SigV4Auth(creds, r["service"], r["region"])
    req.context["timestamp"] = r["amzDate"]
    auth._modify_request_before_signing(req)
    cr = auth.canonical_request(req)
    sts = auth.string_to_sign(req, cr)
    auth._inject_signature_to_request(req, auth.signature(sts, req))
    print(json.dumps({"canonicalRequest": cr, "stringToSign": sts, "authorization": req.headers["Authorization"],
                      "stamp": stamp}))
