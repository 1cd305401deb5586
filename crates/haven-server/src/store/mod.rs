//! Storage: the database is the source of truth for accounts, devices, sessions, key packages,
//! groups (epoch and member devices) and the per-device delivery queues.
//!
//! [`Store`] is implemented by [`sqlite::SqliteStore`] (the embedded default) and
//! [`postgres::PgStore`]; both run the conformance suite in `conformance.rs`. Every method is
//! atomic: it either does all it says or returns an error and changes nothing. Methods that
//! check-then-write (membership, epochs, limits) do the check inside the same transaction as the
//! write, so concurrent callers cannot both pass.
//!
//! Times are milliseconds since the Unix epoch, passed in by the caller (the server's clock), so
//! tests control them. Anything with an `expires_at` (queue entries, sessions, challenges, link
//! codes) is live while `now < expires_at` and dead from `expires_at` on.
//!
//! Queues: a message is stored once and each recipient device gets a queue entry. Queue ids are
//! unique, never reused, and for one device become visible in increasing order (an entry with a
//! smaller id is never committed after one with a larger id), so a client may page with "after
//! the last id I saw". The queue depth a limit is checked against counts the entries stored for
//! the device, including expired ones not yet purged. A `NewMessage` with a `sender` needs that
//! device to exist (`NotFound("device")`): fetched entries name the sender's user.
//!
//! Devices are never deleted: a removed device is *revoked* ([`Store::revoke_device`]) and from
//! then on is gone for every other method (not listed, not found, refused as `NotFound("device")`
//! by writes), while messages and history that name it keep their references.
//!
//! Every write that adds or removes queue entries keeps the queue accounting of [`crate::quota`]
//! (depth and bytes per device, bytes per account, each sender's share) in the same
//! transaction; application messages are refused with `QueueShare` when the sender's share of a
//! recipient's queue is used up, and every queued kind but the device-linked notice with `Limit`
//! when a recipient's depth or byte quota is. Rate-limit buckets ([`Store::take_token`]) live in
//! the database too.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use haven_proto::api::EntryKind;
use haven_proto::{DeviceId, GroupId, UserName};

pub use crate::quota::RateRule;

pub mod postgres;
pub mod sqlite;

#[cfg(test)]
pub(crate) mod conformance;

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// Errors from storage, grouped by cause so the HTTP layer can map them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such user, device, group, code or challenge.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A unique name or id is taken.
    #[error("{0} already exists")]
    AlreadyExists(&'static str),
    /// A commit named an epoch that is not the group's current one.
    #[error("stale epoch: the group is at epoch {current}")]
    EpochConflict {
        /// The group's current epoch.
        current: u64,
    },
    /// A message claims an epoch the group has not reached.
    #[error("the message is for a future epoch: the group is at epoch {current}")]
    FutureEpoch {
        /// The group's current epoch.
        current: u64,
    },
    /// The caller is not a member of the group (or a named device is not).
    #[error("not a member of this group")]
    NotMember,
    /// A membership change that does not fit the group (adding a member twice, say).
    #[error("invalid membership change: {0}")]
    InvalidMembership(&'static str),
    /// Removing this device would leave its user with no device; nothing was changed.
    #[error("a user's last device cannot be removed")]
    LastDevice,
    /// A sender's share of a recipient device's queue is used up (see [`crate::quota`]);
    /// nothing was written.
    #[error("{what} of the queue of device {recipient} is used up ({max})")]
    QueueShare {
        /// The recipient device whose queue refused.
        recipient: DeviceId,
        /// Which share ("the sending device's share of entries", …).
        what: &'static str,
        /// Its size.
        max: u64,
    },
    /// A limit would be exceeded; nothing was written.
    #[error("{what} limit of {max} reached")]
    Limit {
        /// Which limit.
        what: &'static str,
        /// Its value.
        max: u64,
    },
    /// The database failed; the transaction was rolled back.
    #[error("storage backend error: {0}")]
    Backend(String),
}

impl From<sqlx::Error> for StoreError {
    /// Unique-key violations become `AlreadyExists` and foreign-key violations `NotFound`, named
    /// after the table involved; everything else is `Backend`. The backends check for these
    /// cases explicitly where they can (`INSERT … ON CONFLICT DO NOTHING`, existence checks in
    /// the transaction); this mapping is the safety net for races those checks cannot see.
    fn from(e: sqlx::Error) -> Self {
        if let Some(db) = e.as_database_error() {
            // PostgreSQL names the table and constraint; SQLite puts "table.column" in the
            // message ("UNIQUE constraint failed: users.name").
            let hint = [db.table(), db.constraint(), Some(db.message())];
            if db.is_unique_violation() {
                return StoreError::AlreadyExists(record_name(&hint));
            }
            if db.is_foreign_key_violation() {
                // PostgreSQL names the constraint after the referencing column
                // ("challenges_device_id_fkey"); SQLite does not say.
                return StoreError::NotFound(referenced_name(db.constraint()));
            }
        }
        StoreError::Backend(e.to_string())
    }
}

/// The record kind a table, constraint or error message is about, for error messages.
fn record_name(hints: &[Option<&str>]) -> &'static str {
    const NAMES: [(&str, &str); 12] = [
        ("key_package_claims", "key package claim"),
        ("last_resort_key_packages", "key package"),
        ("key_packages", "key package"),
        ("link_codes", "link code"),
        ("server_secrets", "server secret"),
        ("group_members", "group member"),
        ("mls_groups", "group"),
        ("challenges", "challenge"),
        ("sessions", "session"),
        ("devices", "device"),
        ("users", "user"),
        ("messages", "message"),
    ];
    for hint in hints.iter().flatten() {
        for (table, name) in NAMES {
            if hint.contains(table) {
                return name;
            }
        }
    }
    "record"
}

