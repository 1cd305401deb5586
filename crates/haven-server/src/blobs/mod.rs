//! Content-addressed storage of encrypted attachments, bounded in size, per account and in time.
//!
//! The server only ever sees ciphertext: clients encrypt each file with a fresh key before
//! uploading. A blob's id is the SHA-256 of its bytes, so the same upload twice is stored once and
//! a download can be checked by the client.
//!
//! On disk the blob directory and its subdirectories are `0700` and every blob `0600`
//! ([`crate::datadir`]); directories found looser at start are tightened. Blob files written by
//! older versions keep their mode, but the `0700` directories above them already shut out every
//! other account.
//!
//! Data flow of an upload (`PUT /v1/blobs`): the body streams into a temporary file
//! ([`BlobStore::stage`]), hashed as it goes and refused the moment it passes the size cap; the
//! owner's byte quota is checked and the record written in one transaction
//! ([`BlobRecords::record_blob`]); only then is the file renamed under its id
//! ([`BlobStore::commit`]). An aborted or refused upload leaves nothing behind (the staged file
//! is removed when dropped). A download streams from the file ([`BlobStore::open`]), so neither
//! direction holds a blob in memory, and a client that stops reading holds a few buffers, not
//! the file.
//!
//! Lifetime: a blob is kept for the blob TTL after its last upload (default: the queue TTL, as
//! long as the message announcing it may wait undelivered); the background purge drops expired
//! records and deletes the bytes no record names any more ([`BlobRecords::purge_blobs`]).
//! Blobs are *not* deleted earlier when "no live message references them": the server cannot
//! read messages, and although a sender could declare the blob ids a message carries, recipients
//! download an attachment after acknowledging the message (and again later, from their history),
//! so the last acknowledgement is no sign the blob is no longer needed. Deleting then would lose
//! files a recipient has been told about; the TTL bounds storage instead, and the per-account
//! quota bounds what one account can hold at a time.
//!
//! Trust: any authenticated device can fetch any live blob by id; ids are unguessable hashes of
//! ciphertext, so this reveals existence and size only to someone who already has the id.

use std::path::PathBuf;
use std::pin::Pin;

use async_trait::async_trait;
use axum::body::Bytes;
use futures_util::{Stream, StreamExt};
use haven_proto::BlobId;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWriteExt};

pub(crate) mod records;

pub use records::BlobRecords;

/// Blob storage errors.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// I/O failed; nothing was stored.
    #[error("blob storage error: {0}")]
    Io(#[from] std::io::Error),
    /// The upload passed the size cap; reading stopped and nothing was stored.
    #[error("attachment larger than {max} bytes")]
    TooLarge {
        /// The cap.
        max: u64,
    },
    /// The upload body failed (the client went away mid-upload); nothing was stored.
    #[error("upload interrupted: {0}")]
    Body(String),
}

/// An upload body: chunks of bytes, or the error that ended it.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, BlobError>> + Send>>;

/// A blob being read.
pub type BlobReader = Pin<Box<dyn AsyncRead + Send>>;

/// An upload written, hashed and synced, but not yet visible under its id. Dropping it without
/// [`BlobStore::commit`] removes it.
#[derive(Debug)]
pub struct Staged {
    /// The SHA-256 of the bytes.
    pub id: BlobId,
    /// Their length.
    pub size: u64,
    tmp: Option<PathBuf>,
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// An object store for blobs.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Streams `body` into a staging area, hashing it; refuses with [`BlobError::TooLarge`] as
    /// soon as more than `max` bytes arrived. On any error nothing is left behind.
    async fn stage(&self, body: ByteStream, max: u64) -> Result<Staged, BlobError>;
    /// Makes a staged upload visible under its id (atomically: a reader sees all or nothing).
    async fn commit(&self, staged: Staged) -> Result<BlobId, BlobError>;
    /// Opens a blob for reading: its length and a reader.
    async fn open(&self, id: &BlobId) -> Result<Option<(u64, BlobReader)>, BlobError>;
    /// Deletes a blob's bytes (no error if absent).
    async fn delete(&self, id: &BlobId) -> Result<(), BlobError>;
}

