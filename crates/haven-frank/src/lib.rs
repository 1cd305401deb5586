//! Message franking for Haven (DESIGN.md capability 3, "Message path").
//!
//! Franking lets a recipient prove to the operator that a message was really sent to them, without
//! the operator ever seeing unreported messages. It follows Facebook's deployed scheme as analysed
//! by Grubbs, Lu and Ristenpart, "Message Franking via Committing Authenticated Encryption"
//! (CRYPTO 2017), §2 and §7, with MLS as the encryption layer:
//!
//! ```text
//! sender:     salt  ← 32 random bytes           (travels inside the encrypted content)
//!             C     = HMAC-SHA256(salt, "haven/frank/v1/commit" ‖ content)
//!             MLS PrivateMessage with authenticated_data = "HVF1" ‖ C
//! server:     reads C from the clear-text authenticated_data (it cannot read content)
//!             T     = HMAC-SHA256(k_srv, "haven/frank/v1/server" ‖ lp(C) ‖ lp(sender device)
//!                                         ‖ lp(group id) ‖ u64be(received_at_ms))
//!             delivers (message, C, T, received_at)
//! recipient:  decrypts (MLS authenticates authenticated_data with the content), recomputes C
//!             from the content and salt and drops the message on any mismatch, including a
//!             mismatch with the C of the server's envelope; keeps (salt, C, T) for a report
//! report:     (content, salt, C, T, sender, group, time) — the server checks both MACs
//! ```
//!
//! `lp(x)` is a 4-byte big-endian length followed by `x`. HMAC-SHA256 keyed by a fresh random salt
//! is a commitment: binding because finding two (salt, content) pairs with one tag breaks
//! SHA-256's collision resistance (Grubbs et al., Thm. 7.1 for HMAC as a committing MAC), hiding
//! because the salt is uniformly random and secret until a report. The server's tag stops a
//! reporter from inventing (sender, group, time): only the server holds `k_srv`.
//!
//! The server's tag as above is version 1. Servers now make version-2 tags, which carry the id
//! of the key that made them so the key can rotate (a `Keyring` of several keys, one current);
//! v1 tags stay verifiable with the keyring's legacy key. [`keyring`] has the encoding.
//!
//! Trust assumptions: the server's keys stay with the server (the server keeps them in a key
//! file of their own, readable by the server's account alone); the salt is only ever
//! revealed in a report. The test vectors in `vectors/frank.json` come from the generator in
//! `examples/gen_vectors.rs`, and `vectors/crosscheck.py` checks them with Python's own HMAC.

pub mod keyring;

pub use keyring::{server_tag_v2, EncodedTag, KeyEntry, KeyId, Keyring, KeyringError};

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

type HmacSha256 = Hmac<Sha256>;

/// Label for content commitments.
pub const COMMIT_LABEL: &[u8] = b"haven/frank/v1/commit";
/// Label for the server's tag.
pub const SERVER_LABEL: &[u8] = b"haven/frank/v1/server";
/// Prefix of the MLS `authenticated_data` that carries a commitment (version 1).
pub const AAD_MAGIC: &[u8; 4] = b"HVF1";
/// Length of salts, commitments, keys and tags.
pub const LEN: usize = 32;

/// Why franking data was refused. Deliberately coarse: a failed check says only that it failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrankError {
    /// The `authenticated_data` carries no version-1 franking commitment.
    #[error("message carries no franking commitment")]
    MissingCommitment,
    /// A byte string has the wrong length.
    #[error("franking value has the wrong length")]
    Length,
    /// A commitment or tag does not verify.
    #[error("franking check failed")]
    Mismatch,
}

/// The secret salt of one message (its commitment key). Revealed only in a report.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct FrankSalt([u8; LEN]);

impl FrankSalt {
    /// A fresh random salt.
    pub fn random() -> Self {
        let mut b = [0u8; LEN];
        rand::rngs::OsRng.fill_bytes(&mut b);
        FrankSalt(b)
    }