/// The record kind a foreign-key constraint points at.
fn referenced_name(constraint: Option<&str>) -> &'static str {
    match constraint {
        Some(c) if c.contains("device_id") => "device",
        Some(c) if c.contains("user_name") => "user",
        Some(c) if c.contains("group_id") => "group",
        Some(c) if c.contains("message_id") => "message",
        _ => "referenced record",
    }
}

/// Result alias.
pub type StoreResult<T> = Result<T, StoreError>;

/// A device to create.
#[derive(Debug, Clone)]
pub struct NewDevice {
    /// Server-chosen random id.
    pub device_id: DeviceId,
    /// Label.
    pub name: String,
    /// Ed25519 authentication public key (32 bytes).
    pub auth_key: Vec<u8>,
    /// The MLS signature public key the device registered (signed with its auth key).
    pub mls_key: Vec<u8>,
    /// Creation time.
    pub created_at: Millis,
}

/// A stored device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    /// The device.
    pub device_id: DeviceId,
    /// Its user.
    pub user: UserName,
    /// Label.
    pub name: String,
    /// Ed25519 authentication public key.
    pub auth_key: Vec<u8>,
    /// Registered MLS signature key; `None` for a device registered before keys were bound.
    pub mls_key: Option<Vec<u8>>,
    /// Creation time.
    pub created_at: Millis,
}

/// A verified key package to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKeyPackage {
    /// The `MLSMessage` bytes.
    pub bytes: Vec<u8>,
    /// Its `KeyPackageRef`, recorded with each claim so a commit's adds can be matched to them.
    pub kp_ref: Vec<u8>,
}

/// Who claims key packages, for which group (see [`Store::claim_key_packages`]).
#[derive(Debug, Clone)]
pub struct KeyPackageClaim {
    /// The claiming device.
    pub claimer: DeviceId,
    /// The group the claimed devices are to join.
    pub group: GroupId,
    /// When the claim lapses.
    pub expires_at: Millis,
    /// Whether one-time packages may be handed out; if false every device's last-resort
    /// package is (the claimed user's one-time rate is used up, see [`crate::quota`]).
    pub one_time: bool,
}

/// A stored group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    /// The group.
    pub group_id: GroupId,
    /// Current epoch.
    pub epoch: u64,
    /// Member devices, sorted by id.
    pub members: Vec<DeviceId>,
}

