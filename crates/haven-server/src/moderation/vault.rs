//! Evidence at rest: every reported message, note and evidence file is sealed with the
//! evidence key before it reaches the database, so neither the database nor a backup of it holds
//! reported content in the clear.
//!
//! ```text
//! key    32 random bytes, in DATA/evidence-key (0600) or the file --evidence-key names
//! sealed = 0x01 ‖ nonce (24 random bytes) ‖ XChaCha20-Poly1305(key, nonce, plaintext, aad)
//! aad    = "haven/evidence/v1" 0x00 ‖ lp(case id) ‖ lp(item)
//! ```
//!
//! XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha-03 over RFC 8439) takes a random 192-bit nonce
//! safely for any number of messages under one key. The associated data binds each sealed item
//! to its case and place, so rows cannot be swapped between cases unnoticed. `lp` is a 4-byte
//! big-endian length. The database keeps a SHA-256 fingerprint of the key
//! (`evidence-key-fingerprint`), so a node started with another deployment's key file, or
//! with none while the database already has evidence, refuses to start instead of sealing
//! under a key the others cannot open. Every node of a deployment needs the same key file.
//! Vectors: `vectors/evidence-seal.json` (checked in the tests below).

use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::store::Store;

/// The key file's name in the data directory.
pub const FILE_NAME: &str = "evidence-key";
const HEADER: &str = "haven-evidence-key-v1";
const AAD_LABEL: &[u8] = b"haven/evidence/v1\0";
const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const MARKER: &str = "evidence-key-fingerprint";

/// Why the evidence key could not be loaded or an item opened.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// Reading or writing the key file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key file is malformed, or belongs to another deployment.
    #[error("evidence key: {0}")]
    Key(String),
    /// A sealed item does not open (wrong key, moved or altered).
    #[error("sealed evidence does not open")]
    Open,
    /// The database failed.
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
}

/// The evidence key. Redacted in `Debug`, zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct EvidenceKey([u8; 32]);

impl std::fmt::Debug for EvidenceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EvidenceKey(<redacted>)")
    }
}

fn aad(case: &str, item: &str) -> Vec<u8> {
    let mut v = AAD_LABEL.to_vec();
    for f in [case.as_bytes(), item.as_bytes()] {
        v.extend_from_slice(&u32::try_from(f.len()).unwrap_or(u32::MAX).to_be_bytes());
        v.extend_from_slice(f);
    }
    v
}

impl EvidenceKey {
    /// A fresh random key.
    pub fn random() -> Self {
        let mut k = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        EvidenceKey(k)
    }

    /// Wraps key bytes.
    pub fn from_bytes(k: [u8; 32]) -> Self {
        EvidenceKey(k)
    }

    /// SHA-256 of the key, labelled (what the database keeps).
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"haven/evidence-key-fingerprint/v1");
        h.update(self.0);
        h.finalize().into()
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.0).into())
    }

    /// Seals `plaintext` as item `item` of `case` with a fresh nonce.
    pub fn seal(&self, case: &str, item: &str, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        self.seal_with_nonce(case, item, plaintext, nonce)
    }

    fn seal_with_nonce(
        &self,
        case: &str,
        item: &str,
        plaintext: &[u8],
        nonce: [u8; NONCE_LEN],
    ) -> Vec<u8> {
        let aad = aad(case, item);
        // Encryption fails only beyond XChaCha20's 256 GiB per message; evidence items are
        // bounded far below that (100 MiB files), so an empty ciphertext never results.
        let ct = self
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .unwrap_or_default();
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Opens item `item` of `case`.
    pub fn open(
        &self,
        case: &str,
        item: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let (&v, rest) = sealed.split_first().ok_or(VaultError::Open)?;
        if v != VERSION || rest.len() < NONCE_LEN + 16 {
            return Err(VaultError::Open);
        }
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        let aad = aad(case, item);
        self.cipher()
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
            .map(Zeroizing::new)
            .map_err(|_| VaultError::Open)
    }
}

/// The key file in `data_dir`.
pub fn default_path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

fn parse(text: &str) -> Option<EvidenceKey> {
    let mut lines = text.lines();
    if lines.next()? != HEADER {
        return None;
    }
    let hex_key = Zeroizing::new(lines.next()?.trim().to_owned());
    let mut k = [0u8; 32];
    hex::decode_to_slice(hex_key.as_bytes(), &mut k).ok()?;
    Some(EvidenceKey(k))
}

