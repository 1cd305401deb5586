//! [`ModerationStore`] on PostgreSQL. Lock order as in `store::postgres` (group, then device
//! rows by id, then account rows); the audit chain is serialised by a transaction-scoped
//! advisory lock taken last, so appends from every node form one chain.

use async_trait::async_trait;
use haven_proto::moderation::{AppealOutcome, CaseState, ModAction};
use haven_proto::{DeviceId, GroupId, UserName};
use sqlx::postgres::PgConnection;

use super::store::{
    audit_hash, outcome_str, AccountEvent, AccountRow, ActionRow, AuditLine, AuditRow, CaseRow,
    ModerationPurge, ModerationStore, NewAction, NewCase, RawAction, RawCase, Role, ACTION_COLS,
    CASE_COLS, EVENTS,
};
use crate::quota::Checks;
use crate::store::postgres::{enqueue, lock_recipients, user_exists, PgStore};
use crate::store::{
    corrupt, parse_device, parse_user, Limits, Millis, NewMessage, StoreError, StoreResult,
};

/// The advisory lock key of the audit chain ("havenaud").
const AUDIT_LOCK: i64 = 0x6861_7665_6e61_7564;

pub(crate) async fn append(conn: &mut PgConnection, line: &AuditLine) -> StoreResult<i64> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(AUDIT_LOCK)
        .execute(&mut *conn)
        .await?;
    let last: Option<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT seq, hash FROM mod_audit ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
    let (seq, prev) = match last {
        Some((s, h)) => (
            s + 1,
            <[u8; 32]>::try_from(h.as_slice()).map_err(|_| corrupt("audit hash"))?,
        ),
        None => (1, [0u8; 32]),
    };
    let hash = audit_hash(&prev, seq, line);
    sqlx::query(
        "INSERT INTO mod_audit (seq, at, actor, action, case_id, detail, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(seq)
    .bind(line.at)
    .bind(&line.actor)
    .bind(&line.action)
    .bind(line.case.as_deref())
    .bind(&line.detail)
    .bind(hash.as_slice())
    .execute(&mut *conn)
    .await?;
    Ok(seq)
}

async fn recompute(conn: &mut PgConnection, user: &str) -> StoreResult<()> {
    sqlx::query(
        "UPDATE users SET
             suspended_until = (SELECT max(until) FROM mod_actions WHERE user_name = $1
                                AND action IN ('suspend', 'ban') AND lifted_at IS NULL),
             restricted_until = (SELECT max(until) FROM mod_actions WHERE user_name = $1
                                 AND action = 'restrict' AND lifted_at IS NULL),
             hold_until = (SELECT max(until) FROM mod_actions WHERE user_name = $1
                           AND action = 'preserve' AND lifted_at IS NULL)
         WHERE name = $1",
    )
    .bind(user)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Queues `msg` to every live device of `user`, locking their rows first (in id order).
pub(crate) async fn notify(
    conn: &mut PgConnection,
    user: &UserName,
    msg: &NewMessage,
    limits: &Limits,
) -> StoreResult<()> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM devices WHERE user_name = $1 AND revoked_at IS NULL ORDER BY id",
    )
    .bind(user.as_str())
    .fetch_all(&mut *conn)
    .await?;
    let devices = ids
        .iter()
        .map(|d| parse_device(d))
        .collect::<StoreResult<Vec<_>>>()?;
    lock_recipients(conn, &devices, None).await?;
    enqueue(conn, &devices, msg, Checks::None, limits).await?;
    Ok(())
}

async fn action_by_id(conn: &mut PgConnection, id: &str) -> StoreResult<Option<ActionRow>> {
    let raw: Option<RawAction> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ACTION_COLS} FROM mod_actions WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    raw.map(RawAction::into_row).transpose()
}

fn case_rows(raw: Vec<RawCase>) -> StoreResult<Vec<CaseRow>> {
    raw.into_iter().map(RawCase::into_row).collect()
}

fn action_rows(raw: Vec<RawAction>) -> StoreResult<Vec<ActionRow>> {
    raw.into_iter().map(RawAction::into_row).collect()
}

