//! The PostgreSQL backend, for deployments with several stateless server nodes.
//!
//! Transactions run at READ COMMITTED and serialise on row locks where they check before they
//! write (`FOR NO KEY UPDATE`: exclusive among writers, but no obstacle to the `KEY SHARE` locks
//! that foreign-key checks take):
//! - the group row, locked for commits and leaves and `FOR SHARE` for group messages, so exactly
//!   one commit per epoch wins and a message is routed to the membership of one definite point
//!   in the commit order;
//! - every recipient's device row, locked in id order before its queue depth is checked and its
//!   queue rows are inserted. The lock is held to commit, so two transactions never both pass a
//!   depth check, and for one device queue ids (from a sequence) become visible in increasing
//!   order — a client's "after" cursor never skips an entry that commits late.
//!
//! Locks are always taken group first, then devices by id. A deadlock (`40P01`) or serialization
//! failure (`40001`) that happens anyway rolls the whole transaction back, and it is retried a
//! few times before `Backend` is returned.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use haven_proto::{DeviceId, GroupId, UserName};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};

use crate::quota::postgres as quota;
use crate::quota::{Checks, RateRule};

use super::{
    count_u32, epoch_from_db, epoch_to_db, frank_columns, is_resubmission, limit_to_db,
    parse_device, parse_user, plan_commit, CommitApply, DeviceRecord, DeviceRow, GroupRecord,
    KeyPackageClaim, Limits, Millis, NewDevice, NewKeyPackage, NewMessage, QueueRow, QueuedMessage,
    Store, StoreError, StoreResult,
};

/// Connections per server node.
const MAX_CONNECTIONS: u32 = 16;
/// How long a request waits for a pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts at a transaction that hits a deadlock or serialization failure.
const ATTEMPTS: u32 = 5;

/// The PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgStore {
    pub(crate) pool: PgPool,
}

/// An error inside a transaction: either the store's answer, or a database error that may be
/// worth retrying.
pub(crate) enum TxError {
    Store(StoreError),
    Db(sqlx::Error),
}

impl From<sqlx::Error> for TxError {
    fn from(e: sqlx::Error) -> Self {
        TxError::Db(e)
    }
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> Self {
        TxError::Store(e)
    }
}

impl TxError {
    fn retryable(&self) -> bool {
        match self {
            TxError::Db(e) => e
                .as_database_error()
                .and_then(|d| d.code())
                .is_some_and(|c| c == "40001" || c == "40P01"),
            TxError::Store(_) => false,
        }
    }
}

impl From<TxError> for StoreError {
    fn from(e: TxError) -> Self {
        match e {
            TxError::Store(e) => e,
            TxError::Db(e) => e.into(),
        }
    }
}

pub(crate) type TxResult<T> = Result<T, TxError>;

/// Runs `$body` (an expression using `$conn: &mut PgConnection` and returning `TxResult<T>`) in
/// a transaction, committing on `Ok` and retrying on deadlock or serialization failure.
macro_rules! transaction {
    ($self:ident, |$conn:ident| $body:expr) => {{
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let result: TxResult<_> = async {
                let mut tx = $self.pool.begin().await?;
                let value: TxResult<_> = {
                    let $conn: &mut PgConnection = &mut tx;
                    $body.await
                };
                let value = value?;
                tx.commit().await?;
                Ok(value)
            }
            .await;
            match result {
                Err(e) if e.retryable() && attempt < ATTEMPTS => {
                    tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt))).await;
                }
                other => break other.map_err(StoreError::from),
            }
        }
    }};
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://…`) and runs the migrations.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        Self::connect_with(PgConnectOptions::from_str(url)?).await
    }

    /// Connects with explicit options (a `search_path`, say) and runs the migrations.
    pub async fn connect_with(options: PgConnectOptions) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Backend(format!("migration failed: {e}")))?;
        Ok(PgStore { pool })
    }

    /// Closes the connections (waiting for those in use to be returned).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

pub(crate) fn device_strings(devices: &[DeviceId]) -> Vec<String> {
    devices.iter().map(|d| d.as_str().to_owned()).collect()
}

/// Inserts a single-use, expiring row keyed by `key` (a challenge, session or link code) for
/// `owner`; `AlreadyExists(what)` if the key is taken. `sql` is one of the fixed statements above.
async fn insert_expiring(
    conn: &mut PgConnection,
    sql: &'static str,
    key: &[u8],
    owner: &str,
    expires_at: Millis,
    what: &'static str,
) -> TxResult<()> {
    let done = sqlx::query(sql)
        .bind(key)
        .bind(owner)
        .bind(expires_at)
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::AlreadyExists(what).into());
    }
    Ok(())
}

async fn device_exists(conn: &mut PgConnection, device: &DeviceId) -> TxResult<bool> {
    let found: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM devices WHERE id = $1 AND revoked_at IS NULL")
            .bind(device.as_str())
            .fetch_optional(&mut *conn)
            .await?;
    Ok(found.is_some())
}

