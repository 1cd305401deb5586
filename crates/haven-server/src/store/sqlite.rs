//! The embedded default backend: one SQLite database file, driven through `rusqlite`.
//!
//! - **One writer thread, group commit.** SQLite allows one write transaction at a time, so every
//!   write is a job for one dedicated thread that owns the write connection. The thread takes
//!   every job that is waiting (up to [`MAX_BATCH`]) and runs them, in arrival order, inside ONE
//!   transaction (`BEGIN IMMEDIATE`, which takes the write lock up front), each job inside its
//!   own `SAVEPOINT`: a job that fails is rolled back to its savepoint, so it changes nothing and
//!   the others are unaffected. Callers get their answers only after the `COMMIT` has returned.
//!   If the transaction as a whole fails (the commit, or an error that makes SQLite abandon the
//!   transaction), every job of the batch that had succeeded is told it failed: nothing of the
//!   batch was written. Jobs run strictly one after another, so a check-then-write job sees
//!   every earlier job's writes and no one else's, exactly as with one transaction per job.
//!   This is the "group commit" of database engines (DeWitt et al., *Implementation
//!   Techniques for Main Memory Database Systems*, SIGMOD 1984; Gray & Reuter, *Transaction
//!   Processing*, 1993): the fixed cost of a transaction — the write lock, the WAL frames of the
//!   pages every job touches (the `devices` row of a busy recipient, the queue index), the
//!   commit — is paid once per batch, and a request costs one thread hand-off instead of two per
//!   statement.
//! - **Readers in parallel.** Pure reads run on the blocking thread pool, each on a connection
//!   taken from a small pool; in WAL mode they see the last committed state and never block the
//!   writer. A read takes a permit first (one per pooled connection), so a burst of reads waits
//!   for a connection instead of opening new ones (each would re-read the schema, start cold).
//!   An in-memory database has only the writer's connection; reads go to the writer thread.
//! - **Durability.** `journal_mode=WAL` with `synchronous=NORMAL`: a transaction is committed once
//!   its frames are in the WAL file, so a commit that returned survives the server process being
//!   killed (even with SIGKILL): the operating system holds the written pages. What NORMAL gives up
//!   against FULL is the last transactions before an operating-system crash or power loss (the WAL
//!   is synced at checkpoints, not at every commit); the database stays consistent either way.
//! - **Ids.** `queue` and `messages` use `AUTOINCREMENT`, so queue ids are never reused even when
//!   the newest entries have been acknowledged and deleted. Queue ids of one device become visible
//!   in increasing order because all writes are serialised on the one writer.
//! - **Schema.** The migrations in `migrations/sqlite` are applied by `sqlx`'s migrator to a file
//!   database (its `_sqlx_migrations` table records them, as it did for databases written by
//!   earlier builds), and directly to a fresh in-memory database.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use haven_proto::{DeviceId, GroupId, UserName};
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::oneshot;

use crate::quota::sqlite as quota;
use crate::quota::{Checks, RateRule};

use super::{
    count_u32, epoch_from_db, epoch_to_db, frank_columns, is_resubmission, parse_device,
    plan_commit, record_name, referenced_name, CommitApply, DeviceRecord, DeviceRow, GroupRecord,
    KeyPackageClaim, Limits, Millis, NewDevice, NewKeyPackage, NewMessage, QueueRow, QueuedMessage,
    Store, StoreError, StoreResult,
};

/// How long a connection waits for another process's lock on the file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// Read connections kept open.
const READERS: usize = 4;
/// Most jobs committed in one transaction.
const MAX_BATCH: usize = 256;
/// Prepared statements each connection keeps.
const STATEMENT_CACHE: usize = 64;

impl From<rusqlite::Error> for StoreError {
    /// As for `sqlx::Error`: unique-key violations become `AlreadyExists` (named after the table
    /// in SQLite's message, "UNIQUE constraint failed: users.name"), foreign-key violations
    /// `NotFound`, everything else `Backend`.
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ffi;
        if let rusqlite::Error::SqliteFailure(f, msg) = &e {
            match f.extended_code {
                ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                    return StoreError::AlreadyExists(record_name(&[msg.as_deref()]));
                }
                ffi::SQLITE_CONSTRAINT_FOREIGNKEY => {
                    return StoreError::NotFound(referenced_name(None));
                }
                _ => {}
            }
        }
        StoreError::Backend(e.to_string())
    }
}

/// A write job: runs inside the batch transaction, answers after the commit.
trait Job: Send {
    /// Runs the job on the writer's connection; true if it succeeded (its writes are kept).
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller. `committed` is the fate of the batch's transaction; a job that
    /// succeeded is told it failed if the transaction did not commit.
    fn answer(self: Box<Self>, committed: &Result<(), String>);
}

/// A job around a closure, with the channel its result goes back on.
struct Op<R, F> {
    work: Option<F>,
    result: Option<StoreResult<R>>,
    reply: oneshot::Sender<StoreResult<R>>,
}

impl<R, F> Job for Op<R, F>
where
    R: Send,
    F: FnOnce(&Connection) -> StoreResult<R> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let result = match self.work.take() {
            Some(work) => work(conn),
            None => Err(StoreError::Backend("a write job ran twice".into())),
        };
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn answer(self: Box<Self>, committed: &Result<(), String>) {
        let result = match (self.result, committed) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(r)), Ok(())) => Ok(r),
            (Some(Ok(_)), Err(e)) => Err(StoreError::Backend(format!(
                "the transaction was rolled back: {e}"
            ))),
            (None, _) => Err(StoreError::Backend("a write job never ran".into())),
        };
        // The caller may have gone away (its request was cancelled); nothing to tell then.
        let _ = self.reply.send(result);
    }
}

/// A message to the writer thread.
enum ToWriter {
    Job(Box<dyn Job>),
    /// Finish the jobs before this one, close the connection and answer.
    Close(oneshot::Sender<()>),
}

/// Runs a fixed control statement (transaction, savepoint) from the statement cache.
fn sql(conn: &Connection, statement: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(statement)?.execute([]).map(|_| ())
}