/// Loads the evidence key from `path`, creating it (mode 0600) if there is none and the
/// database has no evidence key yet; checks it against the database's fingerprint.
pub async fn load_or_create(path: &Path, store: &dyn Store) -> Result<EvidenceKey, VaultError> {
    let io = |source| VaultError::Io {
        path: path.to_path_buf(),
        source,
    };
    let marker = store.get_server_secret(MARKER).await?;
    let key = match std::fs::read_to_string(path) {
        Ok(text) => {
            let text = Zeroizing::new(text);
            parse(&text).ok_or_else(|| {
                VaultError::Key(format!("{} is not an evidence key file", path.display()))
            })?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if marker.is_some() {
                return Err(VaultError::Key(format!(
                    "this database's evidence is sealed with a key that is not at {}: copy the key file from another node or a backup",
                    path.display()
                )));
            }
            let key = EvidenceKey::random();
            let text = Zeroizing::new(format!("{HEADER}\n{}\n", hex::encode(key.0)));
            crate::datadir::write_private_atomic(path, text.as_bytes()).map_err(io)?;
            tracing::info!(file = %path.display(), "created the evidence key file");
            key
        }
        Err(e) => return Err(io(e)),
    };
    let fp = key.fingerprint();
    let stored = store.server_secret(MARKER, &fp).await?;
    if !bool::from(stored.as_slice().ct_eq(fp.as_slice())) {
        return Err(VaultError::Key(format!(
            "{} belongs to another deployment (its fingerprint is not the one this database was set up with)",
            path.display()
        )));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn seal_open_and_bindings() {
        let k = EvidenceKey::random();
        let s = k.seal("case1", "m0", b"hello");
        assert_eq!(&*k.open("case1", "m0", &s).unwrap(), b"hello");
        assert!(k.open("case2", "m0", &s).is_err());
        assert!(k.open("case1", "m1", &s).is_err());
        assert!(EvidenceKey::random().open("case1", "m0", &s).is_err());
        for i in 0..s.len() {
            let mut bad = s.clone();
            bad[i] ^= 1;
            assert!(k.open("case1", "m0", &bad).is_err(), "flip at {i}");
        }
        assert!(k.open("case1", "m0", &s[..20]).is_err());
        assert!(k.open("case1", "m0", &[]).is_err());
        assert_eq!(format!("{k:?}"), "EvidenceKey(<redacted>)");
    }

    /// `vectors/evidence-seal.json`: fixed key and nonce; regenerate with
    /// `HAVEN_REGEN_VECTORS=1 cargo test -p haven-server evidence_seal_vector`.
    #[test]
    fn evidence_seal_vector() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/vectors/evidence-seal.json");
        let k = EvidenceKey::from_bytes([0x42; 32]);
        let sealed = k.seal_with_nonce("c0ffee", "m0", b"reported text", [7; NONCE_LEN]);
        if std::env::var_os("HAVEN_REGEN_VECTORS").is_some() {
            let v = serde_json::json!({
                "description": "Haven evidence sealing (src/moderation/vault.rs): XChaCha20-Poly1305, aad = \"haven/evidence/v1\\0\" || lp(case) || lp(item)",
                "key": hex::encode([0x42u8; 32]),
                "nonce": hex::encode([7u8; NONCE_LEN]),
                "case": "c0ffee",
                "item": "m0",
                "plaintext": hex::encode(b"reported text"),
                "aad": hex::encode(aad("c0ffee", "m0")),
                "sealed": hex::encode(&sealed),
            });
            std::fs::write(path, serde_json::to_string_pretty(&v).unwrap() + "\n").unwrap();
        }
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(v["sealed"].as_str().unwrap(), hex::encode(&sealed));
        assert_eq!(v["aad"].as_str().unwrap(), hex::encode(aad("c0ffee", "m0")));
        let opened = k
            .open(
                "c0ffee",
                "m0",
                &hex::decode(v["sealed"].as_str().unwrap()).unwrap(),
            )
            .unwrap();
        assert_eq!(&*opened, b"reported text");
    }
}