pub(crate) async fn user_exists(conn: &mut PgConnection, user: &UserName) -> TxResult<bool> {
    let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM users WHERE name = $1")
        .bind(user.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(found.is_some())
}

pub(crate) async fn insert_device(
    conn: &mut PgConnection,
    user: &UserName,
    device: &NewDevice,
) -> TxResult<()> {
    let done = sqlx::query(
        "INSERT INTO devices (id, user_name, name, auth_key, mls_key, created_at)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(device.device_id.as_str())
    .bind(user.as_str())
    .bind(&device.name)
    .bind(&device.auth_key)
    .bind(&device.mls_key)
    .bind(device.created_at)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::AlreadyExists("device").into());
    }
    Ok(())
}

/// How a transaction holds the group row.
#[derive(Clone, Copy)]
enum GroupLock {
    None,
    Share,
    Update,
}

/// The group's epoch and members, or `NotFound("group")`, locking the group row as asked.
async fn group_state(
    conn: &mut PgConnection,
    group: &GroupId,
    lock: GroupLock,
) -> TxResult<(u64, Vec<DeviceId>)> {
    let sql = match lock {
        GroupLock::None => "SELECT epoch FROM mls_groups WHERE id = $1",
        GroupLock::Share => "SELECT epoch FROM mls_groups WHERE id = $1 FOR SHARE",
        GroupLock::Update => "SELECT epoch FROM mls_groups WHERE id = $1 FOR NO KEY UPDATE",
    };
    let epoch: Option<i64> = sqlx::query_scalar(sql)
        .bind(group.as_bytes())
        .fetch_optional(&mut *conn)
        .await?;
    let epoch = epoch.ok_or(StoreError::NotFound("group"))?;
    let members: Vec<String> = sqlx::query_scalar(
        "SELECT device_id FROM group_members WHERE group_id = $1 ORDER BY device_id",
    )
    .bind(group.as_bytes())
    .fetch_all(&mut *conn)
    .await?;
    let members = members
        .iter()
        .map(|m| parse_device(m))
        .collect::<StoreResult<Vec<_>>>()?;
    Ok((epoch_from_db(epoch)?, members))
}

/// Locks the device rows of `devices` (in id order) and, with `max`, refuses with `Limit` if any
/// already holds `max` queue entries.
pub(crate) async fn lock_recipients(
    conn: &mut PgConnection,
    devices: &[DeviceId],
    max: Option<u64>,
) -> TxResult<()> {
    if devices.is_empty() {
        return Ok(());
    }
    let depths: Vec<i64> = sqlx::query_scalar(
        "SELECT queue_depth FROM devices WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE",
    )
    .bind(device_strings(devices))
    .fetch_all(&mut *conn)
    .await?;
    if let Some(max) = max {
        if depths.iter().any(|d| *d >= limit_to_db(max)) {
            return Err(StoreError::Limit {
                what: "queue depth",
                max,
            }
            .into());
        }
    }
    Ok(())
}

/// Stores `message` once and queues it to each of `recipients` (distinct, existing devices whose
/// rows the caller has locked), keeping the queue accounting and checking what `checks` names
/// ([`crate::quota`]). Returns the number of recipients.
pub(crate) async fn enqueue(
    conn: &mut PgConnection,
    recipients: &[DeviceId],
    message: &NewMessage,
    checks: Checks,
    limits: &Limits,
) -> TxResult<u32> {
    if recipients.is_empty() {
        return Ok(0);
    }
    let sender_user: Option<String> = match &message.sender {
        Some(sender) => Some(
            sqlx::query_scalar("SELECT user_name FROM devices WHERE id = $1")
                .bind(sender.as_str())
                .fetch_optional(&mut *conn)
                .await?
                .ok_or(StoreError::NotFound("device"))?,
        ),
        None => None,
    };
    let (commitment, server_tag) = frank_columns(message);
    let size = i64::try_from(message.payload.len()).unwrap_or(i64::MAX);
    let message_id: i64 = sqlx::query_scalar(
        "INSERT INTO messages (kind, group_id, sender_user, sender_device, payload, commitment, server_tag,
                               received_at, expires_at, size)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
    )
    .bind(message.kind.as_str())
    .bind(message.group_id.as_ref().map(GroupId::as_bytes))
    .bind(sender_user.as_deref())
    .bind(message.sender.as_ref().map(DeviceId::as_str))
    .bind(&message.payload)
    .bind(commitment)
    .bind(server_tag)
    .bind(message.received_at)
    .bind(message.expires_at)
    .bind(size)
    .fetch_one(&mut *conn)
    .await?;
    let ids = device_strings(recipients);
    sqlx::query(
        "INSERT INTO queue (device_id, message_id)
         SELECT d, $2 FROM unnest($1::text[]) WITH ORDINALITY AS t(d, n) ORDER BY n",
    )
    .bind(&ids)
    .bind(message_id)
    .execute(&mut *conn)
    .await?;
    let sender = message
        .sender
        .as_ref()
        .map(DeviceId::as_str)
        .zip(sender_user.as_deref());
    quota::charge(conn, &ids, size, sender, checks, limits).await?;
    Ok(count_u32(recipients.len())?)
}