/// Runs `jobs` in one transaction on `conn` (see the module docs), and answers each.
fn run_batch(conn: &Connection, jobs: Vec<Box<dyn Job>>) {
    let mut jobs = jobs.into_iter().peekable();
    while jobs.peek().is_some() {
        if let Err(e) = sql(conn, "BEGIN IMMEDIATE") {
            let failed = Err(e.to_string());
            for job in jobs {
                job.answer(&failed);
            }
            return;
        }
        let mut done: Vec<Box<dyn Job>> = Vec::new();
        let mut aborted = None;
        for mut job in jobs.by_ref() {
            if let Err(e) = sql(conn, "SAVEPOINT haven_job") {
                aborted = Some(e.to_string());
                done.push(job);
                break;
            }
            let ok = job.run(conn);
            done.push(job);
            if conn.is_autocommit() {
                // SQLite abandoned the whole transaction (I/O error, disk full, …): the
                // earlier jobs' writes are gone too.
                aborted = Some("SQLite rolled back the transaction".into());
                break;
            }
            let end = if ok {
                sql(conn, "RELEASE haven_job")
            } else {
                sql(conn, "ROLLBACK TO haven_job").and_then(|()| sql(conn, "RELEASE haven_job"))
            };
            if let Err(e) = end {
                aborted = Some(e.to_string());
                break;
            }
        }
        let committed = match aborted {
            Some(e) => Err(e),
            None => sql(conn, "COMMIT").map_err(|e| e.to_string()),
        };
        if committed.is_err() && !conn.is_autocommit() {
            let _ = sql(conn, "ROLLBACK");
        }
        for job in done {
            job.answer(&committed);
        }
    }
}

/// The writer thread: takes what is waiting, runs it as one batch, repeats.
fn writer_loop(conn: Connection, rx: mpsc::Receiver<ToWriter>) {
    let mut close = None;
    while close.is_none() {
        let Ok(first) = rx.recv() else { break };
        let mut batch = Vec::new();
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                ToWriter::Job(job) => batch.push(job),
                ToWriter::Close(done) => {
                    close = Some(done);
                    break;
                }
            }
            if batch.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        run_batch(&conn, batch);
    }
    drop(conn);
    if let Some(done) = close {
        let _ = done.send(());
    }
}

/// Read connections to the database file, reused.
#[derive(Debug)]
struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// One permit per connection: at most [`READERS`] reads run at once, so the pool never
    /// opens more connections than that (a fresh connection re-reads the schema and starts
    /// with a cold page cache).
    permits: Arc<tokio::sync::Semaphore>,
}

impl ReadPool {
    fn new(path: PathBuf) -> Self {
        ReadPool {
            path,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(tokio::sync::Semaphore::new(READERS)),
        }
    }

    /// Runs `work` in one read transaction on a pooled connection (the caller holds a permit).
    fn run<R>(&self, work: impl FnOnce(&Connection) -> StoreResult<R>) -> StoreResult<R> {
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match pooled {
            Some(c) => c,
            None => connect(&self.path)?,
        };
        sql(&conn, "BEGIN")?;
        let result = work(&conn);
        let end = sql(&conn, "COMMIT");
        if end.is_ok() {
            self.idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(conn);
        }
        let r = result?;
        end?;
        Ok(r)
    }
}

/// The SQLite store. Cloning shares the same writer and readers.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: mpsc::Sender<ToWriter>,
    /// `None` for an in-memory database: the writer's connection is the only one, and reads go
    /// to the writer thread.
    readers: Option<Arc<ReadPool>>,
}

/// Opens a connection with the store's settings.
fn connect(path: &Path) -> StoreResult<Connection> {
    let conn = Connection::open(path)?;
    configure(&conn)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

fn configure(conn: &Connection) -> StoreResult<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(())
}

/// The migrations, in order, for a fresh in-memory database.
const MIGRATIONS: [&str; 11] = [
    include_str!("../../migrations/sqlite/0001_init.sql"),
    include_str!("../../migrations/sqlite/0002_group_commits.sql"),
    include_str!("../../migrations/sqlite/0003_verified_groups.sql"),
    include_str!("../../migrations/sqlite/0004_device_revocation.sql"),
    include_str!("../../migrations/sqlite/0005_blob_records.sql"),
    include_str!("../../migrations/sqlite/0006_quotas.sql"),
    include_str!("../../migrations/sqlite/0007_moderation.sql"),
    include_str!("../../migrations/sqlite/0008_contacts.sql"),
    include_str!("../../migrations/sqlite/0009_device_lists.sql"),
    include_str!("../../migrations/sqlite/0010_kt.sql"),
    include_str!("../../migrations/sqlite/0011_psi.sql"),
];

impl SqliteStore {
    /// Opens (creating it if needed) the database file at `path` and runs the migrations.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        // Mode 0600 before SQLite creates it; its -wal and -shm files inherit the mode.
        crate::datadir::prepare_sqlite_file(path)
            .map_err(|e| StoreError::Backend(format!("{}: {e}", path.display())))?;
        migrate_file(path).await?;
        let path = path.to_path_buf();
        let conn = {
            let path = path.clone();
            blocking(move || connect(&path)).await?
        };
        Self::start(conn, Some(Arc::new(ReadPool::new(path))))
    }

    /// A private in-memory database (for tests): one connection, kept open for the life of the
    /// store, used for reads and writes alike.
    pub async fn open_in_memory() -> StoreResult<Self> {
        let conn = blocking(|| {
            let conn = Connection::open_in_memory()?;
            configure(&conn)?;
            for m in MIGRATIONS {
                conn.execute_batch(m)?;
            }
            Ok(conn)
        })
        .await?;
        Self::start(conn, None)
    }

    fn start(conn: Connection, readers: Option<Arc<ReadPool>>) -> StoreResult<Self> {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("haven-sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx))
            .map_err(|e| StoreError::Backend(format!("cannot start the SQLite writer: {e}")))?;
        Ok(SqliteStore {
            writer: tx,
            readers,
        })
    }

    /// Finishes the writes already submitted and closes the connections. Later calls fail.
    pub async fn close(&self) {
        let (done, wait) = oneshot::channel();
        if self.writer.send(ToWriter::Close(done)).is_ok() {
            let _ = wait.await;
        }
        if let Some(pool) = &self.readers {
            pool.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
    }

    /// Runs `work` as one atomic write (see the module docs).
    pub(crate) async fn write<R, F>(&self, work: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Op {
            work: Some(work),
            result: None,
            reply,
        };
        self.writer
            .send(ToWriter::Job(Box::new(job)))
            .map_err(|_| StoreError::Backend("the SQLite writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Backend("the SQLite writer has stopped".into()))?
    }

    /// Runs `work` on a read connection, in one read transaction (one snapshot).
    pub(crate) async fn read<R, F>(&self, work: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
    {
        let Some(pool) = self.readers.clone() else {
            return self.write(work).await;
        };
        let permit = pool
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Backend("the store is closed".into()))?;
        blocking(move || {
            let _permit = permit;
            pool.run(work)
        })
        .await
    }
}

/// Runs blocking database work off the async threads.
async fn blocking<R, F>(f: F) -> StoreResult<R>
where
    R: Send + 'static,
    F: FnOnce() -> StoreResult<R> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Backend(format!("database task failed: {e}")))?
}

/// Applies the migrations to a database file with `sqlx`'s migrator, which records them in
/// `_sqlx_migrations` (see the module docs).
async fn migrate_file(path: &Path) -> StoreResult<()> {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await?;
    let result = sqlx::migrate!("./migrations/sqlite")
        .run(&pool)
        .await
        .map_err(|e| StoreError::Backend(format!("migration failed: {e}")));
    pool.close().await;
    result
}

/// A JSON array of strings, for `json_each` (SQLite has no array parameters).
fn json_strings<'a>(items: impl Iterator<Item = &'a str>) -> StoreResult<String> {
    serde_json::to_string(&items.collect::<Vec<_>>())
        .map_err(|e| StoreError::Backend(e.to_string()))
}

