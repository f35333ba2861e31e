#!/usr/bin/python3
"""Makes the certificates the TLS tests use, in DIR:

  ca.crt                      the CA both nodes trust
  other-ca.crt                a CA neither node trusts
  NODE.crt NODE.key           NODE's certificate from ca (subjectAltName DNS:NODE), for each NODE
  NODE-other.crt/.key         the same name from other-ca
  NODE-expired.crt/.key       from ca, expired yesterday
  NODE-self.crt/.key          self-signed (for pinning)
  NODE-self.sha256            its SHA-256 fingerprint, as tls-peer-fingerprint takes it

Keys are written mode 600. Usage: make-certs.py DIR NODE...
"""
import datetime
import os
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

out = sys.argv[1]
nodes = sys.argv[2:]
now = datetime.datetime.now(datetime.timezone.utc)
day = datetime.timedelta(days=1)


def key():
    return ec.generate_private_key(ec.SECP256R1())


def write_key(path, k):
    data = k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def write_cert(path, c):
    with open(path, "wb") as f:
        f.write(c.public_bytes(serialization.Encoding.PEM))


def cert(subject_cn, k, issuer_cn, issuer_key, ca=False, not_before=None, not_after=None, san=None):
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]))
         .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_cn)]))
         .public_key(k.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(not_before or now - day)
         .not_valid_after(not_after or now + 30 * day)
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if san:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


cas = {}
for name in ["ca", "other-ca"]:
    k = key()
    c = cert(f"Tandem test {name}", k, f"Tandem test {name}", k, ca=True)
    write_cert(f"{out}/{name}.crt", c)
    cas[name] = (c, k)

for n in nodes:
    for suffix, ca, nb, na in [("", "ca", None, None), ("-other", "other-ca", None, None),
                               ("-expired", "ca", now - 30 * day, now - day)]:
        k = key()
        issuer = cas[ca]
        c = cert(n, k, f"Tandem test {ca}", issuer[1], not_before=nb, not_after=na, san=n)
        write_cert(f"{out}/{n}{suffix}.crt", c)
        write_key(f"{out}/{n}{suffix}.key", k)
    k = key()
    c = cert(n, k, n, k, san=n)
    write_cert(f"{out}/{n}-self.crt", c)
    write_key(f"{out}/{n}-self.key", k)
    with open(f"{out}/{n}-self.sha256", "w") as f:
        f.write("sha256:" + c.fingerprint(hashes.SHA256()).hex() + "\n")
