//! The PostgreSQL side of [`crate::quota`]. Lock order (see `store::postgres`): group, then the
//! recipients' device rows by id (every share row of a recipient is only touched under its
//! device row's lock), then account rows by name.

use std::collections::BTreeMap;

use sqlx::postgres::PgConnection;

use super::{Checks, RateRule, Release};
use crate::store::postgres::TxResult;
use crate::store::{limit_to_db, parse_device, Limits, Millis, StoreError};

/// Takes one token from bucket `key` (see [`crate::store::Store::take_token`]). The upsert
/// holds the bucket row's lock, so concurrent takers (on any node) serialise on it.
pub(crate) async fn take_token(
    conn: &mut PgConnection,
    key: &str,
    rule: RateRule,
    now: Millis,
) -> TxResult<bool> {
    // $2 burst, $3 tokens per millisecond, $4 now; unqualified columns in SET and WHERE are
    // the existing row's.
    let tokens: Option<f64> = sqlx::query_scalar(
        "INSERT INTO rate_limits AS b (key, tokens, updated, full_at)
         VALUES ($1, $2 - 1, $4, $4 + CAST(1 / $3 AS BIGINT) + 1)
         ON CONFLICT (key) DO UPDATE SET
             tokens = least($2, b.tokens + greatest($4 - b.updated, 0) * $3) - 1,
             updated = greatest(b.updated, $4),
             full_at = greatest(b.updated, $4)
                 + CAST(($2 - (least($2, b.tokens + greatest($4 - b.updated, 0) * $3) - 1)) / $3 AS BIGINT) + 1
         WHERE least($2, b.tokens + greatest($4 - b.updated, 0) * $3) >= 1
         RETURNING tokens",
    )
    .bind(key)
    .bind(rule.burst_db())
    .bind(rule.refill_per_ms_db())
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(tokens.is_some_and(|t| t >= 0.0))
}

