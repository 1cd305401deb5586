//! The embedded default backend: one SQLite database file.
//!
//! - **One writer.** SQLite allows one write transaction at a time, so every write goes through a
//!   pool of exactly one connection and starts with `BEGIN IMMEDIATE`, which takes the write lock
//!   up front. Check-then-write transactions therefore run strictly one after another, and a
//!   transaction never has to upgrade a read lock to a write lock half-way (the cause of
//!   `SQLITE_BUSY` failures that waiting cannot fix). Waiting for the writer is a fair queue in
//!   the pool rather than the busy handler's sleep loop; the busy timeout still covers another
//!   process holding the file.
//! - **Readers in parallel.** Pure reads use a separate small pool; in WAL mode they see the last
//!   committed state and never block the writer.
//! - **Durability.** `journal_mode=WAL` with `synchronous=NORMAL`: a transaction is committed once
//!   its frames are in the WAL file, so a commit that returned survives the server process being
//!   killed (even with SIGKILL): the operating system holds the written pages. What NORMAL gives up
//!   against FULL is the last transactions before an operating-system crash or power loss (the WAL
//!   is synced at checkpoints, not at every commit); the database stays consistent either way.
//! - **Ids.** `queue` and `messages` use `AUTOINCREMENT`, so queue ids are never reused even when
//!   the newest entries have been acknowledged and deleted.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use haven_proto::{DeviceId, GroupId, UserName};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use super::{
    count_u32, epoch_from_db, epoch_to_db, frank_columns, is_resubmission, limit_to_db,
    parse_device, plan_commit, CommitApply, DeviceRecord, DeviceRow, GroupRecord, Limits, Millis,
    NewDevice, NewMessage, QueueRow, QueuedMessage, Store, StoreError, StoreResult,
};

/// How long a connection waits for another process's lock on the file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a request waits for a pooled connection (the single writer may be queued behind
/// many others).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(60);
/// Read connections.
const READERS: u32 = 4;

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Exactly one connection; every write transaction runs on it.
    writer: SqlitePool,
    /// Connections for reads (the writer pool itself for an in-memory database).
    reader: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating it if needed) the database file at `path` and runs the migrations.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let writer = SqlitePoolOptions::new()
            .min_connections(1)
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&writer)
            .await
            .map_err(|e| StoreError::Backend(format!("migration failed: {e}")))?;
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        Ok(SqliteStore { writer, reader })
    }

    /// A private in-memory database (for tests): one connection, kept open for the life of the
    /// store, used for reads and writes alike.
    pub async fn open_in_memory() -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?.foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .min_connections(1)
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Backend(format!("migration failed: {e}")))?;
        Ok(SqliteStore {
            writer: pool.clone(),
            reader: pool,
        })
    }

    /// Closes the connections (waiting for those in use to be returned).
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    /// Starts a write transaction holding SQLite's write lock.
    async fn write(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }
}

/// A JSON array of strings, for `json_each` (SQLite has no array parameters).
fn json_strings<'a>(items: impl Iterator<Item = &'a str>) -> StoreResult<String> {
    serde_json::to_string(&items.collect::<Vec<_>>())
        .map_err(|e| StoreError::Backend(e.to_string()))
}

fn json_devices(devices: &[DeviceId]) -> StoreResult<String> {
    json_strings(devices.iter().map(DeviceId::as_str))
}

/// Inserts a single-use, expiring row keyed by `key` (a challenge, session or link code) for
/// `owner`; `AlreadyExists(what)` if the key is taken. `sql` is one of the fixed statements above.
async fn insert_expiring(
    conn: &mut SqliteConnection,
    sql: &'static str,
    key: &[u8],
    owner: &str,
    expires_at: Millis,
    what: &'static str,
) -> StoreResult<()> {
    let done = sqlx::query(sql)
        .bind(key)
        .bind(owner)
        .bind(expires_at)
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::AlreadyExists(what));
    }
    Ok(())
}

