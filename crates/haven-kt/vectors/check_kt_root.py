#!/usr/bin/env python3
"""Independent check of vectors/kt_root.txt (haven-kt signed epoch roots), written from the
module documentation of src/directory.rs: message = "haven kt root v1\\0" || epoch (u64 BE) ||
root; signature = Ed25519 (RFC 8032) by the key from root_key_seed; signed_root = epoch (8, BE)
|| root (32) || signature (64). The roots themselves are akd's (not recomputed here)."""
import struct, sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

CONTEXT = b"haven kt root v1\x00"
fields, roots = {}, []
for line in open(__file__.replace("check_kt_root.py", "kt_root.txt")):
    line = line.strip()
    if not line or line.startswith("#"):
        continue
    k, v = (x.strip() for x in line.split("=", 1))
    if k == "epoch":
        roots.append({"epoch": int(v)})
    elif roots and k in ("root", "message", "signed_root"):
        roots[-1][k] = bytes.fromhex(v)
    else:
        fields[k] = bytes.fromhex(v)

sk = Ed25519PrivateKey.from_private_bytes(fields["root_key_seed"])
pk = sk.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
assert pk == fields["root_key"], "root key"
assert fields["context"] == CONTEXT, "context"
for r in roots:
    msg = CONTEXT + struct.pack(">Q", r["epoch"]) + r["root"]
    assert msg == r["message"], f"message of epoch {r['epoch']}"
    sig = sk.sign(msg)
    assert struct.pack(">Q", r["epoch"]) + r["root"] + sig == r["signed_root"], f"epoch {r['epoch']}"
print(f"ok: {len(roots)} signed roots")
