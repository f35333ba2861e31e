# An HTTP proxy in front of moto_server that makes it behave as EC2 does where moto does not:
# - a volume made by CreateVolume stays "creating" for the next CREATE_POLLS DescribeVolumes
#   answers that include it (moto makes it available at once),
# - an attachment made by AttachVolume stays "attaching" for ATTACH_POLLS answers,
# - the archive-tier calls moto lacks: ModifySnapshotTier archives a snapshot (DescribeSnapshots
#   then shows storageTier archive), RestoreSnapshotTier starts a temporary restore that
#   completes after RESTORE_POLLS DescribeSnapshotTierStatus calls, CreateVolume from a snapshot
#   still archived fails with IncorrectState, as EC2's does.
# Every other request is forwarded unchanged (the Host header included, so moto still checks
# the SigV4 signature); the archive-tier calls are answered here, unsigned-checked.
# Usage: ec2-standin-proxy.py PORT UPSTREAM_PORT CREATE_POLLS ATTACH_POLLS RESTORE_POLLS LOG
import http.client
import sys
import threading
import urllib.parse
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, upstream = int(sys.argv[1]), int(sys.argv[2])
create_polls, attach_polls, restore_polls = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
log_path = sys.argv[6]
NS = "http://ec2.amazonaws.com/doc/2016-11-15"  # as moto writes it (no trailing slash)
lock = threading.Lock()
creating = {}    # volume id -> answers left showing "creating"
attaching = {}   # volume id -> answers left showing "attaching"
archived = set()  # snapshot ids in the archive tier
restoring = {}   # snapshot id -> tier-status calls left before the restore completes
restored = set()


def log(line):
    with lock, open(log_path, "a") as f:
        f.write(line + "\n")


def q(tag):
    return "{%s}%s" % (NS, tag)


def namespace_of(root):
    return root.tag[1:].split("}")[0] if root.tag.startswith("{") else ""


def tier_of(snap):
    return "archive" if snap in archived and snap not in restored else "standard"


class Handler(BaseHTTPRequestHandler):
    def reply(self, status, body, headers=()):
        self.send_response(status)
        for k, v in headers:
            if k.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def xml(self, action, inner):
        body = '<?xml version="1.0" encoding="UTF-8"?><%sResponse xmlns="%s"><requestId>standin</requestId>%s</%sResponse>' % (action, NS, inner, action)
        self.reply(200, body.encode(), [("Content-Type", "text/xml")])

    def error(self, code, message):
        body = "<Response><Errors><Error><Code>%s</Code><Message>%s</Message></Error></Errors><RequestID>standin</RequestID></Response>" % (code, message)
        self.reply(400, body.encode(), [("Content-Type", "text/xml")])

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode()).items()}
        action = form.get("Action", "")
        snap = form.get("SnapshotId", form.get("Filter.1.Value.1", ""))
        log(action + " " + " ".join("%s=%s" % (k, v) for k, v in sorted(form.items()) if k not in ("Action", "Version")))
        with lock:
            if action == "ModifySnapshotTier":
                archived.add(snap)
                restored.discard(snap)
                return self.xml(action, "<snapshotId>%s</snapshotId><tieringStartTime>2026-12-02T00:00:00.000Z</tieringStartTime>" % snap)
            if action == "RestoreSnapshotTier":
                if snap not in archived:
                    return self.error("IncorrectState", "The snapshot %s is not archived" % snap)
                restoring[snap] = restore_polls
                return self.xml(action, "<snapshotId>%s</snapshotId><restoreStartTime>2026-12-02T00:00:00.000Z</restoreStartTime><restoreDuration>%s</restoreDuration><isPermanentRestore>false</isPermanentRestore>"
                                % (snap, form.get("TemporaryRestoreDays", "1")))
            if action == "DescribeSnapshotTierStatus":
                op = ""
                if snap in restoring:
                    if restoring[snap] > 0:
                        restoring[snap] -= 1
                        op = "temporary-restore-in-progress"
                    else:
                        del restoring[snap]
                        restored.add(snap)
                if snap in restored:
                    op = "temporary-restore-completed"
                elif not op and snap in archived:
                    op = "archival-completed"
                item = "<item><snapshotId>%s</snapshotId><status>completed</status><storageTier>%s</storageTier>%s</item>" % (
                    snap, tier_of(snap), "<lastTieringOperationStatus>%s</lastTieringOperationStatus>" % op if op else "")
                return self.xml(action, "<snapshotTierStatusSet>%s</snapshotTierStatusSet>" % item)
            if action == "CreateVolume" and form.get("SnapshotId") and tier_of(form["SnapshotId"]) == "archive":
                return self.error("IncorrectState", "Snapshot %s is in the archive tier" % form["SnapshotId"])
        conn = http.client.HTTPConnection("127.0.0.1", upstream, timeout=60)
        conn.request("POST", self.path, body=body, headers={k: v for k, v in self.headers.items()})
        r = conn.getresponse()
        data = r.read()
        if r.status == 200:
            data = self.rewrite(action, form, data)
        self.reply(r.status, data, r.getheaders())

    def rewrite(self, action, form, data):
        global NS
        root = ET.fromstring(data)
        NS = namespace_of(root)
        ET.register_namespace("", NS)
        with lock:
            if action == "CreateVolume":
                vid = root.findtext(q("volumeId"))
                creating[vid] = create_polls
                st = root.find(q("status"))
                if st is not None:
                    st.text = "creating"
            elif action == "AttachVolume":
                attaching[form.get("VolumeId")] = attach_polls
                return data
            elif action == "DescribeVolumes":
                for item in list(root.find(q("volumeSet")) or []):
                    vid = item.findtext(q("volumeId"))
                    st = item.find(q("status"))
                    if vid is None or st is None:
                        continue
                    if creating.get(vid, 0) > 0:
                        creating[vid] -= 1
                        st.text = "creating"
                    if attaching.get(vid, 0) > 0:
                        attaching[vid] -= 1
                        for a in item.iter(q("item")):
                            a_st = a.find(q("status"))
                            if a_st is not None:
                                a_st.text = "attaching"
                        st.text = "in-use"
            elif action == "DescribeSnapshots":
                for item in list(root.find(q("snapshotSet")) or []):
                    sid = item.findtext(q("snapshotId"))
                    if sid is None:
                        continue
                    tier = item.find(q("storageTier"))
                    if tier is None:
                        tier = ET.SubElement(item, q("storageTier"))
                    tier.text = tier_of(sid)
            else:
                return data
        return ET.tostring(root, encoding="utf-8", xml_declaration=True)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
