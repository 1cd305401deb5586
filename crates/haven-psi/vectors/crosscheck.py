#!/usr/bin/env python3
"""Independent check of psi-v1.json: no Haven code, no Rust crate.

Recomputes every composition of haven-psi from the specs with other implementations:
  * expand_message_xmd (RFC 9380 §5.3.1) in Python's hashlib, checked first against RFC 9380 K.3;
  * ristretto255 (RFC 9496) from libsodium via ctypes: element derivation from 64 uniform bytes
    (crypto_core_ristretto255_from_hash) and scalar multiplication;
  * HKDF-SHA256 (RFC 5869), ChaCha20-Poly1305 (RFC 8439) and Ed25519 from `cryptography`;
  * scalar arithmetic mod the group order ℓ in Python integers (Shamir shares, Lagrange).

Then it plays both sides from the file: verifies the release and the database's root and every
slot (α·H2G(key) at a cuckoo position of each listed key), opens each voucher with α, derives the
account's polynomial from its secret and checks each opened share lies on it (or, for the
synthetic voucher, does not), interpolates f(0) from the shares and opens exactly the payloads.

    python3 crates/haven-psi/vectors/crosscheck.py
"""
import ctypes, ctypes.util, hashlib, hmac, json, os, struct

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

sodium = ctypes.CDLL(ctypes.util.find_library("sodium") or "libsodium.so.23")
assert sodium.sodium_init() >= 0

L = 2**252 + 27742317777372353535851937790883648493
here = os.path.dirname(os.path.abspath(__file__))
V = json.load(open(os.path.join(here, "psi-v1.json")))
b = bytes.fromhex