/// The franking fields of an application message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFrank {
    /// The sender's commitment (32 bytes).
    pub commitment: Vec<u8>,
    /// The server's tag (32 bytes).
    pub server_tag: Vec<u8>,
}

/// A message to put into queues. Stored once; each recipient device gets a queue row.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// What it is.
    pub kind: EntryKind,
    /// Its group, for MLS messages.
    pub group_id: Option<GroupId>,
    /// The authenticated sender device, if any.
    pub sender: Option<DeviceId>,
    /// The bytes.
    pub payload: Vec<u8>,
    /// Franking envelope, for application messages.
    pub frank: Option<StoredFrank>,
    /// Receive time.
    pub received_at: Millis,
    /// After this the message is dropped from every queue (time-to-live).
    pub expires_at: Millis,
}

/// One entry of a device's queue, as fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    /// Queue id: unique, increasing in insertion order.
    pub id: i64,
    /// What it is.
    pub kind: EntryKind,
    /// Its group.
    pub group_id: Option<GroupId>,
    /// Sender user and device.
    pub sender: Option<(UserName, DeviceId)>,
    /// The bytes.
    pub payload: Vec<u8>,
    /// Franking envelope.
    pub frank: Option<StoredFrank>,
    /// Receive time.
    pub received_at: Millis,
}

/// A commit to apply (see [`Store::apply_commit`]).
#[derive(Debug, Clone)]
pub struct CommitApply {
    /// The group.
    pub group_id: GroupId,
    /// The epoch the commit was made in; must equal the current epoch.
    pub epoch: u64,
    /// The committing device; must be a member.
    pub sender: DeviceId,
    /// SHA-256 of the commit's MLS bytes, recorded for the epoch it is accepted in.
    pub commit_sha256: [u8; 32],
    /// Devices added (read from the verified commit): must exist and not be members.
    pub added: Vec<DeviceId>,
    /// Devices removed (read from the verified commit): must be members (the sender may not
    /// remove itself).
    pub removed: Vec<DeviceId>,
    /// `KeyPackageRef`s of the added key packages: each must be claimed by `sender` for this
    /// group and unexpired (see [`Store::claim_key_packages`]); the claims are consumed.
    pub claimed: Vec<Vec<u8>>,
    /// The group's public state after the commit (`groups::GroupView::state`).
    pub public_state: Vec<u8>,
    /// The commit, queued to every member before the change except the sender.
    pub commit: NewMessage,
    /// The Welcome, queued to the added devices (only ever together with the commit).
    pub welcome: Option<NewMessage>,
}

/// Limits enforced inside storage transactions.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most member devices per group.
    pub max_group_members: u64,
    /// Most one-time key packages stored per device.
    pub max_key_packages: u64,
    /// Most undelivered entries per device queue.
    pub max_queue_depth: u64,
    /// Most bytes of undelivered entries per device queue.
    pub max_queue_bytes: u64,
    /// Most bytes of undelivered entries over all devices of one recipient account.
    pub max_account_queue_bytes: u64,
    /// Most entries one sending device may have in one recipient device's queue.
    pub share_device_depth: u64,
    /// Most bytes one sending device may have in one recipient device's queue.
    pub share_device_bytes: u64,
    /// Most entries one sending account may have in one recipient device's queue.
    pub share_account_depth: u64,
    /// Most bytes one sending account may have in one recipient device's queue.
    pub share_account_bytes: u64,
    /// Most devices per account (checked when a device is linked).
    pub max_devices: u64,
}