async fn add_key_packages_tx(
    conn: &mut PgConnection,
    device: &DeviceId,
    packages: &[NewKeyPackage],
    last_resort: Option<&NewKeyPackage>,
    limits: &Limits,
) -> TxResult<u32> {
    // Locking the device row serialises concurrent uploads for the device, so the count holds.
    let found: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM devices WHERE id = $1 AND revoked_at IS NULL FOR NO KEY UPDATE",
    )
    .bind(device.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    if found.is_none() {
        return Err(StoreError::NotFound("device").into());
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM key_packages WHERE device_id = $1")
        .bind(device.as_str())
        .fetch_one(&mut *conn)
        .await?;
    let total = u64::try_from(stored)
        .unwrap_or(u64::MAX)
        .saturating_add(u64::try_from(packages.len()).unwrap_or(u64::MAX));
    if total > limits.max_key_packages {
        return Err(StoreError::Limit {
            what: "key packages",
            max: limits.max_key_packages,
        }
        .into());
    }
    if !packages.is_empty() {
        let bytes: Vec<&[u8]> = packages.iter().map(|p| p.bytes.as_slice()).collect();
        let refs: Vec<&[u8]> = packages.iter().map(|p| p.kp_ref.as_slice()).collect();
        sqlx::query(
            "INSERT INTO key_packages (device_id, bytes, kp_ref)
             SELECT $1, b, r FROM unnest($2::bytea[], $3::bytea[]) WITH ORDINALITY AS t(b, r, n) ORDER BY n",
        )
        .bind(device.as_str())
        .bind(bytes)
        .bind(refs)
        .execute(&mut *conn)
        .await?;
    }
    if let Some(last_resort) = last_resort {
        sqlx::query(
            "INSERT INTO last_resort_key_packages (device_id, bytes, kp_ref) VALUES ($1, $2, $3)
             ON CONFLICT (device_id) DO UPDATE SET bytes = excluded.bytes, kp_ref = excluded.kp_ref",
        )
        .bind(device.as_str())
        .bind(&last_resort.bytes)
        .bind(&last_resort.kp_ref)
        .execute(&mut *conn)
        .await?;
    }
    Ok(count_u32(total)?)
}

async fn claim_key_packages_tx(
    conn: &mut PgConnection,
    user: &UserName,
    claim: &KeyPackageClaim,
) -> TxResult<Option<Vec<(DeviceId, Vec<u8>)>>> {
    if !user_exists(conn, user).await? {
        return Ok(None);
    }
    let devices: Vec<String> =
        sqlx::query_scalar("SELECT id FROM devices WHERE user_name = $1 AND revoked_at IS NULL ORDER BY created_at, id")
            .bind(user.as_str())
            .fetch_all(&mut *conn)
            .await?;
    let mut claimed = Vec::with_capacity(devices.len());
    for device in devices {
        // SKIP LOCKED: a concurrent claimer takes the next package instead of waiting for this one
        // and then finding it gone.
        let one_time: Option<(Vec<u8>, Vec<u8>)> = if claim.one_time {
            sqlx::query_as(
                "DELETE FROM key_packages WHERE id = (
                     SELECT id FROM key_packages WHERE device_id = $1 ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
                 RETURNING bytes, kp_ref",
            )
            .bind(&device)
            .fetch_optional(&mut *conn)
            .await?
        } else {
            None
        };
        let package = match one_time {
            Some(p) => Some(p),
            None => {
                sqlx::query_as(
                    "SELECT bytes, kp_ref FROM last_resort_key_packages WHERE device_id = $1",
                )
                .bind(&device)
                .fetch_optional(&mut *conn)
                .await?
            }
        };
        if let Some((package, kp_ref)) = package {
            sqlx::query(
                "INSERT INTO key_package_claims (group_id, claimer, kp_ref, device_id, expires_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (group_id, claimer, kp_ref) DO UPDATE SET expires_at = excluded.expires_at",
            )
            .bind(claim.group.as_bytes())
            .bind(claim.claimer.as_str())
            .bind(&kp_ref)
            .bind(&device)
            .bind(claim.expires_at)
            .execute(&mut *conn)
            .await?;
            claimed.push((parse_device(&device)?, package));
        }
    }
    Ok(Some(claimed))
}

async fn revoke_device_tx(
    conn: &mut PgConnection,
    device: &DeviceId,
    now: Millis,
    event: &NewMessage,
    limits: &Limits,
) -> TxResult<Vec<GroupId>> {
    let user: Option<String> =
        sqlx::query_scalar("SELECT user_name FROM devices WHERE id = $1 AND revoked_at IS NULL")
            .bind(device.as_str())
            .fetch_optional(&mut *conn)
            .await?;
    let user = parse_user(&user.ok_or(StoreError::NotFound("device"))?)?;
    // Lock the user's live devices in id order (like every writer of their queues), so two
    // removals of one user's devices are serialised and cannot both pass the last-device check.
    let live: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM devices WHERE user_name = $1 AND revoked_at IS NULL ORDER BY id FOR NO KEY UPDATE",
    )
    .bind(user.as_str())
    .fetch_all(&mut *conn)
    .await?;
    if !live.iter().any(|d| d == device.as_str()) {
        return Err(StoreError::NotFound("device").into());
    }
    let others = live
        .iter()
        .filter(|d| *d != device.as_str())
        .map(|d| parse_device(d))
        .collect::<StoreResult<Vec<_>>>()?;
    if others.is_empty() {
        return Err(StoreError::LastDevice.into());
    }
    let d = device.as_str();
    sqlx::query("UPDATE devices SET revoked_at = $2, queue_depth = 0 WHERE id = $1")
        .bind(d)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    for sql in [
        "DELETE FROM sessions WHERE device_id = $1",
        "DELETE FROM challenges WHERE device_id = $1",
        "DELETE FROM key_packages WHERE device_id = $1",
        "DELETE FROM last_resort_key_packages WHERE device_id = $1",
        "DELETE FROM key_package_claims WHERE device_id = $1 OR claimer = $1",
    ] {
        sqlx::query(sql).bind(d).execute(&mut *conn).await?;
    }
    let messages: Vec<i64> =
        sqlx::query_scalar("DELETE FROM queue WHERE device_id = $1 RETURNING message_id")
            .bind(d)
            .fetch_all(&mut *conn)
            .await?;
    let gone = quota::released(conn, &messages).await?;
    quota::release(conn, d, &gone).await?;
    quota::release_users(
        conn,
        &[(user.as_str().to_owned(), gone.bytes)]
            .into_iter()
            .collect(),
    )
    .await?;
    sqlx::query(
        "DELETE FROM messages m WHERE m.id = ANY($1)
         AND NOT EXISTS (SELECT 1 FROM queue q WHERE q.message_id = m.id)",
    )
    .bind(&messages)
    .execute(&mut *conn)
    .await?;
    let mut groups: Vec<Vec<u8>> =
        sqlx::query_scalar("DELETE FROM group_members WHERE device_id = $1 RETURNING group_id")
            .bind(d)
            .fetch_all(&mut *conn)
            .await?;
    groups.sort();
    sqlx::query("DELETE FROM link_codes WHERE user_name = $1")
        .bind(user.as_str())
        .execute(&mut *conn)
        .await?;
    enqueue(conn, &others, event, Checks::None, limits).await?;
    Ok(groups
        .iter()
        .map(|g| GroupId::from_bytes(g).map_err(|_| super::corrupt("group id")))
        .collect::<StoreResult<Vec<_>>>()?)
}

