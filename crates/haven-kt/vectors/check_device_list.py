#!/usr/bin/env python3
"""An independent implementation of the device-list format and link proof (src/device_list.rs),
in Python with the `cryptography` package's Ed25519 and the standard library's HMAC: it rebuilds
vectors/device_list.txt from its description and checks every line. Run from anywhere:
    python3 crates/haven-kt/vectors/check_device_list.py
"""
import hashlib, hmac, os, struct, sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization

def key(seed):
    return Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)

def pub(seed):
    return key(seed).public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

def dev_id(seed):
    return (bytes([seed]) * 16).hex()

def s(x):
    b = x.encode() if isinstance(x, str) else x
    return bytes([len(b)]) + b

def list_bytes(user, version, prev, seeds):
    devs = sorted((dev_id(d), pub(d)) for d in seeds)
    out = b"HDL1" + s(user) + struct.pack(">Q", version) + prev + struct.pack(">H", len(devs))
    for i, k in devs:
        out += s(i) + k
    return out

def signed(user, version, prev, seeds, signer):
    l = list_bytes(user, version, prev, seeds)
    sig = key(signer).sign(b"haven device list v1\x00" + l)
    return l + s(dev_id(signer)) + sig

v1 = signed("alice", 1, bytes(32), [1], 1)
v2 = signed("alice", 2, hashlib.sha256(v1).digest(), [1, 2], 1)
def lp(b):
    return struct.pack(">I", len(b)) + b
proof = hmac.new(b"ABCDEFGHJKMNPQRSTVWX",
                 b"haven link proof v1\x00" + lp(b"AAAA-BBBB-CCCC") + lp(pub(5)) + lp(pub(6)),
                 hashlib.sha256).digest()
here = os.path.dirname(os.path.abspath(__file__))
lines = [l for l in open(os.path.join(here, "device_list.txt")).read().splitlines()
         if l and not l.startswith("#")]
want = [v1.hex(), v2.hex(), proof.hex()]
ok = lines == want
for i, (a, b) in enumerate(zip(lines, want), 1):
    print(f"vector {i}: {'ok' if a == b else 'MISMATCH'}")
sys.exit(0 if ok else 1)
