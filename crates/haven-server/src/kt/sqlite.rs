//! [`KtStore`] on SQLite (the embedded default).

use async_trait::async_trait;
use haven_kt::directory::SignedRoot;
use haven_proto::UserName;
use rusqlite::{params, OptionalExtension};

use super::store::{
    pending_from_row, root_from_row, to_db, value_from_row, KtStore, Pending, RawPending, RawRoot,
    RawValue, ValueRow,
};
use crate::store::sqlite::{exec, SqliteStore};
use crate::store::{Millis, StoreResult};

const VALUE_COLUMNS: &str = "label, epoch, version, node_len, node_val, value";

fn raw_value(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawValue> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

#[async_trait]
impl KtStore for SqliteStore {
    async fn kt_write(
        &self,
        records: Vec<(Vec<u8>, Vec<u8>)>,
        values: Vec<ValueRow>,
    ) -> StoreResult<()> {
        self.write(move |c| {
            for (id, record) in &records {
                exec(
                    c,
                    "INSERT INTO kt_records (id, record) VALUES (?1, ?2)
                     ON CONFLICT (id) DO UPDATE SET record = excluded.record",
                    params![id, record],
                )?;
            }
            for v in &values {
                exec(
                    c,
                    "INSERT INTO kt_values (label, epoch, version, node_len, node_val, value)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (label, epoch) DO UPDATE SET version = excluded.version,
                       node_len = excluded.node_len, node_val = excluded.node_val,
                       value = excluded.value",
                    params![
                        v.label,
                        to_db(v.epoch)?,
                        to_db(v.version)?,
                        v.node_len,
                        v.node_val.as_slice(),
                        v.value
                    ],
                )?;
            }
            Ok(())
        })
        .await
    }

    async fn kt_records(&self, ids: Vec<Vec<u8>>) -> StoreResult<Vec<Vec<u8>>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached("SELECT record FROM kt_records WHERE id = ?1")?;
            let mut out = Vec::with_capacity(ids.len());
            for id in &ids {
                if let Some(r) = stmt
                    .query_row([id], |r| r.get::<_, Vec<u8>>(0))
                    .optional()?
                {
                    out.push(r);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn kt_values(&self, label: Vec<u8>) -> StoreResult<Vec<ValueRow>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {VALUE_COLUMNS} FROM kt_values WHERE label = ?1 ORDER BY epoch"
            ))?;
            let rows = stmt
                .query_map([&label], raw_value)?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter().map(value_from_row).collect()
        })
        .await
    }

    async fn kt_latest_values(
        &self,
        labels: Vec<Vec<u8>>,
        max_epoch: u64,
    ) -> StoreResult<Vec<ValueRow>> {
        let max = to_db(max_epoch).unwrap_or(i64::MAX);
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {VALUE_COLUMNS} FROM kt_values WHERE label = ?1 AND epoch <= ?2
                 ORDER BY epoch DESC LIMIT 1"
            ))?;
            let mut out = Vec::new();
            for label in &labels {
                if let Some(r) = stmt.query_row(params![label, max], raw_value).optional()? {
                    out.push(value_from_row(r)?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn kt_pending(&self, limit: u32) -> StoreResult<Vec<Pending>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT user_name, list_version, value, queued_at FROM kt_pending
                 ORDER BY queued_at, user_name LIMIT ?1",
            )?;
            let rows = stmt
                .query_map([limit], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })?
                .collect::<Result<Vec<RawPending>, _>>()?;
            rows.into_iter().map(pending_from_row).collect()
        })
        .await
    }

    async fn kt_published(&self, done: Vec<(UserName, u64)>) -> StoreResult<()> {
        self.write(move |c| {
            for (user, v) in &done {
                exec(
                    c,
                    "DELETE FROM kt_pending WHERE user_name = ?1 AND list_version = ?2",
                    params![user.as_str(), to_db(*v)?],
                )?;
            }
            Ok(())
        })
        .await
    }

    async fn kt_put_root(&self, root: &SignedRoot, at: Millis) -> StoreResult<SignedRoot> {
        let root = *root;
        self.write(move |c| {
            exec(
                c,
                "INSERT INTO kt_roots (epoch, root, signature, signed_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (epoch) DO NOTHING",
                params![
                    to_db(root.epoch)?,
                    root.root.as_slice(),
                    root.signature.as_slice(),
                    at
                ],
            )?;
            let row: RawRoot = c
                .prepare_cached("SELECT epoch, root, signature FROM kt_roots WHERE epoch = ?1")?
                .query_row([to_db(root.epoch)?], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?;
            root_from_row(row)
        })
        .await
    }

    async fn kt_roots(&self, from: u64, to: u64) -> StoreResult<Vec<SignedRoot>> {
        let (from, to) = (to_db(from)?, to_db(to).unwrap_or(i64::MAX));
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT epoch, root, signature FROM kt_roots
                 WHERE epoch >= ?1 AND epoch <= ?2 ORDER BY epoch",
            )?;
            let rows = stmt
                .query_map([from, to], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<Vec<RawRoot>, _>>()?;
            rows.into_iter().map(root_from_row).collect()
        })
        .await
    }

    async fn kt_take_lease(&self, holder: &str, now: Millis, ttl: Millis) -> StoreResult<bool> {
        let holder = holder.to_string();
        self.write(move |c| {
            let n = exec(
                c,
                "INSERT INTO kt_publisher (id, holder, expires_at) VALUES (1, ?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET holder = excluded.holder,
                   expires_at = excluded.expires_at
                 WHERE kt_publisher.holder = excluded.holder OR kt_publisher.expires_at <= ?3",
                params![holder, now.saturating_add(ttl), now],
            )?;
            Ok(n == 1)
        })
        .await
    }
}
