# Plays the kernel and udev of an EC2 instance for attach-snapshot's tests: once EC2 (moto)
# says a volume made from SNAPSHOT is attached to INSTANCE, a loop device on IMAGE appears with
# the volume's by-id link in BYID_DIR, as /dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol...
# would. Prints "DEVICE VOLUME" and exits 0, or exits 1 after TIMEOUT seconds. A process of its
# own: the test's async tasks may wait minutes for a thread under the parallel suite.
# Usage: attach-when-ec2-does.py ENDPOINT ACCESS_KEY SECRET_KEY SNAPSHOT INSTANCE IMAGE BYID_DIR TIMEOUT
import os
import subprocess
import sys
import time

import boto3

endpoint, access, secret, snapshot, instance, image, byid, timeout = sys.argv[1:9]
ec2 = boto3.client("ec2", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=access, aws_secret_access_key=secret)
deadline = time.monotonic() + float(timeout)
while time.monotonic() < deadline:
    vols = ec2.describe_volumes(Filters=[{"Name": "snapshot-id", "Values": [snapshot]}])["Volumes"]
    for v in vols:
        if any(a["InstanceId"] == instance and a["State"] == "attached" for a in v.get("Attachments", [])):
            dev = subprocess.run(["/usr/sbin/losetup", "-f", "--show", image], capture_output=True, text=True, check=True).stdout.strip()
            os.symlink(dev, os.path.join(byid, "nvme-Amazon_Elastic_Block_Store_" + v["VolumeId"].replace("-", "")))
            print(dev, v["VolumeId"], flush=True)
            sys.exit(0)
    time.sleep(0.2)
sys.exit(1)
