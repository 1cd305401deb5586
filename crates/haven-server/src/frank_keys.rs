//! The franking keys: a keyring in its own key file, `DATA/frank-keys` (mode `0600`).
//!
//! Anyone who reads a franking key can mint server tags, i.e. forge reports (security review
//! 2026-12, finding 9), so the keys live outside the database — a database backup or a
//! read-only database account no longer holds them — in a file only the server's account can
//! read ([`crate::datadir`]). The file holds a [`Keyring`]: every key that ever made tags, each
//! with an id that every tag carries (`haven_frank::keyring`), one current. `haven admin
//! frank-key rotate` adds a fresh current key; tags made under older keys still verify.
//!
//! Data flow at start ([`load_or_create`]):
//! - **key file present**: it is read (and tightened to `0600` if looser). If the database
//!   still holds the pre-keyring key (`frank-key-v1` in `server_secrets`), it must be in the
//!   file, and is deleted from the database (an earlier start stopped between the two steps).
//! - **no key file, key in the database** (a deployment from before key files): the key moves
//!   into a new key file as key 1, current, and *legacy* (it verifies the v1 tags, which carry
//!   no key id, stored in messages and client histories); then it is deleted from the database.
//! - **no key file, no key**: a fresh deployment; a new random key 1 is made.
//!
//! The database keeps a non-secret marker, the fingerprint of the keyring's first key
//! (`frank-keys-fingerprint`). A node that starts without the key file, or with a key file of
//! another deployment, finds the marker and refuses to start instead of tagging with a key
//! nobody else has. This is what makes several nodes over one PostgreSQL database safe: the key
//! file is **distributed with the deployment** (as its TLS key is) to every node's data
//! directory; the first node to start creates it (the marker's insert-if-absent decides a race,
//! and the loser refuses to start), and after a rotation the new file is copied to every node
//! and the nodes restarted. Nodes only tag with their current key, and a tag names its key, so
//! nodes whose files differ during a roll-out still make tags that verify once the newest file
//! is everywhere.
//!
//! Trust assumptions: the server's operating-system account and root are trusted; anyone who
//! can read the key file (or a backup of it) can forge tags for any time. Rotation alone does
//! not undo a leak: old keys stay in the ring so their tags verify, and a leaked old key still
//! makes valid-looking tags. A report verifier (none exists yet) should therefore honour a key
//! only for times before the next key's `created_at_ms`. Backups of the database taken before
//! the key moved out still hold the key.

use std::path::{Path, PathBuf};

use haven_frank::{KeyEntry, KeyId, Keyring, ServerKey};
use sha2::{Digest, Sha256};

use crate::store::Store;

/// The key file's name in the data directory.
pub const FILE_NAME: &str = "frank-keys";
/// The database name of the franking key before key files (`server_secrets`).
pub const LEGACY_SECRET: &str = "frank-key-v1";
/// The database name of the keyring's marker (`server_secrets`; not secret).
pub const MARKER_SECRET: &str = "frank-keys-fingerprint";

/// Why the franking keys could not be loaded or changed.
#[derive(Debug, thiserror::Error)]
pub enum FrankKeyError {
    /// The key file could not be read or written.
    #[error("franking key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key file does not parse.
    #[error("franking key file {path}: {source}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Why.
        source: haven_frank::KeyringError,
    },
    /// The key file and the database do not belong together (see the module docs).
    #[error("{0}")]
    Mismatch(String),
    /// The database failed.
    #[error("database: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// The key file's path in `data_dir`.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// A key's public fingerprint: `SHA-256("haven/frank/key-fingerprint/v1" ‖ key)`.
pub fn fingerprint(key: &ServerKey) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"haven/frank/key-fingerprint/v1");
    h.update(key.as_bytes());
    h.finalize().into()
}

/// The fingerprint the database marker records: that of the keyring's lowest key id (the
/// first key, which rotation never removes).
fn ring_fingerprint(ring: &Keyring) -> Option<[u8; 32]> {
    ring.entries().next().map(|(_, e)| fingerprint(&e.key))
}

