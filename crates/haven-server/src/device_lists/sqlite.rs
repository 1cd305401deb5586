//! [`DeviceListStore`] on SQLite (the embedded default).

use async_trait::async_trait;
use haven_proto::UserName;
use rusqlite::{params, OptionalExtension};

use super::store::{
    from_row, version_taken, version_to_db, DeviceListStore, RawList, StoredDeviceList,
};
use crate::store::sqlite::{exec, user_exists, SqliteStore};
use crate::store::{StoreError, StoreResult};

#[async_trait]
impl DeviceListStore for SqliteStore {
    async fn put_device_list(&self, l: &StoredDeviceList) -> StoreResult<()> {
        let l = l.clone();
        let version = version_to_db(l.version)?;
        self.write(move |c| {
            if !user_exists(c, &l.user)? {
                return Err(StoreError::NotFound("user"));
            }
            let newest: i64 = c
                .prepare_cached(
                    "SELECT COALESCE(MAX(version), 0) FROM device_lists WHERE user_name = ?1",
                )?
                .query_row([l.user.as_str()], |r| r.get(0))?;
            if newest.checked_add(1) != Some(version) {
                return Err(version_taken());
            }
            exec(
                c,
                "INSERT INTO device_lists (user_name, version, list, signer, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    l.user.as_str(),
                    version,
                    l.list,
                    l.signer.as_str(),
                    l.created_at
                ],
            )?;
            exec(
                c,
                "INSERT INTO kt_pending (user_name, list_version, value, queued_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (user_name) DO UPDATE SET list_version = excluded.list_version,
                   value = excluded.value, queued_at = excluded.queued_at",
                params![l.user.as_str(), version, l.list, l.created_at],
            )?;
            Ok(())
        })
        .await
    }

    async fn latest_device_list(&self, user: &UserName) -> StoreResult<Option<StoredDeviceList>> {
        let user = user.clone();
        self.read(move |c| {
            let row: Option<RawList> = c
                .prepare_cached(
                    "SELECT version, list, signer, created_at FROM device_lists
                     WHERE user_name = ?1 ORDER BY version DESC LIMIT 1",
                )?
                .query_row([user.as_str()], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .optional()?;
            row.map(|r| from_row(&user, r)).transpose()
        })
        .await
    }

    async fn device_lists_after(
        &self,
        user: &UserName,
        after: u64,
        limit: u32,
    ) -> StoreResult<Vec<StoredDeviceList>> {
        let user = user.clone();
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT version, list, signer, created_at FROM device_lists
                 WHERE user_name = ?1 AND version > ?2 ORDER BY version LIMIT ?3",
            )?;
            let rows = stmt
                .query_map(params![user.as_str(), after, limit], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })?
                .collect::<Result<Vec<RawList>, _>>()?;
            rows.into_iter().map(|r| from_row(&user, r)).collect()
        })
        .await
    }
}