    /// Wraps salt bytes (from decrypted content or a report).
    pub fn from_slice(b: &[u8]) -> Result<Self, FrankError> {
        let a: [u8; LEN] = b.try_into().map_err(|_| FrankError::Length)?;
        Ok(FrankSalt(a))
    }

    /// The salt bytes (to place inside the encrypted content).
    pub fn as_bytes(&self) -> &[u8; LEN] {
        &self.0
    }
}

impl std::fmt::Debug for FrankSalt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FrankSalt(<redacted>)")
    }
}

/// A commitment to one message's content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Commitment([u8; LEN]);

impl Commitment {
    /// Wraps commitment bytes.
    pub fn from_slice(b: &[u8]) -> Result<Self, FrankError> {
        let a: [u8; LEN] = b.try_into().map_err(|_| FrankError::Length)?;
        Ok(Commitment(a))
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8; LEN] {
        &self.0
    }

    /// Constant-time equality.
    pub fn ct_eq(&self, other: &Commitment) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; LEN] {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for HMAC.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable_hmac(),
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

#[cold]
fn unreachable_hmac() -> HmacSha256 {
    // HMAC is defined for every key length (RFC 2104 §2), so `new_from_slice` never fails; this
    // arm exists only because the API returns a Result. Fall back to the empty key deterministically.
    <HmacSha256 as Mac>::new(&Default::default())
}

/// Commits to `content` under `salt`.
pub fn commit(salt: &FrankSalt, content: &[u8]) -> Commitment {
    Commitment(hmac(&salt.0, &[COMMIT_LABEL, content]))
}

/// A commitment that was checked against its opening. Only [`open`] makes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened(Commitment);

impl Opened {
    /// The verified commitment.
    pub fn commitment(&self) -> Commitment {
        self.0
    }
}

/// Checks that `(salt, content)` opens `commitment`.
pub fn open(
    commitment: &Commitment,
    salt: &FrankSalt,
    content: &[u8],
) -> Result<Opened, FrankError> {
    let c = commit(salt, content);
    if c.ct_eq(commitment) {
        Ok(Opened(c))
    } else {
        Err(FrankError::Mismatch)
    }
}

/// The MLS `authenticated_data` carrying `c`.
pub fn encode_aad(c: &Commitment) -> Vec<u8> {
    let mut v = Vec::with_capacity(AAD_MAGIC.len() + LEN);
    v.extend_from_slice(AAD_MAGIC);
    v.extend_from_slice(&c.0);
    v
}

/// Reads the commitment from MLS `authenticated_data`.
pub fn decode_aad(aad: &[u8]) -> Result<Commitment, FrankError> {
    match aad.strip_prefix(AAD_MAGIC.as_slice()) {
        Some(rest) if rest.len() == LEN => Commitment::from_slice(rest),
        _ => Err(FrankError::MissingCommitment),
    }
}

/// The server's franking key.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ServerKey([u8; LEN]);

impl ServerKey {
    /// A fresh random key.
    pub fn random() -> Self {
        let mut b = [0u8; LEN];
        rand::rngs::OsRng.fill_bytes(&mut b);
        ServerKey(b)
    }

    /// Wraps stored key bytes.
    pub fn from_slice(b: &[u8]) -> Result<Self, FrankError> {
        let a: [u8; LEN] = b.try_into().map_err(|_| FrankError::Length)?;
        Ok(ServerKey(a))
    }

    /// The key bytes (for persisting it).
    pub fn as_bytes(&self) -> &[u8; LEN] {
        &self.0
    }
}

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerKey(<redacted>)")
    }
}

/// What the server's tag binds.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    /// The sender's commitment.
    pub commitment: &'a Commitment,
    /// The authenticated sender device id.
    pub sender_device: &'a str,
    /// The MLS group id.
    pub group_id: &'a [u8],
    /// Server receive time, milliseconds since the Unix epoch.
    pub received_at_ms: u64,
}