async fn link_device_tx(
    conn: &mut PgConnection,
    code_hash: &[u8],
    now: Millis,
    device: &NewDevice,
    event: &NewMessage,
    limits: &Limits,
) -> TxResult<UserName> {
    let code: Option<(String, i64)> = sqlx::query_as(
        "DELETE FROM link_codes WHERE code_hash = $1 RETURNING user_name, expires_at",
    )
    .bind(code_hash)
    .fetch_optional(&mut *conn)
    .await?;
    // An expired code is refused; the rollback keeps it for purge_expired to drop.
    let user = match code {
        Some((user, expires_at)) if now < expires_at => parse_user(&user)?,
        _ => return Err(StoreError::NotFound("link code").into()),
    };
    let others: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM devices WHERE user_name = $1 AND revoked_at IS NULL ORDER BY id",
    )
    .bind(user.as_str())
    .fetch_all(&mut *conn)
    .await?;
    let others = others
        .iter()
        .map(|d| parse_device(d))
        .collect::<StoreResult<Vec<_>>>()?;
    if u64::try_from(others.len()).unwrap_or(u64::MAX) >= limits.max_devices {
        return Err(StoreError::Limit {
            what: "devices per account",
            max: limits.max_devices,
        }
        .into());
    }
    insert_device(conn, &user, device).await?;
    // The notice that a device was added is queued whatever the queue depth: it is what lets the
    // user's other devices notice an unwanted device.
    lock_recipients(conn, &others, None).await?;
    enqueue(conn, &others, event, Checks::None, limits).await?;
    Ok(user)
}

