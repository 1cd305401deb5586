//! The `blobs` table: who stored which blob, its size and until when it is kept.
//!
//! Both backends implement [`BlobRecords`] here, side by side; the conformance suite
//! (`store/conformance.rs`) runs the same cases against both. [`crate::store::Store`] has it as a
//! supertrait, so a store is always a blob record keeper too.

use async_trait::async_trait;
use haven_proto::{BlobId, UserName};
use rusqlite::{params, OptionalExtension};

use crate::store::postgres::PgStore;
use crate::store::sqlite::{exec, SqliteStore};
use crate::store::{Millis, StoreError, StoreResult};

/// The `what` of the quota's [`StoreError::Limit`].
pub const QUOTA: &str = "blob storage bytes";

/// Blob records: ownership, size and expiry. A record is live while `now < expires_at`.
#[async_trait]
pub trait BlobRecords: Send + Sync {
    /// Records that `owner` stored blob `id` of `size` bytes, kept until `expires_at`. The
    /// owner's live records (this one counted once) may hold at most `quota` bytes, else
    /// [`StoreError::Limit`] (`what` = [`QUOTA`]) and nothing changes. Storing the same blob
    /// again renews its record. `NotFound("user")` for an unknown owner.
    async fn record_blob(
        &self,
        owner: &UserName,
        id: &BlobId,
        size: u64,
        now: Millis,
        expires_at: Millis,
        quota: u64,
    ) -> StoreResult<()>;
    /// The size of blob `id` if a live record names it.
    async fn blob_live(&self, id: &BlobId, now: Millis) -> StoreResult<Option<u64>>;
    /// The bytes of `owner`'s live blobs.
    async fn blob_usage(&self, owner: &UserName, now: Millis) -> StoreResult<u64>;
    /// Drops the records expired at `now`; returns the blobs no record names any more (their
    /// bytes can be deleted).
    async fn purge_blobs(&self, now: Millis) -> StoreResult<Vec<BlobId>>;
}

fn size_i64(size: u64) -> StoreResult<i64> {
    i64::try_from(size).map_err(|_| StoreError::Backend("blob size out of range".into()))
}

fn blob_id(s: &str) -> StoreResult<BlobId> {
    BlobId::new(s).map_err(|e| StoreError::Backend(format!("stored blob id: {e}")))
}

fn quota_refused(quota: u64) -> StoreError {
    StoreError::Limit {
        what: QUOTA,
        max: quota,
    }
}

#[async_trait]
impl BlobRecords for SqliteStore {
    async fn record_blob(
        &self,
        owner: &UserName,
        id: &BlobId,
        size: u64,
        now: Millis,
        expires_at: Millis,
        quota: u64,
    ) -> StoreResult<()> {
        let (owner, id, size) = (owner.clone(), id.clone(), size_i64(size)?);
        self.write(move |c| {
            let known: Option<i64> = c
                .prepare_cached("SELECT 1 FROM users WHERE name = ?1")?
                .query_row([owner.as_str()], |r| r.get(0))
                .optional()?;
            if known.is_none() {
                return Err(StoreError::NotFound("user"));
            }
            let others: i64 = c
                .prepare_cached(
                    "SELECT COALESCE(SUM(size), 0) FROM blobs
                     WHERE owner = ?1 AND expires_at > ?2 AND blob_id <> ?3",
                )?
                .query_row(params![owner.as_str(), now, id.as_str()], |r| r.get(0))?;
            if u64::try_from(others.saturating_add(size)).unwrap_or(u64::MAX) > quota {
                return Err(quota_refused(quota));
            }
            exec(
                c,
                "INSERT INTO blobs (blob_id, owner, size, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (blob_id, owner) DO UPDATE SET
                     size = excluded.size, created_at = excluded.created_at,
                     expires_at = max(blobs.expires_at, excluded.expires_at)",
                params![id.as_str(), owner.as_str(), size, now, expires_at],
            )?;
            Ok(())
        })
        .await
    }

    async fn blob_live(&self, id: &BlobId, now: Millis) -> StoreResult<Option<u64>> {
        let id = id.clone();
        self.read(move |c| {
            let size: Option<i64> = c
                .prepare_cached(
                    "SELECT max(size) FROM blobs WHERE blob_id = ?1 AND expires_at > ?2",
                )?
                .query_row(params![id.as_str(), now], |r| r.get(0))?;
            Ok(size.map(|s| u64::try_from(s).unwrap_or(0)))
        })
        .await
    }