/// Drops buckets that are full again.
pub(crate) async fn purge(conn: &mut PgConnection, now: Millis) -> TxResult<()> {
    sqlx::query("DELETE FROM rate_limits WHERE full_at <= $1")
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Accounts one message of `size` bytes queued to `recipients` (distinct existing devices whose
/// rows the caller has locked) from `sender` (device, user) and checks what `checks` names.
/// A refusal is an error and the caller's transaction is rolled back.
pub(crate) async fn charge(
    conn: &mut PgConnection,
    recipients: &[String],
    size: i64,
    sender: Option<(&str, &str)>,
    checks: Checks,
    limits: &Limits,
) -> TxResult<()> {
    let totals: Vec<(i64, i64)> = sqlx::query_as(
        "UPDATE devices SET queue_depth = queue_depth + 1, queue_bytes = queue_bytes + $2
         WHERE id = ANY($1) RETURNING queue_depth, queue_bytes",
    )
    .bind(recipients)
    .bind(size)
    .fetch_all(&mut *conn)
    .await?;
    if checks != Checks::None {
        for (depth, bytes) in totals {
            if depth > limit_to_db(limits.max_queue_depth) {
                return Err(StoreError::Limit {
                    what: "queue depth",
                    max: limits.max_queue_depth,
                }
                .into());
            }
            if bytes > limit_to_db(limits.max_queue_bytes) {
                return Err(StoreError::Limit {
                    what: "queue bytes",
                    max: limits.max_queue_bytes,
                }
                .into());
            }
        }
    }
    // Account rows in name order, then their bytes.
    sqlx::query(
        "SELECT 1 FROM users WHERE name IN (SELECT user_name FROM devices WHERE id = ANY($1))
         ORDER BY name FOR NO KEY UPDATE",
    )
    .bind(recipients)
    .execute(&mut *conn)
    .await?;
    let accounts: Vec<i64> = sqlx::query_scalar(
        "UPDATE users u SET queue_bytes = u.queue_bytes + $2 * c.n
         FROM (SELECT user_name, count(*) AS n FROM devices WHERE id = ANY($1) GROUP BY user_name) c
         WHERE u.name = c.user_name RETURNING u.queue_bytes",
    )
    .bind(recipients)
    .bind(size)
    .fetch_all(&mut *conn)
    .await?;
    if checks != Checks::None
        && accounts
            .iter()
            .any(|b| *b > limit_to_db(limits.max_account_queue_bytes))
    {
        return Err(StoreError::Limit {
            what: "account queue bytes",
            max: limits.max_account_queue_bytes,
        }
        .into());
    }
    let Some((device, user)) = sender else {
        return Ok(());
    };
    let keys = super::share_keys(device, user);
    let shares: Vec<(String, String, i64, i64)> = sqlx::query_as(
        "INSERT INTO queue_shares AS q (recipient, sender, entries, bytes)
         SELECT r, s, 1, $3 FROM unnest($1::text[]) AS r, unnest($2::text[]) AS s
         ON CONFLICT (recipient, sender) DO UPDATE SET
             entries = q.entries + 1, bytes = q.bytes + excluded.bytes
         RETURNING recipient, sender, entries, bytes",
    )
    .bind(recipients)
    .bind(&keys[..])
    .bind(size)
    .fetch_all(&mut *conn)
    .await?;
    if checks == Checks::TotalsAndShares {
        for (recipient, key, entries, bytes) in shares {
            if let Some((what, max)) = super::over_share(&key, entries, bytes, limits) {
                return Err(StoreError::QueueShare {
                    recipient: parse_device(&recipient)?,
                    what,
                    max,
                }
                .into());
            }
        }
    }
    Ok(())
}

/// Sender, sender user and size of the messages `ids`, for [`Release::add`].
pub(crate) async fn released(conn: &mut PgConnection, ids: &[i64]) -> TxResult<Release> {
    let rows: Vec<(Option<String>, Option<String>, i64)> =
        sqlx::query_as("SELECT sender_device, sender_user, size FROM messages WHERE id = ANY($1)")
            .bind(ids)
            .fetch_all(&mut *conn)
            .await?;
    let mut out = Release::default();
    for (d, u, size) in &rows {
        out.add(d.as_deref().zip(u.as_deref()), *size);
    }
    Ok(out)
}

/// Releases what left `device`'s queue (its row locked by the caller): depth, bytes and shares.
/// Account bytes go through [`release_users`].
pub(crate) async fn release(conn: &mut PgConnection, device: &str, r: &Release) -> TxResult<()> {
    if r.entries == 0 {
        return Ok(());
    }
    sqlx::query(
        "UPDATE devices SET queue_depth = greatest(queue_depth - $2, 0),
                            queue_bytes = greatest(queue_bytes - $3, 0)
         WHERE id = $1",
    )
    .bind(device)
    .bind(r.entries)
    .bind(r.bytes)
    .execute(&mut *conn)
    .await?;
    if r.shares.is_empty() {
        return Ok(());
    }
    let keys: Vec<&str> = r.shares.keys().map(String::as_str).collect();
    let entries: Vec<i64> = r.shares.values().map(|v| v.0).collect();
    let bytes: Vec<i64> = r.shares.values().map(|v| v.1).collect();
    sqlx::query(
        "UPDATE queue_shares q SET entries = q.entries - t.n, bytes = q.bytes - t.b
         FROM unnest($2::text[], $3::bigint[], $4::bigint[]) AS t(k, n, b)
         WHERE q.recipient = $1 AND q.sender = t.k",
    )
    .bind(device)
    .bind(&keys)
    .bind(&entries)
    .bind(&bytes)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM queue_shares WHERE recipient = $1 AND entries <= 0")
        .bind(device)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Decrements accounts' queue bytes (name → bytes), locking their rows in name order.
pub(crate) async fn release_users(
    conn: &mut PgConnection,
    users: &BTreeMap<String, i64>,
) -> TxResult<()> {
    if users.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = users.keys().map(String::as_str).collect();
    let bytes: Vec<i64> = users.values().copied().collect();
    sqlx::query("SELECT 1 FROM users WHERE name = ANY($1) ORDER BY name FOR NO KEY UPDATE")
        .bind(&names)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "UPDATE users u SET queue_bytes = greatest(u.queue_bytes - t.b, 0)
         FROM unnest($1::text[], $2::bigint[]) AS t(n, b) WHERE u.name = t.n",
    )
    .bind(&names)
    .bind(&bytes)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