/// The storage interface. All methods are atomic (see the module docs).
#[async_trait]
pub trait Store:
    crate::blobs::BlobRecords
    + crate::moderation::ModerationStore
    + crate::contacts::ContactStore
    + crate::device_lists::DeviceListStore
    + crate::kt::KtStore
    + crate::psi::PsiStore
    + Send
    + Sync
    + 'static
{
    // --- accounts and devices ---

    /// Creates a user with its first device. `AlreadyExists("user")` if the name is taken.
    async fn create_user(&self, user: &UserName, device: &NewDevice) -> StoreResult<()>;
    /// A device by id.
    async fn device(&self, device: &DeviceId) -> StoreResult<Option<DeviceRecord>>;
    /// A user's devices, sorted by creation time then id; `None` if the user does not exist.
    async fn user_devices(&self, user: &UserName) -> StoreResult<Option<Vec<DeviceRecord>>>;

    // --- login ---

    /// Stores a one-time login challenge for a device. `NotFound("device")` for an unknown
    /// device, `AlreadyExists("challenge")` if the nonce is stored already.
    async fn put_challenge(
        &self,
        nonce: &[u8],
        device: &DeviceId,
        expires_at: Millis,
    ) -> StoreResult<()>;
    /// Consumes a challenge: true if it existed for that device and had not expired. Single use
    /// (a second call returns false). Asking with another device neither succeeds nor consumes it.
    async fn take_challenge(
        &self,
        nonce: &[u8],
        device: &DeviceId,
        now: Millis,
    ) -> StoreResult<bool>;
    /// Stores a session, keyed by the SHA-256 of its token (the token itself is never stored).
    /// `NotFound("device")` for an unknown device, `AlreadyExists("session")` for a known hash.
    async fn put_session(
        &self,
        token_hash: &[u8],
        device: &DeviceId,
        expires_at: Millis,
    ) -> StoreResult<()>;
    /// The device of an unexpired session.
    async fn session_device(&self, token_hash: &[u8], now: Millis)
        -> StoreResult<Option<DeviceId>>;
    /// The device of an unexpired session and its user, in one lookup (every authenticated
    /// request asks this).
    async fn session_account(
        &self,
        token_hash: &[u8],
        now: Millis,
    ) -> StoreResult<Option<(DeviceId, UserName)>>;
    /// Deletes one session (`haven logout`). True if it existed.
    async fn revoke_session(&self, token_hash: &[u8]) -> StoreResult<bool>;
    /// Deletes every session of every device of `user` (`haven logout --all`). Returns how many
    /// were deleted; 0 for an unknown user.
    async fn revoke_user_sessions(&self, user: &UserName) -> StoreResult<u64>;

    // --- device removal ---

    /// Revokes `device` at `now` (see [`DeviceRecord`]; a revoked device is gone for every other
    /// method: `device` and `user_devices` leave it out, and writes naming it get
    /// `NotFound("device")`). In one transaction: marks it revoked; deletes its sessions,
    /// challenges, key packages (one-time and last-resort), the key-package claims naming it
    /// (as claimed device or as claimer), its queue entries (messages in no other queue go) and
    /// its group memberships (routing to it stops at once; the MLS Removes follow from the
    /// user's other devices); deletes its user's outstanding link codes; and queues `event`
    /// (kind `DeviceRemoved`) to the user's other devices, whatever their queue depth. Returns
    /// the groups it was a member of, sorted. The queue accounting of the removed entries
    /// ([`crate::quota`]) is released in the same transaction. `NotFound("device")` for an unknown or revoked
    /// device; `LastDevice` (nothing changed) if it is its user's only live device.
    async fn revoke_device(
        &self,
        device: &DeviceId,
        now: Millis,
        event: &NewMessage,
        limits: &Limits,
    ) -> StoreResult<Vec<GroupId>>;

    // --- device linking ---

    /// Stores a one-time link code (by hash) for a user. `NotFound("user")` for an unknown user,
    /// `AlreadyExists("link code")` for a known hash.
    async fn put_link_code(
        &self,
        code_hash: &[u8],
        user: &UserName,
        expires_at: Millis,
    ) -> StoreResult<()>;
    /// Consumes an unexpired link code and creates the device under its user, and queues `event`
    /// (kind `DeviceLinked`) to every other device of that user — all in one transaction.
    /// `NotFound("link code")` if the code is unknown, used or expired (an expired code is left for
    /// [`Store::purge_expired`]); `AlreadyExists("device")` if the device id is taken (the code
    /// stays usable). The event is queued whatever the depth of the queues: it is how a user's
    /// devices notice a device they did not add. Its `sender`, if any, may be the new device.
    /// `Limit { what: "devices per account" }` (the code stays usable) if the user already has
    /// `limits.max_devices` devices.
    async fn link_device(
        &self,
        code_hash: &[u8],
        now: Millis,
        device: &NewDevice,
        event: &NewMessage,
        limits: &Limits,
    ) -> StoreResult<UserName>;

    // --- key packages ---

    /// Adds one-time key packages and optionally replaces the last-resort one. Refuses with
    /// `Limit` (writing nothing) if the device would hold more than `max_key_packages`.
    /// Returns the number of one-time packages now stored. `NotFound("device")` for an unknown
    /// device. Replacing only the last-resort package is always allowed.
    async fn add_key_packages(
        &self,
        device: &DeviceId,
        packages: &[NewKeyPackage],
        last_resort: Option<&NewKeyPackage>,
        limits: &Limits,
    ) -> StoreResult<u32>;
    /// (one-time packages stored, whether a last-resort package is stored).
    async fn key_package_count(&self, device: &DeviceId) -> StoreResult<(u32, bool)>;
    /// For each device of `user`: takes (deletes) its oldest one-time package (only if
    /// `claim.one_time`), or else returns its last-resort package (kept). Devices with neither are left out. `None` if no such user.
    /// Each package handed out is recorded as claimed by `claim.claimer` for `claim.group`
    /// until `claim.expires_at` (a repeated claim of the same package renews it): only such a
    /// claim lets a commit add the device ([`CommitApply::claimed`]).
    async fn claim_key_packages(
        &self,
        user: &UserName,
        claim: &KeyPackageClaim,
    ) -> StoreResult<Option<Vec<(DeviceId, Vec<u8>)>>>;

    // --- groups ---

    /// Creates a group at epoch 0 with `creator` as its only member and its public state.
    /// `AlreadyExists("group")` if the id is taken, `NotFound("device")` for an unknown creator.
    async fn create_group(
        &self,
        group: &GroupId,
        creator: &DeviceId,
        now: Millis,
        public_state: &[u8],
    ) -> StoreResult<()>;
    /// A group.
    async fn group(&self, group: &GroupId) -> StoreResult<Option<GroupRecord>>;
    /// A group with its public state as of its current epoch (read together). The state is
    /// `None` for a group created before the server kept one.
    async fn group_view(
        &self,
        group: &GroupId,
    ) -> StoreResult<Option<(GroupRecord, Option<Vec<u8>>)>>;
    /// Whether `committer` had `commit_sha256` accepted as the commit of `epoch` (a commit
    /// resubmitted after its answer was lost; see [`Store::apply_commit`]).
    async fn accepted_commit(
        &self,
        group: &GroupId,
        epoch: u64,
        commit_sha256: &[u8; 32],
        committer: &DeviceId,
    ) -> StoreResult<bool>;
    /// Accepts a commit: in one transaction, checks that the sender is a member (`NotMember`,
    /// before anything else, so a non-member learns nothing), the epoch (`EpochConflict{current}`
    /// if it is not current), that every added key package was claimed by the sender for this
    /// group (`InvalidMembership`; the claims are consumed), the membership change
    /// (`InvalidMembership`, `NotFound("device")` for an unknown added device), the member limit
    /// and every recipient's queue depth (`Limit`); then advances the epoch by one, applies the
    /// change, queues the commit to the old members but the sender and the Welcome to the added
    /// devices, and stores the new public state. Returns the new group state.
    /// `NotFound("group")` for an unknown group.
    /// `InvalidMembership` covers: adding a member, adding a device twice, removing a non-member,
    /// removing a device twice, and the sender removing itself. Without a Welcome the added
    /// devices are queued nothing.
    ///
    /// **Resubmission.** The accepted commit's hash and committer are recorded per epoch. The
    /// same device submitting the same commit (same `commit_sha256`) for an epoch that already
    /// accepted it gets `Ok` with the group's current state and nothing changes: a committer
    /// that lost the answer (crash, dropped connection) learns that its commit is in and merges
    /// it, instead of mistaking it for a lost race. The record is purged with the commit's
    /// time-to-live (`purge_expired`).
    async fn apply_commit(&self, commit: &CommitApply, limits: &Limits)
        -> StoreResult<GroupRecord>;
    /// A member leaves: removes `device` from the group's routing set, queues `proposal` (its
    /// verified Remove proposal) to the remaining members and stores `public_state` (the state
    /// with the proposal queued), in one transaction. The group must still be at `epoch`
    /// (`EpochConflict`); the epoch is unchanged. Returns the number of recipients.
    /// `NotFound("group")`, `NotMember` if `device` is not a member, and `Limit` if a remaining
    /// member's queue is full (the device then stays a member).
    async fn leave_group(
        &self,
        group: &GroupId,
        device: &DeviceId,
        epoch: u64,
        proposal: &NewMessage,
        public_state: &[u8],
        limits: &Limits,
    ) -> StoreResult<u32>;

    // --- delivery ---

    /// Queues a group message from `sender` (which must be a member: `NotMember`) to every other
    /// member device, in one transaction; `Limit` if any recipient queue is full (nothing
    /// written). Returns the number of recipients. `NotFound("group")` for an unknown group.
    async fn enqueue_group(
        &self,
        group: &GroupId,
        sender: &DeviceId,
        message: &NewMessage,
        limits: &Limits,
    ) -> StoreResult<u32>;
    /// [`Store::enqueue_group`] for an application message encrypted in `epoch`: refuses with
    /// `FutureEpoch { current }` (writing nothing) if `epoch` is ahead of the group's, checked in
    /// the same transaction, and returns the recipient devices (sorted by id) instead of their
    /// number, so that the caller can wake them without reading the group again.
    async fn enqueue_application(
        &self,
        group: &GroupId,
        sender: &DeviceId,
        epoch: u64,
        message: &NewMessage,
        limits: &Limits,
    ) -> StoreResult<Vec<DeviceId>>;
    /// A device's unexpired entries with id > `after`, in id order, at most `limit`.
    async fn fetch_queue(
        &self,
        device: &DeviceId,
        after: i64,
        limit: u32,
        now: Millis,
    ) -> StoreResult<Vec<QueuedMessage>>;
    /// Removes entries from the device's queue (ids of other devices are ignored). Returns how
    /// many were removed. Messages no longer in any queue are deleted.
    async fn ack(&self, device: &DeviceId, ids: &[i64]) -> StoreResult<u32>;
    /// Drops expired entries (releasing their queue accounting), sessions, challenges, link
    /// codes, key-package claims and rate-limit buckets that are full again. Returns the entries
    /// dropped.
    async fn purge_expired(&self, now: Millis) -> StoreResult<u64>;

    // --- rate limits ---

    /// Takes one token from the bucket `key` shaped by `rule` (see [`crate::quota`]): refills it
    /// by the time since its last update (a fresh bucket is full), then takes a token if there is
    /// one. True if a token was taken. One atomic statement: concurrent callers, on any node,
    /// never spend the same token twice. A `now` older than the bucket's last update refills
    /// nothing. Buckets that are full again are dropped by [`Store::purge_expired`].
    async fn take_token(&self, key: &str, rule: RateRule, now: Millis) -> StoreResult<bool>;

    // --- server secrets ---

    /// Returns the server secret named `name`, creating it from `fresh` if absent (first call
    /// wins under concurrency).
    async fn server_secret(&self, name: &str, fresh: &[u8]) -> StoreResult<Vec<u8>>;
    /// The server secret named `name`, if any (never creates one).
    async fn get_server_secret(&self, name: &str) -> StoreResult<Option<Vec<u8>>>;
    /// Deletes the server secret named `name`; true if it existed. The backends also scrub the
    /// deleted bytes from their files where they can (SQLite: `secure_delete`, so the page
    /// that reaches the database file at the next checkpoint is zeroed; PostgreSQL: `VACUUM
    /// FULL` of the table, which rewrites it), since the secret moved elsewhere
    /// for a reason (the franking key, [`crate::frank_keys`]).
    async fn delete_server_secret(&self, name: &str) -> StoreResult<bool>;
}