def expand_message_xmd(msg, dst, n):
    """RFC 9380 §5.3.1 with SHA-512 (b_in_bytes 64, s_in_bytes 128)."""
    ell = -(-n // 64)
    assert ell <= 255 and len(dst) <= 255
    dst_prime = dst + bytes([len(dst)])
    b0 = hashlib.sha512(b"\0" * 128 + msg + n.to_bytes(2, "big") + b"\0" + dst_prime).digest()
    bi = hashlib.sha512(b0 + b"\x01" + dst_prime).digest()
    out = bi
    for i in range(2, ell + 1):
        bi = hashlib.sha512(bytes(x ^ y for x, y in zip(b0, bi)) + bytes([i]) + dst_prime).digest()
        out += bi
    return out[:n]


quux = b"QUUX-V01-CS02-with-expander-SHA512-256"
assert expand_message_xmd(b"", quux, 32).hex() == "6b9a7312411d92f921c6f68ca0b6380730a1a4d982c507211a90964c394179ba"
assert expand_message_xmd(b"abc", quux, 32).hex() == "0da749f12fbe5483eb066a5f595055679b976e93abe9be6f0f6318bce7aca8dc"


def h2g(msg, dst=b(V["hash_to_group"]["dst"])):
    out = ctypes.create_string_buffer(32)
    assert sodium.crypto_core_ristretto255_from_hash(out, expand_message_xmd(msg, dst, 64)) == 0
    return out.raw


def smul(scalar_int, point):
    out = ctypes.create_string_buffer(32)
    rc = sodium.crypto_scalarmult_ristretto255(out, (scalar_int % L).to_bytes(32, "little"), point)
    assert rc == 0, "identity or invalid point"
    return out.raw


def smul_base(scalar_int):
    out = ctypes.create_string_buffer(32)
    assert sodium.crypto_scalarmult_ristretto255_base(out, (scalar_int % L).to_bytes(32, "little")) == 0
    return out.raw


def is_valid_point(p):
    return sodium.crypto_core_ristretto255_is_valid_point(p) == 1


def hkdf(salt, ikm, info, n=32):
    return HKDF(algorithm=hashes.SHA256(), length=n, salt=salt, info=info).derive(ikm)


def hkdf_scalar(salt, ikm, info):
    return int.from_bytes(hkdf(salt, ikm, info, 64), "little") % L


def subkey(key, label):
    return hmac.new(key, label, hashlib.sha256).digest()


def seal(key, aad, pt):
    return subkey(key, b"haven psi aead v1 commit") + ChaCha20Poly1305(subkey(key, b"haven psi aead v1 enc")).encrypt(b"\0" * 12, pt, aad)


def open_(key, aad, sealed):
    if len(sealed) < 48 or not hmac.compare_digest(sealed[:32], subkey(key, b"haven psi aead v1 commit")):
        return None
    try:
        return ChaCha20Poly1305(subkey(key, b"haven psi aead v1 enc")).decrypt(b"\0" * 12, sealed[32:], aad)
    except Exception:
        return None


# --- primitives -------------------------------------------------------------------------------
for c in V["hash_to_group"]["cases"]:
    assert h2g(b(c["msg"])).hex() == c["point"], c
for c in V["kdf"]:
    assert hkdf(b(c["salt"]), b(c["ikm"]), b(c["info"])).hex() == c["okm"], c
    assert hkdf_scalar(b(c["salt"]), b(c["ikm"]), b(c["info"])).to_bytes(32, "little").hex() == c["scalar"], c
for c in V["aead"]:
    assert seal(b(c["key"]), b(c["aad"]), b(c["pt"])).hex() == c["sealed"], c
    assert open_(b(c["key"]), b(c["aad"]), b(c["sealed"])) == b(c["pt"])
print(f"primitives: {len(V['hash_to_group']['cases'])} hash-to-group, {len(V['kdf'])} HKDF, {len(V['aead'])} AEAD cases agree")

# --- the database -------------------------------------------------------------------------------
D = V["database"]
HEADER_LEN = 16 + 8 + 2 + 1 + 4 + 4 + 16 + 16 + 32


def parse_header(h):
    db_id, release, t, kpv, rate, n_slots = h[:16], *struct.unpack(">QHBII", h[16:35])
    return dict(db_id=db_id, release=release, t=t, kpv=kpv, rate=rate, n_slots=n_slots, seeds=(h[35:51], h[51:67]), L=h[67:99])


def cuckoo(seed, key, n_slots):
    return int.from_bytes(hashlib.sha256(b"haven psi cuckoo v1\0" + seed + key).digest()[:8], "little") % n_slots


def check_db(db_bytes, server_key, listed):
    assert db_bytes[:4] == b"HPD1"
    hdr = parse_header(db_bytes[4:4 + HEADER_LEN])
    slots = db_bytes[4 + HEADER_LEN:]
    assert len(slots) == 32 * hdr["n_slots"]
    slots = [slots[i:i + 32] for i in range(0, len(slots), 32)]
    assert all(is_valid_point(s) for s in slots)
    assert server_key[:16] == hdr["db_id"]
    alpha = int.from_bytes(server_key[16:], "little")
    assert alpha < L and smul_base(alpha) == hdr["L"]
    for k in listed:
        blinded = smul(alpha, h2g(k))
        assert blinded in [slots[cuckoo(s, k, hdr["n_slots"])] for s in hdr["seeds"]], k.hex()
    return hdr, slots, alpha


db_bytes = b(D["db"])
hdr, slots, alpha = check_db(db_bytes, b(D["server_key"]), [b(k) for k in D["listed_keys"]])
assert (hdr["t"], hdr["kpv"], hdr["rate"]) == (D["threshold"], D["keys_per_voucher"], D["synthetic_rate"])
root = hashlib.sha256(b"haven psi db v1\0" + db_bytes).digest()
assert root.hex() == D["root"]
rel = b(D["release"])
assert rel[:4] == b"HPR1" and rel[4:4 + HEADER_LEN] == db_bytes[4:4 + HEADER_LEN] and rel[4 + HEADER_LEN:-64] == root
vk = Ed25519PublicKey.from_public_bytes(b(D["verifying_key"]))
vk.verify(rel[-64:], b"haven psi release v1\0" + rel[4:4 + HEADER_LEN] + root)  # raises if bad
assert Ed25519PrivateKey.from_private_bytes(b(D["signing_seed"])).public_key().public_bytes(
    serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex() == D["verifying_key"]
print(f"database: release {hdr['release']}, {hdr['n_slots']} slots, root and signature agree; every listed key is blinded at one of its cuckoo positions")

# --- the account -------------------------------------------------------------------------------
SALT = b(V["account"]["salt"])
secret = b(V["account"]["secret"])
s = hkdf_scalar(SALT, secret, b"s")
fkey = hkdf(SALT, secret, b"fkey")


def f(t, x):
    coefs = [s] + [hkdf_scalar(SALT, secret, b"coef" + t.to_bytes(2, "big") + i.to_bytes(2, "big")) for i in range(1, t)]
    return sum(c * pow(x, i, L) for i, c in enumerate(coefs)) % L


def image_x(digest):
    return hkdf_scalar(SALT, fkey, b"x" + digest) or 1


# --- vouchers: what the server opens ------------------------------------------------------------
def open_voucher(vb, hdr, alpha):
    assert vb[:4] == b"HPV1"
    db_id, vid, n = vb[4:20], vb[20:36], vb[36]
    assert db_id == hdr["db_id"] and n == 2 * hdr["kpv"]
    pairs = [vb[37 + 112 * i: 37 + 112 * (i + 1)] for i in range(n)]
    rest = vb[37 + 112 * n:]
    rlen = int.from_bytes(rest[:2], "big")
    rct = rest[2:]
    assert len(rct) == rlen
    for p in pairs:
        q, ct = p[:32], p[32:]
        S = smul(alpha, q)
        rkey = open_(hkdf(db_id, S + q, b"outer"), b"outer" + db_id + vid, ct)
        if rkey is None:
            continue
        inner = open_(rkey, b"rct" + db_id + vid, rct)
        assert inner is not None
        alen = int.from_bytes(inner[:2], "big")
        adct, x, y = inner[2:2 + alen], inner[2 + alen:34 + alen], inner[34 + alen:66 + alen]
        assert len(inner) == 66 + alen
        return dict(db_id=db_id, id=vid, x=int.from_bytes(x, "little"), y=int.from_bytes(y, "little"), adct=adct,
                    encoded=b"HPS1" + db_id + vid + x + y + alen.to_bytes(2, "big") + adct)
    return None


shares = []
for e in V["vouchers"]:
    o = open_voucher(b(e["voucher"]), hdr, alpha)
    listed = {k for k in D["listed_keys"]}
    assert (o is not None) == any(k in listed for k in e["keys"]), e["digest"]
    if o is None:
        assert e["opened"] is None
        continue
    assert o["encoded"].hex() == e["opened"]
    assert o["x"] == image_x(b(e["digest"]))
    assert o["y"] == f(hdr["t"], o["x"]), "a real share lies on the account's polynomial"
    shares.append((o, b(e["payload"])))
print(f"vouchers: {len(V['vouchers'])} checked, {len(shares)} opened, every share on the account's polynomial")

# --- reconstruction: Lagrange at 0 from t distinct shares, then the payloads --------------------
distinct = {}
for o, _ in shares:
    distinct.setdefault(o["x"], o["y"])
pts = list(distinct.items())[:hdr["t"]]
assert len(pts) == hdr["t"]
s_rec = 0
for i, (xi, yi) in enumerate(pts):
    num = den = 1
    for j, (xj, _) in enumerate(pts):
        if i != j:
            num = num * (-xj) % L
            den = den * (xi - xj) % L
    s_rec = (s_rec + yi * num * pow(den, L - 2, L)) % L
assert s_rec == s
adkey = hkdf(SALT, s_rec.to_bytes(32, "little"), b"adkey")
revealed = []
for o, payload in shares:
    pt = open_(hkdf(SALT, adkey, b"adct" + o["db_id"] + o["id"]), b"adct" + o["db_id"] + o["id"], o["adct"])
    assert pt == payload
    revealed.append({"id": o["id"].hex(), "payload": pt.hex()})
assert revealed == V["reconstruction"]["revealed"]
print(f"reconstruction: f(0) from {hdr['t']} shares is the account's secret; {len(revealed)} payloads open, as the file says")

# --- a synthetic voucher ------------------------------------------------------------------------
S_ = V["synthetic"]
shdr, _, salpha = check_db(b(S_["db"]), b(S_["server_key"]), [b(k) for k in D["listed_keys"]])
sv = S_["voucher"]
assert all(k not in set(D["listed_keys"]) for k in sv["keys"])
o = open_voucher(b(sv["voucher"]), shdr, salpha)
assert o is not None and o["encoded"].hex() == sv["opened"], "a synthetic voucher opens although nothing matches"
d = b(sv["digest"])
assert hkdf(SALT, fkey, b"syn" + d)[:4] < S_["synthetic_rate"].to_bytes(4, "big")
assert o["x"] == image_x(d) and o["y"] != f(shdr["t"], o["x"]) and o["y"] == hkdf_scalar(SALT, fkey, b"syn-y" + d)
print("synthetic: the voucher opens, its share is the image's synthetic y, off the polynomial")
