//! The three compositions every layer uses: hashing to the group, key derivation, and a
//! key-committing AEAD. Each names its spec; `vectors/crosscheck.py` recomputes all three with
//! independent code (Python's hashlib and libsodium).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::scalar::Scalar;
use elliptic_curve::hash2curve::{ExpandMsg, ExpandMsgXmd, Expander};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha512};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::PsiError;

/// The domain-separation tag of [`hash_to_group`] (RFC 9380 §3.1: unique per application).
pub const H2G_DST: &[u8] = b"haven-TPSI-v1-H2G";

/// Salt of every account-level derivation (see the crate docs: not the database id, so that
/// shares from different database releases combine).
pub const ACCOUNT_SALT: &[u8] = b"haven psi account v1";

/// Bytes the committing AEAD adds: a 32-byte key commitment and the 16-byte Poly1305 tag.
pub const AEAD_OVERHEAD: usize = 32 + 16;

/// `hash_to_ristretto255` (RFC 9380 Appendix B): `expand_message_xmd` (RFC 9380 §5.3.1) with
/// SHA-512 to 64 bytes under [`H2G_DST`], then ristretto255's element derivation
/// (`from_uniform_bytes`, RFC 9496 §4.3.4).
pub fn hash_to_group(msg: &[u8]) -> Result<RistrettoPoint, PsiError> {
    let mut uniform = [0u8; 64];
    expand_message_xmd_sha512(msg, H2G_DST, &mut uniform)?;
    Ok(RistrettoPoint::from_uniform_bytes(&uniform))
}

/// `expand_message_xmd` with SHA-512 (RFC 9380 §5.3.1) into `out`.
fn expand_message_xmd_sha512(msg: &[u8], dst: &[u8], out: &mut [u8]) -> Result<(), PsiError> {
    // Fails only for a zero output length, an output over 255 blocks, or an empty DST: callers
    // pass constants for which none can happen, but the error is still carried, not unwrapped.
    let dsts = [dst];
    let mut expander = ExpandMsgXmd::<Sha512>::expand_message(&[msg], &dsts, out.len())
        .map_err(|_| PsiError::Internal("expand_message_xmd refused its parameters"))?;
    expander.fill_bytes(out);
    Ok(())
}

/// HKDF-SHA256 (RFC 5869), extract with `salt` then expand `info` to 32 bytes. `info` is the
/// concatenation of its parts; every caller's parts are a label followed by fixed-length
/// values, so the concatenation is unambiguous.
pub fn kdf(salt: &[u8], ikm: &[u8], info: &[&[u8]]) -> Zeroizing<[u8; 32]> {
    let hk = Hkdf::<Sha256>::new(Some(salt), ikm);
    let info: Vec<u8> = info.concat();
    let mut out = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA256's 255 × 32 limit.
    if hk.expand(&info, out.as_mut_slice()).is_err() {
        out.fill(0);
    }
    out
}

/// HKDF-SHA256 to 64 bytes, reduced mod ℓ: a uniformly distributed scalar.
pub fn kdf_scalar(salt: &[u8], ikm: &[u8], info: &[&[u8]]) -> Scalar {
    let hk = Hkdf::<Sha256>::new(Some(salt), ikm);
    let info: Vec<u8> = info.concat();
    let mut wide = Zeroizing::new([0u8; 64]);
    if hk.expand(&info, wide.as_mut_slice()).is_err() {
        wide.fill(0);
    }
    Scalar::from_bytes_mod_order_wide(&wide)
}

fn subkey(key: &[u8; 32], label: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    // HMAC accepts keys of any length.
    if let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(key) {
        mac.update(label);
        out.copy_from_slice(&mac.finalize().into_bytes());
    }
    out
}

const COMMIT_LABEL: &[u8] = b"haven psi aead v1 commit";
const ENC_LABEL: &[u8] = b"haven psi aead v1 enc";

