# Prepares a moto_server (auth still off) the way an AWS account would be for Tandem's EBS
# target, and prints what it made as one JSON object:
# - an IAM user with an access key (the signed calls use it once reset-auth turns checking on),
#   allowed exactly the project's documented least-privilege policy (docs/iam-policy-ebs-node.json)
#   and sts:AssumeRole; moto enforces IAM policies once checking is on,
# - a role and temporary credentials from sts:AssumeRole (what an instance role serves via IMDS),
# - an instance in us-east-1a, and volumes: VOLUMES is a comma list of NAME:SIZE_GIB[:attach|:other]
#   ("attach": attached to the instance as the next /dev/sdX; "other": attached to a second instance).
# Usage: moto-setup.py ENDPOINT VOLUMES
import json
import os
import sys

import boto3

endpoint, spec = sys.argv[1], sys.argv[2]
kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="setup", aws_secret_access_key="setup")
iam = boto3.client("iam", **kw)
here = os.path.dirname(os.path.abspath(__file__))
node_policy = open(os.path.join(here, "..", "..", "..", "docs", "iam-policy-ebs-node.json")).read()
policy = iam.create_policy(PolicyName="tandem-ebs-node", PolicyDocument=node_policy)["Policy"]["Arn"]
assume = iam.create_policy(PolicyName="tandem-assume", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}]}))["Policy"]["Arn"]
iam.create_user(UserName="tandem")
iam.attach_user_policy(UserName="tandem", PolicyArn=policy)
iam.attach_user_policy(UserName="tandem", PolicyArn=assume)
key = iam.create_access_key(UserName="tandem")["AccessKey"]
trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
role = iam.create_role(RoleName="tandem-node", AssumeRolePolicyDocument=json.dumps(trust))["Role"]
iam.attach_role_policy(RoleName="tandem-node", PolicyArn=policy)
sts = boto3.client("sts", **dict(kw, aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"]))
assumed = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="tandem")["Credentials"]

ec2 = boto3.client("ec2", **kw)
image = ec2.describe_images()["Images"][0]["ImageId"]
place = {"AvailabilityZone": "us-east-1a"}
inst = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, Placement=place)["Instances"][0]["InstanceId"]
other = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, Placement=place)["Instances"][0]["InstanceId"]
root = ec2.describe_instances(InstanceIds=[inst])["Reservations"][0]["Instances"][0]["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
volumes = {}
letter = ord("f")
for item in filter(None, spec.split(",")):
    parts = item.split(":")
    name, size = parts[0], int(parts[1])
    vol = ec2.create_volume(AvailabilityZone="us-east-1a", Size=size, VolumeType="gp3")["VolumeId"]
    if len(parts) > 2:
        target = inst if parts[2] == "attach" else other
        ec2.attach_volume(VolumeId=vol, InstanceId=target, Device="/dev/sd" + chr(letter))
        letter += 1
    volumes[name] = vol
print(json.dumps({
    "accessKey": key["AccessKeyId"], "secretKey": key["SecretAccessKey"],
    "role": {"AccessKeyId": assumed["AccessKeyId"], "SecretAccessKey": assumed["SecretAccessKey"],
             "Token": assumed["SessionToken"], "Expiration": assumed["Expiration"].strftime("%Y-%m-%dT%H:%M:%SZ")},
    "instance": inst, "otherInstance": other, "rootVolume": root, "volumes": volumes,
}))