/// Opens the store named by `url_or_path`: `postgres://…` or `postgresql://…` connects to
/// PostgreSQL ([`postgres::PgStore`]); `sqlite::memory:` opens a private in-memory SQLite
/// database; `sqlite://PATH`, `sqlite:PATH` or a plain path opens (creating it if needed) a SQLite
/// database file ([`sqlite::SqliteStore`]). Migrations run before it returns.
pub async fn open_store(url_or_path: &str) -> StoreResult<Arc<dyn Store>> {
    if url_or_path.starts_with("postgres://") || url_or_path.starts_with("postgresql://") {
        return Ok(Arc::new(postgres::PgStore::connect(url_or_path).await?));
    }
    if url_or_path == "sqlite::memory:" {
        return Ok(Arc::new(sqlite::SqliteStore::open_in_memory().await?));
    }
    let path = url_or_path
        .strip_prefix("sqlite://")
        .or_else(|| url_or_path.strip_prefix("sqlite:"))
        .unwrap_or(url_or_path);
    if path.is_empty() {
        return Err(StoreError::Backend("empty SQLite database path".into()));
    }
    Ok(Arc::new(sqlite::SqliteStore::open(Path::new(path)).await?))
}

// --- shared by the backends ---

/// What a valid commit does, worked out from the group's state by [`plan_commit`].
#[derive(Debug)]
pub(crate) struct CommitPlan {
    /// The epoch after the commit.
    pub new_epoch: u64,
    /// Members before the commit except the sender (removed members included): they get the
    /// commit.
    pub commit_to: Vec<DeviceId>,
    /// The added devices, if there is a Welcome: they get it.
    pub welcome_to: Vec<DeviceId>,
    /// Every device that gets something (`commit_to` then `welcome_to`; the two are disjoint).
    pub recipients: Vec<DeviceId>,
    /// Members after the commit, sorted.
    pub members_after: Vec<DeviceId>,
}