async fn apply_commit_tx(
    conn: &mut PgConnection,
    commit: &CommitApply,
    limits: &Limits,
) -> TxResult<GroupRecord> {
    let (epoch, members) = group_state(conn, &commit.group_id, GroupLock::Update).await?;
    let gid = commit.group_id.as_bytes();
    if commit.epoch < epoch {
        let recorded: Option<(Vec<u8>, String)> = sqlx::query_as(
            "SELECT commit_sha256, committer FROM group_commits WHERE group_id = $1 AND epoch = $2",
        )
        .bind(gid)
        .bind(epoch_to_db(commit.epoch)?)
        .fetch_optional(&mut *conn)
        .await?;
        if is_resubmission(commit, recorded) {
            return Ok(GroupRecord {
                group_id: commit.group_id.clone(),
                epoch,
                members,
            });
        }
    }
    let plan = plan_commit(commit, epoch, &members, limits)?;
    let added = device_strings(&commit.added);
    let known: i64 = sqlx::query_scalar("SELECT count(*) FROM devices WHERE id = ANY($1)")
        .bind(&added)
        .fetch_one(&mut *conn)
        .await?;
    if usize::try_from(known).ok() != Some(added.len()) {
        return Err(StoreError::NotFound("device").into());
    }
    for kp_ref in &commit.claimed {
        let consumed: Option<i32> = sqlx::query_scalar(
            "DELETE FROM key_package_claims
             WHERE group_id = $1 AND claimer = $2 AND kp_ref = $3 AND expires_at > $4
             RETURNING 1",
        )
        .bind(gid)
        .bind(commit.sender.as_str())
        .bind(kp_ref)
        .bind(commit.commit.received_at)
        .fetch_optional(&mut *conn)
        .await?;
        if consumed.is_none() {
            return Err(StoreError::InvalidMembership(
                "a key package the committer did not claim for this group",
            )
            .into());
        }
    }
    let mut recipients = plan.recipients.clone();
    recipients.sort();
    lock_recipients(conn, &recipients, Some(limits.max_queue_depth)).await?;
    enqueue(
        conn,
        &plan.commit_to,
        &commit.commit,
        Checks::Totals,
        limits,
    )
    .await?;
    if let Some(welcome) = &commit.welcome {
        enqueue(conn, &plan.welcome_to, welcome, Checks::Totals, limits).await?;
    }
    sqlx::query(
        "INSERT INTO group_commits (group_id, epoch, commit_sha256, committer, accepted_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(gid)
    .bind(epoch_to_db(commit.epoch)?)
    .bind(commit.commit_sha256.as_slice())
    .bind(commit.sender.as_str())
    .bind(commit.commit.received_at)
    .bind(commit.commit.expires_at)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND device_id = ANY($2)")
        .bind(gid)
        .bind(device_strings(&commit.removed))
        .execute(&mut *conn)
        .await?;
    sqlx::query("INSERT INTO group_members (group_id, device_id) SELECT $1, d FROM unnest($2::text[]) AS t(d)")
        .bind(gid)
        .bind(&added)
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE mls_groups SET epoch = $2, public_state = $3 WHERE id = $1")
        .bind(gid)
        .bind(epoch_to_db(plan.new_epoch)?)
        .bind(&commit.public_state)
        .execute(&mut *conn)
        .await?;
    Ok(GroupRecord {
        group_id: commit.group_id.clone(),
        epoch: plan.new_epoch,
        members: plan.members_after,
    })
}

/// Queues `message` to the members of `group` but `sender` (which must be one); with `leave`,
/// also removes `sender` from the group.
/// Queues `message` from member `sender` to the group's other members (no further than
/// `max_epoch`, if given), and with `leave` removes the sender; the recipients.
async fn group_send_tx(
    conn: &mut PgConnection,
    group: &GroupId,
    sender: &DeviceId,
    max_epoch: Option<u64>,
    message: &NewMessage,
    limits: &Limits,
    leave: bool,
) -> TxResult<Vec<DeviceId>> {
    let lock = if leave {
        GroupLock::Update
    } else {
        GroupLock::Share
    };
    let (current, members) = group_state(conn, group, lock).await?;
    if max_epoch.is_some_and(|e| e > current) {
        return Err(StoreError::FutureEpoch { current }.into());
    }
    if !members.contains(sender) {
        return Err(StoreError::NotMember.into());
    }
    let recipients: Vec<DeviceId> = members.into_iter().filter(|m| m != sender).collect();
    lock_recipients(conn, &recipients, Some(limits.max_queue_depth)).await?;
    // A leave proposal is a handshake message: totals only (see `crate::quota`).
    let checks = if leave {
        Checks::Totals
    } else {
        Checks::TotalsAndShares
    };
    enqueue(conn, &recipients, message, checks, limits).await?;
    if leave {
        sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND device_id = $2")
            .bind(group.as_bytes())
            .bind(sender.as_str())
            .execute(&mut *conn)
            .await?;
    }
    Ok(recipients)
}

async fn ack_tx(conn: &mut PgConnection, device: &DeviceId, ids: &[i64]) -> TxResult<u32> {
    // Lock the device row first, like every writer of its queue.
    sqlx::query("SELECT 1 FROM devices WHERE id = $1 FOR NO KEY UPDATE")
        .bind(device.as_str())
        .execute(&mut *conn)
        .await?;
    let messages: Vec<i64> = sqlx::query_scalar(
        "DELETE FROM queue WHERE device_id = $1 AND id = ANY($2) RETURNING message_id",
    )
    .bind(device.as_str())
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    if messages.is_empty() {
        return Ok(0);
    }
    let gone = quota::released(conn, &messages).await?;
    quota::release(conn, device.as_str(), &gone).await?;
    let user: String = sqlx::query_scalar("SELECT user_name FROM devices WHERE id = $1")
        .bind(device.as_str())
        .fetch_one(&mut *conn)
        .await?;
    quota::release_users(conn, &[(user, gone.bytes)].into_iter().collect()).await?;
    sqlx::query(
        "DELETE FROM messages m WHERE m.id = ANY($1)
         AND NOT EXISTS (SELECT 1 FROM queue q WHERE q.message_id = m.id)",
    )
    .bind(&messages)
    .execute(&mut *conn)
    .await?;
    Ok(count_u32(messages.len())?)
}

/// A purged queue entry: recipient device and user, sender device and user, size.
type PurgedRow = (String, String, Option<String>, Option<String>, i64);

async fn purge_expired_tx(conn: &mut PgConnection, now: Millis) -> TxResult<u64> {
    // Lock the affected device rows in id order first, like every writer of their queues.
    sqlx::query(
        "SELECT 1 FROM devices WHERE id IN (
             SELECT q.device_id FROM queue q JOIN messages m ON m.id = q.message_id WHERE m.expires_at <= $1)
         ORDER BY id FOR NO KEY UPDATE",
    )
    .bind(now)
    .execute(&mut *conn)
    .await?;
    // What leaves each queue, per device and per account.
    let rows: Vec<PurgedRow> = sqlx::query_as(
        "DELETE FROM queue q USING messages m, devices d
         WHERE m.id = q.message_id AND d.id = q.device_id AND m.expires_at <= $1
         RETURNING q.device_id, d.user_name, m.sender_device, m.sender_user, m.size",
    )
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    let mut per_device: std::collections::BTreeMap<&str, crate::quota::Release> =
        std::collections::BTreeMap::new();
    let mut per_user: std::collections::BTreeMap<String, i64> = std::collections::BTreeMap::new();
    for (device, user, sd, su, size) in &rows {
        per_device
            .entry(device.as_str())
            .or_default()
            .add(sd.as_deref().zip(su.as_deref()), *size);
        let u = per_user.entry(user.clone()).or_default();
        *u = u.saturating_add(*size);
    }
    for (device, gone) in &per_device {
        quota::release(conn, device, gone).await?;
    }
    quota::release_users(conn, &per_user).await?;
    quota::purge(conn, now).await?;
    let dropped = u64::try_from(rows.len()).unwrap_or(u64::MAX);
    sqlx::query("DELETE FROM messages WHERE expires_at <= $1")
        .bind(now)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
        .bind(now)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM challenges WHERE expires_at <= $1")
        .bind(now)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM link_codes WHERE expires_at <= $1")
        .bind(now)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM group_commits WHERE expires_at <= $1")
        .bind(now)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM key_package_claims WHERE expires_at <= $1")
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(dropped)
}

