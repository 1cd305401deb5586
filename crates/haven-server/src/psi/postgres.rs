//! [`PsiStore`] on PostgreSQL.

use async_trait::async_trait;
use haven_proto::{DeviceId, UserName};
use sqlx::postgres::PgConnection;

use super::store::{
    accepted_from_row, accepted_sql, bank_from_row, release_from_row, share_from_row,
    AcceptedEntry, BankRow, BankUse, NewBank, NewEntry, NewRelease, PsiStore, RawBank, RawRelease,
    RawShare, ReleaseRow, StoredShare, BANKS_SQL,
};
use crate::moderation::postgres::append;
use crate::moderation::AuditLine;
use crate::store::postgres::{user_exists, PgStore};
use crate::store::{Millis, StoreError, StoreResult};

/// Serialises release numbering across nodes.
const RELEASE_LOCK: i64 = 0x6861_7665_6e70_7369;

async fn bank_exists(c: &mut PgConnection, bank: &str) -> StoreResult<bool> {
    // FOR UPDATE: a bank's writers (imports, removals, switches) go one at a time.
    let row: Option<(String,)> =
        sqlx::query_as("SELECT name FROM hash_banks WHERE name = $1 FOR UPDATE")
            .bind(bank)
            .fetch_optional(&mut *c)
            .await?;
    Ok(row.is_some())
}

fn to_i64(v: u64, what: &'static str) -> StoreResult<i64> {
    i64::try_from(v).map_err(|_| StoreError::Backend(format!("{what} out of range")))
}