/// Blobs as files in a local directory (`<dir>/<first two hex digits>/<id>`). Uploads are
/// written to `<dir>/.staging/`, synced and renamed, so a crash never leaves a partial blob under
/// its id; leftovers in the staging directory are removed at start.
pub struct LocalBlobStore {
    dir: PathBuf,
    staging: PathBuf,
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
        let staging = dir.join(".staging");
        crate::datadir::ensure_private_dir(&staging)?;
        for entry in std::fs::read_dir(&staging)? {
            let _ = std::fs::remove_file(entry?.path());
        }
        Ok(LocalBlobStore { dir, staging })
    }

    fn path(&self, id: &BlobId) -> PathBuf {
        let s = id.as_str();
        self.dir.join(s.get(..2).unwrap_or("00")).join(s)
    }

    /// Files in the staging directory (uploads in progress); for tests.
    pub fn staged_files(&self) -> std::io::Result<usize> {
        Ok(std::fs::read_dir(&self.staging)?.count())
    }
}

#[async_trait]
impl BlobStore for LocalBlobStore {
    async fn stage(&self, mut body: ByteStream, max: u64) -> Result<Staged, BlobError> {
        let mut rnd = [0u8; 12];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut rnd);
        let tmp = self.staging.join(hex::encode(rnd));
        let std_file = {
            let tmp = tmp.clone();
            tokio::task::spawn_blocking(move || crate::datadir::new_private_file(&tmp))
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))??
        };
        let mut file = tokio::fs::File::from_std(std_file);
        // From here on, dropping `staged` (on any error) removes the file.
        let mut staged = Staged {
            id: BlobId::from_digest([0; 32]),
            size: 0,
            tmp: Some(tmp),
        };
        let mut hash = Sha256::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            staged.size = staged.size.saturating_add(chunk.len() as u64);
            if staged.size > max {
                return Err(BlobError::TooLarge { max });
            }
            hash.update(&chunk);
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        file.sync_all().await?;
        drop(file);
        staged.id = BlobId::from_digest(hash.finalize().into());
        Ok(staged)
    }

    async fn commit(&self, mut staged: Staged) -> Result<BlobId, BlobError> {
        let path = self.path(&staged.id);
        if let Some(parent) = path.parent() {
            let parent = parent.to_path_buf();
            tokio::task::spawn_blocking(move || crate::datadir::ensure_private_dir(&parent))
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))??;
        }
        if let Some(tmp) = staged.tmp.as_ref() {
            // Renaming over an existing blob is fine: same id, same bytes.
            tokio::fs::rename(tmp, &path).await?;
        }
        staged.tmp = None;
        Ok(staged.id.clone())
    }

    async fn open(&self, id: &BlobId) -> Result<Option<(u64, BlobReader)>, BlobError> {
        match tokio::fs::File::open(self.path(id)).await {
            Ok(f) => {
                let len = f.metadata().await?.len();
                Ok(Some((len, Box::pin(f))))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete(&self, id: &BlobId) -> Result<(), BlobError> {
        match tokio::fs::remove_file(self.path(id)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn body(chunks: Vec<Result<Bytes, BlobError>>) -> ByteStream {
        Box::pin(futures_util::stream::iter(chunks))
    }

    #[tokio::test]
    async fn stage_commit_open_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobStore::new(dir.path().to_path_buf()).unwrap();
        let staged = store
            .stage(
                body(vec![
                    Ok(Bytes::from_static(b"ab")),
                    Ok(Bytes::from_static(b"c")),
                ]),
                3,
            )
            .await
            .unwrap();
        assert_eq!(staged.size, 3);
        let id = store.commit(staged).await.unwrap();
        assert_eq!(id, BlobId::from_digest(Sha256::digest(b"abc").into()));
        assert_eq!(store.staged_files().unwrap(), 0);
        let (len, mut r) = store.open(&id).await.unwrap().unwrap();
        assert_eq!(len, 3);
        let mut out = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut r, &mut out)
            .await
            .unwrap();
        assert_eq!(out, b"abc");
        store.delete(&id).await.unwrap();
        assert!(store.open(&id).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn oversized_and_aborted_uploads_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobStore::new(dir.path().to_path_buf()).unwrap();
        let big = store
            .stage(body(vec![Ok(Bytes::from(vec![0u8; 10]))]), 9)
            .await
            .unwrap_err();
        assert!(matches!(big, BlobError::TooLarge { max: 9 }));
        let cut = store
            .stage(
                body(vec![
                    Ok(Bytes::from_static(b"abc")),
                    Err(BlobError::Body("reset".into())),
                ]),
                100,
            )
            .await
            .unwrap_err();
        assert!(matches!(cut, BlobError::Body(_)));
        // A staged upload dropped without commit is removed too.
        let staged = store
            .stage(body(vec![Ok(Bytes::from_static(b"abc"))]), 100)
            .await
            .unwrap();
        assert_eq!(store.staged_files().unwrap(), 1);
        drop(staged);
        assert_eq!(store.staged_files().unwrap(), 0);
    }
}
