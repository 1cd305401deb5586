//! Attachment encryption: ChaCha20-Poly1305 (RFC 8439) with a fresh random key per file.
//!
//! An attachment is sealed on the sender's device, uploaded as an opaque blob (the server
//! addresses it by the SHA-256 of the ciphertext and never sees the key), and referenced from an
//! MLS message by an [`AttachmentRef`](crate::content::AttachmentRef) that carries the key and the
//! SHA-256 of the *plaintext*. Because that reference is part of the franked content, a report of
//! the message commits to the exact file.
//!
//! Nonce: every key is freshly drawn from the OS RNG and encrypts exactly one plaintext, so the
//! (key, nonce) pair can never repeat and a fixed all-zero nonce is safe (RFC 8439 §4 requires
//! only uniqueness per key). The AEAD's associated data is a domain-separation label so that a
//! ciphertext cannot be reinterpreted as some other Haven format.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Domain-separation label used as the AEAD associated data.
pub const AAD_LABEL: &[u8] = b"haven/attachment/v1";
/// Largest plaintext accepted (100 MiB), checked before any allocation.
pub const MAX_PLAINTEXT: usize = 100 * 1024 * 1024;
/// Poly1305 tag length.
pub const TAG_LEN: usize = 16;

/// Why an attachment could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttachmentError {
    /// The plaintext or ciphertext is larger than [`MAX_PLAINTEXT`] allows.
    #[error("attachment is too large")]
    TooLarge,
    /// The ciphertext does not decrypt under the key, or the plaintext does not have the expected
    /// hash. Deliberately one variant: a failed open says only that it failed.
    #[error("attachment does not decrypt to the expected file")]
    Open,
    /// A key of the wrong length.
    #[error("attachment key must be 32 bytes")]
    KeyLength,
}

/// A per-file ChaCha20-Poly1305 key. Redacted in `Debug`, zeroized on drop, compared in constant
/// time.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct AttachmentKey([u8; 32]);

impl AttachmentKey {
    /// A fresh random key from the OS RNG.
    pub fn random() -> Self {
        let mut k = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        AttachmentKey(k)
    }

    /// Wraps key bytes.
    pub fn from_slice(b: &[u8]) -> Result<Self, AttachmentError> {
        let a: [u8; 32] = b.try_into().map_err(|_| AttachmentError::KeyLength)?;
        Ok(AttachmentKey(a))
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl PartialEq for AttachmentKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}
impl Eq for AttachmentKey {}

impl std::fmt::Debug for AttachmentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AttachmentKey(<redacted>)")
    }
}

impl Serialize for AttachmentKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine as _;
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(self.0))
    }
}

impl<'de> Deserialize<'de> for AttachmentKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use base64::Engine as _;
        let s = zeroize::Zeroizing::new(String::deserialize(d)?);
        let b = zeroize::Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(s.as_bytes())
                .map_err(|_| serde::de::Error::custom("invalid attachment key"))?,
        );
        AttachmentKey::from_slice(&b)
            .map_err(|_| serde::de::Error::custom("invalid attachment key"))
    }
}

/// SHA-256 of a byte string.
pub fn sha256(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

fn cipher(key: &AttachmentKey) -> ChaCha20Poly1305 {
    ChaCha20Poly1305::new(Key::from_slice(&key.0))
}

/// The nonce: fixed, because each key seals exactly one plaintext (see the module docs).
fn nonce() -> Nonce {
    Nonce::default()
}

/// Seals `plaintext` under a fresh key. Returns the ciphertext (plaintext length + 16), the key
/// and the SHA-256 of the plaintext (which goes into the franked message content).
pub fn seal(plaintext: &[u8]) -> Result<(Vec<u8>, AttachmentKey, [u8; 32]), AttachmentError> {
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(AttachmentError::TooLarge);
    }
    let key = AttachmentKey::random();
    let ct = cipher(&key)
        .encrypt(
            &nonce(),
            Payload {
                msg: plaintext,
                aad: AAD_LABEL,
            },
        )
        // Encryption fails only for inputs beyond ChaCha20's 256 GiB limit, excluded above.
        .map_err(|_| AttachmentError::TooLarge)?;
    Ok((ct, key, sha256(plaintext)))
}

