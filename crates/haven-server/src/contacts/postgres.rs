//! [`ContactStore`] on PostgreSQL. Writes that touch a pair of accounts take no row locks
//! beyond the statements' own: every write is a single conditional statement or a short
//! transaction whose effect does not depend on a read it could lose (see `request_contact`).

use async_trait::async_trait;
use haven_proto::contacts::{AgeSource, ContactList, MessageSetting, PendingContact, RequestKind};
use haven_proto::{GroupId, UserName};
use sqlx::postgres::PgConnection;

use super::store::{
    band, group, pair, request_row, ContactEventRow, ContactRequested, ContactStore,
    MessageRequestRow, NewContactEvent, Profile, RawRequest, RelationRow, RiskStateRow, StoredAge,
    ALL_APPROACHES, REQUEST_COLS,
};
use crate::moderation::postgres::{append, notify};
use crate::moderation::store::AuditLine;
use crate::store::postgres::{insert_device, user_exists, PgStore};
use crate::store::{
    corrupt, parse_user, Limits, Millis, NewDevice, NewMessage, StoreError, StoreResult,
};

fn users(v: Vec<String>) -> StoreResult<Vec<UserName>> {
    v.iter().map(|s| parse_user(s)).collect()
}

fn pendings(v: Vec<(String, i64)>) -> StoreResult<Vec<PendingContact>> {
    v.into_iter()
        .map(|(u, at)| {
            Ok(PendingContact {
                user: parse_user(&u)?,
                at: u64::try_from(at).unwrap_or(0),
            })
        })
        .collect()
}

async fn group_users(conn: &mut PgConnection, g: &[u8]) -> StoreResult<Vec<UserName>> {
    let v: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT d.user_name FROM group_members m JOIN devices d ON d.id = m.device_id
         WHERE m.group_id = $1 ORDER BY d.user_name",
    )
    .bind(g)
    .fetch_all(&mut *conn)
    .await?;
    users(v)
}