/// Key-committing AEAD: `HMAC-SHA256(k, COMMIT) ‖ ChaCha20-Poly1305(HMAC-SHA256(k, ENC), nonce 0,
/// aad, pt)`.
///
/// The commitment is what makes "it decrypts" a sound match signal: plain ChaCha20-Poly1305 is
/// not key-committing, so one ciphertext can be made to open under two chosen keys
/// (Albertini, Duong, Gueron, Kölbl, Luykx, Schmieg, "How to Abuse and Fix Authenticated
/// Encryption Without Key Commitment", USENIX Security 2022; the fix used here is their
/// key-derivation commitment: the encryption key and the commitment are independent PRF outputs
/// of `k`). Every key this crate seals under is used for exactly one message (fresh random
/// keys, per-pair keys from a fresh Diffie–Hellman value, per-voucher keys derived with the
/// voucher id), so the fixed nonce is never reused under one key.
pub fn seal(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, PsiError> {
    let commit = subkey(key, COMMIT_LABEL);
    let enc = subkey(key, ENC_LABEL);
    let cipher = ChaCha20Poly1305::new(Key::from_slice(enc.as_slice()));
    let ct = cipher
        .encrypt(
            Nonce::from_slice(&[0u8; 12]),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| PsiError::Internal("ChaCha20-Poly1305 refused to encrypt"))?;
    let mut out = Vec::with_capacity(32 + ct.len());
    out.extend_from_slice(commit.as_slice());
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Opens [`seal`]'s output: the commitment is checked first (constant time), then the tag.
/// `None` for any failure — which one is not said (no oracle).
pub fn open(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let (commit, ct) = sealed.split_at_checked(32)?;
    if ct.len() < 16 {
        return None;
    }
    let expected = subkey(key, COMMIT_LABEL);
    if !bool::from(expected.as_slice().ct_eq(commit)) {
        return None;
    }
    let enc = subkey(key, ENC_LABEL);
    let cipher = ChaCha20Poly1305::new(Key::from_slice(enc.as_slice()));
    cipher
        .decrypt(Nonce::from_slice(&[0u8; 12]), Payload { msg: ct, aad })
        .ok()
        .map(Zeroizing::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_every_flip_fails() {
        let key = [7u8; 32];
        let sealed = seal(&key, b"aad", b"hello").unwrap();
        assert_eq!(sealed.len(), 5 + AEAD_OVERHEAD);
        assert_eq!(open(&key, b"aad", &sealed).unwrap().as_slice(), b"hello");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(open(&key, b"aad", &bad).is_none(), "flip at {i} opened");
        }
        assert!(open(&key, b"aaD", &sealed).is_none());
        assert!(open(&[8u8; 32], b"aad", &sealed).is_none());
        assert!(open(&key, b"aad", &sealed[..47]).is_none());
        assert!(open(&key, b"aad", &[]).is_none());
    }

    /// RFC 9380 Appendix K.3 (expand_message_xmd with SHA-512), the first two cases.
    #[test]
    fn expand_message_xmd_matches_rfc9380_k3() {
        let dst = b"QUUX-V01-CS02-with-expander-SHA512-256";
        let mut out = [0u8; 32];
        expand_message_xmd_sha512(b"", dst, &mut out).unwrap();
        assert_eq!(
            hex::encode(out),
            "6b9a7312411d92f921c6f68ca0b6380730a1a4d982c507211a90964c394179ba"
        );
        expand_message_xmd_sha512(b"abc", dst, &mut out).unwrap();
        assert_eq!(
            hex::encode(out),
            "0da749f12fbe5483eb066a5f595055679b976e93abe9be6f0f6318bce7aca8dc"
        );
    }

    #[test]
    fn hash_to_group_is_deterministic_and_separates_inputs() {
        let a = hash_to_group(b"a").unwrap();
        assert_eq!(a, hash_to_group(b"a").unwrap());
        assert_ne!(a, hash_to_group(b"b").unwrap());
        assert_ne!(a, hash_to_group(b"").unwrap());
    }

    #[test]
    fn kdf_separates_salt_ikm_and_info() {
        let base = kdf(b"s", b"k", &[b"i"]);
        assert_ne!(*base, *kdf(b"t", b"k", &[b"i"]));
        assert_ne!(*base, *kdf(b"s", b"l", &[b"i"]));
        assert_ne!(*base, *kdf(b"s", b"k", &[b"j"]));
        assert_eq!(*base, *kdf(b"s", b"k", &[b"", b"i"]));
    }
}
