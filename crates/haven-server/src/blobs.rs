//! Content-addressed storage of encrypted attachments.
//!
//! The server only ever sees ciphertext: clients encrypt each file with a fresh key before
//! uploading. A blob's id is the SHA-256 of its bytes, so the same upload twice is stored once and
//! a download can be checked by the client.
//!
//! On disk the blob directory and its subdirectories are `0700` and every blob `0600`
//! ([`crate::datadir`]); directories found looser at start are tightened. Blob files written by
//! older versions keep their mode, but the `0700` directories above them already shut out every
//! other account.

use std::path::PathBuf;

use async_trait::async_trait;
use haven_proto::BlobId;
use sha2::{Digest, Sha256};

/// Blob storage errors.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// I/O failed; nothing was stored.
    #[error("blob storage error: {0}")]
    Io(#[from] std::io::Error),
}

/// An object store for blobs.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Stores bytes under their SHA-256 and returns the id.
    async fn put(&self, bytes: &[u8]) -> Result<BlobId, BlobError>;
    /// Reads a blob.
    async fn get(&self, id: &BlobId) -> Result<Option<Vec<u8>>, BlobError>;
}

/// Blobs as files in a local directory (`<dir>/<first two hex digits>/<id>`), written to a
/// temporary file, synced and renamed, so a crash never leaves a partial blob under its id.
pub struct LocalBlobStore {
    dir: PathBuf,
}

impl LocalBlobStore {
    /// Uses (and creates, `0700`) `dir`; tightens it and its subdirectories if looser.
    pub fn new(dir: PathBuf) -> Result<Self, BlobError> {
        crate::datadir::ensure_private_dir(&dir)?;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                crate::datadir::tighten(&entry.path(), crate::datadir::DIR_MODE)?;
            }
        }
        Ok(LocalBlobStore { dir })
    }

    fn path(&self, id: &BlobId) -> PathBuf {
        let s = id.as_str();
        self.dir.join(s.get(..2).unwrap_or("00")).join(s)
    }
}

#[async_trait]
impl BlobStore for LocalBlobStore {
    async fn put(&self, bytes: &[u8]) -> Result<BlobId, BlobError> {
        let id = BlobId::from_digest(Sha256::digest(bytes).into());
        let path = self.path(&id);
        if tokio::fs::try_exists(&path).await? {
            return Ok(id);
        }
        let parent = path
            .parent()
            .map(PathBuf::from)
            .unwrap_or_else(|| self.dir.clone());
        let bytes = bytes.to_vec();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::io::Write;
            crate::datadir::ensure_private_dir(&parent)?;
            let mut rnd = [0u8; 8];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut rnd);
            let tmp = parent.join(format!(".tmp-{}", hex::encode(rnd)));
            let mut f = crate::datadir::new_private_file(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            drop(f);
            std::fs::rename(&tmp, &path)?;
            Ok(())
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))??;
        Ok(id)
    }

    async fn get(&self, id: &BlobId) -> Result<Option<Vec<u8>>, BlobError> {
        match tokio::fs::read(self.path(id)).await {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}