    async fn blob_usage(&self, owner: &UserName, now: Millis) -> StoreResult<u64> {
        let owner = owner.clone();
        self.read(move |c| {
            let used: i64 = c
                .prepare_cached(
                    "SELECT COALESCE(SUM(size), 0) FROM blobs WHERE owner = ?1 AND expires_at > ?2",
                )?
                .query_row(params![owner.as_str(), now], |r| r.get(0))?;
            Ok(u64::try_from(used).unwrap_or(0))
        })
        .await
    }

    async fn purge_blobs(&self, now: Millis) -> StoreResult<Vec<BlobId>> {
        self.write(move |c| {
            let dropped = c
                .prepare_cached("DELETE FROM blobs WHERE expires_at <= ?1 RETURNING blob_id")?
                .query_map([now], |r| r.get::<_, String>(0))?
                .collect::<Result<std::collections::BTreeSet<_>, _>>()?;
            let mut gone = Vec::new();
            let mut still = c.prepare_cached("SELECT 1 FROM blobs WHERE blob_id = ?1 LIMIT 1")?;
            for id in dropped {
                let named: Option<i64> = still.query_row([&id], |r| r.get(0)).optional()?;
                if named.is_none() {
                    gone.push(blob_id(&id)?);
                }
            }
            Ok(gone)
        })
        .await
    }
}

#[async_trait]
impl BlobRecords for PgStore {
    async fn record_blob(
        &self,
        owner: &UserName,
        id: &BlobId,
        size: u64,
        now: Millis,
        expires_at: Millis,
        quota: u64,
    ) -> StoreResult<()> {
        let size = size_i64(size)?;
        let mut tx = self.pool.begin().await?;
        // Locking the owner's row serializes their uploads, so two cannot both pass the check.
        let known: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM users WHERE name = $1 FOR UPDATE")
                .bind(owner.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        if known.is_none() {
            return Err(StoreError::NotFound("user"));
        }
        let others: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(size), 0)::bigint FROM blobs
             WHERE owner = $1 AND expires_at > $2 AND blob_id <> $3",
        )
        .bind(owner.as_str())
        .bind(now)
        .bind(id.as_str())
        .fetch_one(&mut *tx)
        .await?;
        if u64::try_from(others.saturating_add(size)).unwrap_or(u64::MAX) > quota {
            return Err(quota_refused(quota));
        }
        sqlx::query(
            "INSERT INTO blobs (blob_id, owner, size, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (blob_id, owner) DO UPDATE SET
                 size = excluded.size, created_at = excluded.created_at,
                 expires_at = greatest(blobs.expires_at, excluded.expires_at)",
        )
        .bind(id.as_str())
        .bind(owner.as_str())
        .bind(size)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn blob_live(&self, id: &BlobId, now: Millis) -> StoreResult<Option<u64>> {
        let size: Option<i64> = sqlx::query_scalar(
            "SELECT max(size) FROM blobs WHERE blob_id = $1 AND expires_at > $2",
        )
        .bind(id.as_str())
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(size.map(|s| u64::try_from(s).unwrap_or(0)))
    }

    async fn blob_usage(&self, owner: &UserName, now: Millis) -> StoreResult<u64> {
        let used: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(size), 0)::bigint FROM blobs WHERE owner = $1 AND expires_at > $2",
        )
        .bind(owner.as_str())
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(used).unwrap_or(0))
    }

    async fn purge_blobs(&self, now: Millis) -> StoreResult<Vec<BlobId>> {
        // Every statement of the query sees the snapshot from before the DELETE, so "still named"
        // is "named by a record that is not being dropped".
        let gone: Vec<String> = sqlx::query_scalar(
            "WITH dropped AS (DELETE FROM blobs WHERE expires_at <= $1 RETURNING blob_id)
             SELECT DISTINCT d.blob_id FROM dropped d
             WHERE NOT EXISTS (
                 SELECT 1 FROM blobs b WHERE b.blob_id = d.blob_id AND b.expires_at > $1)",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        gone.iter().map(|s| blob_id(s)).collect()
    }
}