/// Whether `commit` resubmits the commit recorded for its epoch (`recorded`: hash and committer).
pub(crate) fn is_resubmission(commit: &CommitApply, recorded: Option<(Vec<u8>, String)>) -> bool {
    recorded.is_some_and(|(hash, committer)| {
        hash.as_slice() == commit.commit_sha256.as_slice() && committer == commit.sender.as_str()
    })
}

/// Checks a commit against the group's current `epoch` and `members` (everything but whether
/// the added devices exist and the queue depths, which need the database).
pub(crate) fn plan_commit(
    commit: &CommitApply,
    epoch: u64,
    members: &[DeviceId],
    limits: &Limits,
) -> StoreResult<CommitPlan> {
    let current: BTreeSet<&DeviceId> = members.iter().collect();
    if !current.contains(&commit.sender) {
        return Err(StoreError::NotMember);
    }
    if commit.epoch != epoch {
        return Err(StoreError::EpochConflict { current: epoch });
    }
    let mut added = BTreeSet::new();
    for d in &commit.added {
        if current.contains(d) {
            return Err(StoreError::InvalidMembership(
                "an added device is already a member",
            ));
        }
        if !added.insert(d) {
            return Err(StoreError::InvalidMembership("a device is added twice"));
        }
    }
    let mut removed = BTreeSet::new();
    for d in &commit.removed {
        if *d == commit.sender {
            return Err(StoreError::InvalidMembership(
                "the committer cannot remove itself",
            ));
        }
        if !current.contains(d) {
            return Err(StoreError::InvalidMembership(
                "a removed device is not a member",
            ));
        }
        if !removed.insert(d) {
            return Err(StoreError::InvalidMembership("a device is removed twice"));
        }
    }
    let members_after: Vec<DeviceId> = current
        .iter()
        .filter(|d| !removed.contains(*d))
        .chain(added.iter())
        .map(|d| (*d).clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if u64::try_from(members_after.len()).unwrap_or(u64::MAX) > limits.max_group_members {
        return Err(StoreError::Limit {
            what: "group members",
            max: limits.max_group_members,
        });
    }
    // Epochs are stored as signed 64-bit integers.
    let new_epoch = epoch
        .checked_add(1)
        .filter(|e| i64::try_from(*e).is_ok())
        .ok_or(StoreError::Limit {
            what: "epoch",
            max: i64::MAX.unsigned_abs(),
        })?;
    let commit_to: Vec<DeviceId> = current
        .iter()
        .filter(|d| **d != &commit.sender)
        .map(|d| (*d).clone())
        .collect();
    let welcome_to: Vec<DeviceId> = if commit.welcome.is_some() {
        added.iter().map(|d| (*d).clone()).collect()
    } else {
        Vec::new()
    };
    let recipients = commit_to.iter().chain(welcome_to.iter()).cloned().collect();
    Ok(CommitPlan {
        new_epoch,
        commit_to,
        welcome_to,
        recipients,
        members_after,
    })
}

/// A queue entry joined with its message, as both backends select it.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct QueueRow {
    pub id: i64,
    pub kind: String,
    pub group_id: Option<Vec<u8>>,
    pub sender_user: Option<String>,
    pub sender_device: Option<String>,
    pub payload: Vec<u8>,
    pub commitment: Option<Vec<u8>>,
    pub server_tag: Option<Vec<u8>>,
    pub received_at: i64,
}

