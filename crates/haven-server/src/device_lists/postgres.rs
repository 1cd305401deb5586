//! [`DeviceListStore`] on PostgreSQL.

use async_trait::async_trait;
use haven_proto::UserName;

use super::store::{
    from_row, version_taken, version_to_db, DeviceListStore, RawList, StoredDeviceList,
};
use crate::store::postgres::PgStore;
use crate::store::{StoreError, StoreResult};

#[async_trait]
impl DeviceListStore for PgStore {
    async fn put_device_list(&self, l: &StoredDeviceList) -> StoreResult<()> {
        let version = version_to_db(l.version)?;
        let mut tx = self.pool.begin().await?;
        // The account's row serialises its list writers: two devices racing for one version
        // are decided here, not by the primary key's error.
        let exists: Option<(String,)> =
            sqlx::query_as("SELECT name FROM users WHERE name = $1 FOR UPDATE")
                .bind(l.user.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound("user"));
        }
        let (newest,): (i64,) = sqlx::query_as(
            "SELECT COALESCE(MAX(version), 0) FROM device_lists WHERE user_name = $1",
        )
        .bind(l.user.as_str())
        .fetch_one(&mut *tx)
        .await?;
        if newest.checked_add(1) != Some(version) {
            return Err(version_taken());
        }
        sqlx::query(
            "INSERT INTO device_lists (user_name, version, list, signer, created_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(l.user.as_str())
        .bind(version)
        .bind(&l.list)
        .bind(l.signer.as_str())
        .bind(l.created_at)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO kt_pending (user_name, list_version, value, queued_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (user_name) DO UPDATE SET list_version = excluded.list_version,
               value = excluded.value, queued_at = excluded.queued_at",
        )
        .bind(l.user.as_str())
        .bind(version)
        .bind(&l.list)
        .bind(l.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn latest_device_list(&self, user: &UserName) -> StoreResult<Option<StoredDeviceList>> {
        let row: Option<RawList> = sqlx::query_as(
            "SELECT version, list, signer, created_at FROM device_lists
             WHERE user_name = $1 ORDER BY version DESC LIMIT 1",
        )
        .bind(user.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| from_row(user, r)).transpose()
    }

    async fn device_lists_after(
        &self,
        user: &UserName,
        after: u64,
        limit: u32,
    ) -> StoreResult<Vec<StoredDeviceList>> {
        let rows: Vec<RawList> = sqlx::query_as(
            "SELECT version, list, signer, created_at FROM device_lists
             WHERE user_name = $1 AND version > $2 ORDER BY version LIMIT $3",
        )
        .bind(user.as_str())
        .bind(i64::try_from(after).unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(|r| from_row(user, r)).collect()
    }
}