/// Opens a sealed attachment and checks that the plaintext has the expected SHA-256.
pub fn open(
    ciphertext: &[u8],
    key: &AttachmentKey,
    expected_sha256: &[u8; 32],
) -> Result<Vec<u8>, AttachmentError> {
    if ciphertext.len() > MAX_PLAINTEXT + TAG_LEN {
        return Err(AttachmentError::TooLarge);
    }
    let pt = cipher(key)
        .decrypt(
            &nonce(),
            Payload {
                msg: ciphertext,
                aad: AAD_LABEL,
            },
        )
        .map_err(|_| AttachmentError::Open)?;
    if bool::from(sha256(&pt).ct_eq(expected_sha256)) {
        Ok(pt)
    } else {
        Err(AttachmentError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn seal_open_and_flip(pt in proptest::collection::vec(any::<u8>(), 0..4096), bit in any::<usize>()) {
            let (ct, key, h) = seal(&pt).unwrap();
            prop_assert_eq!(ct.len(), pt.len() + TAG_LEN);
            prop_assert_eq!(h, sha256(&pt));
            prop_assert_eq!(open(&ct, &key, &h).unwrap(), pt.clone());
            // A flipped bit anywhere in the ciphertext (or tag) fails.
            let mut bad = ct.clone();
            let i = bit % (bad.len() * 8);
            bad[i / 8] ^= 1 << (i % 8);
            prop_assert_eq!(open(&bad, &key, &h), Err(AttachmentError::Open));
            // A wrong key fails.
            prop_assert_eq!(open(&ct, &AttachmentKey::random(), &h), Err(AttachmentError::Open));
            // A wrong expected hash fails.
            let mut h2 = h;
            h2[i % 32] ^= 1;
            prop_assert_eq!(open(&ct, &key, &h2), Err(AttachmentError::Open));
        }
    }

    #[test]
    fn keys_are_fresh_and_redacted() {
        let (_, k1, _) = seal(b"x").unwrap();
        let (_, k2, _) = seal(b"x").unwrap();
        assert_ne!(k1, k2);
        assert_eq!(format!("{k1:?}"), "AttachmentKey(<redacted>)");
        let j = serde_json::to_string(&k1).unwrap();
        assert_eq!(serde_json::from_str::<AttachmentKey>(&j).unwrap(), k1);
    }
}

/// What an attachment's safety voucher (`haven-psi`) seals as its associated data: the blob's
/// id, the key that opens it and the plaintext's SHA-256 — enough for the server to fetch,
/// decrypt and check the file once the sender's account is over the match threshold, and
/// nothing it can read before. Encoded `"HAP1" ‖ blob id (32) ‖ key (32) ‖ sha256 (32)`.
#[derive(Clone, PartialEq, Eq)]
pub struct VoucherPayload {
    /// SHA-256 of the ciphertext (the blob's id).
    pub blob_id: [u8; 32],
    /// The attachment key.
    pub key: AttachmentKey,
    /// SHA-256 of the plaintext.
    pub sha256: [u8; 32],
}

impl std::fmt::Debug for VoucherPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VoucherPayload")
            .field("blob_id", &hex::encode(self.blob_id))
            .finish_non_exhaustive()
    }
}

const PAYLOAD_MAGIC: &[u8; 4] = b"HAP1";

/// Length of an encoded [`VoucherPayload`].
pub const VOUCHER_PAYLOAD_LEN: usize = 4 + 32 * 3;

impl VoucherPayload {
    /// The encoding (zeroized when dropped: it holds the key).
    pub fn encode(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let mut v = zeroize::Zeroizing::new(Vec::with_capacity(VOUCHER_PAYLOAD_LEN));
        v.extend_from_slice(PAYLOAD_MAGIC);
        v.extend_from_slice(&self.blob_id);
        v.extend_from_slice(self.key.as_bytes());
        v.extend_from_slice(&self.sha256);
        v
    }

    /// Reads [`VoucherPayload::encode`] back; `None` unless exactly that shape.
    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != VOUCHER_PAYLOAD_LEN || !b.starts_with(PAYLOAD_MAGIC) {
            return None;
        }
        let blob_id = b.get(4..36)?.try_into().ok()?;
        let key = AttachmentKey::from_slice(b.get(36..68)?).ok()?;
        let sha256 = b.get(68..100)?.try_into().ok()?;
        Some(VoucherPayload {
            blob_id,
            key,
            sha256,
        })
    }
}

#[cfg(test)]
mod payload_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn voucher_payload_round_trip_and_refusals() {
        let p = VoucherPayload {
            blob_id: [1; 32],
            key: AttachmentKey::from_slice(&[2; 32]).unwrap(),
            sha256: [3; 32],
        };
        let e = p.encode();
        assert_eq!(e.len(), VOUCHER_PAYLOAD_LEN);
        assert_eq!(VoucherPayload::decode(&e), Some(p));
        assert_eq!(VoucherPayload::decode(&e[..99]), None);
        let mut bad = e.to_vec();
        bad[0] = b'X';
        assert_eq!(VoucherPayload::decode(&bad), None);
        let mut long = e.to_vec();
        long.push(0);
        assert_eq!(VoucherPayload::decode(&long), None);
        assert!(!format!("{:?}", VoucherPayload::decode(&e).unwrap()).contains("0202"));
    }
}