impl QueueRow {
    /// Checks the stored values back into typed form.
    pub(crate) fn into_queued(self) -> StoreResult<QueuedMessage> {
        let kind = EntryKind::parse(&self.kind).ok_or_else(|| corrupt("entry kind"))?;
        let group_id = self
            .group_id
            .map(|g| GroupId::from_bytes(&g).map_err(|_| corrupt("group id")))
            .transpose()?;
        let sender = match (self.sender_user, self.sender_device) {
            (Some(u), Some(d)) => Some((parse_user(&u)?, parse_device(&d)?)),
            _ => None,
        };
        let frank = match (self.commitment, self.server_tag) {
            (Some(commitment), Some(server_tag)) => Some(StoredFrank {
                commitment,
                server_tag,
            }),
            _ => None,
        };
        Ok(QueuedMessage {
            id: self.id,
            kind,
            group_id,
            sender,
            payload: self.payload,
            frank,
            received_at: self.received_at,
        })
    }
}

/// A device row as both backends select it.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct DeviceRow {
    pub id: String,
    pub user_name: String,
    pub name: String,
    pub auth_key: Vec<u8>,
    pub mls_key: Option<Vec<u8>>,
    pub created_at: i64,
}

impl DeviceRow {
    pub(crate) fn into_record(self) -> StoreResult<DeviceRecord> {
        Ok(DeviceRecord {
            device_id: parse_device(&self.id)?,
            user: parse_user(&self.user_name)?,
            name: self.name,
            auth_key: self.auth_key,
            mls_key: self.mls_key,
            created_at: self.created_at,
        })
    }
}