fn json_devices(devices: &[DeviceId]) -> StoreResult<String> {
    json_strings(devices.iter().map(DeviceId::as_str))
}

fn json_ids(ids: &[i64]) -> StoreResult<String> {
    serde_json::to_string(ids).map_err(|e| StoreError::Backend(e.to_string()))
}

/// Runs one cached statement; the number of rows changed.
pub(crate) fn exec(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> StoreResult<usize> {
    Ok(conn.prepare_cached(sql)?.execute(params)?)
}

/// Inserts a single-use, expiring row keyed by `key` (a challenge, session or link code) for
/// `owner`; `AlreadyExists(what)` if the key is taken. `sql` is one of the fixed statements of
/// the callers.
fn insert_expiring(
    conn: &Connection,
    sql: &'static str,
    key: &[u8],
    owner: &str,
    expires_at: Millis,
    what: &'static str,
) -> StoreResult<()> {
    if exec(conn, sql, params![key, owner, expires_at])? == 0 {
        return Err(StoreError::AlreadyExists(what));
    }
    Ok(())
}

fn device_exists(conn: &Connection, device: &DeviceId) -> StoreResult<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM devices WHERE id = ?1 AND revoked_at IS NULL")?
        .query_row([device.as_str()], |_| Ok(()))
        .optional()?
        .is_some())
}

pub(crate) fn user_exists(conn: &Connection, user: &UserName) -> StoreResult<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM users WHERE name = ?1")?
        .query_row([user.as_str()], |_| Ok(()))
        .optional()?
        .is_some())
}

pub(crate) fn insert_device(
    conn: &Connection,
    user: &UserName,
    device: &NewDevice,
) -> StoreResult<()> {
    let done = exec(
        conn,
        "INSERT INTO devices (id, user_name, name, auth_key, mls_key, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
        params![
            device.device_id.as_str(),
            user.as_str(),
            device.name,
            device.auth_key,
            device.mls_key,
            device.created_at
        ],
    )?;
    if done == 0 {
        return Err(StoreError::AlreadyExists("device"));
    }
    Ok(())
}

/// The ids of a user's devices, oldest first.
pub(crate) fn user_device_ids(conn: &Connection, user: &UserName) -> StoreResult<Vec<DeviceId>> {
    let mut stmt =
        conn.prepare_cached("SELECT id FROM devices WHERE user_name = ?1 AND revoked_at IS NULL ORDER BY created_at, id")?;
    let ids = stmt
        .query_map([user.as_str()], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    ids.iter().map(|d| parse_device(d)).collect()
}

/// The group's epoch and members, or `NotFound("group")`.
fn group_state(conn: &Connection, group: &GroupId) -> StoreResult<(u64, Vec<DeviceId>)> {
    let epoch: i64 = conn
        .prepare_cached("SELECT epoch FROM mls_groups WHERE id = ?1")?
        .query_row([group.as_bytes()], |r| r.get(0))
        .optional()?
        .ok_or(StoreError::NotFound("group"))?;
    let mut stmt = conn.prepare_cached(
        "SELECT device_id FROM group_members WHERE group_id = ?1 ORDER BY device_id",
    )?;
    let members = stmt
        .query_map([group.as_bytes()], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    let members = members
        .iter()
        .map(|m| parse_device(m))
        .collect::<StoreResult<Vec<_>>>()?;
    Ok((epoch_from_db(epoch)?, members))
}

/// Stores `message` once and queues it to each of `recipients` (distinct, existing devices),
/// keeping the queue accounting and checking the limits `checks` names ([`crate::quota`]); a
/// refusal is an error (the job is rolled back). Returns the number of recipients.
pub(crate) fn enqueue(
    conn: &Connection,
    recipients: &[DeviceId],
    message: &NewMessage,
    checks: Checks,
    limits: &Limits,
) -> StoreResult<u32> {
    if recipients.is_empty() {
        return Ok(0);
    }
    let sender_user: Option<String> = match &message.sender {
        Some(sender) => Some(
            conn.prepare_cached("SELECT user_name FROM devices WHERE id = ?1")?
                .query_row([sender.as_str()], |r| r.get(0))
                .optional()?
                .ok_or(StoreError::NotFound("device"))?,
        ),
        None => None,
    };
    let (commitment, server_tag) = frank_columns(message);
    let size = i64::try_from(message.payload.len()).unwrap_or(i64::MAX);
    let message_id: i64 = conn
        .prepare_cached(
            "INSERT INTO messages (kind, group_id, sender_user, sender_device, payload, commitment, server_tag,
                                   received_at, expires_at, size)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) RETURNING id",
        )?
        .query_row(
            params![
                message.kind.as_str(),
                message.group_id.as_ref().map(GroupId::as_bytes),
                sender_user,
                message.sender.as_ref().map(DeviceId::as_str),
                message.payload,
                commitment,
                server_tag,
                message.received_at,
                message.expires_at,
                size
            ],
            |r| r.get(0),
        )?;
    let ids = json_devices(recipients)?;
    exec(
        conn,
        "INSERT INTO queue (device_id, message_id) SELECT value, ?2 FROM json_each(?1) ORDER BY key",
        params![ids, message_id],
    )?;
    let sender = message
        .sender
        .as_ref()
        .map(DeviceId::as_str)
        .zip(sender_user.as_deref());
    quota::charge(conn, &ids, size, sender, checks, limits)?;
    count_u32(recipients.len())
}

fn device_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeviceRow> {
    Ok(DeviceRow {
        id: r.get(0)?,
        user_name: r.get(1)?,
        name: r.get(2)?,
        auth_key: r.get(3)?,
        mls_key: r.get(4)?,
        created_at: r.get(5)?,
    })
}