#[async_trait]
impl Store for PgStore {
    async fn create_user(&self, user: &UserName, device: &NewDevice) -> StoreResult<()> {
        transaction!(self, |conn| async {
            let done = sqlx::query(
                "INSERT INTO users (name, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(user.as_str())
            .bind(device.created_at)
            .execute(&mut *conn)
            .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::AlreadyExists("user").into());
            }
            insert_device(conn, user, device).await
        })
    }

    async fn device(&self, device: &DeviceId) -> StoreResult<Option<DeviceRecord>> {
        let row: Option<DeviceRow> = sqlx::query_as(
            "SELECT id, user_name, name, auth_key, mls_key, created_at FROM devices WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(device.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(DeviceRow::into_record).transpose()
    }

    async fn user_devices(&self, user: &UserName) -> StoreResult<Option<Vec<DeviceRecord>>> {
        let rows: Option<Vec<DeviceRow>> = transaction!(self, |conn| async {
            if !user_exists(conn, user).await? {
                return Ok(None);
            }
            let rows: Vec<DeviceRow> = sqlx::query_as(
                "SELECT id, user_name, name, auth_key, mls_key, created_at FROM devices WHERE user_name = $1
                 AND revoked_at IS NULL ORDER BY created_at, id",
            )
            .bind(user.as_str())
            .fetch_all(&mut *conn)
            .await?;
            Ok(Some(rows))
        })?;
        rows.map(|rows| rows.into_iter().map(DeviceRow::into_record).collect())
            .transpose()
    }

    async fn put_challenge(
        &self,
        nonce: &[u8],
        device: &DeviceId,
        expires_at: Millis,
    ) -> StoreResult<()> {
        transaction!(self, |conn| async {
            if !device_exists(conn, device).await? {
                return Err(StoreError::NotFound("device").into());
            }
            insert_expiring(
                conn,
                "INSERT INTO challenges (nonce, device_id, expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                nonce,
                device.as_str(),
                expires_at,
                "challenge",
            )
            .await
        })
    }

    async fn take_challenge(
        &self,
        nonce: &[u8],
        device: &DeviceId,
        now: Millis,
    ) -> StoreResult<bool> {
        let expires_at: Option<i64> = sqlx::query_scalar(
            "DELETE FROM challenges WHERE nonce = $1 AND device_id = $2 RETURNING expires_at",
        )
        .bind(nonce)
        .bind(device.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(expires_at.is_some_and(|e| now < e))
    }

    async fn put_session(
        &self,
        token_hash: &[u8],
        device: &DeviceId,
        expires_at: Millis,
    ) -> StoreResult<()> {
        transaction!(self, |conn| async {
            if !device_exists(conn, device).await? {
                return Err(StoreError::NotFound("device").into());
            }
            insert_expiring(
                conn,
                "INSERT INTO sessions (token_hash, device_id, expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                token_hash,
                device.as_str(),
                expires_at,
                "session",
            )
            .await
        })
    }

    async fn session_device(
        &self,
        token_hash: &[u8],
        now: Millis,
    ) -> StoreResult<Option<DeviceId>> {
        let device: Option<String> = sqlx::query_scalar(
            "SELECT device_id FROM sessions WHERE token_hash = $1 AND expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        device.as_deref().map(parse_device).transpose()
    }

    async fn session_account(
        &self,
        token_hash: &[u8],
        now: Millis,
    ) -> StoreResult<Option<(DeviceId, UserName)>> {
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT s.device_id, d.user_name FROM sessions s JOIN devices d ON d.id = s.device_id
             WHERE s.token_hash = $1 AND s.expires_at > $2 AND d.revoked_at IS NULL",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(d, u)| Ok((parse_device(&d)?, super::parse_user(&u)?)))
            .transpose()
    }

    async fn revoke_session(&self, token_hash: &[u8]) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn revoke_user_sessions(&self, user: &UserName) -> StoreResult<u64> {
        let done = sqlx::query(
            "DELETE FROM sessions WHERE device_id IN (SELECT id FROM devices WHERE user_name = $1)",
        )
        .bind(user.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn revoke_device(
        &self,
        device: &DeviceId,
        now: Millis,
        event: &NewMessage,
        limits: &Limits,
    ) -> StoreResult<Vec<GroupId>> {
        transaction!(self, |conn| revoke_device_tx(
            conn, device, now, event, limits
        ))
    }

    async fn put_link_code(
        &self,
        code_hash: &[u8],
        user: &UserName,
        expires_at: Millis,
    ) -> StoreResult<()> {
        transaction!(self, |conn| async {
            if !user_exists(conn, user).await? {
                return Err(StoreError::NotFound("user").into());
            }
            insert_expiring(
                conn,
                "INSERT INTO link_codes (code_hash, user_name, expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                code_hash,
                user.as_str(),
                expires_at,
                "link code",
            )
            .await
        })
    }

    async fn link_device(
        &self,
        code_hash: &[u8],
        now: Millis,
        device: &NewDevice,
        event: &NewMessage,
        limits: &Limits,
    ) -> StoreResult<UserName> {
        transaction!(self, |conn| link_device_tx(
            conn, code_hash, now, device, event, limits
        ))
    }

    async fn add_key_packages(
        &self,
        device: &DeviceId,
        packages: &[NewKeyPackage],
        last_resort: Option<&NewKeyPackage>,
        limits: &Limits,
    ) -> StoreResult<u32> {
        transaction!(self, |conn| add_key_packages_tx(
            conn,
            device,
            packages,
            last_resort,
            limits
        ))
    }

    async fn key_package_count(&self, device: &DeviceId) -> StoreResult<(u32, bool)> {
        let (count, last_resort): (i64, bool) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM key_packages WHERE device_id = $1),
                    EXISTS (SELECT 1 FROM last_resort_key_packages WHERE device_id = $1)",
        )
        .bind(device.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok((count_u32(count)?, last_resort))
    }

    async fn claim_key_packages(
        &self,
        user: &UserName,
        claim: &KeyPackageClaim,
    ) -> StoreResult<Option<Vec<(DeviceId, Vec<u8>)>>> {
        transaction!(self, |conn| claim_key_packages_tx(conn, user, claim))
    }

    async fn create_group(
        &self,
        group: &GroupId,
        creator: &DeviceId,
        now: Millis,
        public_state: &[u8],
    ) -> StoreResult<()> {
        transaction!(self, |conn| async {
            if !device_exists(conn, creator).await? {
                return Err(StoreError::NotFound("device").into());
            }
            let done = sqlx::query(
                "INSERT INTO mls_groups (id, epoch, created_at, public_state) VALUES ($1, 0, $2, $3)
                 ON CONFLICT DO NOTHING",
            )
            .bind(group.as_bytes())
            .bind(now)
            .bind(public_state)
            .execute(&mut *conn)
            .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::AlreadyExists("group").into());
            }
            sqlx::query("INSERT INTO group_members (group_id, device_id) VALUES ($1, $2)")
                .bind(group.as_bytes())
                .bind(creator.as_str())
                .execute(&mut *conn)
                .await?;
            Ok(())
        })
    }

    async fn group(&self, group: &GroupId) -> StoreResult<Option<GroupRecord>> {
        let state = transaction!(self, |conn| async {
            match group_state(conn, group, GroupLock::None).await {
                Ok(state) => Ok(Some(state)),
                Err(TxError::Store(StoreError::NotFound(_))) => Ok(None),
                Err(e) => Err(e),
            }
        })?;
        Ok(state.map(|(epoch, members)| GroupRecord {
            group_id: group.clone(),
            epoch,
            members,
        }))
    }

    async fn group_view(
        &self,
        group: &GroupId,
    ) -> StoreResult<Option<(GroupRecord, Option<Vec<u8>>)>> {
        // One transaction at REPEATABLE READ would do too; locking the row FOR SHARE keeps the
        // epoch, members and state of one point in the commit order.
        let found = transaction!(self, |conn| async {
            let (epoch, members) = match group_state(conn, group, GroupLock::Share).await {
                Ok(state) => state,
                Err(TxError::Store(StoreError::NotFound(_))) => return Ok(None),
                Err(e) => return Err(e),
            };
            let state: Option<Vec<u8>> =
                sqlx::query_scalar("SELECT public_state FROM mls_groups WHERE id = $1")
                    .bind(group.as_bytes())
                    .fetch_one(&mut *conn)
                    .await?;
            Ok(Some((epoch, members, state)))
        })?;
        Ok(found.map(|(epoch, members, state)| {
            (
                GroupRecord {
                    group_id: group.clone(),
                    epoch,
                    members,
                },
                state,
            )
        }))
    }

    async fn accepted_commit(
        &self,
        group: &GroupId,
        epoch: u64,
        commit_sha256: &[u8; 32],
        committer: &DeviceId,
    ) -> StoreResult<bool> {
        let found: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM group_commits
             WHERE group_id = $1 AND epoch = $2 AND commit_sha256 = $3 AND committer = $4",
        )
        .bind(group.as_bytes())
        .bind(epoch_to_db(epoch)?)
        .bind(commit_sha256.as_slice())
        .bind(committer.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }

    async fn apply_commit(
        &self,
        commit: &CommitApply,
        limits: &Limits,
    ) -> StoreResult<GroupRecord> {
        transaction!(self, |conn| apply_commit_tx(conn, commit, limits))
    }

    async fn leave_group(
        &self,
        group: &GroupId,
        device: &DeviceId,
        epoch: u64,
        proposal: &NewMessage,
        public_state: &[u8],
        limits: &Limits,
    ) -> StoreResult<u32> {
        transaction!(self, |conn| async {
            let (current, members) = group_state(conn, group, GroupLock::Update).await?;
            if !members.contains(device) {
                return Err(StoreError::NotMember.into());
            }
            if current != epoch {
                return Err(StoreError::EpochConflict { current }.into());
            }
            sqlx::query("UPDATE mls_groups SET public_state = $2 WHERE id = $1")
                .bind(group.as_bytes())
                .bind(public_state)
                .execute(&mut *conn)
                .await?;
            let to = group_send_tx(conn, group, device, None, proposal, limits, true).await?;
            Ok(count_u32(to.len())?)
        })
    }

    async fn enqueue_group(
        &self,
        group: &GroupId,
        sender: &DeviceId,
        message: &NewMessage,
        limits: &Limits,
    ) -> StoreResult<u32> {
        transaction!(self, |conn| async {
            let to = group_send_tx(conn, group, sender, None, message, limits, false).await?;
            Ok(count_u32(to.len())?)
        })
    }

    async fn enqueue_application(
        &self,
        group: &GroupId,
        sender: &DeviceId,
        epoch: u64,
        message: &NewMessage,
        limits: &Limits,
    ) -> StoreResult<Vec<DeviceId>> {
        transaction!(self, |conn| group_send_tx(
            conn,
            group,
            sender,
            Some(epoch),
            message,
            limits,
            false
        ))
    }

    async fn fetch_queue(
        &self,
        device: &DeviceId,
        after: i64,
        limit: u32,
        now: Millis,
    ) -> StoreResult<Vec<QueuedMessage>> {
        let rows: Vec<QueueRow> = sqlx::query_as(
            "SELECT q.id, m.kind, m.group_id, m.sender_user, m.sender_device, m.payload, m.commitment,
                    m.server_tag, m.received_at
             FROM queue q JOIN messages m ON m.id = q.message_id
             WHERE q.device_id = $1 AND q.id > $2 AND m.expires_at > $3
             ORDER BY q.id LIMIT $4",
        )
        .bind(device.as_str())
        .bind(after)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(QueueRow::into_queued).collect()
    }

    async fn ack(&self, device: &DeviceId, ids: &[i64]) -> StoreResult<u32> {
        if ids.is_empty() {
            return Ok(0);
        }
        transaction!(self, |conn| ack_tx(conn, device, ids))
    }

    async fn purge_expired(&self, now: Millis) -> StoreResult<u64> {
        transaction!(self, |conn| purge_expired_tx(conn, now))
    }

    async fn take_token(&self, key: &str, rule: RateRule, now: Millis) -> StoreResult<bool> {
        transaction!(self, |conn| quota::take_token(conn, key, rule, now))
    }

    async fn server_secret(&self, name: &str, fresh: &[u8]) -> StoreResult<Vec<u8>> {
        // Two statements, not one transaction: at READ COMMITTED the insert waits for a concurrent
        // inserter of the same name to commit, and the select then sees whichever row won.
        sqlx::query(
            "INSERT INTO server_secrets (name, secret) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(name)
        .bind(fresh)
        .execute(&self.pool)
        .await?;
        let secret: Vec<u8> =
            sqlx::query_scalar("SELECT secret FROM server_secrets WHERE name = $1")
                .bind(name)
                .fetch_one(&self.pool)
                .await?;
        Ok(secret)
    }

    async fn get_server_secret(&self, name: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(
            sqlx::query_scalar("SELECT secret FROM server_secrets WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn delete_server_secret(&self, name: &str) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM server_secrets WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        // The deleted row stays in the table's file until it is rewritten; VACUUM FULL of this
        // tiny table rewrites it at once (outside a transaction, as VACUUM must run).
        sqlx::query("VACUUM FULL server_secrets")
            .execute(&self.pool)
            .await?;
        Ok(true)
    }
}