/// A stored value that does not parse: the database was changed behind the server's back.
pub(crate) fn corrupt(what: &str) -> StoreError {
    StoreError::Backend(format!("corrupt {what} in the database"))
}

pub(crate) fn parse_device(s: &str) -> StoreResult<DeviceId> {
    DeviceId::new(s).map_err(|_| corrupt("device id"))
}

pub(crate) fn parse_user(s: &str) -> StoreResult<UserName> {
    UserName::new(s).map_err(|_| corrupt("user name"))
}

pub(crate) fn epoch_from_db(e: i64) -> StoreResult<u64> {
    u64::try_from(e).map_err(|_| corrupt("epoch"))
}

pub(crate) fn epoch_to_db(e: u64) -> StoreResult<i64> {
    i64::try_from(e).map_err(|_| StoreError::Limit {
        what: "epoch",
        max: i64::MAX.unsigned_abs(),
    })
}

/// A limit as a database integer (limits beyond `i64::MAX` are as good as none).
pub(crate) fn limit_to_db(max: u64) -> i64 {
    i64::try_from(max).unwrap_or(i64::MAX)
}

/// A count as the `u32` the trait returns.
pub(crate) fn count_u32(n: impl TryInto<u32>) -> StoreResult<u32> {
    n.try_into()
        .map_err(|_| StoreError::Backend("count out of range".into()))
}

/// The franking columns of a message.
pub(crate) fn frank_columns(m: &NewMessage) -> (Option<&[u8]>, Option<&[u8]>) {
    match &m.frank {
        Some(f) => (Some(f.commitment.as_slice()), Some(f.server_tag.as_slice())),
        None => (None, None),
    }
}
