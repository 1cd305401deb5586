//! The key directory's service: akd's `Directory` over the server's database, the batching
//! publisher, root signing, and the proofs the endpoints serve.
//!
//! **Publishing.** Uploaded lists wait in `kt_pending` (queued in the upload's transaction).
//! The publisher takes the queue every interval (default 1 s; `haven server
//! --kt-interval-ms`), or at once when a client asks (`POST /v1/kt/publish`, which a device
//! that just uploaded a list calls before it uses the list), publishes it as one akd epoch and
//! signs the new root. One node at a time publishes (a lease row, `kt_publisher`); the others
//! serve proofs from the same database.
//!
//! **Crash safety.** akd writes an epoch in one database transaction. Everything after it is
//! idempotent: the root of an epoch is signed when first needed (the next publish, a lookup, an
//! audit) if the process died before signing it, and a queued list whose value the directory
//! already holds is dropped from the queue instead of published twice.

use std::sync::Arc;
use std::time::Duration;

use akd::storage::StorageManager;
use akd::{AkdLabel, AkdValue, AzksParallelismConfig, EpochHash, HistoryParams};
use haven_kt::directory::{
    encode_audit_proof, encode_history_proof, encode_lookup_proof, KtConfig, KtKeys, SignedRoot,
    VrfSecret,
};
use haven_proto::UserName;

use super::akd_db::AkdDb;
use super::keys::KtKeyPair;
use super::store::KtStore;
use crate::service::ServiceError;

/// akd's directory as the server runs it.
pub type Dir = akd::Directory<KtConfig, AkdDb, VrfSecret>;

/// Most queued lists in one epoch.
pub const MAX_BATCH: u32 = 20_000;
/// Lifetime of the publish-time node cache's entries (longer than any one publish).
const PUBLISH_CACHE_LIFETIME: Duration = Duration::from_secs(3600);
/// Memory bound of the publish-time node cache.
const PUBLISH_CACHE_BYTES: usize = 512 * 1024 * 1024;
/// How long a publisher lease lasts without renewal.
const LEASE_MS: i64 = 30_000;
/// Longest range of one audit answer.
pub const MAX_AUDIT_EPOCHS: u64 = haven_proto::api::KtAudit::MAX_EPOCHS;

/// The key directory.
pub struct Kt {
    dir: Dir,
    store: Arc<dyn KtStore>,
    keys: KtKeyPair,
    node: String,
    publishing: tokio::sync::Mutex<()>,
    wake: tokio::sync::Notify,
    interval: Duration,
}

fn internal(what: &str, e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Internal(format!("key directory: {what}: {e}"))
}

impl Kt {
    /// Opens (or, on a fresh database, creates at epoch 0) the directory in `store`. `node`
    /// names this server node for the publisher lease: it must stay the same across restarts
    /// of one node (else a restarted node waits for its own old lease to expire) and differ
    /// between nodes (the server uses its data directory's path).
    pub async fn open(
        store: Arc<dyn KtStore>,
        keys: KtKeyPair,
        interval: Duration,
        node: &str,
    ) -> Result<Self, ServiceError> {
        let db = AkdDb::new(store.clone());
        let dir = Dir::new(
            StorageManager::new_no_cache(db),
            keys.vrf.clone(),
            AzksParallelismConfig::default(),
        )
        .await
        .map_err(|e| internal("open", e))?;
        let kt = Kt {
            dir,
            store,
            keys,
            node: node.to_string(),
            publishing: tokio::sync::Mutex::new(()),
            wake: tokio::sync::Notify::new(),
            interval,
        };
        kt.current_root().await?;
        Ok(kt)
    }

    /// The public keys clients pin.
    pub fn keys(&self) -> &KtKeys {
        &self.keys.public
    }

    /// The signed root of an epoch akd reports, signing (and recording) it if no root of that
    /// epoch is recorded yet. A recorded root that differs is refused: the directory or the
    /// roots table was altered.
    async fn signed(&self, eh: EpochHash) -> Result<SignedRoot, ServiceError> {
        // Every lookup comes here: a read, and a write only the first time an epoch is seen.
        let recorded = self.store.kt_roots(eh.epoch(), eh.epoch()).await?;
        let stored = match recorded.first() {
            Some(r) => *r,
            None => {
                let fresh = SignedRoot::sign(&self.keys.root, eh.epoch(), eh.hash());
                self.store
                    .kt_put_root(&fresh, crate::service::now_ms())
                    .await?
            }
        };
        if stored.root != eh.hash() {
            return Err(ServiceError::Internal(format!(
                "key directory: the recorded root of epoch {} is not the directory's",
                eh.epoch()
            )));
        }
        Ok(stored)
    }

    /// The newest epoch's signed root.
    pub async fn current_root(&self) -> Result<SignedRoot, ServiceError> {
        let eh = self
            .dir
            .get_epoch_hash()
            .await
            .map_err(|e| internal("epoch", e))?;
        self.signed(eh).await
    }