#[async_trait]
impl PsiStore for PgStore {
    async fn create_bank(&self, b: &NewBank, audit: &AuditLine) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query(
            "INSERT INTO hash_banks (name, description, min_sources, for_vouchers, for_surfaces,
               created_at) VALUES ($1, $2, $3, FALSE, FALSE, $4) ON CONFLICT DO NOTHING",
        )
        .bind(&b.name)
        .bind(&b.description)
        .bind(i64::from(b.min_sources))
        .bind(b.created_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::AlreadyExists("bank"));
        }
        append(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn banks(&self) -> StoreResult<Vec<BankRow>> {
        let rows: Vec<RawBank> = sqlx::query_as(BANKS_SQL).fetch_all(&self.pool).await?;
        rows.into_iter().map(bank_from_row).collect()
    }

    async fn set_bank_use(
        &self,
        bank: &str,
        use_: BankUse,
        on: bool,
        audit: &AuditLine,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        if !bank_exists(&mut tx, bank).await? {
            return Err(StoreError::NotFound("bank"));
        }
        let sql = match use_ {
            BankUse::Vouchers => {
                "UPDATE hash_banks SET for_vouchers = $2 WHERE name = $1 AND for_vouchers <> $2"
            }
            BankUse::Surfaces => {
                "UPDATE hash_banks SET for_surfaces = $2 WHERE name = $1 AND for_surfaces <> $2"
            }
        };
        let n = sqlx::query(sql)
            .bind(bank)
            .bind(on)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n > 0 {
            append(&mut tx, audit).await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn add_bank_entries(
        &self,
        bank: &str,
        source: &str,
        entries: &[NewEntry],
        at: Millis,
        audit: &AuditLine,
    ) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await?;
        if !bank_exists(&mut tx, bank).await? {
            return Err(StoreError::NotFound("bank"));
        }
        let mut added = 0u64;
        // In chunks of arrays: one statement per 10,000 entries, not one per entry.
        for chunk in entries.chunks(10_000) {
            let kinds: Vec<&str> = chunk.iter().map(|e| e.kind.as_str()).collect();
            let hashes: Vec<&[u8]> = chunk.iter().map(|e| e.hash.as_slice()).collect();
            added += sqlx::query(
                "INSERT INTO bank_entries (bank, kind, hash, source, added_at)
                 SELECT $1, k, h, $4, $5 FROM UNNEST($2::TEXT[], $3::BYTEA[]) AS t(k, h)
                 ON CONFLICT DO NOTHING",
            )
            .bind(bank)
            .bind(&kinds)
            .bind(&hashes)
            .bind(source)
            .bind(at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        append(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(added)
    }

    async fn remove_bank_entry(
        &self,
        bank: &str,
        e: &NewEntry,
        reason: &str,
        at: Millis,
        audit: &AuditLine,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        if !bank_exists(&mut tx, bank).await? {
            return Err(StoreError::NotFound("bank"));
        }
        let held: Option<(i32,)> = sqlx::query_as(
            "SELECT 1 FROM bank_entries WHERE bank = $1 AND kind = $2 AND hash = $3 LIMIT 1",
        )
        .bind(bank)
        .bind(e.kind.as_str())
        .bind(&e.hash)
        .fetch_optional(&mut *tx)
        .await?;
        if held.is_none() {
            return Ok(false);
        }
        let n = sqlx::query(
            "INSERT INTO bank_removals (bank, kind, hash, reason, removed_at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(bank)
        .bind(e.kind.as_str())
        .bind(&e.hash)
        .bind(reason)
        .bind(at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n > 0 {
            append(&mut tx, audit).await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn accepted_entries(&self, use_: BankUse) -> StoreResult<Vec<AcceptedEntry>> {
        let rows: Vec<(String, String, Vec<u8>)> = sqlx::query_as(accepted_sql(use_))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(accepted_from_row).collect()
    }

    async fn put_release(&self, r: &NewRelease, audit: &AuditLine) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(RELEASE_LOCK)
            .execute(&mut *tx)
            .await?;
        let (next,): (i64,) =
            sqlx::query_as("SELECT COALESCE(MAX(release), 0) + 1 FROM psi_releases")
                .fetch_one(&mut *tx)
                .await?;
        if next != to_i64(r.release, "release")? {
            return Err(StoreError::AlreadyExists("release"));
        }
        sqlx::query(
            "INSERT INTO psi_releases (release, db_id, root, signed, db, server_key, entries,
               match_keys, banks, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(next)
        .bind(r.db_id.as_slice())
        .bind(r.root.as_slice())
        .bind(&r.signed)
        .bind(&r.db)
        .bind(&r.server_key)
        .bind(to_i64(r.entries, "entries")?)
        .bind(to_i64(r.match_keys, "match keys")?)
        .bind(&r.banks)
        .bind(r.created_at)
        .execute(&mut *tx)
        .await?;
        append(&mut tx, audit).await?;
        tx.commit().await?;
        u64::try_from(next).map_err(|_| StoreError::Backend("release number".into()))
    }

    async fn releases(&self, limit: u32) -> StoreResult<Vec<ReleaseRow>> {
        let rows: Vec<RawRelease> = sqlx::query_as(
            "SELECT release, db_id, root, signed, entries, match_keys, banks,
               octet_length(db)::BIGINT, created_at
             FROM psi_releases ORDER BY release DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(release_from_row).collect()
    }

    async fn release_db(&self, release: u64) -> StoreResult<Option<Vec<u8>>> {
        let Ok(release) = i64::try_from(release) else {
            return Ok(None);
        };
        let row: Option<(Vec<u8>,)> =
            sqlx::query_as("SELECT db FROM psi_releases WHERE release = $1")
                .bind(release)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|r| r.0))
    }

    async fn release_key(&self, db_id: &[u8; 16]) -> StoreResult<Option<(u64, Vec<u8>)>> {
        let row: Option<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT release, server_key FROM psi_releases WHERE db_id = $1")
                .bind(db_id.as_slice())
                .fetch_optional(&self.pool)
                .await?;
        row.map(|(n, k)| {
            u64::try_from(n)
                .map(|n| (n, k))
                .map_err(|_| StoreError::Backend("release number".into()))
        })
        .transpose()
    }

    async fn put_share(&self, s: &StoredShare) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        if !user_exists(&mut tx, &s.user).await? {
            return Err(StoreError::NotFound("user"));
        }
        let n = sqlx::query(
            "INSERT INTO psi_shares (user_name, device_id, x, share, blob_id, release, created_at,
               case_id) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL) ON CONFLICT DO NOTHING",
        )
        .bind(s.user.as_str())
        .bind(s.device.as_str())
        .bind(s.x.as_slice())
        .bind(&s.share)
        .bind(&s.blob_id)
        .bind(to_i64(s.release, "release")?)
        .bind(s.created_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn device_shares(
        &self,
        user: &UserName,
        device: &DeviceId,
        limit: u32,
    ) -> StoreResult<Vec<StoredShare>> {
        let rows: Vec<RawShare> = sqlx::query_as(
            "SELECT device_id, x, share, blob_id, release, created_at, case_id
             FROM psi_shares WHERE user_name = $1 AND device_id = $2
             ORDER BY created_at, x LIMIT $3",
        )
        .bind(user.as_str())
        .bind(device.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(|r| share_from_row(user, r)).collect()
    }

    async fn mark_revealed(
        &self,
        user: &UserName,
        device: &DeviceId,
        xs: &[[u8; 32]],
        case: &str,
    ) -> StoreResult<()> {
        let xs: Vec<&[u8]> = xs.iter().map(|x| x.as_slice()).collect();
        sqlx::query(
            "UPDATE psi_shares SET case_id = $4
             WHERE user_name = $1 AND device_id = $2 AND x = ANY($3) AND case_id IS NULL",
        )
        .bind(user.as_str())
        .bind(device.as_str())
        .bind(&xs)
        .bind(case)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
