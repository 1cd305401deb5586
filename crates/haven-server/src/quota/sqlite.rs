//! The SQLite side of [`crate::quota`]: statements that run inside the store's write jobs (one
//! writer, so a check after an update sees every earlier write and no one else's; a failing job
//! is rolled back to its savepoint).

use rusqlite::{params, Connection, OptionalExtension};

use super::{Checks, RateRule, Release};
use crate::store::{limit_to_db, parse_device, Limits, Millis, StoreError, StoreResult};

/// Takes one token from bucket `key` (see [`crate::store::Store::take_token`]).
pub(crate) fn take_token(
    c: &Connection,
    key: &str,
    rule: RateRule,
    now: Millis,
) -> StoreResult<bool> {
    // ?2 burst, ?3 tokens per millisecond, ?4 now. `refilled` is the bucket's level now; the
    // update happens only if it holds a whole token. All SET expressions read the old row.
    let tokens: Option<f64> = c
        .prepare_cached(
            "INSERT INTO rate_limits (key, tokens, updated, full_at)
             VALUES (?1, ?2 - 1, ?4, ?4 + CAST(1 / ?3 AS INTEGER) + 1)
             ON CONFLICT (key) DO UPDATE SET
                 tokens = min(?2, tokens + max(?4 - updated, 0) * ?3) - 1,
                 updated = max(updated, ?4),
                 full_at = max(updated, ?4)
                     + CAST((?2 - (min(?2, tokens + max(?4 - updated, 0) * ?3) - 1)) / ?3 AS INTEGER) + 1
             WHERE min(?2, tokens + max(?4 - updated, 0) * ?3) >= 1
             RETURNING tokens",
        )?
        .query_row(
            params![key, rule.burst_db(), rule.refill_per_ms_db(), now],
            |r| r.get(0),
        )
        .optional()?;
    Ok(tokens.is_some_and(|t| t >= 0.0))
}

/// Drops buckets that are full again (equal to a fresh one).
pub(crate) fn purge(c: &Connection, now: Millis) -> StoreResult<()> {
    c.prepare_cached("DELETE FROM rate_limits WHERE full_at <= ?1")?
        .execute([now])?;
    Ok(())
}

/// Accounts one message of `size` bytes queued to `recipients` (a JSON array of distinct
/// existing device ids) from `sender` (device, user), and checks the limits `checks` names.
/// Any refusal is an error: the caller's job or transaction is rolled back, so nothing is
/// written.
pub(crate) fn charge(
    c: &Connection,
    recipients: &str,
    size: i64,
    sender: Option<(&str, &str)>,
    checks: Checks,
    limits: &Limits,
) -> StoreResult<()> {
    {
        let mut stmt = c.prepare_cached(
            "UPDATE devices SET queue_depth = queue_depth + 1, queue_bytes = queue_bytes + ?2
             WHERE id IN (SELECT value FROM json_each(?1)) RETURNING queue_depth, queue_bytes",
        )?;
        let mut rows = stmt.query(params![recipients, size])?;
        while let Some(r) = rows.next()? {
            let (depth, bytes): (i64, i64) = (r.get(0)?, r.get(1)?);
            if checks != Checks::None {
                check_total(depth, bytes, limits)?;
            }
        }
    }
    {
        let mut stmt = c.prepare_cached(
            "UPDATE users SET queue_bytes = queue_bytes + ?2 * (
                 SELECT count(*) FROM devices d
                 WHERE d.user_name = users.name AND d.id IN (SELECT value FROM json_each(?1)))
             WHERE name IN (SELECT user_name FROM devices WHERE id IN (SELECT value FROM json_each(?1)))
             RETURNING queue_bytes",
        )?;
        let mut rows = stmt.query(params![recipients, size])?;
        while let Some(r) = rows.next()? {
            let bytes: i64 = r.get(0)?;
            if checks != Checks::None && bytes > limit_to_db(limits.max_account_queue_bytes) {
                return Err(StoreError::Limit {
                    what: "account queue bytes",
                    max: limits.max_account_queue_bytes,
                });
            }
        }
    }
    let Some((device, user)) = sender else {
        return Ok(());
    };
    let keys = serde_json::to_string(&super::share_keys(device, user))
        .map_err(|e| StoreError::Backend(e.to_string()))?;
    let mut stmt = c.prepare_cached(
        "INSERT INTO queue_shares (recipient, sender, entries, bytes)
         SELECT r.value, s.value, 1, ?3 FROM json_each(?1) r, json_each(?2) s WHERE true
         ON CONFLICT (recipient, sender) DO UPDATE SET
             entries = entries + 1, bytes = bytes + excluded.bytes
         RETURNING recipient, sender, entries, bytes",
    )?;
    let mut rows = stmt.query(params![recipients, keys, size])?;
    while let Some(r) = rows.next()? {
        if checks != Checks::TotalsAndShares {
            continue;
        }
        let (recipient, key, entries, bytes): (String, String, i64, i64) =
            (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
        if let Some(what) = super::over_share(&key, entries, bytes, limits) {
            return Err(StoreError::QueueShare {
                recipient: parse_device(&recipient)?,
                what: what.0,
                max: what.1,
            });
        }
    }
    Ok(())
}