    /// Publishes the queued lists as one epoch, if this node holds (or takes) the publisher
    /// lease and anything is queued; the newest signed root either way.
    pub async fn publish_pending(&self) -> Result<SignedRoot, ServiceError> {
        let _one = self.publishing.lock().await;
        let now = crate::service::now_ms();
        if !self.store.kt_take_lease(&self.node, now, LEASE_MS).await? {
            return self.current_root().await;
        }
        // Make sure the newest epoch is signed before the next one exists.
        let current = self.current_root().await?;
        let pending = self.store.kt_pending(MAX_BATCH).await?;
        if pending.is_empty() {
            return Ok(current);
        }
        let labels = pending
            .iter()
            .map(|p| p.user.as_str().as_bytes().to_vec())
            .collect();
        let have: std::collections::HashMap<Vec<u8>, Vec<u8>> = self
            .store
            .kt_latest_values(labels, current.epoch)
            .await?
            .into_iter()
            .map(|v| (v.label, v.value))
            .collect();
        let mut updates = Vec::new();
        let mut done = Vec::new();
        for p in pending {
            let label = p.user.as_str().as_bytes().to_vec();
            if have.get(&label) != Some(&p.value) {
                updates.push((AkdLabel(label), AkdValue(p.value)));
            }
            done.push((p.user, p.list_version));
        }
        let root = if updates.is_empty() {
            current
        } else {
            let n = updates.len();
            let started = std::time::Instant::now();
            let eh = self
                .publisher_dir()
                .await?
                .publish(updates)
                .await
                .map_err(|e| internal("publish", e))?;
            let root = self.signed(eh).await?;
            tracing::info!(
                epoch = root.epoch,
                updates = n,
                ms = started.elapsed().as_millis() as u64,
                "published a key-directory epoch"
            );
            root
        };
        self.store.kt_published(done).await?;
        Ok(root)
    }

    /// A directory over the same database for one publish, with akd's node cache: akd preloads
    /// the nodes an insertion visits level by level in batches, which only pays with a cache
    /// to preload into (without one every node is a round trip to the database). The cache
    /// lives for this one epoch — this node holds the publisher lease, and the next batch
    /// starts from the database again — so nothing another node wrote can be stale in it.
    /// Lookups keep using the uncached directory.
    async fn publisher_dir(&self) -> Result<Dir, ServiceError> {
        Dir::new(
            StorageManager::new(
                AkdDb::new(self.store.clone()),
                Some(PUBLISH_CACHE_LIFETIME),
                Some(PUBLISH_CACHE_BYTES),
                None,
            ),
            self.keys.vrf.clone(),
            AzksParallelismConfig::default(),
        )
        .await
        .map_err(|e| internal("open for publishing", e))
    }

    /// The keys (tests reopen a directory with them).
    #[cfg(test)]
    pub(crate) fn key_pair(&self) -> &KtKeyPair {
        &self.keys
    }

    /// Publishes the queue and signs the root but leaves the queue as it is: the state a
    /// publisher leaves when it is killed between akd's commit and clearing the queue.
    #[cfg(test)]
    pub(crate) async fn publish_crashing_before_clearing(
        &self,
    ) -> Result<SignedRoot, ServiceError> {
        let pending = self.store.kt_pending(MAX_BATCH).await?;
        let updates = pending
            .into_iter()
            .map(|p| {
                (
                    AkdLabel(p.user.as_str().as_bytes().to_vec()),
                    AkdValue(p.value),
                )
            })
            .collect();
        let eh = self
            .dir
            .publish(updates)
            .await
            .map_err(|e| internal("publish", e))?;
        self.signed(eh).await
    }

    /// Asks the publisher loop to publish now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Runs the publisher until the process ends.
    pub fn spawn_publisher(self: &Arc<Self>) {
        let kt = self.clone();
        tokio::spawn(async move {
            loop {
                let _ = tokio::time::timeout(kt.interval, kt.wake.notified()).await;
                if let Err(e) = kt.publish_pending().await {
                    tracing::warn!(error = %e, "key-directory publish failed");
                }
            }
        });
    }

    /// A lookup proof of `user` at the newest epoch.
    pub async fn lookup(&self, user: &UserName) -> Result<(SignedRoot, Vec<u8>), ServiceError> {
        let (proof, eh) = self
            .dir
            .lookup(AkdLabel::from(user.as_str()))
            .await
            .map_err(not_found_or("lookup"))?;
        Ok((self.signed(eh).await?, encode_lookup_proof(&proof)))
    }

    /// A complete history proof of `user` at the newest epoch.
    pub async fn history(&self, user: &UserName) -> Result<(SignedRoot, Vec<u8>), ServiceError> {
        let (proof, eh) = self
            .dir
            .key_history(&AkdLabel::from(user.as_str()), HistoryParams::Complete)
            .await
            .map_err(not_found_or("history"))?;
        Ok((self.signed(eh).await?, encode_history_proof(&proof)))
    }

    /// The append-only proof from `from` to `to` with the signed roots of `from..=to`.
    pub async fn audit(
        &self,
        from: u64,
        to: u64,
    ) -> Result<(Vec<SignedRoot>, Vec<u8>), ServiceError> {
        let current = self.current_root().await?;
        if from >= to || to > current.epoch {
            return Err(ServiceError::BadRequest(format!(
                "an audit needs from < to <= {} (the newest epoch)",
                current.epoch
            )));
        }
        if to - from > MAX_AUDIT_EPOCHS {
            return Err(ServiceError::BadRequest(format!(
                "at most {MAX_AUDIT_EPOCHS} epochs per audit answer"
            )));
        }
        let roots = self.store.kt_roots(from, to).await?;
        if roots.len() as u64 != to - from + 1 {
            return Err(ServiceError::Internal(format!(
                "key directory: signed roots missing between epochs {from} and {to}"
            )));
        }
        let proof = self
            .dir
            .audit(from, to)
            .await
            .map_err(|e| internal("audit", e))?;
        Ok((roots, encode_audit_proof(&proof)))
    }
}

fn not_found_or(what: &'static str) -> impl Fn(akd::errors::AkdError) -> ServiceError {
    move |e| match e {
        akd::errors::AkdError::Storage(akd::errors::StorageError::NotFound(_)) => {
            ServiceError::NotFound("user in the key directory")
        }
        e => internal(what, e),
    }
}