/// The server's tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerTag([u8; LEN]);

impl ServerTag {
    /// Wraps tag bytes.
    pub fn from_slice(b: &[u8]) -> Result<Self, FrankError> {
        let a: [u8; LEN] = b.try_into().map_err(|_| FrankError::Length)?;
        Ok(ServerTag(a))
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8; LEN] {
        &self.0
    }
}

fn lp(n: usize) -> [u8; 4] {
    // Every field here is far below 4 GiB (ids are bounded by the protocol); saturate anyway.
    u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes()
}

/// Computes the server's tag.
pub fn server_tag(key: &ServerKey, b: &Binding<'_>) -> ServerTag {
    let c = b.commitment.as_bytes();
    let sender = b.sender_device.as_bytes();
    ServerTag(hmac(
        &key.0,
        &[
            SERVER_LABEL,
            &lp(c.len()),
            c,
            &lp(sender.len()),
            sender,
            &lp(b.group_id.len()),
            b.group_id,
            &b.received_at_ms.to_be_bytes(),
        ],
    ))
}

/// Checks the server's tag in constant time.
pub fn verify_server_tag(
    key: &ServerKey,
    b: &Binding<'_>,
    tag: &ServerTag,
) -> Result<(), FrankError> {
    let t = server_tag(key, b);
    if bool::from(t.0.ct_eq(&tag.0)) {
        Ok(())
    } else {
        Err(FrankError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn commit_open_and_flip(content in proptest::collection::vec(any::<u8>(), 0..2000), bit in 0usize..256) {
            let salt = FrankSalt::random();
            let c = commit(&salt, &content);
            prop_assert!(open(&c, &salt, &content).is_ok());
            let mut bad = *c.as_bytes();
            bad[bit / 8] ^= 1 << (bit % 8);
            prop_assert_eq!(open(&Commitment(bad), &salt, &content), Err(FrankError::Mismatch));
            let mut other = content.clone();
            other.push(0);
            prop_assert!(open(&c, &salt, &other).is_err());
            prop_assert!(open(&c, &FrankSalt::random(), &content).is_err());
            prop_assert_eq!(decode_aad(&encode_aad(&c)).unwrap(), c);
        }

        #[test]
        fn server_tag_binds_every_field(t in any::<u64>(), bit in 0usize..256) {
            let key = ServerKey::random();
            let c = Commitment([9; LEN]);
            let b = Binding { commitment: &c, sender_device: "dev", group_id: b"group-0123456789", received_at_ms: t };
            let tag = server_tag(&key, &b);
            prop_assert!(verify_server_tag(&key, &b, &tag).is_ok());
            let mut flipped = tag.0;
            flipped[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(verify_server_tag(&key, &b, &ServerTag(flipped)).is_err());
            let b2 = Binding { received_at_ms: t.wrapping_add(1), ..b };
            prop_assert!(verify_server_tag(&key, &b2, &tag).is_err());
            let b3 = Binding { sender_device: "dew", ..b };
            prop_assert!(verify_server_tag(&key, &b3, &tag).is_err());
            let b4 = Binding { group_id: b"group-0123456788", ..b };
            prop_assert!(verify_server_tag(&key, &b4, &tag).is_err());
            prop_assert!(verify_server_tag(&ServerKey::random(), &b, &tag).is_err());
        }
    }

    #[test]
    fn aad_without_commitment_is_refused() {
        assert_eq!(decode_aad(b""), Err(FrankError::MissingCommitment));
        assert_eq!(decode_aad(b"HVF1short"), Err(FrankError::MissingCommitment));
        let mut v = b"HVF2".to_vec();
        v.extend_from_slice(&[0; 32]);
        assert_eq!(decode_aad(&v), Err(FrankError::MissingCommitment));
    }
}