/// Sets the outcome of `actor`'s approaches to `target` that are still `pending` (and, for a
/// block or report, accepted ones too) since `since`.
async fn set_outcome(
    conn: &mut PgConnection,
    actor: &str,
    target: &str,
    approaches: &[&str],
    outcome: &str,
    since: Millis,
) -> StoreResult<()> {
    let approaches: Vec<String> = approaches.iter().map(|a| (*a).to_owned()).collect();
    sqlx::query(
        "UPDATE contact_events SET outcome = $4
         WHERE target = $2 AND actor = $1 AND at > $5 AND approach = ANY($3)
           AND (outcome = 'pending' OR ($4 IN ('blocked', 'reported') AND outcome = 'accepted'))",
    )
    .bind(actor)
    .bind(target)
    .bind(&approaches)
    .bind(outcome)
    .bind(since)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn insert_event(conn: &mut PgConnection, e: &NewContactEvent) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO contact_events (actor, target, at, approach, target_band, connected, decision)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(e.actor.as_str())
    .bind(e.target.as_str())
    .bind(e.at)
    .bind(e.approach)
    .bind(e.target_band.as_str())
    .bind(e.connected)
    .bind(&e.decision)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[async_trait]
impl ContactStore for PgStore {
    async fn create_account(
        &self,
        user: &UserName,
        device: &NewDevice,
        age: &StoredAge,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "INSERT INTO users (name, created_at, age_band, age_changes_on, age_source)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(user.as_str())
        .bind(device.created_at)
        .bind(age.band.as_str())
        .bind(&age.changes_on)
        .bind(age.source.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if done == 0 {
            return Err(StoreError::AlreadyExists("user"));
        }
        insert_device(&mut tx, user, device).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn profile(&self, user: &UserName) -> StoreResult<Option<Profile>> {
        let row: Option<(i64, String, Option<String>, String, String)> = sqlx::query_as(
            "SELECT created_at, age_band, age_changes_on, age_source, message_setting
             FROM users WHERE name = $1",
        )
        .bind(user.as_str())
        .fetch_optional(&self.pool)
        .await?;
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
    }

    async fn set_age(
        &self,
        user: &UserName,
        age: &StoredAge,
        audit: &AuditLine,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query(
            "UPDATE users SET age_band = $2, age_changes_on = $3, age_source = $4 WHERE name = $1",
        )
        .bind(user.as_str())
        .bind(age.band.as_str())
        .bind(&age.changes_on)
        .bind(age.source.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound("user"));
        }
        append(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_message_setting(
        &self,
        user: &UserName,
        setting: MessageSetting,
    ) -> StoreResult<()> {
        let n = sqlx::query("UPDATE users SET message_setting = $2 WHERE name = $1")
            .bind(user.as_str())
            .bind(setting.as_str())
            .execute(&self.pool)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound("user"));
        }
        Ok(())
    }

    async fn relation(&self, actor: &UserName, target: &UserName) -> StoreResult<RelationRow> {
        let (x, y) = pair(actor, target);
        let r: (bool, bool, bool, bool, bool, bool) = sqlx::query_as(
            "SELECT
               EXISTS (SELECT 1 FROM connections WHERE user_a = $3 AND user_b = $4),
               EXISTS (SELECT 1 FROM blocks WHERE blocker = $2 AND blocked = $1),
               EXISTS (SELECT 1 FROM blocks WHERE blocker = $1 AND blocked = $2),
               EXISTS (SELECT 1 FROM restricts WHERE restricter = $2 AND restricted = $1),
               EXISTS (SELECT 1 FROM contact_requests WHERE from_user = $2 AND to_user = $1),
               EXISTS (SELECT 1 FROM contact_requests WHERE from_user = $1 AND to_user = $2)",
        )
        .bind(actor.as_str())
        .bind(target.as_str())
        .bind(x)
        .bind(y)
        .fetch_one(&self.pool)
        .await?;
        Ok(RelationRow {
            connected: r.0,
            target_blocked_actor: r.1,
            actor_blocked_target: r.2,
            target_restricted_actor: r.3,
            incoming_pending: r.4,
            outgoing_pending: r.5,
        })
    }

    async fn request_contact(
        &self,
        from: &UserName,
        to: &UserName,
        event: &NewContactEvent,
    ) -> StoreResult<ContactRequested> {
        let mut tx = self.pool.begin().await?;
        if !user_exists(&mut tx, to).await? {
            return Err(StoreError::NotFound("user"));
        }
        // Both accounts' rows, in name order: two crossing requests serialise here, so exactly
        // one of them sees the other's request and connects the pair.
        let (x, y) = pair(from, to);
        sqlx::query("SELECT 1 FROM users WHERE name IN ($1, $2) ORDER BY name FOR UPDATE")
            .bind(x)
            .bind(y)
            .execute(&mut *tx)
            .await?;
        let connected: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM connections WHERE user_a = $1 AND user_b = $2)",
        )
        .bind(x)
        .bind(y)
        .fetch_one(&mut *tx)
        .await?;
        if connected {
            return Ok(ContactRequested::AlreadyConnected);
        }
        let theirs =
            sqlx::query("DELETE FROM contact_requests WHERE from_user = $1 AND to_user = $2")
                .bind(to.as_str())
                .bind(from.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
        let outcome = if theirs > 0 {
            sqlx::query("INSERT INTO connections (user_a, user_b, created_at) VALUES ($1, $2, $3)")
                .bind(x)
                .bind(y)
                .bind(event.at)
                .execute(&mut *tx)
                .await?;
            set_outcome(
                &mut tx,
                to.as_str(),
                from.as_str(),
                &["contact_request"],
                "accepted",
                0,
            )
            .await?;
            insert_event(&mut tx, event).await?;
            set_outcome(
                &mut tx,
                from.as_str(),
                to.as_str(),
                &["contact_request"],
                "accepted",
                0,
            )
            .await?;
            ContactRequested::Connected
        } else {
            let n = sqlx::query(
                "INSERT INTO contact_requests (from_user, to_user, created_at) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
            )
            .bind(from.as_str())
            .bind(to.as_str())
            .bind(event.at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 0 {
                return Ok(ContactRequested::AlreadyPending);
            }
            insert_event(&mut tx, event).await?;
            ContactRequested::Created
        };
        tx.commit().await?;
        Ok(outcome)
    }

    async fn answer_contact(
        &self,
        answerer: &UserName,
        from: &UserName,
        accept: bool,
        now: Millis,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query("DELETE FROM contact_requests WHERE from_user = $1 AND to_user = $2")
            .bind(from.as_str())
            .bind(answerer.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        if accept {
            let (x, y) = pair(answerer, from);
            sqlx::query(
                "INSERT INTO connections (user_a, user_b, created_at) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
            )
            .bind(x)
            .bind(y)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        set_outcome(
            &mut tx,
            from.as_str(),
            answerer.as_str(),
            &["contact_request"],
            if accept { "accepted" } else { "declined" },
            0,
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn remove_contact(&self, user: &UserName, other: &UserName) -> StoreResult<u32> {
        let mut tx = self.pool.begin().await?;
        let (x, y) = pair(user, other);
        let a = sqlx::query("DELETE FROM connections WHERE user_a = $1 AND user_b = $2")
            .bind(x)
            .bind(y)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let b = sqlx::query("DELETE FROM contact_requests WHERE from_user = $1 AND to_user = $2")
            .bind(user.as_str())
            .bind(other.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(u32::try_from(a + b).unwrap_or(u32::MAX))
    }

    async fn contact_list(&self, user: &UserName) -> StoreResult<ContactList> {
        let mut tx = self.pool.begin().await?;
        let u = user.as_str();
        let contacts: Vec<String> = sqlx::query_scalar(
            "SELECT user_b FROM connections WHERE user_a = $1
             UNION SELECT user_a FROM connections WHERE user_b = $1 ORDER BY 1",
        )
        .bind(u)
        .fetch_all(&mut *tx)
        .await?;
        let incoming: Vec<(String, i64)> = sqlx::query_as(
            "SELECT from_user, created_at FROM contact_requests WHERE to_user = $1
             ORDER BY created_at, from_user",
        )
        .bind(u)
        .fetch_all(&mut *tx)
        .await?;
        let outgoing: Vec<(String, i64)> = sqlx::query_as(
            "SELECT to_user, created_at FROM contact_requests WHERE from_user = $1
             ORDER BY created_at, to_user",
        )
        .bind(u)
        .fetch_all(&mut *tx)
        .await?;
        let blocked: Vec<String> =
            sqlx::query_scalar("SELECT blocked FROM blocks WHERE blocker = $1 ORDER BY blocked")
                .bind(u)
                .fetch_all(&mut *tx)
                .await?;
        let restricted: Vec<String> = sqlx::query_scalar(
            "SELECT restricted FROM restricts WHERE restricter = $1 ORDER BY restricted",
        )
        .bind(u)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ContactList {
            contacts: users(contacts)?,
            incoming: pendings(incoming)?,
            outgoing: pendings(outgoing)?,
            blocked: users(blocked)?,
            restricted: users(restricted)?,
        })
    }

    async fn set_block(
        &self,
        blocker: &UserName,
        blocked: &UserName,
        on: bool,
        now: Millis,
        since: Millis,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        if !user_exists(&mut tx, blocked).await? {
            return Err(StoreError::NotFound("user"));
        }
        let (b, d) = (blocker.as_str(), blocked.as_str());
        if !on {
            let n = sqlx::query("DELETE FROM blocks WHERE blocker = $1 AND blocked = $2")
                .bind(b)
                .bind(d)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            return Ok(n > 0);
        }
        let n = sqlx::query(
            "INSERT INTO blocks (blocker, blocked, created_at) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
        )
        .bind(b)
        .bind(d)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        let (x, y) = pair(blocker, blocked);
        sqlx::query("DELETE FROM connections WHERE user_a = $1 AND user_b = $2")
            .bind(x)
            .bind(y)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "DELETE FROM contact_requests WHERE (from_user = $1 AND to_user = $2)
             OR (from_user = $2 AND to_user = $1)",
        )
        .bind(b)
        .bind(d)
        .execute(&mut *tx)
        .await?;
        set_outcome(&mut tx, d, b, &ALL_APPROACHES, "blocked", since).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn set_restrict(
        &self,
        restricter: &UserName,
        restricted: &UserName,
        on: bool,
        now: Millis,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        if !user_exists(&mut tx, restricted).await? {
            return Err(StoreError::NotFound("user"));
        }
        let n = if on {
            sqlx::query(
                "INSERT INTO restricts (restricter, restricted, created_at) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
            )
            .bind(restricter.as_str())
            .bind(restricted.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
        } else {
            sqlx::query("DELETE FROM restricts WHERE restricter = $1 AND restricted = $2")
                .bind(restricter.as_str())
                .bind(restricted.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected()
        };
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn mark_direct(&self, g: &GroupId, a: &UserName, b: &UserName) -> StoreResult<bool> {
        let (x, y) = pair(a, b);
        let n = sqlx::query(
            "INSERT INTO direct_groups (group_id, user_a, user_b)
             SELECT g.id, $2, $3 FROM mls_groups g
             WHERE g.id = $1 AND g.epoch = 0
               AND (SELECT count(*) FROM group_members m WHERE m.group_id = g.id) = 1
               AND (SELECT d.user_name FROM group_members m JOIN devices d ON d.id = m.device_id
                    WHERE m.group_id = g.id) IN ($2, $3)
             ON CONFLICT DO NOTHING",
        )
        .bind(g.as_bytes())
        .bind(x)
        .bind(y)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    async fn direct_pair(&self, g: &GroupId) -> StoreResult<Option<(UserName, UserName)>> {
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT user_a, user_b FROM direct_groups WHERE group_id = $1")
                .bind(g.as_bytes())
                .fetch_optional(&self.pool)
                .await?;
        row.map(|(a, b)| Ok((parse_user(&a)?, parse_user(&b)?)))
            .transpose()
    }

    async fn group_users(&self, g: &GroupId) -> StoreResult<Vec<UserName>> {
        let mut conn = self.pool.acquire().await?;
        group_users(&mut conn, g.as_bytes()).await
    }

    async fn open_message_requests(
        &self,
        g: &GroupId,
        requester: &UserName,
        recipients: &[(UserName, RequestKind)],
        now: Millis,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        for (r, kind) in recipients {
            sqlx::query(
                "INSERT INTO message_requests (recipient, group_id, requester, kind, state, created_at)
                 VALUES ($1, $2, $3, $4, 'pending', $5)
                     ON CONFLICT (recipient, group_id) DO UPDATE SET state = 'pending',
                         requester = excluded.requester, kind = excluded.kind,
                         messages_sent = 0, created_at = excluded.created_at, decided_at = NULL
                     WHERE message_requests.state <> 'pending'",
            )
            .bind(r.as_str())
            .bind(g.as_bytes())
            .bind(requester.as_str())
            .bind(kind.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn message_requests(
        &self,
        recipient: &UserName,
    ) -> StoreResult<Vec<(MessageRequestRow, Vec<UserName>)>> {
        let mut tx = self.pool.begin().await?;
        let raws: Vec<RawRequest> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {REQUEST_COLS} FROM message_requests
             WHERE recipient = $1 AND state = 'pending' ORDER BY created_at, group_id"
        )))
        .bind(recipient.as_str())
        .fetch_all(&mut *tx)
        .await?;
        let mut out = Vec::with_capacity(raws.len());
        for raw in raws {
            let row = request_row(raw)?;
            let members = group_users(&mut tx, row.group_id.as_bytes()).await?;
            out.push((row, members));
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn answer_message_requests(
        &self,
        recipient: &UserName,
        from: &UserName,
        accept: bool,
        now: Millis,
    ) -> StoreResult<Vec<GroupId>> {
        let mut tx = self.pool.begin().await?;
        let state = if accept { "accepted" } else { "declined" };
        let groups: Vec<Vec<u8>> = sqlx::query_scalar(
            "UPDATE message_requests SET state = $3, decided_at = $4
             WHERE recipient = $1 AND requester = $2 AND state = 'pending'
             RETURNING group_id",
        )
        .bind(recipient.as_str())
        .bind(from.as_str())
        .bind(state)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        if !groups.is_empty() {
            set_outcome(
                &mut tx,
                from.as_str(),
                recipient.as_str(),
                &["first_message", "group_add"],
                state,
                0,
            )
            .await?;
        }
        tx.commit().await?;
        let mut out = groups
            .iter()
            .map(|g| group(g))
            .collect::<StoreResult<Vec<_>>>()?;
        out.sort();
        Ok(out)
    }

    async fn unaccepted_request(
        &self,
        g: &GroupId,
        sender: &UserName,
        recipient: &UserName,
    ) -> StoreResult<Option<MessageRequestRow>> {
        let raw: Option<RawRequest> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {REQUEST_COLS} FROM message_requests
             WHERE group_id = $1 AND requester = $2 AND recipient = $3 AND state <> 'accepted'"
        )))
        .bind(g.as_bytes())
        .bind(sender.as_str())
        .bind(recipient.as_str())
        .fetch_optional(&self.pool)
        .await?;
        raw.map(request_row).transpose()
    }

    async fn declined_direct(
        &self,
        requester: &UserName,
        recipient: &UserName,
        since: Millis,
    ) -> StoreResult<bool> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM message_requests WHERE recipient = $1
               AND requester = $2 AND kind = 'direct' AND state = 'declined'
               AND decided_at > $3)",
        )
        .bind(recipient.as_str())
        .bind(requester.as_str())
        .bind(since)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn take_request_message(
        &self,
        g: &GroupId,
        sender: &UserName,
        recipient: &UserName,
    ) -> StoreResult<bool> {
        let n = sqlx::query(
            "UPDATE message_requests SET messages_sent = messages_sent + 1
             WHERE group_id = $1 AND requester = $2 AND recipient = $3
               AND state = 'pending' AND messages_sent = 0",
        )
        .bind(g.as_bytes())
        .bind(sender.as_str())
        .bind(recipient.as_str())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    async fn return_request_message(
        &self,
        g: &GroupId,
        sender: &UserName,
        recipient: &UserName,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE message_requests SET messages_sent = messages_sent - 1
             WHERE group_id = $1 AND requester = $2 AND recipient = $3 AND messages_sent > 0",
        )
        .bind(g.as_bytes())
        .bind(sender.as_str())
        .bind(recipient.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn record_contact_events(&self, events: &[NewContactEvent]) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        for e in events {
            insert_event(&mut tx, e).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn contact_events(
        &self,
        actor: &UserName,
        since: Millis,
    ) -> StoreResult<Vec<ContactEventRow>> {
        let raws: Vec<(i64, String, String, String, bool, String, String)> = sqlx::query_as(
            "SELECT at, approach, target, target_band, connected, decision, outcome
             FROM contact_events WHERE actor = $1 AND at > $2 ORDER BY at, id",
        )
        .bind(actor.as_str())
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
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
    }

    async fn mark_reported(
        &self,
        actor: &UserName,
        target: &UserName,
        since: Millis,
    ) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await?;
        set_outcome(
            &mut conn,
            actor.as_str(),
            target.as_str(),
            &ALL_APPROACHES,
            "reported",
            since,
        )
        .await
    }

    async fn received(&self, user: &UserName, since: Millis) -> StoreResult<(u32, u32)> {
        let (b, r): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM blocks WHERE blocked = $1 AND created_at > $2),
                    (SELECT count(*) FROM mod_cases WHERE reported_user = $1
                       AND created_at > $2 AND source <> 'risk_signals')",
        )
        .bind(user.as_str())
        .bind(since)
        .fetch_one(&self.pool)
        .await?;
        Ok((
            u32::try_from(b).unwrap_or(u32::MAX),
            u32::try_from(r).unwrap_or(u32::MAX),
        ))
    }

    async fn risk_state(&self, user: &UserName) -> StoreResult<Option<RiskStateRow>> {
        let row: Option<(f64, String, i64)> =
            sqlx::query_as("SELECT score, level, computed_at FROM risk_state WHERE user_name = $1")
                .bind(user.as_str())
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(score, level, computed_at)| RiskStateRow {
            score,
            level,
            computed_at,
        }))
    }

    async fn put_risk_state(&self, user: &UserName, state: &RiskStateRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO risk_state (user_name, score, level, computed_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (user_name) DO UPDATE SET score = excluded.score,
                 level = excluded.level, computed_at = excluded.computed_at",
        )
        .bind(user.as_str())
        .bind(state.score)
        .bind(&state.level)
        .bind(state.computed_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn safety_notice(
        &self,
        recipient: &UserName,
        about: &UserName,
        notice: &NewMessage,
        window: Millis,
        limits: &Limits,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let now = notice.received_at;
        let n = sqlx::query(
            "INSERT INTO safety_notices (recipient, about, at) VALUES ($1, $2, $3)
             ON CONFLICT (recipient, about) DO UPDATE SET at = excluded.at
             WHERE safety_notices.at <= $4",
        )
        .bind(recipient.as_str())
        .bind(about.as_str())
        .bind(now)
        .bind(now.saturating_sub(window))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        notify(&mut tx, recipient, notice, limits).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn purge_contacts(&self, before: Millis) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await?;
        let mut n = 0;
        for sql in [
            "DELETE FROM contact_events WHERE at < $1",
            "DELETE FROM message_requests WHERE state <> 'pending' AND decided_at < $1",
            "DELETE FROM safety_notices WHERE at < $1",
        ] {
            n += sqlx::query(sql)
                .bind(before)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        Ok(n)
    }

    async fn write_policy(&self, version: u32, config: &str, now: Millis) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO policy_in_force (id, version, config, written_at) VALUES (1, $1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET version = excluded.version,
                 config = excluded.config, written_at = excluded.written_at",
        )
        .bind(i64::from(version))
        .bind(config)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn policy(&self) -> StoreResult<Option<(u32, String)>> {
        let row: Option<(i64, String)> =
            sqlx::query_as("SELECT version, config FROM policy_in_force WHERE id = 1")
                .fetch_optional(&self.pool)
                .await?;
        row.map(|(v, c)| Ok((u32::try_from(v).map_err(|_| corrupt("policy version"))?, c)))
            .transpose()
    }
}