fn check_total(depth: i64, bytes: i64, limits: &Limits) -> StoreResult<()> {
    if depth > limit_to_db(limits.max_queue_depth) {
        return Err(StoreError::Limit {
            what: "queue depth",
            max: limits.max_queue_depth,
        });
    }
    if bytes > limit_to_db(limits.max_queue_bytes) {
        return Err(StoreError::Limit {
            what: "queue bytes",
            max: limits.max_queue_bytes,
        });
    }
    Ok(())
}

/// Releases what left `device`'s queue: its depth and bytes, its shares (rows that reach zero
/// are dropped) and, with `user_bytes`, its account's bytes.
pub(crate) fn release(
    c: &Connection,
    device: &str,
    r: &Release,
    user_bytes: bool,
) -> StoreResult<()> {
    if r.entries == 0 {
        return Ok(());
    }
    c.prepare_cached(
        "UPDATE devices SET queue_depth = max(queue_depth - ?2, 0), queue_bytes = max(queue_bytes - ?3, 0)
         WHERE id = ?1",
    )?
    .execute(params![device, r.entries, r.bytes])?;
    if user_bytes {
        c.prepare_cached(
            "UPDATE users SET queue_bytes = max(queue_bytes - ?2, 0)
             WHERE name = (SELECT user_name FROM devices WHERE id = ?1)",
        )?
        .execute(params![device, r.bytes])?;
    }
    if r.shares.is_empty() {
        return Ok(());
    }
    let shares: Vec<(&str, i64, i64)> = r
        .shares
        .iter()
        .map(|(k, (n, b))| (k.as_str(), *n, *b))
        .collect();
    let shares = serde_json::to_string(&shares).map_err(|e| StoreError::Backend(e.to_string()))?;
    c.prepare_cached(
        "UPDATE queue_shares SET entries = entries - j.n, bytes = bytes - j.b
         FROM (SELECT value ->> 0 AS k, value ->> 1 AS n, value ->> 2 AS b FROM json_each(?2)) AS j
         WHERE queue_shares.recipient = ?1 AND queue_shares.sender = j.k",
    )?
    .execute(params![device, shares])?;
    c.prepare_cached("DELETE FROM queue_shares WHERE recipient = ?1 AND entries <= 0")?
        .execute([device])?;
    Ok(())
}

/// Sender, sender user and size of each message in `ids` (a JSON array), for [`Release::add`].
pub(crate) fn released(c: &Connection, ids: &str) -> StoreResult<Release> {
    let mut stmt = c.prepare_cached(
        "SELECT sender_device, sender_user, size FROM messages WHERE id IN (SELECT value FROM json_each(?1))",
    )?;
    let mut rows = stmt.query([ids])?;
    let mut out = Release::default();
    while let Some(r) = rows.next()? {
        let (d, u, size): (Option<String>, Option<String>, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
        out.add(d.as_deref().zip(u.as_deref()), size);
    }
    Ok(out)
}

/// Decrements accounts' queue bytes (name → bytes), in name order.
pub(crate) fn release_users(
    c: &Connection,
    users: &std::collections::BTreeMap<String, i64>,
) -> StoreResult<()> {
    for (user, bytes) in users {
        c.prepare_cached(
            "UPDATE users SET queue_bytes = max(queue_bytes - ?2, 0) WHERE name = ?1",
        )?
        .execute(params![user, bytes])?;
    }
    Ok(())
}