async fn device_exists(conn: &mut SqliteConnection, device: &DeviceId) -> StoreResult<bool> {
    let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM devices WHERE id = ?1")
        .bind(device.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(found.is_some())
}

async fn insert_device(
    conn: &mut SqliteConnection,
    user: &UserName,
    device: &NewDevice,
) -> StoreResult<()> {
    let done = sqlx::query(
        "INSERT INTO devices (id, user_name, name, auth_key, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT DO NOTHING",
    )
    .bind(device.device_id.as_str())
    .bind(user.as_str())
    .bind(&device.name)
    .bind(&device.auth_key)
    .bind(device.created_at)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::AlreadyExists("device"));
    }
    Ok(())
}

/// The group's epoch and members, or `NotFound("group")`.
async fn group_state(
    conn: &mut SqliteConnection,
    group: &GroupId,
) -> StoreResult<(u64, Vec<DeviceId>)> {
    let epoch: Option<i64> = sqlx::query_scalar("SELECT epoch FROM mls_groups WHERE id = ?1")
        .bind(group.as_bytes())
        .fetch_optional(&mut *conn)
        .await?;
    let epoch = epoch.ok_or(StoreError::NotFound("group"))?;
    let members: Vec<String> = sqlx::query_scalar(
        "SELECT device_id FROM group_members WHERE group_id = ?1 ORDER BY device_id",
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

/// `Limit` if any of `devices` already holds `max` queue entries.
async fn check_depth(
    conn: &mut SqliteConnection,
    devices: &[DeviceId],
    max: u64,
) -> StoreResult<()> {
    if devices.is_empty() {
        return Ok(());
    }
    let full: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM devices WHERE id IN (SELECT value FROM json_each(?1)) AND queue_depth >= ?2",
    )
    .bind(json_devices(devices)?)
    .bind(limit_to_db(max))
    .fetch_one(&mut *conn)
    .await?;
    if full > 0 {
        return Err(StoreError::Limit {
            what: "queue depth",
            max,
        });
    }
    Ok(())
}

/// Stores `message` once and queues it to each of `recipients` (distinct, existing devices;
/// depth already checked by the caller). Returns the number of recipients.
async fn enqueue(
    conn: &mut SqliteConnection,
    recipients: &[DeviceId],
    message: &NewMessage,
) -> StoreResult<u32> {
    if recipients.is_empty() {
        return Ok(0);
    }
    let sender_user: Option<String> = match &message.sender {
        Some(sender) => Some(
            sqlx::query_scalar("SELECT user_name FROM devices WHERE id = ?1")
                .bind(sender.as_str())
                .fetch_optional(&mut *conn)
                .await?
                .ok_or(StoreError::NotFound("device"))?,
        ),
        None => None,
    };
    let (commitment, server_tag) = frank_columns(message);
    let message_id: i64 = sqlx::query_scalar(
        "INSERT INTO messages (kind, group_id, sender_user, sender_device, payload, commitment, server_tag,
                               received_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) RETURNING id",
    )
    .bind(message.kind.as_str())
    .bind(message.group_id.as_ref().map(GroupId::as_bytes))
    .bind(sender_user)
    .bind(message.sender.as_ref().map(DeviceId::as_str))
    .bind(&message.payload)
    .bind(commitment)
    .bind(server_tag)
    .bind(message.received_at)
    .bind(message.expires_at)
    .fetch_one(&mut *conn)
    .await?;
    let ids = json_devices(recipients)?;
    sqlx::query(
        "INSERT INTO queue (device_id, message_id) SELECT value, ?2 FROM json_each(?1) ORDER BY key",
    )
    .bind(&ids)
    .bind(message_id)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE devices SET queue_depth = queue_depth + 1 WHERE id IN (SELECT value FROM json_each(?1))")
        .bind(&ids)
        .execute(&mut *conn)
        .await?;
    count_u32(recipients.len())
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_user(&self, user: &UserName, device: &NewDevice) -> StoreResult<()> {
        let mut tx = self.write().await?;
        let done = sqlx::query(
            "INSERT INTO users (name, created_at) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        )
        .bind(user.as_str())
        .bind(device.created_at)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::AlreadyExists("user"));
        }
        insert_device(&mut tx, user, device).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn device(&self, device: &DeviceId) -> StoreResult<Option<DeviceRecord>> {
        let row: Option<DeviceRow> = sqlx::query_as(
            "SELECT id, user_name, name, auth_key, created_at FROM devices WHERE id = ?1",
        )
        .bind(device.as_str())
        .fetch_optional(&self.reader)
        .await?;
        row.map(DeviceRow::into_record).transpose()
    }

    async fn user_devices(&self, user: &UserName) -> StoreResult<Option<Vec<DeviceRecord>>> {
        // One read transaction, so the user check and the device list see the same snapshot.
        let mut tx = self.reader.begin().await?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM users WHERE name = ?1")
            .bind(user.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Ok(None);
        }
        let rows: Vec<DeviceRow> = sqlx::query_as(
            "SELECT id, user_name, name, auth_key, created_at FROM devices WHERE user_name = ?1
             ORDER BY created_at, id",
        )
        .bind(user.as_str())
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.into_iter()
            .map(DeviceRow::into_record)
            .collect::<StoreResult<Vec<_>>>()
            .map(Some)
    }

    async fn put_challenge(
        &self,
        nonce: &[u8],
        device: &DeviceId,
        expires_at: Millis,
    ) -> StoreResult<()> {
        let mut tx = self.write().await?;
        if !device_exists(&mut tx, device).await? {
            return Err(StoreError::NotFound("device"));
        }
        insert_expiring(
            &mut tx,
            "INSERT INTO challenges (nonce, device_id, expires_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            nonce,
            device.as_str(),
            expires_at,
            "challenge",
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn take_challenge(
        &self,
        nonce: &[u8],
        device: &DeviceId,
        now: Millis,
    ) -> StoreResult<bool> {
        let mut tx = self.write().await?;
        let expires_at: Option<i64> = sqlx::query_scalar(
            "DELETE FROM challenges WHERE nonce = ?1 AND device_id = ?2 RETURNING expires_at",
        )
        .bind(nonce)
        .bind(device.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(expires_at.is_some_and(|e| now < e))
    }

    async fn put_session(
        &self,
        token_hash: &[u8],
        device: &DeviceId,
        expires_at: Millis,
    ) -> StoreResult<()> {
        let mut tx = self.write().await?;
        if !device_exists(&mut tx, device).await? {
            return Err(StoreError::NotFound("device"));
        }
        insert_expiring(
            &mut tx,
            "INSERT INTO sessions (token_hash, device_id, expires_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            token_hash,
            device.as_str(),
            expires_at,
            "session",
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn session_device(
        &self,
        token_hash: &[u8],
        now: Millis,
    ) -> StoreResult<Option<DeviceId>> {
        let device: Option<String> = sqlx::query_scalar(
            "SELECT device_id FROM sessions WHERE token_hash = ?1 AND expires_at > ?2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.reader)
        .await?;
        device.as_deref().map(parse_device).transpose()
    }

    async fn put_link_code(
        &self,
        code_hash: &[u8],
        user: &UserName,
        expires_at: Millis,
    ) -> StoreResult<()> {
        let mut tx = self.write().await?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM users WHERE name = ?1")
            .bind(user.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound("user"));
        }
        insert_expiring(
            &mut tx,
            "INSERT INTO link_codes (code_hash, user_name, expires_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            code_hash,
            user.as_str(),
            expires_at,
            "link code",
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn link_device(
        &self,
        code_hash: &[u8],
        now: Millis,
        device: &NewDevice,
        event: &NewMessage,
    ) -> StoreResult<UserName> {
        let mut tx = self.write().await?;
        let code: Option<(String, i64)> = sqlx::query_as(
            "DELETE FROM link_codes WHERE code_hash = ?1 RETURNING user_name, expires_at",
        )
        .bind(code_hash)
        .fetch_optional(&mut *tx)
        .await?;
        // An expired code is refused; the rollback keeps it for purge_expired to drop.
        let user = match code {
            Some((user, expires_at)) if now < expires_at => super::parse_user(&user)?,
            _ => return Err(StoreError::NotFound("link code")),
        };
        let others: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM devices WHERE user_name = ?1 ORDER BY created_at, id",
        )
        .bind(user.as_str())
        .fetch_all(&mut *tx)
        .await?;
        let others = others
            .iter()
            .map(|d| parse_device(d))
            .collect::<StoreResult<Vec<_>>>()?;
        insert_device(&mut tx, &user, device).await?;
        // The notice that a device was added is queued whatever the queue depth: it is what lets
        // the user's other devices notice an unwanted device.
        enqueue(&mut tx, &others, event).await?;
        tx.commit().await?;
        Ok(user)
    }

    async fn add_key_packages(
        &self,
        device: &DeviceId,
        packages: &[Vec<u8>],
        last_resort: Option<&[u8]>,
        limits: &Limits,
    ) -> StoreResult<u32> {
        let mut tx = self.write().await?;
        if !device_exists(&mut tx, device).await? {
            return Err(StoreError::NotFound("device"));
        }
        let stored: i64 =
            sqlx::query_scalar("SELECT count(*) FROM key_packages WHERE device_id = ?1")
                .bind(device.as_str())
                .fetch_one(&mut *tx)
                .await?;
        let total = u64::try_from(stored)
            .unwrap_or(u64::MAX)
            .saturating_add(u64::try_from(packages.len()).unwrap_or(u64::MAX));
        if total > limits.max_key_packages {
            return Err(StoreError::Limit {
                what: "key packages",
                max: limits.max_key_packages,
            });
        }
        for package in packages {
            sqlx::query("INSERT INTO key_packages (device_id, bytes) VALUES (?1, ?2)")
                .bind(device.as_str())
                .bind(package)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(last_resort) = last_resort {
            sqlx::query(
                "INSERT INTO last_resort_key_packages (device_id, bytes) VALUES (?1, ?2)
                 ON CONFLICT (device_id) DO UPDATE SET bytes = excluded.bytes",
            )
            .bind(device.as_str())
            .bind(last_resort)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        count_u32(total)
    }

    async fn key_package_count(&self, device: &DeviceId) -> StoreResult<(u32, bool)> {
        let (count, last_resort): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM key_packages WHERE device_id = ?1),
                    (SELECT count(*) FROM last_resort_key_packages WHERE device_id = ?1)",
        )
        .bind(device.as_str())
        .fetch_one(&self.reader)
        .await?;
        Ok((count_u32(count)?, last_resort > 0))
    }

    async fn claim_key_packages(
        &self,
        user: &UserName,
    ) -> StoreResult<Option<Vec<(DeviceId, Vec<u8>)>>> {
        let mut tx = self.write().await?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM users WHERE name = ?1")
            .bind(user.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Ok(None);
        }
        let devices: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM devices WHERE user_name = ?1 ORDER BY created_at, id",
        )
        .bind(user.as_str())
        .fetch_all(&mut *tx)
        .await?;
        let mut claimed = Vec::with_capacity(devices.len());
        for device in devices {
            let one_time: Option<Vec<u8>> = sqlx::query_scalar(
                "DELETE FROM key_packages
                 WHERE id = (SELECT id FROM key_packages WHERE device_id = ?1 ORDER BY id LIMIT 1)
                 RETURNING bytes",
            )
            .bind(&device)
            .fetch_optional(&mut *tx)
            .await?;
            let package = match one_time {
                Some(p) => Some(p),
                None => {
                    sqlx::query_scalar(
                        "SELECT bytes FROM last_resort_key_packages WHERE device_id = ?1",
                    )
                    .bind(&device)
                    .fetch_optional(&mut *tx)
                    .await?
                }
            };
            if let Some(package) = package {
                claimed.push((parse_device(&device)?, package));
            }
        }
        tx.commit().await?;
        Ok(Some(claimed))
    }

    async fn create_group(
        &self,
        group: &GroupId,
        creator: &DeviceId,
        now: Millis,
    ) -> StoreResult<()> {
        let mut tx = self.write().await?;
        if !device_exists(&mut tx, creator).await? {
            return Err(StoreError::NotFound("device"));
        }
        let done =
            sqlx::query("INSERT INTO mls_groups (id, epoch, created_at) VALUES (?1, 0, ?2) ON CONFLICT DO NOTHING")
                .bind(group.as_bytes())
                .bind(now)
                .execute(&mut *tx)
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::AlreadyExists("group"));
        }
        sqlx::query("INSERT INTO group_members (group_id, device_id) VALUES (?1, ?2)")
            .bind(group.as_bytes())
            .bind(creator.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn group(&self, group: &GroupId) -> StoreResult<Option<GroupRecord>> {
        let mut tx = self.reader.begin().await?;
        let state = match group_state(&mut tx, group).await {
            Ok(state) => state,
            Err(StoreError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        tx.commit().await?;
        let (epoch, members) = state;
        Ok(Some(GroupRecord {
            group_id: group.clone(),
            epoch,
            members,
        }))
    }

    async fn apply_commit(
        &self,
        commit: &CommitApply,
        limits: &Limits,
    ) -> StoreResult<GroupRecord> {
        let mut tx = self.write().await?;
        let (epoch, members) = group_state(&mut tx, &commit.group_id).await?;
        let gid = commit.group_id.as_bytes();
        if commit.epoch < epoch {
            let recorded: Option<(Vec<u8>, String)> = sqlx::query_as(
                "SELECT commit_sha256, committer FROM group_commits WHERE group_id = ?1 AND epoch = ?2",
            )
            .bind(gid)
            .bind(epoch_to_db(commit.epoch)?)
            .fetch_optional(&mut *tx)
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
        for added in &commit.added {
            if !device_exists(&mut tx, added).await? {
                return Err(StoreError::NotFound("device"));
            }
        }
        check_depth(&mut tx, &plan.recipients, limits.max_queue_depth).await?;
        enqueue(&mut tx, &plan.commit_to, &commit.commit).await?;
        if let Some(welcome) = &commit.welcome {
            enqueue(&mut tx, &plan.welcome_to, welcome).await?;
        }
        sqlx::query(
            "INSERT INTO group_commits (group_id, epoch, commit_sha256, committer, accepted_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(gid)
        .bind(epoch_to_db(commit.epoch)?)
        .bind(commit.commit_sha256.as_slice())
        .bind(commit.sender.as_str())
        .bind(commit.commit.received_at)
        .bind(commit.commit.expires_at)
        .execute(&mut *tx)
        .await?;
        let removed = json_devices(&commit.removed)?;
        sqlx::query("DELETE FROM group_members WHERE group_id = ?1 AND device_id IN (SELECT value FROM json_each(?2))")
            .bind(gid)
            .bind(&removed)
            .execute(&mut *tx)
            .await?;
        let added = json_devices(&commit.added)?;
        sqlx::query(
            "INSERT INTO group_members (group_id, device_id) SELECT ?1, value FROM json_each(?2)",
        )
        .bind(gid)
        .bind(&added)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE mls_groups SET epoch = ?2 WHERE id = ?1")
            .bind(gid)
            .bind(epoch_to_db(plan.new_epoch)?)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(GroupRecord {
            group_id: commit.group_id.clone(),
            epoch: plan.new_epoch,
            members: plan.members_after,
        })
    }

    async fn leave_group(
        &self,
        group: &GroupId,
        device: &DeviceId,
        proposal: &NewMessage,
        limits: &Limits,
    ) -> StoreResult<u32> {
        let mut tx = self.write().await?;
        let (_, members) = group_state(&mut tx, group).await?;
        if !members.contains(device) {
            return Err(StoreError::NotMember);
        }
        let remaining: Vec<DeviceId> = members.into_iter().filter(|m| m != device).collect();
        check_depth(&mut tx, &remaining, limits.max_queue_depth).await?;
        let sent = enqueue(&mut tx, &remaining, proposal).await?;
        sqlx::query("DELETE FROM group_members WHERE group_id = ?1 AND device_id = ?2")
            .bind(group.as_bytes())
            .bind(device.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(sent)
    }

    async fn enqueue_group(
        &self,
        group: &GroupId,
        sender: &DeviceId,
        message: &NewMessage,
        limits: &Limits,
    ) -> StoreResult<u32> {
        let mut tx = self.write().await?;
        let (_, members) = group_state(&mut tx, group).await?;
        if !members.contains(sender) {
            return Err(StoreError::NotMember);
        }
        let recipients: Vec<DeviceId> = members.into_iter().filter(|m| m != sender).collect();
        check_depth(&mut tx, &recipients, limits.max_queue_depth).await?;
        let sent = enqueue(&mut tx, &recipients, message).await?;
        tx.commit().await?;
        Ok(sent)
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
             WHERE q.device_id = ?1 AND q.id > ?2 AND m.expires_at > ?3
             ORDER BY q.id LIMIT ?4",
        )
        .bind(device.as_str())
        .bind(after)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter().map(QueueRow::into_queued).collect()
    }

    async fn ack(&self, device: &DeviceId, ids: &[i64]) -> StoreResult<u32> {
        if ids.is_empty() {
            return Ok(0);
        }
        let ids = serde_json::to_string(ids).map_err(|e| StoreError::Backend(e.to_string()))?;
        let mut tx = self.write().await?;
        let messages: Vec<i64> = sqlx::query_scalar(
            "DELETE FROM queue WHERE device_id = ?1 AND id IN (SELECT value FROM json_each(?2))
             RETURNING message_id",
        )
        .bind(device.as_str())
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
        if messages.is_empty() {
            return Ok(0);
        }
        sqlx::query("UPDATE devices SET queue_depth = max(queue_depth - ?2, 0) WHERE id = ?1")
            .bind(device.as_str())
            .bind(i64::try_from(messages.len()).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?;
        let messages_json =
            serde_json::to_string(&messages).map_err(|e| StoreError::Backend(e.to_string()))?;
        sqlx::query(
            "DELETE FROM messages WHERE id IN (SELECT value FROM json_each(?1))
             AND NOT EXISTS (SELECT 1 FROM queue WHERE queue.message_id = messages.id)",
        )
        .bind(&messages_json)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        count_u32(messages.len())
    }

    async fn purge_expired(&self, now: Millis) -> StoreResult<u64> {
        let mut tx = self.write().await?;
        let devices: Vec<String> = sqlx::query_scalar(
            "DELETE FROM queue WHERE message_id IN (SELECT id FROM messages WHERE expires_at <= ?1)
             RETURNING device_id",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let mut per_device: BTreeMap<&str, i64> = BTreeMap::new();
        for d in &devices {
            *per_device.entry(d.as_str()).or_default() += 1;
        }
        for (device, n) in per_device {
            sqlx::query("UPDATE devices SET queue_depth = max(queue_depth - ?2, 0) WHERE id = ?1")
                .bind(device)
                .bind(n)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM messages WHERE expires_at <= ?1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM sessions WHERE expires_at <= ?1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM challenges WHERE expires_at <= ?1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM link_codes WHERE expires_at <= ?1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM group_commits WHERE expires_at <= ?1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(u64::try_from(devices.len()).unwrap_or(u64::MAX))
    }

    async fn server_secret(&self, name: &str, fresh: &[u8]) -> StoreResult<Vec<u8>> {
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO server_secrets (name, secret) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        )
        .bind(name)
        .bind(fresh)
        .execute(&mut *tx)
        .await?;
        let secret: Vec<u8> =
            sqlx::query_scalar("SELECT secret FROM server_secrets WHERE name = ?1")
                .bind(name)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(secret)
    }
}
