//! The key directory's keys, in their own key file `DATA/kt-keys` (mode `0600`): the Ed25519
//! key that signs epoch roots and akd's VRF key (which hides user names in the tree). Clients
//! pin both public halves on registration ([`haven_kt::directory::KtKeys`]).
//!
//! As with the franking keys (`crate::frank_keys`), the file is distributed with the
//! deployment to every node's data directory; the first node to start creates it, and the
//! database records its fingerprint (`kt-keys-fingerprint` in `server_secrets`), so a node
//! with another deployment's keys, or none while the database has a directory, refuses to
//! start instead of signing roots nobody pinned. Losing the file loses the directory: clients
//! would see a new key and refuse it, which is the point.
//!
//! File format (text): `haven-kt-keys v1`, then `root HEX32` and `vrf HEX32` lines (the
//! 32-byte Ed25519 seed and the 32-byte VRF private key).

use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use haven_kt::directory::{KtKeys, VrfSecret};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::store::Store;

/// The key file's name in the data directory.
pub const FILE_NAME: &str = "kt-keys";
/// The database marker (`server_secrets`; not secret): the keys' fingerprint.
pub const MARKER_SECRET: &str = "kt-keys-fingerprint";
const HEADER: &str = "haven-kt-keys v1";

/// The loaded keys.
#[derive(Clone)]
pub struct KtKeyPair {
    /// Signs epoch roots.
    pub root: SigningKey,
    /// akd's VRF key.
    pub vrf: VrfSecret,
    /// The public halves.
    pub public: KtKeys,
}

/// Why the keys could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KtKeyError {
    /// The file could not be read or written.
    #[error("key-transparency key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file does not parse.
    #[error("key-transparency key file {path}: {detail}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The file and the database do not belong together.
    #[error("{0}")]
    Mismatch(String),
    /// The database failed.
    #[error("database: {0}")]
    Store(#[from] crate::store::StoreError),
}

impl KtKeyPair {
    fn from_secrets(root: [u8; 32], vrf: [u8; 32]) -> Result<Self, String> {
        let root = SigningKey::from_bytes(&root);
        let vrf = VrfSecret(vrf);
        let public = KtKeys {
            root_key: root.verifying_key().to_bytes(),
            vrf_key: vrf.public_key().map_err(|e| e.to_string())?,
        };
        Ok(KtKeyPair { root, vrf, public })
    }

    /// Fresh random keys.
    pub fn generate() -> Self {
        loop {
            let mut r = Zeroizing::new([0u8; 32]);
            let mut v = Zeroizing::new([0u8; 32]);
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut *r);
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut *v);
            if let Ok(k) = Self::from_secrets(*r, *v) {
                return k;
            }
        }
    }

    /// `SHA-256("haven/kt/keys-fingerprint/v1" ‖ root key ‖ VRF key)`.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"haven/kt/keys-fingerprint/v1");
        h.update(self.public.root_key);
        h.update(self.public.vrf_key);
        h.finalize().into()
    }

    fn encode_file(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "{HEADER}\nroot {}\nvrf {}\n",
            hex::encode(self.root.to_bytes()),
            hex::encode(self.vrf.0)
        ))
    }

    fn decode_file(text: &str) -> Result<Self, String> {
        let mut lines = text.lines();
        if lines.next() != Some(HEADER) {
            return Err(format!("the first line is not {HEADER:?}"));
        }
        let mut field = |name: &str| -> Result<[u8; 32], String> {
            let line = lines.next().ok_or(format!("no {name} line"))?;
            let hex_part = line
                .strip_prefix(name)
                .and_then(|r| r.strip_prefix(' '))
                .ok_or(format!("expected a {name} line"))?;
            let bytes =
                Zeroizing::new(hex::decode(hex_part).map_err(|_| format!("{name}: not hex"))?);
            <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| format!("{name}: not 32 bytes"))
        };
        let root = field("root")?;
        let vrf = field("vrf")?;
        if lines.any(|l| !l.trim().is_empty()) {
            return Err("trailing lines".into());
        }
        Self::from_secrets(root, vrf)
    }
}

/// The key file's path in `data_dir`.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// Loads the keys from `data_dir`, creating them on a fresh deployment (see the module docs).
pub async fn load_or_create(data_dir: &Path, store: &dyn Store) -> Result<KtKeyPair, KtKeyError> {
    let file = path(data_dir);
    let io = |source| KtKeyError::Io {
        path: file.clone(),
        source,
    };
    let marker = store.get_server_secret(MARKER_SECRET).await?;
    match std::fs::read_to_string(&file) {
        Ok(text) => {
            crate::datadir::tighten(&file, crate::datadir::FILE_MODE).map_err(io)?;
            let keys = KtKeyPair::decode_file(&text).map_err(|detail| KtKeyError::Malformed {
                path: file.clone(),
                detail,
            })?;
            let fp = keys.fingerprint();
            let stored = store.server_secret(MARKER_SECRET, &fp).await?;
            if stored.as_slice() != fp.as_slice() {
                return Err(KtKeyError::Mismatch(format!(
                    "{} belongs to another deployment than this database (its key directory was signed with other keys)",
                    file.display()
                )));
            }
            Ok(keys)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if marker.is_some() {
                return Err(KtKeyError::Mismatch(format!(
                    "this database has a key directory but {} is missing: copy the key file from another node (new keys would make every client refuse the directory)",
                    file.display()
                )));
            }
            let keys = KtKeyPair::generate();
            crate::datadir::write_private_atomic(&file, keys.encode_file().as_bytes())
                .map_err(io)?;
            let fp = keys.fingerprint();
            let stored = store.server_secret(MARKER_SECRET, &fp).await?;
            if stored.as_slice() != fp.as_slice() {
                let _ = std::fs::remove_file(&file);
                return Err(KtKeyError::Mismatch(
                    "another server node created this database's key-transparency keys at the same time; copy its key file here".into(),
                ));
            }
            tracing::info!(file = %file.display(), "created the key-transparency key file");
            Ok(keys)
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_round_trips_and_refuses_junk() {
        let k = KtKeyPair::generate();
        let back = KtKeyPair::decode_file(&k.encode_file()).unwrap();
        assert_eq!(back.public, k.public);
        for bad in [
            "",
            "haven-kt-keys v2\nroot 00\nvrf 00\n",
            "haven-kt-keys v1\nroot zz\nvrf 00\n",
            "haven-kt-keys v1\nvrf 00\nroot 00\n",
        ] {
            assert!(KtKeyPair::decode_file(bad).is_err(), "{bad:?}");
        }
        let mut extra = k.encode_file().to_string();
        extra.push_str("more\n");
        assert!(KtKeyPair::decode_file(&extra).is_err());
    }
}
