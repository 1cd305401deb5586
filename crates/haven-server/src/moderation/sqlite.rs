//! [`ModerationStore`] on SQLite (the embedded default).

use async_trait::async_trait;
use haven_proto::moderation::{AppealOutcome, CaseState, ModAction};
use haven_proto::{DeviceId, GroupId, UserName};
use rusqlite::{params, Connection, OptionalExtension};

use super::store::{
    audit_hash, outcome_str, AccountEvent, AccountRow, ActionRow, AuditLine, AuditRow, CaseRow,
    ModerationPurge, ModerationStore, NewAction, NewCase, RawAction, RawCase, Role, ACTION_COLS,
    CASE_COLS, EVENTS,
};
use crate::quota::Checks;
use crate::store::sqlite::{enqueue, exec, user_device_ids, user_exists, SqliteStore};
use crate::store::{
    corrupt, parse_device, parse_user, Limits, Millis, NewMessage, StoreError, StoreResult,
};

fn raw_case(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawCase> {
    Ok(RawCase {
        id: r.get(0)?,
        source: r.get(1)?,
        reason: r.get(2)?,
        priority: r.get(3)?,
        state: r.get(4)?,
        reporter: r.get(5)?,
        reporter_is_minor: r.get(6)?,
        reported_user: r.get(7)?,
        group_id: r.get(8)?,
        note_sealed: r.get(9)?,
        created_at: r.get(10)?,
        closed_at: r.get(11)?,
        held_until: r.get(12)?,
        purge_after: r.get(13)?,
        evidence_purged: r.get(14)?,
    })
}

fn raw_action(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawAction> {
    Ok(RawAction {
        id: r.get(0)?,
        case_id: r.get(1)?,
        user_name: r.get(2)?,
        action: r.get(3)?,
        reason: r.get(4)?,
        moderator: r.get(5)?,
        created_at: r.get(6)?,
        until: r.get(7)?,
        lifted_at: r.get(8)?,
        appeal_text: r.get(9)?,
        appeal_filed_at: r.get(10)?,
        appeal_decided_by: r.get(11)?,
        appeal_outcome: r.get(12)?,
        appeal_reason: r.get(13)?,
        appeal_decided_at: r.get(14)?,
    })
}

fn cases(c: &Connection, sql: &str, p: impl rusqlite::Params) -> StoreResult<Vec<CaseRow>> {
    let mut stmt = c.prepare_cached(sql)?;
    let rows = stmt
        .query_map(p, raw_case)?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter().map(RawCase::into_row).collect()
}

fn actions(c: &Connection, sql: &str, p: impl rusqlite::Params) -> StoreResult<Vec<ActionRow>> {
    let mut stmt = c.prepare_cached(sql)?;
    let rows = stmt
        .query_map(p, raw_action)?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter().map(RawAction::into_row).collect()
}

fn action_by_id(c: &Connection, id: &str) -> StoreResult<Option<ActionRow>> {
    Ok(actions(
        c,
        &format!("SELECT {ACTION_COLS} FROM mod_actions WHERE id = ?1"),
        [id],
    )?
    .pop())
}

/// Appends `line` to the audit chain; its seq.
pub(crate) fn append(c: &Connection, line: &AuditLine) -> StoreResult<i64> {
    let last: Option<(i64, Vec<u8>)> = c
        .prepare_cached("SELECT seq, hash FROM mod_audit ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (seq, prev) = match last {
        Some((s, h)) => (
            s + 1,
            <[u8; 32]>::try_from(h.as_slice()).map_err(|_| corrupt("audit hash"))?,
        ),
        None => (1, [0u8; 32]),
    };
    let hash = audit_hash(&prev, seq, line);
    exec(
        c,
        "INSERT INTO mod_audit (seq, at, actor, action, case_id, detail, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            seq,
            line.at,
            line.actor,
            line.action,
            line.case,
            line.detail,
            hash.as_slice()
        ],
    )?;
    Ok(seq)
}

/// Recomputes the account's enforcement state from its live actions.
fn recompute(c: &Connection, user: &str) -> StoreResult<()> {
    exec(
        c,
        "UPDATE users SET
             suspended_until = (SELECT max(until) FROM mod_actions WHERE user_name = ?1
                                AND action IN ('suspend', 'ban') AND lifted_at IS NULL),
             restricted_until = (SELECT max(until) FROM mod_actions WHERE user_name = ?1
                                 AND action = 'restrict' AND lifted_at IS NULL),
             hold_until = (SELECT max(until) FROM mod_actions WHERE user_name = ?1
                           AND action = 'preserve' AND lifted_at IS NULL)
         WHERE name = ?1",
        [user],
    )?;
    Ok(())
}

pub(crate) fn notify(
    c: &Connection,
    user: &UserName,
    msg: &NewMessage,
    limits: &Limits,
) -> StoreResult<()> {
    let devices = user_device_ids(c, user)?;
    enqueue(c, &devices, msg, Checks::None, limits)?;
    Ok(())
}

#[async_trait]
impl ModerationStore for SqliteStore {
    async fn grant_role(
        &self,
        user: &UserName,
        role: Role,
        now: Millis,
        audit: &AuditLine,
    ) -> StoreResult<bool> {
        let (user, audit) = (user.clone(), audit.clone());
        self.write(move |c| {
            if !user_exists(c, &user)? {
                return Err(StoreError::NotFound("user"));
            }
            let n = exec(
                c,
                "INSERT INTO user_roles (user_name, role, granted_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT DO NOTHING",
                params![user.as_str(), role.as_str(), now],
            )?;
            if n > 0 {
                append(c, &audit)?;
            }
            Ok(n > 0)
        })
        .await
    }

    async fn revoke_role(
        &self,
        user: &UserName,
        role: Role,
        audit: &AuditLine,
    ) -> StoreResult<bool> {
        let (user, audit) = (user.clone(), audit.clone());
        self.write(move |c| {
            let n = exec(
                c,
                "DELETE FROM user_roles WHERE user_name = ?1 AND role = ?2",
                params![user.as_str(), role.as_str()],
            )?;
            if n > 0 {
                append(c, &audit)?;
            }
            Ok(n > 0)
        })
        .await
    }

    async fn roles(&self, user: &UserName) -> StoreResult<Vec<Role>> {
        let user = user.clone();
        self.read(move |c| {
            let mut stmt =
                c.prepare_cached("SELECT role FROM user_roles WHERE user_name = ?1 ORDER BY role")?;
            let names = stmt
                .query_map([user.as_str()], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            names
                .iter()
                .map(|n| Role::parse(n).ok_or_else(|| corrupt("role")))
                .collect()
        })
        .await
    }

    async fn device_owner(&self, device: &DeviceId) -> StoreResult<Option<UserName>> {
        let device = device.clone();
        self.read(move |c| {
            let u: Option<String> = c
                .prepare_cached("SELECT user_name FROM devices WHERE id = ?1")?
                .query_row([device.as_str()], |r| r.get(0))
                .optional()?;
            u.as_deref().map(parse_user).transpose()
        })
        .await
    }

    async fn was_member(
        &self,
        group: &GroupId,
        user: &UserName,
        at: Millis,
        slack: Millis,
    ) -> StoreResult<bool> {
        let (group, user) = (group.clone(), user.clone());
        self.read(move |c| {
            let hit: Option<i64> = c
                .prepare_cached(
                    "SELECT 1 FROM group_membership_log l JOIN devices d ON d.id = l.device_id
                     WHERE l.group_id = ?1 AND d.user_name = ?2
                       AND l.joined_at <= ?3 + ?4 AND (l.left_at IS NULL OR l.left_at >= ?3 - ?4)
                     LIMIT 1",
                )?
                .query_row(params![group.as_bytes(), user.as_str(), at, slack], |r| {
                    r.get(0)
                })
                .optional()?;
            Ok(hit.is_some())
        })
        .await
    }

    async fn account(&self, user: &UserName) -> StoreResult<Option<AccountRow>> {
        let user = user.clone();
        self.read(move |c| {
            let head: Option<(i64, Option<i64>, Option<i64>, Option<i64>)> = c
                .prepare_cached(
                    "SELECT created_at, suspended_until, restricted_until, hold_until
                     FROM users WHERE name = ?1",
                )?
                .query_row([user.as_str()], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .optional()?;
            let Some((created_at, suspended_until, restricted_until, hold_until)) = head else {
                return Ok(None);
            };
            let mut stmt = c.prepare_cached(
                "SELECT id, name, created_at, revoked_at FROM devices WHERE user_name = ?1
                 ORDER BY created_at, id",
            )?;
            let rows = stmt
                .query_map([user.as_str()], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, Option<i64>>(3)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
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
        })
        .await
    }

    async fn enforcement(
        &self,
        user: &UserName,
    ) -> StoreResult<Option<(Option<Millis>, Option<Millis>)>> {
        let user = user.clone();
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT suspended_until, restricted_until FROM users WHERE name = ?1",
            )?
            .query_row([user.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
        })
        .await
    }

    async fn record_event(&self, user: &UserName, event: &AccountEvent) -> StoreResult<()> {
        let (user, event) = (user.clone(), event.clone());
        self.write(move |c| {
            exec(
                c,
                "INSERT INTO account_events (user_name, device_id, event, ip, at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    user.as_str(),
                    event.device.as_str(),
                    event.event,
                    event.ip,
                    event.at
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn events(&self, user: &UserName, limit: u32) -> StoreResult<Vec<AccountEvent>> {
        let user = user.clone();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT device_id, event, ip, at FROM account_events WHERE user_name = ?1
                 ORDER BY at DESC LIMIT ?2",
            )?;
            let rows = stmt
                .query_map(params![user.as_str(), limit], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
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
        })
        .await
    }

    async fn file_case(&self, case: &NewCase, audit: &AuditLine) -> StoreResult<(String, bool)> {
        let (case, audit) = (case.clone(), audit.clone());
        self.write(move |c| {
            if let Some(key) = &case.dedupe_key {
                let existing: Option<String> = c
                    .prepare_cached("SELECT id FROM mod_cases WHERE dedupe_key = ?1")?
                    .query_row([key], |r| r.get(0))
                    .optional()?;
                if let Some(id) = existing {
                    return Ok((id, false));
                }
            }
            for u in case.reporter.iter().chain([&case.reported_user]) {
                if !user_exists(c, u)? {
                    return Err(StoreError::NotFound("user"));
                }
            }
            exec(
                c,
                "INSERT INTO mod_cases (id, source, reason, priority, state, reporter,
                     reporter_is_minor, reported_user, group_id, dedupe_key, note_sealed, created_at)
                 VALUES (?1, ?2, ?3, ?4, 'open', ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    case.id,
                    case.source.as_str(),
                    case.reason.as_str(),
                    i64::from(case.priority),
                    case.reporter.as_ref().map(UserName::as_str),
                    case.reporter_is_minor,
                    case.reported_user.as_str(),
                    case.group_id.as_ref().map(GroupId::as_bytes),
                    case.dedupe_key,
                    case.note_sealed,
                    case.created_at
                ],
            )?;
            for (item, sealed) in &case.evidence {
                exec(
                    c,
                    "INSERT INTO mod_evidence (case_id, item, sealed) VALUES (?1, ?2, ?3)",
                    params![case.id, item, sealed],
                )?;
            }
            exec(c, "UPDATE mod_open_cases SET n = n + 1 WHERE id = 1", [])?;
            append(c, &audit)?;
            Ok((case.id.clone(), true))
        })
        .await
    }

    async fn queue(&self, limit: u32) -> StoreResult<(Vec<CaseRow>, u64)> {
        self.read(move |c| {
            let rows = cases(
                c,
                &format!(
                    "SELECT {CASE_COLS} FROM mod_cases WHERE state = 'open'
                     ORDER BY priority, created_at, id LIMIT ?1"
                ),
                [limit],
            )?;
            let open: i64 = c
                .prepare_cached("SELECT n FROM mod_open_cases WHERE id = 1")?
                .query_row([], |r| r.get(0))?;
            Ok((rows, u64::try_from(open).unwrap_or(0)))
        })
        .await
    }

    async fn case(&self, id: &str) -> StoreResult<Option<CaseRow>> {
        let id = id.to_owned();
        self.read(move |c| {
            Ok(cases(
                c,
                &format!("SELECT {CASE_COLS} FROM mod_cases WHERE id = ?1"),
                [id],
            )?
            .pop())
        })
        .await
    }

    async fn cases_about(&self, user: &UserName, limit: u32) -> StoreResult<Vec<CaseRow>> {
        let user = user.clone();
        self.read(move |c| {
            cases(
                c,
                &format!(
                    "SELECT {CASE_COLS} FROM mod_cases WHERE reported_user = ?1
                     ORDER BY created_at DESC, id LIMIT ?2"
                ),
                params![user.as_str(), limit],
            )
        })
        .await
    }

    async fn evidence(&self, case: &str) -> StoreResult<Vec<(String, Vec<u8>)>> {
        let case = case.to_owned();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT item, sealed FROM mod_evidence WHERE case_id = ?1 ORDER BY item",
            )?;
            let rows = stmt
                .query_map([case], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn evidence_item(&self, case: &str, item: &str) -> StoreResult<Option<Vec<u8>>> {
        let (case, item) = (case.to_owned(), item.to_owned());
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT sealed FROM mod_evidence WHERE case_id = ?1 AND item = ?2",
            )?
            .query_row([case, item], |r| r.get(0))
            .optional()?)
        })
        .await
    }

    async fn take_action(&self, action: &NewAction, limits: &Limits) -> StoreResult<ActionRow> {
        let (a, limits) = (action.clone(), *limits);
        self.write(move |c| {
            let (user, was): (String, String) = c
                .prepare_cached("SELECT reported_user, state FROM mod_cases WHERE id = ?1")?
                .query_row([a.case.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?
                .ok_or(StoreError::NotFound("case"))?;
            exec(
                c,
                "INSERT INTO mod_actions (id, case_id, user_name, action, reason, moderator,
                                          created_at, until)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    a.id,
                    a.case,
                    user,
                    a.action.as_str(),
                    a.reason,
                    a.moderator.as_str(),
                    a.now,
                    a.until
                ],
            )?;
            if let Some(state) = a.case_state {
                if was == CaseState::Open.as_str() && state != CaseState::Open {
                    exec(c, "UPDATE mod_open_cases SET n = n - 1 WHERE id = 1", [])?;
                }
                exec(
                    c,
                    "UPDATE mod_cases SET state = ?2, closed_at = ?3,
                         purge_after = ?4 WHERE id = ?1",
                    params![
                        a.case,
                        state.as_str(),
                        (state != CaseState::Open).then_some(a.now),
                        a.purge_after
                    ],
                )?;
            }
            if a.action == ModAction::Preserve {
                exec(
                    c,
                    "UPDATE mod_cases SET held_until = max(coalesce(held_until, 0), ?2) WHERE id = ?1",
                    params![a.case, a.until],
                )?;
            }
            recompute(c, &user)?;
            if matches!(a.action, ModAction::Suspend | ModAction::Ban) {
                exec(
                    c,
                    "DELETE FROM sessions WHERE device_id IN (SELECT id FROM devices WHERE user_name = ?1)",
                    [user.as_str()],
                )?;
            }
            for (to, msg) in &a.notices {
                notify(c, to, msg, &limits)?;
            }
            append(c, &a.audit)?;
            action_by_id(c, &a.id)?.ok_or_else(|| corrupt("action"))
        })
        .await
    }

    async fn case_actions(&self, case: &str) -> StoreResult<Vec<ActionRow>> {
        let case = case.to_owned();
        self.read(move |c| {
            actions(
                c,
                &format!("SELECT {ACTION_COLS} FROM mod_actions WHERE case_id = ?1 ORDER BY created_at, id"),
                [case],
            )
        })
        .await
    }

    async fn user_actions(&self, user: &UserName, limit: u32) -> StoreResult<Vec<ActionRow>> {
        let user = user.clone();
        self.read(move |c| {
            actions(
                c,
                &format!(
                    "SELECT {ACTION_COLS} FROM mod_actions WHERE user_name = ?1
                     ORDER BY created_at DESC, id LIMIT ?2"
                ),
                params![user.as_str(), limit],
            )
        })
        .await
    }

    async fn action(&self, id: &str) -> StoreResult<Option<ActionRow>> {
        let id = id.to_owned();
        self.read(move |c| action_by_id(c, &id)).await
    }

    async fn file_appeal(
        &self,
        case: &str,
        user: &UserName,
        text: &str,
        now: Millis,
        audit: &AuditLine,
    ) -> StoreResult<ActionRow> {
        let (case, user, text, audit) = (
            case.to_owned(),
            user.clone(),
            text.to_owned(),
            audit.clone(),
        );
        self.write(move |c| {
            let found: Option<(String, Option<i64>)> = c
                .prepare_cached(
                    "SELECT id, appeal_filed_at FROM mod_actions
                     WHERE case_id = ?1 AND user_name = ?2 AND lifted_at IS NULL
                       AND action IN ('warn', 'restrict', 'suspend', 'ban')
                     ORDER BY created_at DESC, id LIMIT 1",
                )?
                .query_row([case.as_str(), user.as_str()], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?;
            let (id, filed) = found.ok_or(StoreError::NotFound("action"))?;
            if filed.is_some() {
                return Err(StoreError::AlreadyExists("appeal"));
            }
            exec(
                c,
                "UPDATE mod_actions SET appeal_text = ?2, appeal_filed_at = ?3 WHERE id = ?1",
                params![id, text, now],
            )?;
            append(c, &audit)?;
            action_by_id(c, &id)?.ok_or_else(|| corrupt("action"))
        })
        .await
    }

    async fn appeals(&self, limit: u32) -> StoreResult<Vec<ActionRow>> {
        self.read(move |c| {
            actions(
                c,
                &format!(
                    "SELECT {ACTION_COLS} FROM mod_actions
                     WHERE appeal_filed_at IS NOT NULL AND appeal_outcome IS NULL
                     ORDER BY appeal_filed_at, id LIMIT ?1"
                ),
                [limit],
            )
        })
        .await
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
        let (id, moderator, reason, notice, audit, limits) = (
            action.to_owned(),
            moderator.clone(),
            reason.to_owned(),
            notice.clone(),
            audit.clone(),
            *limits,
        );
        self.write(move |c| {
            let n = exec(
                c,
                "UPDATE mod_actions SET appeal_decided_by = ?2, appeal_outcome = ?3,
                     appeal_reason = ?4, appeal_decided_at = ?5,
                     lifted_at = CASE WHEN ?3 = 'reversed' THEN ?5 ELSE lifted_at END
                 WHERE id = ?1 AND appeal_filed_at IS NOT NULL AND appeal_outcome IS NULL",
                params![id, moderator.as_str(), outcome_str(outcome), reason, now],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound("appeal"));
            }
            let row = action_by_id(c, &id)?.ok_or_else(|| corrupt("action"))?;
            recompute(c, row.user.as_str())?;
            notify(c, &row.user, &notice, &limits)?;
            append(c, &audit)?;
            Ok(row)
        })
        .await
    }

    async fn views(&self, case: &str, actor: &str) -> StoreResult<Vec<(String, String)>> {
        let (case, actor) = (case.to_owned(), actor.to_owned());
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT action, detail FROM mod_audit WHERE case_id = ?1 AND actor = ?2
                 AND action IN ('case.view', 'evidence.view') ORDER BY seq",
            )?;
            let rows = stmt
                .query_map([case, actor], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn append_audit(&self, line: &AuditLine) -> StoreResult<i64> {
        let line = line.clone();
        self.write(move |c| append(c, &line)).await
    }

    async fn audit(&self, after: i64, limit: u32) -> StoreResult<Vec<AuditRow>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, at, actor, action, case_id, detail, hash FROM mod_audit
                 WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows = stmt
                .query_map(params![after, limit], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        AuditLine {
                            at: r.get(1)?,
                            actor: r.get(2)?,
                            action: r.get(3)?,
                            case: r.get(4)?,
                            detail: r.get(5)?,
                        },
                        r.get::<_, Vec<u8>>(6)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|(seq, line, hash)| {
                    Ok(AuditRow {
                        seq,
                        line,
                        hash: <[u8; 32]>::try_from(hash.as_slice())
                            .map_err(|_| corrupt("audit hash"))?,
                    })
                })
                .collect()
        })
        .await
    }

    async fn purge_moderation(
        &self,
        now: Millis,
        events_before: Millis,
    ) -> StoreResult<ModerationPurge> {
        self.write(move |c| {
            let mut stmt = c.prepare_cached(
                "UPDATE mod_cases SET evidence_purged = 1, note_sealed = NULL
                 WHERE state = 'dismissed' AND evidence_purged = 0 AND purge_after <= ?1
                   AND (held_until IS NULL OR held_until <= ?1)
                 RETURNING id",
            )?;
            let ids = stmt
                .query_map([now], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            drop(stmt);
            for id in &ids {
                exec(c, "DELETE FROM mod_evidence WHERE case_id = ?1", [id])?;
            }
            let events = exec(
                c,
                "DELETE FROM account_events WHERE at < ?1 AND user_name NOT IN
                     (SELECT name FROM users WHERE hold_until > ?2)",
                params![events_before, now],
            )?;
            Ok(ModerationPurge {
                cases: u64::try_from(ids.len()).unwrap_or(u64::MAX),
                events: u64::try_from(events).unwrap_or(u64::MAX),
            })
        })
        .await
    }
}