fn queue_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<QueueRow> {
    Ok(QueueRow {
        id: r.get(0)?,
        kind: r.get(1)?,
        group_id: r.get(2)?,
        sender_user: r.get(3)?,
        sender_device: r.get(4)?,
        payload: r.get(5)?,
        commitment: r.get(6)?,
        server_tag: r.get(7)?,
        received_at: r.get(8)?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_user(&self, user: &UserName, device: &NewDevice) -> StoreResult<()> {
        let (user, device) = (user.clone(), device.clone());
        self.write(move |c| {
            let done = exec(
                c,
                "INSERT INTO users (name, created_at) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                params![user.as_str(), device.created_at],
            )?;
            if done == 0 {
                return Err(StoreError::AlreadyExists("user"));
            }
            insert_device(c, &user, &device)
        })
        .await
    }

    async fn device(&self, device: &DeviceId) -> StoreResult<Option<DeviceRecord>> {
        let device = device.clone();
        self.read(move |c| {
            let row = c
                .prepare_cached(
                    "SELECT id, user_name, name, auth_key, mls_key, created_at FROM devices WHERE id = ?1 AND revoked_at IS NULL",
                )?
                .query_row([device.as_str()], device_row)
                .optional()?;
            row.map(DeviceRow::into_record).transpose()
        })
        .await
    }

    async fn user_devices(&self, user: &UserName) -> StoreResult<Option<Vec<DeviceRecord>>> {
        let user = user.clone();
        // One read transaction, so the user check and the device list see the same snapshot.
        self.read(move |c| {
            if !user_exists(c, &user)? {
                return Ok(None);
            }
            let mut stmt = c.prepare_cached(
                "SELECT id, user_name, name, auth_key, mls_key, created_at FROM devices WHERE user_name = ?1
                 AND revoked_at IS NULL ORDER BY created_at, id",
            )?;
            let rows = stmt
                .query_map([user.as_str()], device_row)?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(DeviceRow::into_record)
                .collect::<StoreResult<Vec<_>>>()
                .map(Some)
        })
        .await
    }

    async fn put_challenge(
        &self,
        nonce: &[u8],
        device: &DeviceId,
        expires_at: Millis,
    ) -> StoreResult<()> {
        let (nonce, device) = (nonce.to_vec(), device.clone());
        self.write(move |c| {
            if !device_exists(c, &device)? {
                return Err(StoreError::NotFound("device"));
            }
            insert_expiring(
                c,
                "INSERT INTO challenges (nonce, device_id, expires_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                &nonce,
                device.as_str(),
                expires_at,
                "challenge",
            )
        })
        .await
    }

    async fn take_challenge(
        &self,
        nonce: &[u8],
        device: &DeviceId,
        now: Millis,
    ) -> StoreResult<bool> {
        let (nonce, device) = (nonce.to_vec(), device.clone());
        self.write(move |c| {
            let expires_at: Option<i64> = c
                .prepare_cached(
                    "DELETE FROM challenges WHERE nonce = ?1 AND device_id = ?2 RETURNING expires_at",
                )?
                .query_row(params![nonce, device.as_str()], |r| r.get(0))
                .optional()?;
            Ok(expires_at.is_some_and(|e| now < e))
        })
        .await
    }

    async fn put_session(
        &self,
        token_hash: &[u8],
        device: &DeviceId,
        expires_at: Millis,
    ) -> StoreResult<()> {
        let (token_hash, device) = (token_hash.to_vec(), device.clone());
        self.write(move |c| {
            if !device_exists(c, &device)? {
                return Err(StoreError::NotFound("device"));
            }
            insert_expiring(
                c,
                "INSERT INTO sessions (token_hash, device_id, expires_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                &token_hash,
                device.as_str(),
                expires_at,
                "session",
            )
        })
        .await
    }

    async fn session_device(
        &self,
        token_hash: &[u8],
        now: Millis,
    ) -> StoreResult<Option<DeviceId>> {
        let token_hash = token_hash.to_vec();
        self.read(move |c| {
            let device: Option<String> = c
                .prepare_cached(
                    "SELECT device_id FROM sessions WHERE token_hash = ?1 AND expires_at > ?2",
                )?
                .query_row(params![token_hash, now], |r| r.get(0))
                .optional()?;
            device.as_deref().map(parse_device).transpose()
        })
        .await
    }

    async fn session_account(
        &self,
        token_hash: &[u8],
        now: Millis,
    ) -> StoreResult<Option<(DeviceId, UserName)>> {
        let token_hash = token_hash.to_vec();
        self.read(move |c| {
            let row: Option<(String, String)> = c
                .prepare_cached(
                    "SELECT s.device_id, d.user_name FROM sessions s JOIN devices d ON d.id = s.device_id
                     WHERE s.token_hash = ?1 AND s.expires_at > ?2 AND d.revoked_at IS NULL",
                )?
                .query_row(params![token_hash, now], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            row.map(|(d, u)| Ok((parse_device(&d)?, super::parse_user(&u)?)))
                .transpose()
        })
        .await
    }

    async fn revoke_session(&self, token_hash: &[u8]) -> StoreResult<bool> {
        let token_hash = token_hash.to_vec();
        self.write(move |c| {
            Ok(exec(
                c,
                "DELETE FROM sessions WHERE token_hash = ?1",
                [token_hash],
            )? > 0)
        })
        .await
    }

    async fn revoke_user_sessions(&self, user: &UserName) -> StoreResult<u64> {
        let user = user.clone();
        self.write(move |c| {
            let n = exec(
                c,
                "DELETE FROM sessions WHERE device_id IN (SELECT id FROM devices WHERE user_name = ?1)",
                [user.as_str()],
            )?;
            Ok(u64::try_from(n).unwrap_or(u64::MAX))
        })
        .await
    }

    async fn revoke_device(
        &self,
        device: &DeviceId,
        now: Millis,
        event: &NewMessage,
        limits: &Limits,
    ) -> StoreResult<Vec<GroupId>> {
        let (device, event, limits) = (device.clone(), event.clone(), *limits);
        self.write(move |c| {
            let user: String = c
                .prepare_cached(
                    "SELECT user_name FROM devices WHERE id = ?1 AND revoked_at IS NULL",
                )?
                .query_row([device.as_str()], |r| r.get(0))
                .optional()?
                .ok_or(StoreError::NotFound("device"))?;
            let user = super::parse_user(&user)?;
            let others: Vec<DeviceId> = user_device_ids(c, &user)?
                .into_iter()
                .filter(|d| d != &device)
                .collect();
            if others.is_empty() {
                return Err(StoreError::LastDevice);
            }
            let d = device.as_str();
            exec(
                c,
                "UPDATE devices SET revoked_at = ?2, queue_depth = 0 WHERE id = ?1",
                params![d, now],
            )?;
            for sql in [
                "DELETE FROM sessions WHERE device_id = ?1",
                "DELETE FROM challenges WHERE device_id = ?1",
                "DELETE FROM key_packages WHERE device_id = ?1",
                "DELETE FROM last_resort_key_packages WHERE device_id = ?1",
                "DELETE FROM key_package_claims WHERE device_id = ?1 OR claimer = ?1",
            ] {
                exec(c, sql, [d])?;
            }
            let mut stmt =
                c.prepare_cached("DELETE FROM queue WHERE device_id = ?1 RETURNING message_id")?;
            let messages = stmt
                .query_map([d], |r| r.get::<_, i64>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            drop(stmt);
            let gone = quota::released(c, &json_ids(&messages)?)?;
            quota::release(c, d, &gone, true)?;
            exec(
                c,
                "DELETE FROM messages WHERE id IN (SELECT value FROM json_each(?1))
                 AND NOT EXISTS (SELECT 1 FROM queue WHERE queue.message_id = messages.id)",
                [json_ids(&messages)?],
            )?;
            let mut stmt = c.prepare_cached(
                "DELETE FROM group_members WHERE device_id = ?1 RETURNING group_id",
            )?;
            let mut groups = stmt
                .query_map([d], |r| r.get::<_, Vec<u8>>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            drop(stmt);
            groups.sort();
            exec(
                c,
                "DELETE FROM link_codes WHERE user_name = ?1",
                [user.as_str()],
            )?;
            enqueue(c, &others, &event, Checks::None, &limits)?;
            groups
                .iter()
                .map(|g| GroupId::from_bytes(g).map_err(|_| super::corrupt("group id")))
                .collect()
        })
        .await
    }

    async fn put_link_code(
        &self,
        code_hash: &[u8],
        user: &UserName,
        expires_at: Millis,
    ) -> StoreResult<()> {
        let (code_hash, user) = (code_hash.to_vec(), user.clone());
        self.write(move |c| {
            if !user_exists(c, &user)? {
                return Err(StoreError::NotFound("user"));
            }
            insert_expiring(
                c,
                "INSERT INTO link_codes (code_hash, user_name, expires_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                &code_hash,
                user.as_str(),
                expires_at,
                "link code",
            )
        })
        .await
    }

    async fn link_device(
        &self,
        code_hash: &[u8],
        now: Millis,
        device: &NewDevice,
        event: &NewMessage,
        limits: &Limits,
    ) -> StoreResult<UserName> {
        let (code_hash, device, event) = (code_hash.to_vec(), device.clone(), event.clone());
        let limits = *limits;
        self.write(move |c| {
            let code: Option<(String, i64)> = c
                .prepare_cached(
                    "DELETE FROM link_codes WHERE code_hash = ?1 RETURNING user_name, expires_at",
                )?
                .query_row([&code_hash], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            // An expired code is refused; the rollback keeps it for purge_expired to drop.
            let user = match code {
                Some((user, expires_at)) if now < expires_at => super::parse_user(&user)?,
                _ => return Err(StoreError::NotFound("link code")),
            };
            let others = user_device_ids(c, &user)?;
            if u64::try_from(others.len()).unwrap_or(u64::MAX) >= limits.max_devices {
                return Err(StoreError::Limit {
                    what: "devices per account",
                    max: limits.max_devices,
                });
            }
            insert_device(c, &user, &device)?;
            // The notice that a device was added is queued whatever the queue limits: it is what
            // lets the user's other devices notice an unwanted device.
            enqueue(c, &others, &event, Checks::None, &limits)?;
            Ok(user)
        })
        .await
    }

    async fn add_key_packages(
        &self,
        device: &DeviceId,
        packages: &[NewKeyPackage],
        last_resort: Option<&NewKeyPackage>,
        limits: &Limits,
    ) -> StoreResult<u32> {
        let (device, packages) = (device.clone(), packages.to_vec());
        let (last_resort, max) = (last_resort.cloned(), limits.max_key_packages);
        self.write(move |c| {
            if !device_exists(c, &device)? {
                return Err(StoreError::NotFound("device"));
            }
            let stored: i64 = c
                .prepare_cached("SELECT count(*) FROM key_packages WHERE device_id = ?1")?
                .query_row([device.as_str()], |r| r.get(0))?;
            let total = u64::try_from(stored)
                .unwrap_or(u64::MAX)
                .saturating_add(u64::try_from(packages.len()).unwrap_or(u64::MAX));
            if total > max {
                return Err(StoreError::Limit {
                    what: "key packages",
                    max,
                });
            }
            for package in &packages {
                exec(
                    c,
                    "INSERT INTO key_packages (device_id, bytes, kp_ref) VALUES (?1, ?2, ?3)",
                    params![device.as_str(), package.bytes, package.kp_ref],
                )?;
            }
            if let Some(last_resort) = &last_resort {
                exec(
                    c,
                    "INSERT INTO last_resort_key_packages (device_id, bytes, kp_ref) VALUES (?1, ?2, ?3)
                     ON CONFLICT (device_id) DO UPDATE SET bytes = excluded.bytes, kp_ref = excluded.kp_ref",
                    params![device.as_str(), last_resort.bytes, last_resort.kp_ref],
                )?;
            }
            count_u32(total)
        })
        .await
    }

    async fn key_package_count(&self, device: &DeviceId) -> StoreResult<(u32, bool)> {
        let device = device.clone();
        self.read(move |c| {
            let (count, last_resort): (i64, i64) = c
                .prepare_cached(
                    "SELECT (SELECT count(*) FROM key_packages WHERE device_id = ?1),
                            (SELECT count(*) FROM last_resort_key_packages WHERE device_id = ?1)",
                )?
                .query_row([device.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok((count_u32(count)?, last_resort > 0))
        })
        .await
    }

    async fn claim_key_packages(
        &self,
        user: &UserName,
        claim: &KeyPackageClaim,
    ) -> StoreResult<Option<Vec<(DeviceId, Vec<u8>)>>> {
        let (user, claim) = (user.clone(), claim.clone());
        self.write(move |c| {
            if !user_exists(c, &user)? {
                return Ok(None);
            }
            let devices = user_device_ids(c, &user)?;
            let mut claimed = Vec::with_capacity(devices.len());
            for device in devices {
                let one_time: Option<(Vec<u8>, Vec<u8>)> = if claim.one_time {
                    c.prepare_cached(
                        "DELETE FROM key_packages
                         WHERE id = (SELECT id FROM key_packages WHERE device_id = ?1 ORDER BY id LIMIT 1)
                         RETURNING bytes, kp_ref",
                    )?
                    .query_row([device.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?
                } else {
                    None
                };
                let package = match one_time {
                    Some(p) => Some(p),
                    None => c
                        .prepare_cached(
                            "SELECT bytes, kp_ref FROM last_resort_key_packages WHERE device_id = ?1",
                        )?
                        .query_row([device.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()?,
                };
                if let Some((package, kp_ref)) = package {
                    exec(
                        c,
                        "INSERT INTO key_package_claims (group_id, claimer, kp_ref, device_id, expires_at)
                         VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (group_id, claimer, kp_ref) DO UPDATE SET expires_at = excluded.expires_at",
                        params![
                            claim.group.as_bytes(),
                            claim.claimer.as_str(),
                            kp_ref,
                            device.as_str(),
                            claim.expires_at
                        ],
                    )?;
                    claimed.push((device, package));
                }
            }
            Ok(Some(claimed))
        })
        .await
    }

    async fn create_group(
        &self,
        group: &GroupId,
        creator: &DeviceId,
        now: Millis,
        public_state: &[u8],
    ) -> StoreResult<()> {
        let (group, creator, state) = (group.clone(), creator.clone(), public_state.to_vec());
        self.write(move |c| {
            if !device_exists(c, &creator)? {
                return Err(StoreError::NotFound("device"));
            }
            let done = exec(
                c,
                "INSERT INTO mls_groups (id, epoch, created_at, public_state) VALUES (?1, 0, ?2, ?3)
                 ON CONFLICT DO NOTHING",
                params![group.as_bytes(), now, state],
            )?;
            if done == 0 {
                return Err(StoreError::AlreadyExists("group"));
            }
            exec(
                c,
                "INSERT INTO group_members (group_id, device_id) VALUES (?1, ?2)",
                params![group.as_bytes(), creator.as_str()],
            )?;
            Ok(())
        })
        .await
    }

    async fn group(&self, group: &GroupId) -> StoreResult<Option<GroupRecord>> {
        let group = group.clone();
        self.read(move |c| match group_state(c, &group) {
            Ok((epoch, members)) => Ok(Some(GroupRecord {
                group_id: group,
                epoch,
                members,
            })),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }

    async fn group_view(
        &self,
        group: &GroupId,
    ) -> StoreResult<Option<(GroupRecord, Option<Vec<u8>>)>> {
        let group = group.clone();
        self.read(move |c| {
            let (epoch, members) = match group_state(c, &group) {
                Ok(s) => s,
                Err(StoreError::NotFound(_)) => return Ok(None),
                Err(e) => return Err(e),
            };
            let state: Option<Vec<u8>> = c
                .prepare_cached("SELECT public_state FROM mls_groups WHERE id = ?1")?
                .query_row([group.as_bytes()], |r| r.get(0))?;
            Ok(Some((
                GroupRecord {
                    group_id: group,
                    epoch,
                    members,
                },
                state,
            )))
        })
        .await
    }

    async fn accepted_commit(
        &self,
        group: &GroupId,
        epoch: u64,
        commit_sha256: &[u8; 32],
        committer: &DeviceId,
    ) -> StoreResult<bool> {
        let (group, hash, committer) = (group.clone(), *commit_sha256, committer.clone());
        let epoch = epoch_to_db(epoch)?;
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT 1 FROM group_commits
                 WHERE group_id = ?1 AND epoch = ?2 AND commit_sha256 = ?3 AND committer = ?4",
            )?
            .query_row(
                params![group.as_bytes(), epoch, hash.as_slice(), committer.as_str()],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
        })
        .await
    }

    async fn apply_commit(
        &self,
        commit: &CommitApply,
        limits: &Limits,
    ) -> StoreResult<GroupRecord> {
        let (commit, limits) = (commit.clone(), *limits);
        self.write(move |c| apply_commit(c, &commit, &limits)).await
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
        let (group, device, proposal) = (group.clone(), device.clone(), proposal.clone());
        let (state, limits) = (public_state.to_vec(), *limits);
        self.write(move |c| {
            let (current, members) = group_state(c, &group)?;
            if !members.contains(&device) {
                return Err(StoreError::NotMember);
            }
            if current != epoch {
                return Err(StoreError::EpochConflict { current });
            }
            exec(
                c,
                "UPDATE mls_groups SET public_state = ?2 WHERE id = ?1",
                params![group.as_bytes(), state],
            )?;
            let remaining: Vec<DeviceId> = members.into_iter().filter(|m| *m != device).collect();
            let sent = enqueue(c, &remaining, &proposal, Checks::Totals, &limits)?;
            exec(
                c,
                "DELETE FROM group_members WHERE group_id = ?1 AND device_id = ?2",
                params![group.as_bytes(), device.as_str()],
            )?;
            Ok(sent)
        })
        .await
    }

    async fn enqueue_group(
        &self,
        group: &GroupId,
        sender: &DeviceId,
        message: &NewMessage,
        limits: &Limits,
    ) -> StoreResult<u32> {
        let (group, sender, message, limits) =
            (group.clone(), sender.clone(), message.clone(), *limits);
        self.write(move |c| {
            let to = group_send(c, &group, &sender, None, &message, &limits)?;
            count_u32(to.len())
        })
        .await
    }

    async fn enqueue_application(
        &self,
        group: &GroupId,
        sender: &DeviceId,
        epoch: u64,
        message: &NewMessage,
        limits: &Limits,
    ) -> StoreResult<Vec<DeviceId>> {
        let (group, sender, message, limits) =
            (group.clone(), sender.clone(), message.clone(), *limits);
        self.write(move |c| group_send(c, &group, &sender, Some(epoch), &message, &limits))
            .await
    }

    async fn fetch_queue(
        &self,
        device: &DeviceId,
        after: i64,
        limit: u32,
        now: Millis,
    ) -> StoreResult<Vec<QueuedMessage>> {
        let device = device.clone();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT q.id, m.kind, m.group_id, m.sender_user, m.sender_device, m.payload, m.commitment,
                        m.server_tag, m.received_at
                 FROM queue q JOIN messages m ON m.id = q.message_id
                 WHERE q.device_id = ?1 AND q.id > ?2 AND m.expires_at > ?3
                 ORDER BY q.id LIMIT ?4",
            )?;
            let rows = stmt
                .query_map(
                    params![device.as_str(), after, now, i64::from(limit)],
                    queue_row,
                )?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter().map(QueueRow::into_queued).collect()
        })
        .await
    }

    async fn ack(&self, device: &DeviceId, ids: &[i64]) -> StoreResult<u32> {
        if ids.is_empty() {
            return Ok(0);
        }
        let (device, ids) = (device.clone(), json_ids(ids)?);
        self.write(move |c| {
            let mut stmt = c.prepare_cached(
                "DELETE FROM queue WHERE device_id = ?1 AND id IN (SELECT value FROM json_each(?2))
                 RETURNING message_id",
            )?;
            let messages = stmt
                .query_map(params![device.as_str(), ids], |r| r.get::<_, i64>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            drop(stmt);
            if messages.is_empty() {
                return Ok(0);
            }
            let messages = json_ids(&messages)?;
            let gone = quota::released(c, &messages)?;
            quota::release(c, device.as_str(), &gone, true)?;
            exec(
                c,
                "DELETE FROM messages WHERE id IN (SELECT value FROM json_each(?1))
                 AND NOT EXISTS (SELECT 1 FROM queue WHERE queue.message_id = messages.id)",
                [&messages],
            )?;
            count_u32(gone.entries)
        })
        .await
    }

    async fn purge_expired(&self, now: Millis) -> StoreResult<u64> {
        self.write(move |c| {
            // What leaves each queue, per device and per account, before it is deleted.
            let mut stmt = c.prepare_cached(
                "SELECT q.device_id, d.user_name, m.sender_device, m.sender_user, m.size
                 FROM queue q JOIN messages m ON m.id = q.message_id JOIN devices d ON d.id = q.device_id
                 WHERE m.expires_at <= ?1",
            )?;
            let mut rows = stmt.query([now])?;
            let mut per_device: BTreeMap<String, crate::quota::Release> = BTreeMap::new();
            let mut per_user: BTreeMap<String, i64> = BTreeMap::new();
            let mut dropped = 0u64;
            while let Some(r) = rows.next()? {
                let (device, user, sd, su, size): (String, String, Option<String>, Option<String>, i64) =
                    (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
                per_device
                    .entry(device)
                    .or_default()
                    .add(sd.as_deref().zip(su.as_deref()), size);
                let u = per_user.entry(user).or_default();
                *u = u.saturating_add(size);
                dropped += 1;
            }
            drop(rows);
            drop(stmt);
            exec(
                c,
                "DELETE FROM queue WHERE message_id IN (SELECT id FROM messages WHERE expires_at <= ?1)",
                [now],
            )?;
            for (device, gone) in &per_device {
                quota::release(c, device, gone, false)?;
            }
            quota::release_users(c, &per_user)?;
            quota::purge(c, now)?;
            for sql in [
                "DELETE FROM messages WHERE expires_at <= ?1",
                "DELETE FROM sessions WHERE expires_at <= ?1",
                "DELETE FROM challenges WHERE expires_at <= ?1",
                "DELETE FROM link_codes WHERE expires_at <= ?1",
                "DELETE FROM group_commits WHERE expires_at <= ?1",
                "DELETE FROM key_package_claims WHERE expires_at <= ?1",
            ] {
                exec(c, sql, [now])?;
            }
            Ok(dropped)
        })
        .await
    }

    async fn take_token(&self, key: &str, rule: RateRule, now: Millis) -> StoreResult<bool> {
        let key = key.to_owned();
        self.write(move |c| quota::take_token(c, &key, rule, now))
            .await
    }

    async fn server_secret(&self, name: &str, fresh: &[u8]) -> StoreResult<Vec<u8>> {
        let (name, fresh) = (name.to_owned(), fresh.to_vec());
        self.write(move |c| {
            exec(
                c,
                "INSERT INTO server_secrets (name, secret) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                params![name, fresh],
            )?;
            Ok(
                c.prepare_cached("SELECT secret FROM server_secrets WHERE name = ?1")?
                    .query_row([&name], |r| r.get(0))?,
            )
        })
        .await
    }

    async fn get_server_secret(&self, name: &str) -> StoreResult<Option<Vec<u8>>> {
        let name = name.to_owned();
        self.read(move |c| {
            Ok(
                c.prepare_cached("SELECT secret FROM server_secrets WHERE name = ?1")?
                    .query_row([&name], |r| r.get(0))
                    .optional()?,
            )
        })
        .await
    }

    async fn delete_server_secret(&self, name: &str) -> StoreResult<bool> {
        let name = name.to_owned();
        self.write(move |c| {
            // secure_delete zeroes the deleted bytes in the page written back; it is a
            // connection setting, so it is switched off again for the writer's other jobs.
            c.pragma_update(None, "secure_delete", "ON")?;
            let done = exec(c, "DELETE FROM server_secrets WHERE name = ?1", [&name]);
            c.pragma_update(None, "secure_delete", "OFF")?;
            Ok(done? > 0)
        })
        .await
    }
}

/// Queues `message` from member `sender` to the group's other members (no further than
/// `max_epoch`, if given); the recipients.
fn group_send(
    c: &Connection,
    group: &GroupId,
    sender: &DeviceId,
    max_epoch: Option<u64>,
    message: &NewMessage,
    limits: &Limits,
) -> StoreResult<Vec<DeviceId>> {
    let (current, members) = group_state(c, group)?;
    if max_epoch.is_some_and(|e| e > current) {
        return Err(StoreError::FutureEpoch { current });
    }
    if !members.contains(sender) {
        return Err(StoreError::NotMember);
    }
    let recipients: Vec<DeviceId> = members.into_iter().filter(|m| m != sender).collect();
    enqueue(c, &recipients, message, Checks::TotalsAndShares, limits)?;
    Ok(recipients)
}

/// [`Store::apply_commit`] inside the writer's transaction.
fn apply_commit(c: &Connection, commit: &CommitApply, limits: &Limits) -> StoreResult<GroupRecord> {
    let (epoch, members) = group_state(c, &commit.group_id)?;
    let gid = commit.group_id.as_bytes();
    if commit.epoch < epoch {
        let recorded: Option<(Vec<u8>, String)> = c
            .prepare_cached(
                "SELECT commit_sha256, committer FROM group_commits WHERE group_id = ?1 AND epoch = ?2",
            )?
            .query_row(params![gid, epoch_to_db(commit.epoch)?], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
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
        if !device_exists(c, added)? {
            return Err(StoreError::NotFound("device"));
        }
    }
    for kp_ref in &commit.claimed {
        let consumed = c
            .prepare_cached(
                "DELETE FROM key_package_claims
                 WHERE group_id = ?1 AND claimer = ?2 AND kp_ref = ?3 AND expires_at > ?4
                 RETURNING 1",
            )?
            .query_row(
                params![
                    gid,
                    commit.sender.as_str(),
                    kp_ref,
                    commit.commit.received_at
                ],
                |_| Ok(()),
            )
            .optional()?;
        if consumed.is_none() {
            return Err(StoreError::InvalidMembership(
                "a key package the committer did not claim for this group",
            ));
        }
    }
    enqueue(c, &plan.commit_to, &commit.commit, Checks::Totals, limits)?;
    if let Some(welcome) = &commit.welcome {
        enqueue(c, &plan.welcome_to, welcome, Checks::Totals, limits)?;
    }
    exec(
        c,
        "INSERT INTO group_commits (group_id, epoch, commit_sha256, committer, accepted_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            gid,
            epoch_to_db(commit.epoch)?,
            commit.commit_sha256.as_slice(),
            commit.sender.as_str(),
            commit.commit.received_at,
            commit.commit.expires_at
        ],
    )?;
    exec(
        c,
        "DELETE FROM group_members WHERE group_id = ?1 AND device_id IN (SELECT value FROM json_each(?2))",
        params![gid, json_devices(&commit.removed)?],
    )?;
    exec(
        c,
        "INSERT INTO group_members (group_id, device_id) SELECT ?1, value FROM json_each(?2)",
        params![gid, json_devices(&commit.added)?],
    )?;
    exec(
        c,
        "UPDATE mls_groups SET epoch = ?2, public_state = ?3 WHERE id = ?1",
        params![gid, epoch_to_db(plan.new_epoch)?, commit.public_state],
    )?;
    Ok(GroupRecord {
        group_id: commit.group_id.clone(),
        epoch: plan.new_epoch,
        members: plan.members_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    type Answer = oneshot::Receiver<StoreResult<()>>;

    fn job(
        f: impl FnOnce(&Connection) -> StoreResult<()> + Send + 'static,
    ) -> (Box<dyn Job>, Answer) {
        let (reply, answer) = oneshot::channel();
        let op = Op {
            work: Some(f),
            result: None,
            reply,
        };
        (Box::new(op), answer)
    }

    fn insert(v: i64) -> impl FnOnce(&Connection) -> StoreResult<()> + Send + 'static {
        move |c| {
            exec(c, "INSERT INTO t (v) VALUES (?1)", [v])?;
            Ok(())
        }
    }

    fn table() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE t (v INTEGER PRIMARY KEY)")
            .unwrap();
        c
    }

    fn values(c: &Connection) -> Vec<i64> {
        let mut s = c.prepare("SELECT v FROM t ORDER BY v").unwrap();
        s.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// A failing job in the middle of a batch is rolled back to its savepoint; the jobs around
    /// it commit, and every caller gets its own answer.
    #[test]
    fn failing_job_changes_nothing_and_spares_the_batch() {
        let c = table();
        let (a, ra) = job(insert(1));
        let (b, rb) = job(|c| {
            exec(c, "INSERT INTO t (v) VALUES (2)", [])?;
            Err(StoreError::NotMember)
        });
        // A constraint error from SQLite itself, after a write of the same job.
        let (d, rd) = job(|c| {
            exec(c, "INSERT INTO t (v) VALUES (4)", [])?;
            exec(c, "INSERT INTO t (v) VALUES (1)", [])?;
            Ok(())
        });
        let (e, re) = job(insert(5));
        run_batch(&c, vec![a, b, d, e]);
        assert!(matches!(ra.blocking_recv().unwrap(), Ok(())));
        assert!(matches!(
            rb.blocking_recv().unwrap(),
            Err(StoreError::NotMember)
        ));
        assert!(matches!(
            rd.blocking_recv().unwrap(),
            Err(StoreError::AlreadyExists(_))
        ));
        assert!(matches!(re.blocking_recv().unwrap(), Ok(())));
        assert_eq!(values(&c), vec![1, 5]);
        assert!(c.is_autocommit(), "the batch's transaction is finished");
    }

    /// When SQLite abandons the transaction (simulated by a job that rolls it back), the jobs
    /// before it in the batch are told they failed — their writes are gone — and the jobs after
    /// it run in a fresh transaction.
    #[test]
    fn abandoned_transaction_fails_the_earlier_jobs_and_the_rest_go_on() {
        let c = table();
        let (a, ra) = job(insert(1));
        let (b, rb) = job(|c| {
            c.execute_batch("ROLLBACK")?;
            Ok(())
        });
        let (d, rd) = job(insert(3));
        run_batch(&c, vec![a, b, d]);
        assert!(matches!(
            ra.blocking_recv().unwrap(),
            Err(StoreError::Backend(_))
        ));
        assert!(matches!(
            rb.blocking_recv().unwrap(),
            Err(StoreError::Backend(_))
        ));
        assert!(matches!(rd.blocking_recv().unwrap(), Ok(())));
        assert_eq!(values(&c), vec![3]);
    }

    /// A caller that went away (cancelled request) does not disturb the batch.
    #[test]
    fn dropped_caller_is_harmless() {
        let c = table();
        let (a, ra) = job(insert(1));
        let (b, rb) = job(insert(2));
        drop(ra);
        run_batch(&c, vec![a, b]);
        assert!(matches!(rb.blocking_recv().unwrap(), Ok(())));
        assert_eq!(values(&c), vec![1, 2]);
    }

    /// Many concurrent writers through the store: every success is counted once, every failure
    /// writes nothing, whatever batches the writer formed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_through_the_writer_thread() {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(SqliteStore::open(&dir.path().join("w.db")).await.unwrap());
        let mut tasks = Vec::new();
        for i in 0..200u32 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                let fresh = i.to_be_bytes();
                // Two calls per name, racing: the second keeps the first one's secret.
                let name = format!("k{}", i / 2);
                (name.clone(), s.server_secret(&name, &fresh).await.unwrap())
            }));
        }
        for t in tasks {
            let (name, secret) = t.await.unwrap();
            let i: u32 = name.trim_start_matches('k').parse().unwrap();
            assert!(
                secret == (2 * i).to_be_bytes() || secret == (2 * i + 1).to_be_bytes(),
                "{name}: {secret:?}"
            );
        }
        s.close().await;
        let again = SqliteStore::open(&dir.path().join("w.db")).await.unwrap();
        for i in 0..100u32 {
            let kept = again.server_secret(&format!("k{i}"), &[0]).await.unwrap();
            assert!(kept == (2 * i).to_be_bytes() || kept == (2 * i + 1).to_be_bytes());
        }
    }
}
