//! [`PsiStore`] on SQLite (the embedded default).

use async_trait::async_trait;
use haven_proto::{DeviceId, UserName};
use rusqlite::{params, Connection, OptionalExtension};

use super::store::{
    accepted_from_row, accepted_sql, bank_from_row, release_from_row, share_from_row,
    AcceptedEntry, BankRow, BankUse, NewBank, NewEntry, NewRelease, PsiStore, RawBank, RawRelease,
    RawShare, ReleaseRow, StoredShare, BANKS_SQL,
};
use crate::moderation::sqlite::append;
use crate::moderation::AuditLine;
use crate::store::sqlite::{exec, user_exists, SqliteStore};
use crate::store::{Millis, StoreError, StoreResult};

fn bank_exists(c: &Connection, bank: &str) -> StoreResult<bool> {
    Ok(
        c.prepare_cached("SELECT 1 FROM hash_banks WHERE name = ?1")?
            .query_row([bank], |_| Ok(()))
            .optional()?
            .is_some(),
    )
}

fn to_i64(v: u64, what: &'static str) -> StoreResult<i64> {
    i64::try_from(v).map_err(|_| StoreError::Backend(format!("{what} out of range")))
}

#[async_trait]
impl PsiStore for SqliteStore {
    async fn create_bank(&self, bank: &NewBank, audit: &AuditLine) -> StoreResult<()> {
        let (b, audit) = (bank.clone(), audit.clone());
        self.write(move |c| {
            let n = exec(
                c,
                "INSERT INTO hash_banks (name, description, min_sources, for_vouchers,
                   for_surfaces, created_at) VALUES (?1, ?2, ?3, 0, 0, ?4)
                 ON CONFLICT DO NOTHING",
                params![b.name, b.description, b.min_sources, b.created_at],
            )?;
            if n == 0 {
                return Err(StoreError::AlreadyExists("bank"));
            }
            append(c, &audit)?;
            Ok(())
        })
        .await
    }

    async fn banks(&self) -> StoreResult<Vec<BankRow>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(BANKS_SQL)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                        r.get(8)?,
                    ))
                })?
                .collect::<Result<Vec<RawBank>, _>>()?;
            rows.into_iter().map(bank_from_row).collect()
        })
        .await
    }

    async fn set_bank_use(
        &self,
        bank: &str,
        use_: BankUse,
        on: bool,
        audit: &AuditLine,
    ) -> StoreResult<bool> {
        let (bank, audit) = (bank.to_owned(), audit.clone());
        self.write(move |c| {
            if !bank_exists(c, &bank)? {
                return Err(StoreError::NotFound("bank"));
            }
            let sql = match use_ {
                BankUse::Vouchers => {
                    "UPDATE hash_banks SET for_vouchers = ?2 WHERE name = ?1 AND for_vouchers <> ?2"
                }
                BankUse::Surfaces => {
                    "UPDATE hash_banks SET for_surfaces = ?2 WHERE name = ?1 AND for_surfaces <> ?2"
                }
            };
            let n = exec(c, sql, params![bank, on])?;
            if n > 0 {
                append(c, &audit)?;
            }
            Ok(n > 0)
        })
        .await
    }

    async fn add_bank_entries(
        &self,
        bank: &str,
        source: &str,
        entries: &[NewEntry],
        at: Millis,
        audit: &AuditLine,
    ) -> StoreResult<u64> {
        let (bank, source, entries, audit) = (
            bank.to_owned(),
            source.to_owned(),
            entries.to_vec(),
            audit.clone(),
        );
        self.write(move |c| {
            if !bank_exists(c, &bank)? {
                return Err(StoreError::NotFound("bank"));
            }
            let mut added = 0u64;
            let mut stmt = c.prepare_cached(
                "INSERT INTO bank_entries (bank, kind, hash, source, added_at)
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
            )?;
            for e in &entries {
                added += stmt.execute(params![bank, e.kind.as_str(), e.hash, source, at])? as u64;
            }
            drop(stmt);
            append(c, &audit)?;
            Ok(added)
        })
        .await
    }

    async fn remove_bank_entry(
        &self,
        bank: &str,
        entry: &NewEntry,
        reason: &str,
        at: Millis,
        audit: &AuditLine,
    ) -> StoreResult<bool> {
        let (bank, e, reason, audit) = (
            bank.to_owned(),
            entry.clone(),
            reason.to_owned(),
            audit.clone(),
        );
        self.write(move |c| {
            if !bank_exists(c, &bank)? {
                return Err(StoreError::NotFound("bank"));
            }
            let held = c
                .prepare_cached(
                    "SELECT 1 FROM bank_entries WHERE bank = ?1 AND kind = ?2 AND hash = ?3 LIMIT 1",
                )?
                .query_row(params![bank, e.kind.as_str(), e.hash], |_| Ok(()))
                .optional()?
                .is_some();
            if !held {
                return Ok(false);
            }
            let n = exec(
                c,
                "INSERT INTO bank_removals (bank, kind, hash, reason, removed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                params![bank, e.kind.as_str(), e.hash, reason, at],
            )?;
            if n > 0 {
                append(c, &audit)?;
            }
            Ok(n > 0)
        })
        .await
    }

    async fn accepted_entries(&self, use_: BankUse) -> StoreResult<Vec<AcceptedEntry>> {
        self.read(move |c| {
            let mut stmt = c.prepare(accepted_sql(use_))?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<Vec<(String, String, Vec<u8>)>, _>>()?;
            rows.into_iter().map(accepted_from_row).collect()
        })
        .await
    }

    async fn put_release(&self, r: &NewRelease, audit: &AuditLine) -> StoreResult<u64> {
        let (r, audit) = (r.clone(), audit.clone());
        self.write(move |c| {
            let next: i64 = c
                .prepare_cached("SELECT COALESCE(MAX(release), 0) + 1 FROM psi_releases")?
                .query_row([], |row| row.get(0))?;
            if next != to_i64(r.release, "release")? {
                return Err(StoreError::AlreadyExists("release"));
            }
            exec(
                c,
                "INSERT INTO psi_releases (release, db_id, root, signed, db, server_key, entries,
                   match_keys, banks, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    next,
                    r.db_id.as_slice(),
                    r.root.as_slice(),
                    r.signed,
                    r.db,
                    r.server_key,
                    to_i64(r.entries, "entries")?,
                    to_i64(r.match_keys, "match keys")?,
                    r.banks,
                    r.created_at
                ],
            )?;
            append(c, &audit)?;
            u64::try_from(next).map_err(|_| StoreError::Backend("release number".into()))
        })
        .await
    }

    async fn releases(&self, limit: u32) -> StoreResult<Vec<ReleaseRow>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT release, db_id, root, signed, entries, match_keys, banks, length(db),
                   created_at FROM psi_releases ORDER BY release DESC LIMIT ?1",
            )?;
            let rows = stmt
                .query_map([limit], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                        r.get(8)?,
                    ))
                })?
                .collect::<Result<Vec<RawRelease>, _>>()?;
            rows.into_iter().map(release_from_row).collect()
        })
        .await
    }

    async fn release_db(&self, release: u64) -> StoreResult<Option<Vec<u8>>> {
        let Ok(release) = i64::try_from(release) else {
            return Ok(None);
        };
        self.read(move |c| {
            Ok(
                c.prepare_cached("SELECT db FROM psi_releases WHERE release = ?1")?
                    .query_row([release], |r| r.get(0))
                    .optional()?,
            )
        })
        .await
    }

    async fn release_key(&self, db_id: &[u8; 16]) -> StoreResult<Option<(u64, Vec<u8>)>> {
        let db_id = *db_id;
        self.read(move |c| {
            let row: Option<(i64, Vec<u8>)> = c
                .prepare_cached("SELECT release, server_key FROM psi_releases WHERE db_id = ?1")?
                .query_row([db_id.as_slice()], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            row.map(|(n, k)| {
                u64::try_from(n)
                    .map(|n| (n, k))
                    .map_err(|_| StoreError::Backend("release number".into()))
            })
            .transpose()
        })
        .await
    }

    async fn put_share(&self, s: &StoredShare) -> StoreResult<bool> {
        let s = s.clone();
        self.write(move |c| {
            if !user_exists(c, &s.user)? {
                return Err(StoreError::NotFound("user"));
            }
            let n = exec(
                c,
                "INSERT INTO psi_shares (user_name, device_id, x, share, blob_id, release,
                   created_at, case_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL)
                 ON CONFLICT DO NOTHING",
                params![
                    s.user.as_str(),
                    s.device.as_str(),
                    s.x.as_slice(),
                    s.share,
                    s.blob_id,
                    to_i64(s.release, "release")?,
                    s.created_at
                ],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn device_shares(
        &self,
        user: &UserName,
        device: &DeviceId,
        limit: u32,
    ) -> StoreResult<Vec<StoredShare>> {
        let (user, device) = (user.clone(), device.clone());
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT device_id, x, share, blob_id, release, created_at, case_id
                 FROM psi_shares WHERE user_name = ?1 AND device_id = ?2
                 ORDER BY created_at, x LIMIT ?3",
            )?;
            let rows = stmt
                .query_map(params![user.as_str(), device.as_str(), limit], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                    ))
                })?
                .collect::<Result<Vec<RawShare>, _>>()?;
            rows.into_iter().map(|r| share_from_row(&user, r)).collect()
        })
        .await
    }

    async fn mark_revealed(
        &self,
        user: &UserName,
        device: &DeviceId,
        xs: &[[u8; 32]],
        case: &str,
    ) -> StoreResult<()> {
        let (user, device, xs, case) = (user.clone(), device.clone(), xs.to_vec(), case.to_owned());
        self.write(move |c| {
            let mut stmt = c.prepare_cached(
                "UPDATE psi_shares SET case_id = ?4
                 WHERE user_name = ?1 AND device_id = ?2 AND x = ?3 AND case_id IS NULL",
            )?;
            for x in &xs {
                stmt.execute(params![user.as_str(), device.as_str(), x.as_slice(), case])?;
            }
            Ok(())
        })
        .await
    }
}