/// Reads the key file, tightening its mode; `None` if there is none.
pub fn read(data_dir: &Path) -> Result<Option<Keyring>, FrankKeyError> {
    let path = path(data_dir);
    let io = |source| FrankKeyError::Io {
        path: path.clone(),
        source,
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    crate::datadir::tighten(&path, crate::datadir::FILE_MODE).map_err(io)?;
    Keyring::decode_file(&text)
        .map(Some)
        .map_err(|source| FrankKeyError::Malformed {
            path: path.clone(),
            source,
        })
}

/// Writes the key file atomically, mode `0600`.
pub fn write(data_dir: &Path, ring: &Keyring) -> Result<(), FrankKeyError> {
    let path = path(data_dir);
    crate::datadir::write_private_atomic(&path, ring.encode_file().as_bytes())
        .map_err(|source| FrankKeyError::Io { path, source })
}

/// Loads the keyring for a server over `store` with data directory `data_dir`, moving the
/// database's key into the key file or creating a key file as needed (see the module docs).
pub async fn load_or_create(
    data_dir: &Path,
    store: &dyn Store,
    now_ms: u64,
) -> Result<Keyring, FrankKeyError> {
    let marker = store.get_server_secret(MARKER_SECRET).await?;
    let legacy = store.get_server_secret(LEGACY_SECRET).await?;
    let file = path(data_dir);
    if let Some(ring) = read(data_dir)? {
        if let Some(m) = &marker {
            if !ring
                .entries()
                .any(|(_, e)| fingerprint(&e.key).as_slice() == m.as_slice())
            {
                return Err(FrankKeyError::Mismatch(format!(
                    "{} belongs to another deployment: none of its keys is the one this database was set up with",
                    file.display()
                )));
            }
        }
        if let Some(old) = legacy {
            let in_file = ring
                .entries()
                .any(|(_, e)| e.key.as_bytes().as_slice() == old.as_slice());
            if !in_file {
                return Err(FrankKeyError::Mismatch(format!(
                    "the database holds a franking key that {} lacks; move the key file away to have it rebuilt from the database",
                    file.display()
                )));
            }
            store.delete_server_secret(LEGACY_SECRET).await?;
            tracing::info!("deleted the franking key left in the database (it is in the key file)");
        }
        if marker.is_none() {
            set_marker(store, &ring).await?;
        }
        return Ok(ring);
    }
    if let Some(old) = legacy {
        let key = ServerKey::from_slice(&old).map_err(|_| {
            FrankKeyError::Mismatch("the franking key in the database is malformed".into())
        })?;
        let ring = Keyring::new(
            KeyId::new(1),
            KeyEntry {
                key,
                created_at_ms: 0,
            },
            true,
        );
        write(data_dir, &ring)?;
        if marker.is_none() {
            set_marker(store, &ring).await?;
        }
        store.delete_server_secret(LEGACY_SECRET).await?;
        tracing::warn!(
            file = %file.display(),
            "moved the franking key out of the database into its key file (key id 1, legacy)"
        );
        return Ok(ring);
    }
    if marker.is_some() {
        return Err(FrankKeyError::Mismatch(format!(
            "this database's franking keys are in a key file that is not here: copy {FILE_NAME} from another node's data directory (or a backup) to {}",
            file.display()
        )));
    }
    let ring = Keyring::new(
        KeyId::new(1),
        KeyEntry {
            key: ServerKey::random(),
            created_at_ms: now_ms,
        },
        false,
    );
    write(data_dir, &ring)?;
    if let Err(e) = set_marker(store, &ring).await {
        // Another node created the keys first: ours must not be used.
        let _ = std::fs::remove_file(&file);
        return Err(e);
    }
    tracing::info!(file = %file.display(), "created the franking key file");
    Ok(ring)
}

/// Records the keyring's fingerprint in the database; refuses if another keyring's is there.
async fn set_marker(store: &dyn Store, ring: &Keyring) -> Result<(), FrankKeyError> {
    let fp = ring_fingerprint(ring)
        .ok_or_else(|| FrankKeyError::Mismatch("the franking keyring is empty".into()))?;
    let stored = store.server_secret(MARKER_SECRET, &fp).await?;
    if stored.as_slice() != fp.as_slice() {
        return Err(FrankKeyError::Mismatch(
            "another server node created this database's franking keys at the same time; copy its key file here".into(),
        ));
    }
    Ok(())
}

/// Adds a fresh current key to the key file in `data_dir` (`haven admin frank-key rotate`).
/// Running servers keep tagging with the key they loaded until restarted.
pub fn rotate(data_dir: &Path, now_ms: u64) -> Result<KeyId, FrankKeyError> {
    let mut ring = read(data_dir)?.ok_or_else(|| missing(data_dir))?;
    let id = ring
        .rotate(now_ms)
        .map_err(|source| FrankKeyError::Malformed {
            path: path(data_dir),
            source,
        })?;
    write(data_dir, &ring)?;
    Ok(id)
}

/// The key file's keyring (`haven admin frank-key list`).
pub fn list(data_dir: &Path) -> Result<Keyring, FrankKeyError> {
    read(data_dir)?.ok_or_else(|| missing(data_dir))
}

fn missing(data_dir: &Path) -> FrankKeyError {
    FrankKeyError::Mismatch(format!(
        "no franking key file at {} (start the server once with this data directory to create it, or to move the key out of the database)",
        path(data_dir).display()
    ))
}
