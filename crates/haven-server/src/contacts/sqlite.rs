//! [`ContactStore`] on SQLite (the embedded default).

use async_trait::async_trait;
use haven_proto::contacts::{AgeSource, ContactList, MessageSetting, PendingContact, RequestKind};
use haven_proto::{GroupId, UserName};
use rusqlite::{params, Connection, OptionalExtension};

use super::store::{
    band, group, pair, request_row, ContactEventRow, ContactRequested, ContactStore,
    MessageRequestRow, NewContactEvent, Profile, RawRequest, RelationRow, RiskStateRow, StoredAge,
    ALL_APPROACHES, REQUEST_COLS,
};
use crate::moderation::sqlite::{append, notify};
use crate::moderation::store::AuditLine;
use crate::store::sqlite::{exec, insert_device, user_exists, SqliteStore};
use crate::store::{
    corrupt, parse_user, Limits, Millis, NewDevice, NewMessage, StoreError, StoreResult,
};

fn names(c: &Connection, sql: &str, p: impl rusqlite::Params) -> StoreResult<Vec<UserName>> {
    let mut stmt = c.prepare_cached(sql)?;
    let rows = stmt
        .query_map(p, |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    rows.iter().map(|s| parse_user(s)).collect()
}

fn pending(c: &Connection, sql: &str, user: &str) -> StoreResult<Vec<PendingContact>> {
    let mut stmt = c.prepare_cached(sql)?;
    let rows = stmt
        .query_map([user], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(|(u, at)| {
            Ok(PendingContact {
                user: parse_user(&u)?,
                at: u64::try_from(at).unwrap_or(0),
            })
        })
        .collect()
}

fn group_users(c: &Connection, group: &[u8]) -> StoreResult<Vec<UserName>> {
    names(
        c,
        "SELECT DISTINCT d.user_name FROM group_members m JOIN devices d ON d.id = m.device_id
         WHERE m.group_id = ?1 ORDER BY d.user_name",
        [group],
    )
}

fn raw_request(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRequest> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

/// Sets the outcome of `actor`'s approaches to `target` that are still `pending` (and, for a
/// block or report, accepted ones too) since `since`.
fn set_outcome(
    c: &Connection,
    actor: &str,
    target: &str,
    approaches: &[&str],
    outcome: &str,
    since: Millis,
) -> StoreResult<()> {
    for a in approaches {
        exec(
            c,
            "UPDATE contact_events SET outcome = ?4
             WHERE target = ?2 AND actor = ?1 AND at > ?5 AND approach = ?3
               AND (outcome = 'pending' OR (?4 IN ('blocked', 'reported') AND outcome = 'accepted'))",
            params![actor, target, a, outcome, since],
        )?;
    }
    Ok(())
}

fn insert_event(c: &Connection, e: &NewContactEvent) -> StoreResult<()> {
    exec(
        c,
        "INSERT INTO contact_events (actor, target, at, approach, target_band, connected, decision)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            e.actor.as_str(),
            e.target.as_str(),
            e.at,
            e.approach,
            e.target_band.as_str(),
            e.connected,
            e.decision
        ],
    )?;
    Ok(())
}

#[async_trait]
impl ContactStore for SqliteStore {
    async fn create_account(
        &self,
        user: &UserName,
        device: &NewDevice,
        age: &StoredAge,
    ) -> StoreResult<()> {
        let (user, device, age) = (user.clone(), device.clone(), age.clone());
        self.write(move |c| {
            let done = exec(
                c,
                "INSERT INTO users (name, created_at, age_band, age_changes_on, age_source)
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                params![
                    user.as_str(),
                    device.created_at,
                    age.band.as_str(),
                    age.changes_on,
                    age.source.as_str()
                ],
            )?;
            if done == 0 {
                return Err(StoreError::AlreadyExists("user"));
            }
            insert_device(c, &user, &device)
        })
        .await
    }

    async fn profile(&self, user: &UserName) -> StoreResult<Option<Profile>> {
        let user = user.clone();
        self.read(move |c| {
            let row = c
                .prepare_cached(
                    "SELECT created_at, age_band, age_changes_on, age_source, message_setting
                     FROM users WHERE name = ?1",
                )?
                .query_row([user.as_str()], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                    ))
                })
                .optional()?;
            row.map(|(created_at, b, changes_on, source, setting)| {
                Ok(Profile {
                    user: user.clone(),
                    created_at,
                    age: StoredAge {
                        band: band(&b)?,
                        changes_on,
                        source: AgeSource::parse(&source).ok_or_else(|| corrupt("age source"))?,
                    },
                    setting: MessageSetting::parse(&setting)
                        .ok_or_else(|| corrupt("message setting"))?,
                })
            })
            .transpose()
        })
        .await
    }

    async fn set_age(
        &self,
        user: &UserName,
        age: &StoredAge,
        audit: &AuditLine,
    ) -> StoreResult<()> {
        let (user, age, audit) = (user.clone(), age.clone(), audit.clone());
        self.write(move |c| {
            let n = exec(
                c,
                "UPDATE users SET age_band = ?2, age_changes_on = ?3, age_source = ?4
                 WHERE name = ?1",
                params![
                    user.as_str(),
                    age.band.as_str(),
                    age.changes_on,
                    age.source.as_str()
                ],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound("user"));
            }
            append(c, &audit)?;
            Ok(())
        })
        .await
    }

    async fn set_message_setting(
        &self,
        user: &UserName,
        setting: MessageSetting,
    ) -> StoreResult<()> {
        let user = user.clone();
        self.write(move |c| {
            let n = exec(
                c,
                "UPDATE users SET message_setting = ?2 WHERE name = ?1",
                params![user.as_str(), setting.as_str()],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound("user"));
            }
            Ok(())
        })
        .await
    }

    async fn relation(&self, actor: &UserName, target: &UserName) -> StoreResult<RelationRow> {
        let (actor, target) = (actor.clone(), target.clone());
        self.read(move |c| {
            let (x, y) = pair(&actor, &target);
            let (a, t) = (actor.as_str(), target.as_str());
            let row = c
                .prepare_cached(
                    "SELECT
                       EXISTS (SELECT 1 FROM connections WHERE user_a = ?3 AND user_b = ?4),
                       EXISTS (SELECT 1 FROM blocks WHERE blocker = ?2 AND blocked = ?1),
                       EXISTS (SELECT 1 FROM blocks WHERE blocker = ?1 AND blocked = ?2),
                       EXISTS (SELECT 1 FROM restricts WHERE restricter = ?2 AND restricted = ?1),
                       EXISTS (SELECT 1 FROM contact_requests WHERE from_user = ?2 AND to_user = ?1),
                       EXISTS (SELECT 1 FROM contact_requests WHERE from_user = ?1 AND to_user = ?2)",
                )?
                .query_row(params![a, t, x, y], |r| {
                    Ok(RelationRow {
                        connected: r.get(0)?,
                        target_blocked_actor: r.get(1)?,
                        actor_blocked_target: r.get(2)?,
                        target_restricted_actor: r.get(3)?,
                        incoming_pending: r.get(4)?,
                        outgoing_pending: r.get(5)?,
                    })
                })?;
            Ok(row)
        })
        .await
    }

    async fn request_contact(
        &self,
        from: &UserName,
        to: &UserName,
        event: &NewContactEvent,
    ) -> StoreResult<ContactRequested> {
        let (from, to, event) = (from.clone(), to.clone(), event.clone());
        self.write(move |c| {
            if !user_exists(c, &to)? {
                return Err(StoreError::NotFound("user"));
            }
            let (x, y) = pair(&from, &to);
            let connected: bool = c
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM connections WHERE user_a = ?1 AND user_b = ?2)",
                )?
                .query_row([x, y], |r| r.get(0))?;
            if connected {
                return Ok(ContactRequested::AlreadyConnected);
            }
            let theirs = exec(
                c,
                "DELETE FROM contact_requests WHERE from_user = ?1 AND to_user = ?2",
                [to.as_str(), from.as_str()],
            )?;
            if theirs > 0 {
                exec(
                    c,
                    "INSERT INTO connections (user_a, user_b, created_at) VALUES (?1, ?2, ?3)",
                    params![x, y, event.at],
                )?;
                set_outcome(
                    c,
                    to.as_str(),
                    from.as_str(),
                    &["contact_request"],
                    "accepted",
                    0,
                )?;
                insert_event(c, &event)?;
                set_outcome(
                    c,
                    from.as_str(),
                    to.as_str(),
                    &["contact_request"],
                    "accepted",
                    0,
                )?;
                return Ok(ContactRequested::Connected);
            }
            let n = exec(
                c,
                "INSERT INTO contact_requests (from_user, to_user, created_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT DO NOTHING",
                params![from.as_str(), to.as_str(), event.at],
            )?;
            if n == 0 {
                return Ok(ContactRequested::AlreadyPending);
            }
            insert_event(c, &event)?;
            Ok(ContactRequested::Created)
        })
        .await
    }

    async fn answer_contact(
        &self,
        answerer: &UserName,
        from: &UserName,
        accept: bool,
        now: Millis,
    ) -> StoreResult<bool> {
        let (answerer, from) = (answerer.clone(), from.clone());
        self.write(move |c| {
            let n = exec(
                c,
                "DELETE FROM contact_requests WHERE from_user = ?1 AND to_user = ?2",
                [from.as_str(), answerer.as_str()],
            )?;
            if n == 0 {
                return Ok(false);
            }
            if accept {
                let (x, y) = pair(&answerer, &from);
                exec(
                    c,
                    "INSERT INTO connections (user_a, user_b, created_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT DO NOTHING",
                    params![x, y, now],
                )?;
            }
            set_outcome(
                c,
                from.as_str(),
                answerer.as_str(),
                &["contact_request"],
                if accept { "accepted" } else { "declined" },
                0,
            )?;
            Ok(true)
        })
        .await
    }

    async fn remove_contact(&self, user: &UserName, other: &UserName) -> StoreResult<u32> {
        let (user, other) = (user.clone(), other.clone());
        self.write(move |c| {
            let (x, y) = pair(&user, &other);
            let a = exec(
                c,
                "DELETE FROM connections WHERE user_a = ?1 AND user_b = ?2",
                [x, y],
            )?;
            let b = exec(
                c,
                "DELETE FROM contact_requests WHERE from_user = ?1 AND to_user = ?2",
                [user.as_str(), other.as_str()],
            )?;
            Ok(u32::try_from(a + b).unwrap_or(u32::MAX))
        })
        .await
    }

    async fn contact_list(&self, user: &UserName) -> StoreResult<ContactList> {
        let user = user.clone();
        self.read(move |c| {
            let u = user.as_str();
            Ok(ContactList {
                contacts: names(
                    c,
                    "SELECT user_b FROM connections WHERE user_a = ?1
                     UNION SELECT user_a FROM connections WHERE user_b = ?1 ORDER BY 1",
                    [u],
                )?,
                incoming: pending(
                    c,
                    "SELECT from_user, created_at FROM contact_requests WHERE to_user = ?1
                     ORDER BY created_at, from_user",
                    u,
                )?,
                outgoing: pending(
                    c,
                    "SELECT to_user, created_at FROM contact_requests WHERE from_user = ?1
                     ORDER BY created_at, to_user",
                    u,
                )?,
                blocked: names(
                    c,
                    "SELECT blocked FROM blocks WHERE blocker = ?1 ORDER BY blocked",
                    [u],
                )?,
                restricted: names(
                    c,
                    "SELECT restricted FROM restricts WHERE restricter = ?1 ORDER BY restricted",
                    [u],
                )?,
            })
        })
        .await
    }

    async fn set_block(
        &self,
        blocker: &UserName,
        blocked: &UserName,
        on: bool,
        now: Millis,
        since: Millis,
    ) -> StoreResult<bool> {
        let (blocker, blocked) = (blocker.clone(), blocked.clone());
        self.write(move |c| {
            if !user_exists(c, &blocked)? {
                return Err(StoreError::NotFound("user"));
            }
            let (b, d) = (blocker.as_str(), blocked.as_str());
            if !on {
                let n = exec(
                    c,
                    "DELETE FROM blocks WHERE blocker = ?1 AND blocked = ?2",
                    [b, d],
                )?;
                return Ok(n > 0);
            }
            let n = exec(
                c,
                "INSERT INTO blocks (blocker, blocked, created_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT DO NOTHING",
                params![b, d, now],
            )?;
            if n == 0 {
                return Ok(false);
            }
            let (x, y) = pair(&blocker, &blocked);
            exec(
                c,
                "DELETE FROM connections WHERE user_a = ?1 AND user_b = ?2",
                [x, y],
            )?;
            exec(
                c,
                "DELETE FROM contact_requests WHERE (from_user = ?1 AND to_user = ?2)
                 OR (from_user = ?2 AND to_user = ?1)",
                [b, d],
            )?;
            set_outcome(c, d, b, &ALL_APPROACHES, "blocked", since)?;
            Ok(true)
        })
        .await
    }

    async fn set_restrict(
        &self,
        restricter: &UserName,
        restricted: &UserName,
        on: bool,
        now: Millis,
    ) -> StoreResult<bool> {
        let (restricter, restricted) = (restricter.clone(), restricted.clone());
        self.write(move |c| {
            if !user_exists(c, &restricted)? {
                return Err(StoreError::NotFound("user"));
            }
            let (a, b) = (restricter.as_str(), restricted.as_str());
            let n = if on {
                exec(
                    c,
                    "INSERT INTO restricts (restricter, restricted, created_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT DO NOTHING",
                    params![a, b, now],
                )?
            } else {
                exec(
                    c,
                    "DELETE FROM restricts WHERE restricter = ?1 AND restricted = ?2",
                    [a, b],
                )?
            };
            Ok(n > 0)
        })
        .await
    }

    async fn mark_direct(&self, group: &GroupId, a: &UserName, b: &UserName) -> StoreResult<bool> {
        let (group, a, b) = (group.clone(), a.clone(), b.clone());
        self.write(move |c| {
            let (x, y) = pair(&a, &b);
            let n = exec(
                c,
                "INSERT INTO direct_groups (group_id, user_a, user_b)
                 SELECT g.id, ?2, ?3 FROM mls_groups g
                 WHERE g.id = ?1 AND g.epoch = 0
                   AND (SELECT count(*) FROM group_members m WHERE m.group_id = g.id) = 1
                   AND (SELECT d.user_name FROM group_members m JOIN devices d ON d.id = m.device_id
                        WHERE m.group_id = g.id) IN (?2, ?3)
                 ON CONFLICT DO NOTHING",
                params![group.as_bytes(), x, y],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn direct_pair(&self, group: &GroupId) -> StoreResult<Option<(UserName, UserName)>> {
        let group = group.clone();
        self.read(move |c| {
            let row = c
                .prepare_cached("SELECT user_a, user_b FROM direct_groups WHERE group_id = ?1")?
                .query_row([group.as_bytes()], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .optional()?;
            row.map(|(a, b)| Ok((parse_user(&a)?, parse_user(&b)?)))
                .transpose()
        })
        .await
    }

    async fn group_users(&self, group: &GroupId) -> StoreResult<Vec<UserName>> {
        let group = group.clone();
        self.read(move |c| group_users(c, group.as_bytes())).await
    }

    async fn open_message_requests(
        &self,
        group: &GroupId,
        requester: &UserName,
        recipients: &[(UserName, RequestKind)],
        now: Millis,
    ) -> StoreResult<()> {
        let (group, requester, recipients) =
            (group.clone(), requester.clone(), recipients.to_vec());
        self.write(move |c| {
            for (r, kind) in &recipients {
                exec(
                    c,
                    "INSERT INTO message_requests (recipient, group_id, requester, kind, state, created_at)
                     VALUES (?1, ?2, ?3, ?4, 'pending', ?5)
                     ON CONFLICT (recipient, group_id) DO UPDATE SET state = 'pending',
                         requester = excluded.requester, kind = excluded.kind,
                         messages_sent = 0, created_at = excluded.created_at, decided_at = NULL
                     WHERE message_requests.state <> 'pending'",
                    params![r.as_str(), group.as_bytes(), requester.as_str(), kind.as_str(), now],
                )?;
            }
            Ok(())
        })
        .await
    }

    async fn message_requests(
        &self,
        recipient: &UserName,
    ) -> StoreResult<Vec<(MessageRequestRow, Vec<UserName>)>> {
        let recipient = recipient.clone();
        self.read(move |c| {
            let raws = c
                .prepare_cached(&format!(
                    "SELECT {REQUEST_COLS} FROM message_requests
                     WHERE recipient = ?1 AND state = 'pending' ORDER BY created_at, group_id"
                ))?
                .query_map([recipient.as_str()], raw_request)?
                .collect::<Result<Vec<_>, _>>()?;
            raws.into_iter()
                .map(|raw| {
                    let row = request_row(raw)?;
                    let members = group_users(c, row.group_id.as_bytes())?;
                    Ok((row, members))
                })
                .collect()
        })
        .await
    }

    async fn answer_message_requests(
        &self,
        recipient: &UserName,
        from: &UserName,
        accept: bool,
        now: Millis,
    ) -> StoreResult<Vec<GroupId>> {
        let (recipient, from) = (recipient.clone(), from.clone());
        self.write(move |c| {
            let groups = c
                .prepare_cached(
                    "UPDATE message_requests SET state = ?3, decided_at = ?4
                     WHERE recipient = ?1 AND requester = ?2 AND state = 'pending'
                     RETURNING group_id",
                )?
                .query_map(
                    params![
                        recipient.as_str(),
                        from.as_str(),
                        if accept { "accepted" } else { "declined" },
                        now
                    ],
                    |r| r.get::<_, Vec<u8>>(0),
                )?
                .collect::<Result<Vec<_>, _>>()?;
            if !groups.is_empty() {
                set_outcome(
                    c,
                    from.as_str(),
                    recipient.as_str(),
                    &["first_message", "group_add"],
                    if accept { "accepted" } else { "declined" },
                    0,
                )?;
            }
            let mut out = groups
                .iter()
                .map(|g| group(g))
                .collect::<StoreResult<Vec<_>>>()?;
            out.sort();
            Ok(out)
        })
        .await
    }

    async fn unaccepted_request(
        &self,
        group_id: &GroupId,
        sender: &UserName,
        recipient: &UserName,
    ) -> StoreResult<Option<MessageRequestRow>> {
        let (g, sender, recipient) = (group_id.clone(), sender.clone(), recipient.clone());
        self.read(move |c| {
            let raw = c
                .prepare_cached(&format!(
                    "SELECT {REQUEST_COLS} FROM message_requests
                     WHERE group_id = ?1 AND requester = ?2 AND recipient = ?3 AND state <> 'accepted'"
                ))?
                .query_row(
                    params![g.as_bytes(), sender.as_str(), recipient.as_str()],
                    raw_request,
                )
                .optional()?;
            raw.map(request_row).transpose()
        })
        .await
    }

    async fn declined_direct(
        &self,
        requester: &UserName,
        recipient: &UserName,
        since: Millis,
    ) -> StoreResult<bool> {
        let (requester, recipient) = (requester.clone(), recipient.clone());
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM message_requests WHERE recipient = ?1
                   AND requester = ?2 AND kind = 'direct' AND state = 'declined'
                   AND decided_at > ?3)",
            )?
            .query_row(
                params![recipient.as_str(), requester.as_str(), since],
                |r| r.get(0),
            )?)
        })
        .await
    }

    async fn take_request_message(
        &self,
        group_id: &GroupId,
        sender: &UserName,
        recipient: &UserName,
    ) -> StoreResult<bool> {
        let (g, sender, recipient) = (group_id.clone(), sender.clone(), recipient.clone());
        self.write(move |c| {
            let n = exec(
                c,
                "UPDATE message_requests SET messages_sent = messages_sent + 1
                 WHERE group_id = ?1 AND requester = ?2 AND recipient = ?3
                   AND state = 'pending' AND messages_sent = 0",
                params![g.as_bytes(), sender.as_str(), recipient.as_str()],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn return_request_message(
        &self,
        group_id: &GroupId,
        sender: &UserName,
        recipient: &UserName,
    ) -> StoreResult<()> {
        let (g, sender, recipient) = (group_id.clone(), sender.clone(), recipient.clone());
        self.write(move |c| {
            exec(
                c,
                "UPDATE message_requests SET messages_sent = messages_sent - 1
                 WHERE group_id = ?1 AND requester = ?2 AND recipient = ?3 AND messages_sent > 0",
                params![g.as_bytes(), sender.as_str(), recipient.as_str()],
            )?;
            Ok(())
        })
        .await
    }

    async fn record_contact_events(&self, events: &[NewContactEvent]) -> StoreResult<()> {
        let events = events.to_vec();
        self.write(move |c| {
            for e in &events {
                insert_event(c, e)?;
            }
            Ok(())
        })
        .await
    }

    async fn contact_events(
        &self,
        actor: &UserName,
        since: Millis,
    ) -> StoreResult<Vec<ContactEventRow>> {
        let actor = actor.clone();
        self.read(move |c| {
            let raws = c
                .prepare_cached(
                    "SELECT at, approach, target, target_band, connected, decision, outcome
                     FROM contact_events WHERE actor = ?1 AND at > ?2 ORDER BY at, id",
                )?
                .query_map(params![actor.as_str(), since], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, bool>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, String>(6)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            raws.into_iter()
                .map(|(at, approach, target, b, connected, decision, outcome)| {
                    Ok(ContactEventRow {
                        at,
                        approach,
                        target: parse_user(&target)?,
                        target_band: band(&b)?,
                        connected,
                        decision,
                        outcome,
                    })
                })
                .collect()
        })
        .await
    }

    async fn mark_reported(
        &self,
        actor: &UserName,
        target: &UserName,
        since: Millis,
    ) -> StoreResult<()> {
        let (actor, target) = (actor.clone(), target.clone());
        self.write(move |c| {
            set_outcome(
                c,
                actor.as_str(),
                target.as_str(),
                &ALL_APPROACHES,
                "reported",
                since,
            )
        })
        .await
    }

    async fn received(&self, user: &UserName, since: Millis) -> StoreResult<(u32, u32)> {
        let user = user.clone();
        self.read(move |c| {
            let (b, r): (i64, i64) = c
                .prepare_cached(
                    "SELECT (SELECT count(*) FROM blocks WHERE blocked = ?1 AND created_at > ?2),
                            (SELECT count(*) FROM mod_cases WHERE reported_user = ?1
                               AND created_at > ?2 AND source <> 'risk_signals')",
                )?
                .query_row(params![user.as_str(), since], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
            Ok((
                u32::try_from(b).unwrap_or(u32::MAX),
                u32::try_from(r).unwrap_or(u32::MAX),
            ))
        })
        .await
    }

    async fn risk_state(&self, user: &UserName) -> StoreResult<Option<RiskStateRow>> {
        let user = user.clone();
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT score, level, computed_at FROM risk_state WHERE user_name = ?1",
            )?
            .query_row([user.as_str()], |r| {
                Ok(RiskStateRow {
                    score: r.get(0)?,
                    level: r.get(1)?,
                    computed_at: r.get(2)?,
                })
            })
            .optional()?)
        })
        .await
    }

    async fn put_risk_state(&self, user: &UserName, state: &RiskStateRow) -> StoreResult<()> {
        let (user, state) = (user.clone(), state.clone());
        self.write(move |c| {
            exec(
                c,
                "INSERT INTO risk_state (user_name, score, level, computed_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (user_name) DO UPDATE SET score = excluded.score,
                     level = excluded.level, computed_at = excluded.computed_at",
                params![user.as_str(), state.score, state.level, state.computed_at],
            )?;
            Ok(())
        })
        .await
    }

    async fn safety_notice(
        &self,
        recipient: &UserName,
        about: &UserName,
        notice: &NewMessage,
        window: Millis,
        limits: &Limits,
    ) -> StoreResult<bool> {
        let (recipient, about, notice, limits) =
            (recipient.clone(), about.clone(), notice.clone(), *limits);
        self.write(move |c| {
            let now = notice.received_at;
            let n = exec(
                c,
                "INSERT INTO safety_notices (recipient, about, at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (recipient, about) DO UPDATE SET at = excluded.at
                 WHERE safety_notices.at <= ?4",
                params![
                    recipient.as_str(),
                    about.as_str(),
                    now,
                    now.saturating_sub(window)
                ],
            )?;
            if n == 0 {
                return Ok(false);
            }
            notify(c, &recipient, &notice, &limits)?;
            Ok(true)
        })
        .await
    }

    async fn purge_contacts(&self, before: Millis) -> StoreResult<u64> {
        self.write(move |c| {
            let a = exec(c, "DELETE FROM contact_events WHERE at < ?1", [before])?;
            let b = exec(
                c,
                "DELETE FROM message_requests WHERE state <> 'pending' AND decided_at < ?1",
                [before],
            )?;
            let n = exec(c, "DELETE FROM safety_notices WHERE at < ?1", [before])?;
            Ok(u64::try_from(a + b + n).unwrap_or(u64::MAX))
        })
        .await
    }

    async fn write_policy(&self, version: u32, config: &str, now: Millis) -> StoreResult<()> {
        let config = config.to_owned();
        self.write(move |c| {
            exec(
                c,
                "INSERT INTO policy_in_force (id, version, config, written_at) VALUES (1, ?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET version = excluded.version,
                     config = excluded.config, written_at = excluded.written_at",
                params![version, config, now],
            )?;
            Ok(())
        })
        .await
    }

    async fn policy(&self) -> StoreResult<Option<(u32, String)>> {
        self.read(move |c| {
            Ok(
                c.prepare_cached("SELECT version, config FROM policy_in_force WHERE id = 1")?
                    .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?,
            )
        })
        .await
    }
}
