#!/usr/bin/env python3
"""Independent check of frank.json with Python's hmac/hashlib (no Haven code involved).

    python3 crates/haven-frank/vectors/crosscheck.py
"""
import hashlib, hmac, json, os, struct

here = os.path.dirname(os.path.abspath(__file__))
vectors = json.load(open(os.path.join(here, "frank.json")))
lp = lambda b: struct.pack(">I", len(b)) + b
for v in vectors:
    c = hmac.new(bytes.fromhex(v["salt"]), b"haven/frank/v1/commit" + bytes.fromhex(v["content"]), hashlib.sha256).digest()
    assert c.hex() == v["commitment"], v
    assert (b"HVF1" + c).hex() == v["aad"], v
    msg = (b"haven/frank/v1/server" + lp(c) + lp(v["sender_device"].encode()) + lp(bytes.fromhex(v["group_id"]))
           + struct.pack(">Q", v["received_at_ms"]))
    assert hmac.new(bytes.fromhex(v["server_key"]), msg, hashlib.sha256).hexdigest() == v["server_tag"], v
print(f"{len(vectors)} franking vectors agree with Python's hmac")

vectors = json.load(open(os.path.join(here, "frank-v2.json")))
for v in vectors:
    c = bytes.fromhex(v["commitment"])
    kid = struct.pack(">I", v["key_id"])
    msg = (b"haven/frank/v2/server" + kid + lp(c) + lp(v["sender_device"].encode()) + lp(bytes.fromhex(v["group_id"]))
           + struct.pack(">Q", v["received_at_ms"]))
    mac = hmac.new(bytes.fromhex(v["server_key"]), msg, hashlib.sha256).digest()
    assert (b"\x02" + kid + mac).hex() == v["server_tag"], v
print(f"{len(vectors)} v2 franking vectors agree with Python's hmac")
