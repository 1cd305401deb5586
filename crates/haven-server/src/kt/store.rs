//! The key directory's store: akd's records and value states, the publish queue, the signed
//! roots and the publisher lease. Both backends implement [`KtStore`] in this folder
//! (`sqlite.rs`, `postgres.rs`); [`super::akd_db::AkdDb`] adapts it to akd's `Database` trait,
//! and `conformance.rs` runs akd's own storage test cases and Haven's over both. Every method
//! is one transaction.

use async_trait::async_trait;
use haven_kt::directory::SignedRoot;
use haven_proto::UserName;

use crate::store::{corrupt, Millis, StoreResult};

/// One akd value state: the value a label had from an epoch on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueRow {
    /// The label (user name bytes).
    pub label: Vec<u8>,
    /// The epoch the value was published in.
    pub epoch: u64,
    /// The label's version (1, 2, …).
    pub version: u64,
    /// akd's node label of this version: its length in bits…
    pub node_len: u32,
    /// …and its value.
    pub node_val: [u8; 32],
    /// The value (a signed device list's encoding, or akd's tombstone).
    pub value: Vec<u8>,
}

/// A list waiting to be published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The account.
    pub user: UserName,
    /// The list's version.
    pub list_version: u64,
    /// The signed list's encoding (the directory value).
    pub value: Vec<u8>,
    /// When it was queued.
    pub queued_at: Millis,
}

/// Storage of the key directory.
#[async_trait]
pub trait KtStore: Send + Sync {
    /// Writes akd records (`(full binary id, encoded record)`, replacing any with the same id)
    /// and value states (replacing any of the same label and epoch), all or nothing.
    async fn kt_write(
        &self,
        records: Vec<(Vec<u8>, Vec<u8>)>,
        values: Vec<ValueRow>,
    ) -> StoreResult<()>;
    /// The encoded records of those `ids` that exist (in no particular order).
    async fn kt_records(&self, ids: Vec<Vec<u8>>) -> StoreResult<Vec<Vec<u8>>>;
    /// Every value state of `label`, oldest epoch first.
    async fn kt_values(&self, label: Vec<u8>) -> StoreResult<Vec<ValueRow>>;
    /// For each of `labels`, its newest value state with an epoch at most `max_epoch`
    /// (labels without one are left out).
    async fn kt_latest_values(
        &self,
        labels: Vec<Vec<u8>>,
        max_epoch: u64,
    ) -> StoreResult<Vec<ValueRow>>;
    /// The oldest `limit` queued lists.
    async fn kt_pending(&self, limit: u32) -> StoreResult<Vec<Pending>>;
    /// Removes the queued lists that were published — each `(user, list_version)` only if the
    /// queue still holds that version (a newer upload stays queued).
    async fn kt_published(&self, done: Vec<(UserName, u64)>) -> StoreResult<()>;
    /// Records `root` as the signed root of its epoch unless one is recorded; returns the
    /// recorded one (the caller compares: a different root for a stored epoch means the
    /// directory or the roots were altered).
    async fn kt_put_root(&self, root: &SignedRoot, at: Millis) -> StoreResult<SignedRoot>;
    /// The recorded signed roots of epochs `from..=to`, oldest first.
    async fn kt_roots(&self, from: u64, to: u64) -> StoreResult<Vec<SignedRoot>>;
    /// Takes or renews the publisher lease for `holder` until `now + ttl`; false if another
    /// holder's lease has not expired.
    async fn kt_take_lease(&self, holder: &str, now: Millis, ttl: Millis) -> StoreResult<bool>;
}

/// An epoch or version as the databases store it.
pub(crate) fn to_db(v: u64) -> StoreResult<i64> {
    i64::try_from(v).map_err(|_| crate::store::StoreError::Limit {
        what: "key directory epoch or version",
        max: i64::MAX as u64,
    })
}

pub(crate) fn from_db(v: i64, what: &'static str) -> StoreResult<u64> {
    u64::try_from(v).map_err(|_| corrupt(what))
}

/// A value row as read: (label, epoch, version, node_len, node_val, value).
pub(crate) type RawValue = (Vec<u8>, i64, i64, i64, Vec<u8>, Vec<u8>);

pub(crate) fn value_from_row(
    (label, epoch, version, len, val, value): RawValue,
) -> StoreResult<ValueRow> {
    Ok(ValueRow {
        label,
        epoch: from_db(epoch, "kt value epoch")?,
        version: from_db(version, "kt value version")?,
        node_len: u32::try_from(len).map_err(|_| corrupt("kt node label"))?,
        node_val: val.try_into().map_err(|_| corrupt("kt node label"))?,
        value,
    })
}

/// A root row as read: (epoch, root, signature).
pub(crate) type RawRoot = (i64, Vec<u8>, Vec<u8>);

pub(crate) fn root_from_row((epoch, root, sig): RawRoot) -> StoreResult<SignedRoot> {
    Ok(SignedRoot {
        epoch: from_db(epoch, "kt root epoch")?,
        root: root.try_into().map_err(|_| corrupt("kt root"))?,
        signature: sig.try_into().map_err(|_| corrupt("kt root signature"))?,
    })
}

/// A pending row as read: (user, list_version, value, queued_at).
pub(crate) type RawPending = (String, i64, Vec<u8>, i64);

pub(crate) fn pending_from_row((user, v, value, at): RawPending) -> StoreResult<Pending> {
    Ok(Pending {
        user: UserName::new(&user).map_err(|_| corrupt("kt pending user"))?,
        list_version: from_db(v, "kt pending version")?,
        value,
        queued_at: at,
    })
}
