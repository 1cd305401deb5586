//! [`KtStore`] on PostgreSQL.

use async_trait::async_trait;
use haven_kt::directory::SignedRoot;
use haven_proto::UserName;

use super::store::{
    pending_from_row, root_from_row, to_db, value_from_row, KtStore, Pending, RawPending, RawRoot,
    RawValue, ValueRow,
};
use crate::store::postgres::PgStore;
use crate::store::{Millis, StoreResult};

/// Rows per multi-row statement (PostgreSQL allows 65,535 parameters).
const CHUNK: usize = 1000;

#[async_trait]
impl KtStore for PgStore {
    async fn kt_write(
        &self,
        records: Vec<(Vec<u8>, Vec<u8>)>,
        values: Vec<ValueRow>,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        for chunk in records.chunks(CHUNK) {
            let (ids, recs): (Vec<&[u8]>, Vec<&[u8]>) = chunk
                .iter()
                .map(|(i, r)| (i.as_slice(), r.as_slice()))
                .unzip();
            sqlx::query(
                "INSERT INTO kt_records (id, record) SELECT * FROM UNNEST($1::bytea[], $2::bytea[])
                 ON CONFLICT (id) DO UPDATE SET record = excluded.record",
            )
            .bind(ids)
            .bind(recs)
            .execute(&mut *tx)
            .await?;
        }
        for chunk in values.chunks(CHUNK) {
            let mut labels = Vec::new();
            let mut epochs = Vec::new();
            let mut versions = Vec::new();
            let mut lens = Vec::new();
            let mut vals = Vec::new();
            let mut values = Vec::new();
            for v in chunk {
                labels.push(v.label.as_slice());
                epochs.push(to_db(v.epoch)?);
                versions.push(to_db(v.version)?);
                lens.push(i32::try_from(v.node_len).unwrap_or(i32::MAX));
                vals.push(v.node_val.as_slice());
                values.push(v.value.as_slice());
            }
            sqlx::query(
                "INSERT INTO kt_values (label, epoch, version, node_len, node_val, value)
                 SELECT * FROM UNNEST($1::bytea[], $2::bigint[], $3::bigint[], $4::int[],
                                      $5::bytea[], $6::bytea[])
                 ON CONFLICT (label, epoch) DO UPDATE SET version = excluded.version,
                   node_len = excluded.node_len, node_val = excluded.node_val,
                   value = excluded.value",
            )
            .bind(labels)
            .bind(epochs)
            .bind(versions)
            .bind(lens)
            .bind(vals)
            .bind(values)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn kt_records(&self, ids: Vec<Vec<u8>>) -> StoreResult<Vec<Vec<u8>>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(CHUNK * 10) {
            let rows: Vec<(Vec<u8>,)> =
                sqlx::query_as("SELECT record FROM kt_records WHERE id = ANY($1::bytea[])")
                    .bind(chunk)
                    .fetch_all(&self.pool)
                    .await?;
            out.extend(rows.into_iter().map(|(r,)| r));
        }
        Ok(out)
    }

    async fn kt_values(&self, label: Vec<u8>) -> StoreResult<Vec<ValueRow>> {
        let rows: Vec<(Vec<u8>, i64, i64, i32, Vec<u8>, Vec<u8>)> = sqlx::query_as(
            "SELECT label, epoch, version, node_len, node_val, value FROM kt_values
             WHERE label = $1 ORDER BY epoch",
        )
        .bind(label)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(widen).map(value_from_row).collect()
    }

    async fn kt_latest_values(
        &self,
        labels: Vec<Vec<u8>>,
        max_epoch: u64,
    ) -> StoreResult<Vec<ValueRow>> {
        let max = to_db(max_epoch).unwrap_or(i64::MAX);
        let mut out = Vec::new();
        for chunk in labels.chunks(CHUNK * 10) {
            let rows: Vec<(Vec<u8>, i64, i64, i32, Vec<u8>, Vec<u8>)> = sqlx::query_as(
                "SELECT DISTINCT ON (label) label, epoch, version, node_len, node_val, value
                 FROM kt_values WHERE label = ANY($1::bytea[]) AND epoch <= $2
                 ORDER BY label, epoch DESC",
            )
            .bind(chunk)
            .bind(max)
            .fetch_all(&self.pool)
            .await?;
            for r in rows {
                out.push(value_from_row(widen(r))?);
            }
        }
        Ok(out)
    }

    async fn kt_pending(&self, limit: u32) -> StoreResult<Vec<Pending>> {
        let rows: Vec<RawPending> = sqlx::query_as(
            "SELECT user_name, list_version, value, queued_at FROM kt_pending
             ORDER BY queued_at, user_name LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(pending_from_row).collect()
    }

    async fn kt_published(&self, done: Vec<(UserName, u64)>) -> StoreResult<()> {
        let mut users = Vec::new();
        let mut versions = Vec::new();
        for (u, v) in &done {
            users.push(u.as_str());
            versions.push(to_db(*v)?);
        }
        sqlx::query(
            "DELETE FROM kt_pending p USING UNNEST($1::text[], $2::bigint[]) AS d(u, v)
             WHERE p.user_name = d.u AND p.list_version = d.v",
        )
        .bind(users)
        .bind(versions)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn kt_put_root(&self, root: &SignedRoot, at: Millis) -> StoreResult<SignedRoot> {
        let epoch = to_db(root.epoch)?;
        sqlx::query(
            "INSERT INTO kt_roots (epoch, root, signature, signed_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (epoch) DO NOTHING",
        )
        .bind(epoch)
        .bind(root.root.as_slice())
        .bind(root.signature.as_slice())
        .bind(at)
        .execute(&self.pool)
        .await?;
        let row: RawRoot =
            sqlx::query_as("SELECT epoch, root, signature FROM kt_roots WHERE epoch = $1")
                .bind(epoch)
                .fetch_one(&self.pool)
                .await?;
        root_from_row(row)
    }

    async fn kt_roots(&self, from: u64, to: u64) -> StoreResult<Vec<SignedRoot>> {
        let rows: Vec<RawRoot> = sqlx::query_as(
            "SELECT epoch, root, signature FROM kt_roots
             WHERE epoch >= $1 AND epoch <= $2 ORDER BY epoch",
        )
        .bind(to_db(from)?)
        .bind(to_db(to).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(root_from_row).collect()
    }

    async fn kt_take_lease(&self, holder: &str, now: Millis, ttl: Millis) -> StoreResult<bool> {
        let r = sqlx::query(
            "INSERT INTO kt_publisher (id, holder, expires_at) VALUES (1, $1, $2)
             ON CONFLICT (id) DO UPDATE SET holder = excluded.holder,
               expires_at = excluded.expires_at
             WHERE kt_publisher.holder = excluded.holder OR kt_publisher.expires_at <= $3",
        )
        .bind(holder)
        .bind(now.saturating_add(ttl))
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }
}

fn widen((l, e, v, n, nv, val): (Vec<u8>, i64, i64, i32, Vec<u8>, Vec<u8>)) -> RawValue {
    (l, e, v, i64::from(n), nv, val)
}