/// The case columns with `priority` widened to the row type's i64. Queries that order by the
/// priority name the table's column (`mod_cases.priority`): a bare `priority` would be this
/// output alias, which no index matches (measured: a full sort, 80 ms at 100,000 open cases).
fn case_select() -> String {
    CASE_COLS.replace("priority,", "priority::bigint AS priority,")
}

#[async_trait]
impl ModerationStore for PgStore {
    async fn grant_role(
        &self,
        user: &UserName,
        role: Role,
        now: Millis,
        audit: &AuditLine,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        if !user_exists(&mut tx, user).await? {
            return Err(StoreError::NotFound("user"));
        }
        let n = sqlx::query(
            "INSERT INTO user_roles (user_name, role, granted_at) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
        )
        .bind(user.as_str())
        .bind(role.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n > 0 {
            append(&mut tx, audit).await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn revoke_role(
        &self,
        user: &UserName,
        role: Role,
        audit: &AuditLine,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query("DELETE FROM user_roles WHERE user_name = $1 AND role = $2")
            .bind(user.as_str())
            .bind(role.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n > 0 {
            append(&mut tx, audit).await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn roles(&self, user: &UserName) -> StoreResult<Vec<Role>> {
        let names: Vec<String> =
            sqlx::query_scalar("SELECT role FROM user_roles WHERE user_name = $1 ORDER BY role")
                .bind(user.as_str())
                .fetch_all(&self.pool)
                .await?;
        names
            .iter()
            .map(|n| Role::parse(n).ok_or_else(|| corrupt("role")))
            .collect()
    }

    async fn device_owner(&self, device: &DeviceId) -> StoreResult<Option<UserName>> {
        let u: Option<String> = sqlx::query_scalar("SELECT user_name FROM devices WHERE id = $1")
            .bind(device.as_str())
            .fetch_optional(&self.pool)
            .await?;
        u.as_deref().map(parse_user).transpose()
    }

    async fn was_member(
        &self,
        group: &GroupId,
        user: &UserName,
        at: Millis,
        slack: Millis,
    ) -> StoreResult<bool> {
        let hit: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM group_membership_log l JOIN devices d ON d.id = l.device_id
             WHERE l.group_id = $1 AND d.user_name = $2
               AND l.joined_at <= $3 + $4 AND (l.left_at IS NULL OR l.left_at >= $3 - $4)
             LIMIT 1",
        )
        .bind(group.as_bytes())
        .bind(user.as_str())
        .bind(at)
        .bind(slack)
        .fetch_optional(&self.pool)
        .await?;
        Ok(hit.is_some())
    }

    async fn account(&self, user: &UserName) -> StoreResult<Option<AccountRow>> {
        let head: Option<(i64, Option<i64>, Option<i64>, Option<i64>)> = sqlx::query_as(
            "SELECT created_at, suspended_until, restricted_until, hold_until
             FROM users WHERE name = $1",
        )
        .bind(user.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let Some((created_at, suspended_until, restricted_until, hold_until)) = head else {
            return Ok(None);
        };
        let rows: Vec<(String, String, i64, Option<i64>)> = sqlx::query_as(
            "SELECT id, name, created_at, revoked_at FROM devices WHERE user_name = $1
             ORDER BY created_at, id",
        )
        .bind(user.as_str())
        .fetch_all(&self.pool)
        .await?;
        let devices = rows
            .into_iter()
            .map(|(id, name, at, rev)| Ok((parse_device(&id)?, name, at, rev)))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Some(AccountRow {
            created_at,
            devices,
            suspended_until,
            restricted_until,
            hold_until,
        }))
    }

    async fn enforcement(
        &self,
        user: &UserName,
    ) -> StoreResult<Option<(Option<Millis>, Option<Millis>)>> {
        Ok(
            sqlx::query_as("SELECT suspended_until, restricted_until FROM users WHERE name = $1")
                .bind(user.as_str())
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn record_event(&self, user: &UserName, event: &AccountEvent) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO account_events (user_name, device_id, event, ip, at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(user.as_str())
        .bind(event.device.as_str())
        .bind(event.event)
        .bind(&event.ip)
        .bind(event.at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn events(&self, user: &UserName, limit: u32) -> StoreResult<Vec<AccountEvent>> {
        let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
            "SELECT device_id, event, ip, at FROM account_events WHERE user_name = $1
             ORDER BY at DESC LIMIT $2",
        )
        .bind(user.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(d, e, ip, at)| {
                Ok(AccountEvent {
                    device: parse_device(&d)?,
                    event: EVENTS
                        .into_iter()
                        .find(|k| *k == e)
                        .ok_or_else(|| corrupt("account event"))?,
                    ip,
                    at,
                })
            })
            .collect()
    }

    async fn file_case(&self, case: &NewCase, audit: &AuditLine) -> StoreResult<(String, bool)> {
        let mut tx = self.pool.begin().await?;
        for u in case.reporter.iter().chain([&case.reported_user]) {
            if !user_exists(&mut tx, u).await? {
                return Err(StoreError::NotFound("user"));
            }
        }
        // ON CONFLICT on the dedupe key: a concurrent duplicate waits for the first and then
        // finds its row.
        let inserted: Option<String> = sqlx::query_scalar(
            "INSERT INTO mod_cases (id, source, reason, priority, state, reporter,
                 reporter_is_minor, reported_user, group_id, dedupe_key, note_sealed, created_at)
             VALUES ($1, $2, $3, $4, 'open', $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
        )
        .bind(&case.id)
        .bind(case.source.as_str())
        .bind(case.reason.as_str())
        .bind(i32::from(case.priority))
        .bind(case.reporter.as_ref().map(UserName::as_str))
        .bind(case.reporter_is_minor)
        .bind(case.reported_user.as_str())
        .bind(case.group_id.as_ref().map(GroupId::as_bytes))
        .bind(case.dedupe_key.as_deref())
        .bind(case.note_sealed.as_deref())
        .bind(case.created_at)
        .fetch_optional(&mut *tx)
        .await?;
        if inserted.is_none() {
            let existing: String =
                sqlx::query_scalar("SELECT id FROM mod_cases WHERE dedupe_key = $1")
                    .bind(case.dedupe_key.as_deref())
                    .fetch_one(&mut *tx)
                    .await?;
            return Ok((existing, false));
        }
        for (item, sealed) in &case.evidence {
            sqlx::query("INSERT INTO mod_evidence (case_id, item, sealed) VALUES ($1, $2, $3)")
                .bind(&case.id)
                .bind(item)
                .bind(sealed)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("UPDATE mod_open_cases SET n = n + 1 WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        append(&mut tx, audit).await?;
        tx.commit().await?;
        Ok((case.id.clone(), true))
    }

    async fn queue(&self, limit: u32) -> StoreResult<(Vec<CaseRow>, u64)> {
        let raw: Vec<RawCase> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM mod_cases WHERE state = 'open' ORDER BY mod_cases.priority, mod_cases.created_at, mod_cases.id LIMIT $1",
            case_select()
        )))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let open: i64 = sqlx::query_scalar("SELECT n FROM mod_open_cases WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok((case_rows(raw)?, u64::try_from(open).unwrap_or(0)))
    }

    async fn case(&self, id: &str) -> StoreResult<Option<CaseRow>> {
        let raw: Option<RawCase> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM mod_cases WHERE id = $1",
            case_select()
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        raw.map(RawCase::into_row).transpose()
    }

    async fn cases_about(&self, user: &UserName, limit: u32) -> StoreResult<Vec<CaseRow>> {
        let raw: Vec<RawCase> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM mod_cases WHERE reported_user = $1 ORDER BY created_at DESC, id LIMIT $2",
            case_select()
        )))
        .bind(user.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        case_rows(raw)
    }

    async fn evidence(&self, case: &str) -> StoreResult<Vec<(String, Vec<u8>)>> {
        Ok(
            sqlx::query_as(
                "SELECT item, sealed FROM mod_evidence WHERE case_id = $1 ORDER BY item",
            )
            .bind(case)
            .fetch_all(&self.pool)
            .await?,
        )
    }

    async fn evidence_item(&self, case: &str, item: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(
            sqlx::query_scalar("SELECT sealed FROM mod_evidence WHERE case_id = $1 AND item = $2")
                .bind(case)
                .bind(item)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn take_action(&self, a: &NewAction, limits: &Limits) -> StoreResult<ActionRow> {
        let mut tx = self.pool.begin().await?;
        let (user, was): (String, String) =
            sqlx::query_as("SELECT reported_user, state FROM mod_cases WHERE id = $1 FOR UPDATE")
                .bind(&a.case)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StoreError::NotFound("case"))?;
        // Device rows before the account row (the store's lock order).
        for (to, msg) in &a.notices {
            notify(&mut tx, to, msg, limits).await?;
        }
        sqlx::query(
            "INSERT INTO mod_actions (id, case_id, user_name, action, reason, moderator, created_at, until)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&a.id)
        .bind(&a.case)
        .bind(&user)
        .bind(a.action.as_str())
        .bind(&a.reason)
        .bind(a.moderator.as_str())
        .bind(a.now)
        .bind(a.until)
        .execute(&mut *tx)
        .await?;
        if let Some(state) = a.case_state {
            if was == CaseState::Open.as_str() && state != CaseState::Open {
                sqlx::query("UPDATE mod_open_cases SET n = n - 1 WHERE id = 1")
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(
                "UPDATE mod_cases SET state = $2, closed_at = $3, purge_after = $4 WHERE id = $1",
            )
            .bind(&a.case)
            .bind(state.as_str())
            .bind((state != CaseState::Open).then_some(a.now))
            .bind(a.purge_after)
            .execute(&mut *tx)
            .await?;
        }
        if a.action == ModAction::Preserve {
            sqlx::query(
                "UPDATE mod_cases SET held_until = greatest(coalesce(held_until, 0), $2) WHERE id = $1",
            )
            .bind(&a.case)
            .bind(a.until)
            .execute(&mut *tx)
            .await?;
        }
        recompute(&mut tx, &user).await?;
        if matches!(a.action, ModAction::Suspend | ModAction::Ban) {
            sqlx::query(
                "DELETE FROM sessions WHERE device_id IN (SELECT id FROM devices WHERE user_name = $1)",
            )
            .bind(&user)
            .execute(&mut *tx)
            .await?;
        }
        append(&mut tx, &a.audit).await?;
        let row = action_by_id(&mut tx, &a.id)
            .await?
            .ok_or_else(|| corrupt("action"))?;
        tx.commit().await?;
        Ok(row)
    }

    async fn case_actions(&self, case: &str) -> StoreResult<Vec<ActionRow>> {
        let raw: Vec<RawAction> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {ACTION_COLS} FROM mod_actions WHERE case_id = $1 ORDER BY created_at, id"
        )))
        .bind(case)
        .fetch_all(&self.pool)
        .await?;
        action_rows(raw)
    }

    async fn user_actions(&self, user: &UserName, limit: u32) -> StoreResult<Vec<ActionRow>> {
        let raw: Vec<RawAction> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {ACTION_COLS} FROM mod_actions WHERE user_name = $1
             ORDER BY created_at DESC, id LIMIT $2"
        )))
        .bind(user.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        action_rows(raw)
    }

    async fn action(&self, id: &str) -> StoreResult<Option<ActionRow>> {
        let mut conn = self.pool.acquire().await?;
        action_by_id(&mut conn, id).await
    }

    async fn file_appeal(
        &self,
        case: &str,
        user: &UserName,
        text: &str,
        now: Millis,
        audit: &AuditLine,
    ) -> StoreResult<ActionRow> {
        let mut tx = self.pool.begin().await?;
        let found: Option<(String, Option<i64>)> = sqlx::query_as(
            "SELECT id, appeal_filed_at FROM mod_actions
             WHERE case_id = $1 AND user_name = $2 AND lifted_at IS NULL
               AND action IN ('warn', 'restrict', 'suspend', 'ban')
             ORDER BY created_at DESC, id LIMIT 1 FOR UPDATE",
        )
        .bind(case)
        .bind(user.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let (id, filed) = found.ok_or(StoreError::NotFound("action"))?;
        if filed.is_some() {
            return Err(StoreError::AlreadyExists("appeal"));
        }
        sqlx::query("UPDATE mod_actions SET appeal_text = $2, appeal_filed_at = $3 WHERE id = $1")
            .bind(&id)
            .bind(text)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        append(&mut tx, audit).await?;
        let row = action_by_id(&mut tx, &id)
            .await?
            .ok_or_else(|| corrupt("action"))?;
        tx.commit().await?;
        Ok(row)
    }

    async fn appeals(&self, limit: u32) -> StoreResult<Vec<ActionRow>> {
        let raw: Vec<RawAction> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {ACTION_COLS} FROM mod_actions
             WHERE appeal_filed_at IS NOT NULL AND appeal_outcome IS NULL
             ORDER BY appeal_filed_at, id LIMIT $1"
        )))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        action_rows(raw)
    }

    async fn decide_appeal(
        &self,
        action: &str,
        moderator: &UserName,
        outcome: AppealOutcome,
        reason: &str,
        now: Millis,
        notice: &NewMessage,
        audit: &AuditLine,
        limits: &Limits,
    ) -> StoreResult<ActionRow> {
        let mut tx = self.pool.begin().await?;
        let user: Option<String> = sqlx::query_scalar(
            "SELECT user_name FROM mod_actions
             WHERE id = $1 AND appeal_filed_at IS NOT NULL AND appeal_outcome IS NULL FOR UPDATE",
        )
        .bind(action)
        .fetch_optional(&mut *tx)
        .await?;
        let user = parse_user(&user.ok_or(StoreError::NotFound("appeal"))?)?;
        notify(&mut tx, &user, notice, limits).await?;
        sqlx::query(
            "UPDATE mod_actions SET appeal_decided_by = $2, appeal_outcome = $3,
                 appeal_reason = $4, appeal_decided_at = $5,
                 lifted_at = CASE WHEN $3 = 'reversed' THEN $5 ELSE lifted_at END
             WHERE id = $1",
        )
        .bind(action)
        .bind(moderator.as_str())
        .bind(outcome_str(outcome))
        .bind(reason)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        recompute(&mut tx, user.as_str()).await?;
        append(&mut tx, audit).await?;
        let row = action_by_id(&mut tx, action)
            .await?
            .ok_or_else(|| corrupt("action"))?;
        tx.commit().await?;
        Ok(row)
    }

    async fn views(&self, case: &str, actor: &str) -> StoreResult<Vec<(String, String)>> {
        Ok(sqlx::query_as(
            "SELECT action, detail FROM mod_audit WHERE case_id = $1 AND actor = $2
             AND action IN ('case.view', 'evidence.view') ORDER BY seq",
        )
        .bind(case)
        .bind(actor)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn append_audit(&self, line: &AuditLine) -> StoreResult<i64> {
        let mut tx = self.pool.begin().await?;
        let seq = append(&mut tx, line).await?;
        tx.commit().await?;
        Ok(seq)
    }

    async fn audit(&self, after: i64, limit: u32) -> StoreResult<Vec<AuditRow>> {
        let rows: Vec<(i64, i64, String, String, Option<String>, String, Vec<u8>)> =
            sqlx::query_as(
                "SELECT seq, at, actor, action, case_id, detail, hash FROM mod_audit
                 WHERE seq > $1 ORDER BY seq LIMIT $2",
            )
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|(seq, at, actor, action, case, detail, hash)| {
                Ok(AuditRow {
                    seq,
                    line: AuditLine {
                        at,
                        actor,
                        action,
                        case,
                        detail,
                    },
                    hash: <[u8; 32]>::try_from(hash.as_slice())
                        .map_err(|_| corrupt("audit hash"))?,
                })
            })
            .collect()
    }

    async fn purge_moderation(
        &self,
        now: Millis,
        events_before: Millis,
    ) -> StoreResult<ModerationPurge> {
        let mut tx = self.pool.begin().await?;
        let ids: Vec<String> = sqlx::query_scalar(
            "UPDATE mod_cases SET evidence_purged = true, note_sealed = NULL
             WHERE state = 'dismissed' AND NOT evidence_purged AND purge_after <= $1
               AND (held_until IS NULL OR held_until <= $1)
             RETURNING id",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM mod_evidence WHERE case_id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        let events = sqlx::query(
            "DELETE FROM account_events WHERE at < $1 AND user_name NOT IN
                 (SELECT name FROM users WHERE hold_until > $2)",
        )
        .bind(events_before)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(ModerationPurge {
            cases: u64::try_from(ids.len()).unwrap_or(u64::MAX),
            events,
        })
    }
}
