//! The contact services and the gates the message path calls (see [`crate::contacts`] for the
//! data flow). The rules are `haven_safety::policy::decide`; this file gathers the facts it
//! needs from the store, applies the answer and keeps the time line and the risk state.

use haven_proto::api::{self, EntryKind};
use haven_proto::contacts::{
    self as c, AgeBand, ContactEventView, ContactList, Me, MessageRequest, MessageRequests,
    MessageSetting, PolicyView, RequestKind, RiskReport, RuleView, SignalContribution,
};
use haven_proto::moderation::{CaseSource, CaseState, Notice, NoticeKind, ReportReason};
use haven_proto::{GroupId, UserName};
use haven_safety::age::{self, AgeRecord};
use haven_safety::policy::{
    self, Approach, Decision, Party, RecentContact, Refusal, RefusalKind, Relation, Standing,
};
use haven_safety::risk::{self, ContactEvent, Outcome, RiskInput, RiskLevel, RiskScore};
use sha2::{Digest, Sha256};

use super::store::{
    ContactEventRow, ContactRequested, NewContactEvent, Profile, RelationRow, RiskStateRow,
    StoredAge,
};
use crate::moderation::store::{AuditLine, NewCase, Role};
use crate::service::{now_ms, random_hex, Authed, Service, ServiceError, ServiceResult};
use crate::store::{Millis, NewMessage};

const HOUR_MS: Millis = 3600 * 1000;
const DAY_MS: Millis = 24 * HOUR_MS;
/// The risk signals look back this far (the longest window of `haven_safety::risk`).
const SIGNAL_WINDOW_MS: Millis = 7 * DAY_MS;
/// Blocks and reports received count over this window.
const RECEIVED_WINDOW_MS: Millis = 30 * DAY_MS;
/// A declined 1:1 request keeps its requester from opening another one this long.
const DECLINE_HOLDS_MS: Millis = 30 * DAY_MS;
/// At most one safety notice per recipient and account in this window.
const NOTICE_WINDOW_MS: Millis = DAY_MS;

/// The text of the notice a minor gets about a request from outside their contacts.
fn request_notice_text(from: &UserName) -> String {
    format!(
        "{from} is not in your contacts. You don't have to answer: you can block or restrict \
         them, or report them if anything they send worries you."
    )
}

/// The text of the notice a minor gets when an account with unusual contact patterns writes.
fn pattern_notice_text(from: &UserName) -> String {
    format!(
        "{from} has been contacting many people they don't know. Be careful about sharing \
         photos or personal details; you can block or restrict them, or report them."
    )
}

/// What a gate found: the decision and the facts it was made on.
pub(crate) struct Gate {
    pub(crate) decision: Decision,
    pub(crate) target: Profile,
    pub(crate) target_band: AgeBand,
    pub(crate) relation: RelationRow,
}

fn to_relation(r: &RelationRow) -> Relation {
    Relation {
        connected: r.connected,
        target_blocked_actor: r.target_blocked_actor,
        actor_blocked_target: r.actor_blocked_target,
        target_restricted_actor: r.target_restricted_actor,
    }
}

fn decision_str(d: &Decision) -> String {
    match d {
        Decision::Allow => "allowed".into(),
        Decision::Request { .. } => "request".into(),
        Decision::Refuse(r) => format!("refused:{}", r.rule),
    }
}

fn ms(t: Millis) -> u64 {
    u64::try_from(t).unwrap_or(0)
}

impl Service {
    /// The contact policy in force.
    pub fn safety(&self) -> &policy::PolicyConfig {
        &self.safety
    }

    /// An account's profile and its band as of today; `NotFound("user")` if unknown.
    pub(crate) async fn profile_of(&self, user: &UserName) -> ServiceResult<(Profile, AgeBand)> {
        let p = self
            .store
            .profile(user)
            .await?
            .ok_or(ServiceError::NotFound("user"))?;
        let band = band_today(&p.age, now_ms());
        Ok((p, band))
    }

    /// The account's risk level for the rules: `Case` while a risk case about it is open.
    async fn level_of(&self, user: &UserName) -> ServiceResult<RiskLevel> {
        let level = match self.store.risk_state(user).await? {
            Some(s) => RiskLevel::parse(&s.level).unwrap_or(RiskLevel::Normal),
            None => RiskLevel::Normal,
        };
        if level != RiskLevel::Case {
            return Ok(level);
        }
        // Paused while the risk case is open: once a moderator has decided it, the state is
        // recomputed from the events after the decision.
        if self.risk_cases(user).await?.0 {
            return Ok(RiskLevel::Case);
        }
        self.refresh_risk(user, now_ms()).await
    }

    /// Whether a risk case about `user` is open, and when the last one was decided (0: never):
    /// a moderator's decision settles the events it was about.
    async fn risk_cases(&self, user: &UserName) -> ServiceResult<(bool, Millis)> {
        let cases = self.store.cases_about(user, 50).await?;
        let risk = cases.iter().filter(|c| c.source == CaseSource::RiskSignals);
        let open = risk.clone().any(|c| c.state == CaseState::Open);
        let settled = risk.filter_map(|c| c.closed_at).max().unwrap_or(0);
        Ok((open, settled))
    }

    async fn standing(&self, actor: &Profile, now: Millis) -> ServiceResult<Standing> {
        let recent = self
            .store
            .contact_events(&actor.user, now.saturating_sub(DAY_MS))
            .await?
            .iter()
            .filter(|e| !e.connected && !e.decision.starts_with("refused"))
            .map(|e| RecentContact {
                at: e.at,
                to_minor: e.target_band.is_minor(),
            })
            .collect();
        Ok(Standing {
            account_created_at: actor.created_at,
            level: self.level_of(&actor.user).await?,
            recent,
        })
    }

    /// Decides an approach of `actor` to `target`. A refusal is recorded on the actor's time
    /// line (refused attempts are signals too), the actor's risk is refreshed, and the refusal
    /// is returned as the error the caller sees. Other decisions are returned unrecorded: the
    /// caller records them once the approach has happened ([`Self::record_approaches`]).
    pub(crate) async fn gate(
        &self,
        approach: Approach,
        actor: &UserName,
        target: &UserName,
        now: Millis,
    ) -> ServiceResult<Gate> {
        let (actor_p, actor_band) = self.profile_of(actor).await?;
        let (target_p, target_band) = self.profile_of(target).await?;
        let relation = self.store.relation(actor, target).await?;
        let standing = self.standing(&actor_p, now).await?;
        let decision = policy::decide(
            approach,
            &Party {
                band: actor_band,
                setting: actor_p.setting,
            },
            &Party {
                band: target_band,
                setting: target_p.setting,
            },
            &to_relation(&relation),
            &standing,
            &self.safety,
            now,
        );
        if let Decision::Refuse(r) = decision {
            self.store
                .record_contact_events(&[NewContactEvent {
                    actor: actor.clone(),
                    target: target.clone(),
                    at: now,
                    approach: approach.as_str(),
                    target_band,
                    connected: relation.connected,
                    decision: decision_str(&decision),
                }])
                .await?;
            self.refresh_risk(actor, now).await?;
            return Err(refusal_error(&r, target, now));
        }
        Ok(Gate {
            decision,
            target: target_p,
            target_band,
            relation,
        })
    }

    /// Records approaches that happened, opens the message requests they make, queues the
    /// safety notices they call for and refreshes the actor's risk.
    pub(crate) async fn record_approaches(
        &self,
        approach: Approach,
        actor: &UserName,
        group: Option<&GroupId>,
        gates: &[Gate],
        now: Millis,
    ) -> ServiceResult<()> {
        if gates.is_empty() {
            return Ok(());
        }
        let events: Vec<NewContactEvent> = gates
            .iter()
            .map(|g| NewContactEvent {
                actor: actor.clone(),
                target: g.target.user.clone(),
                at: now,
                approach: approach.as_str(),
                target_band: g.target_band,
                connected: g.relation.connected,
                decision: decision_str(&g.decision),
            })
            .collect();
        self.store.record_contact_events(&events).await?;
        if let Some(group) = group {
            let kind = match approach {
                Approach::FirstMessage => RequestKind::Direct,
                _ => RequestKind::Group,
            };
            let requests: Vec<(UserName, RequestKind)> = gates
                .iter()
                .filter(|g| matches!(g.decision, Decision::Request { .. }))
                .map(|g| (g.target.user.clone(), kind))
                .collect();
            if !requests.is_empty() {
                self.store
                    .open_message_requests(group, actor, &requests, now)
                    .await?;
            }
        }
        for g in gates {
            if matches!(g.decision, Decision::Request { notice: true }) {
                self.safety_notice(&g.target.user, actor, request_notice_text(actor), now)
                    .await?;
            }
        }
        self.refresh_risk(actor, now).await?;
        Ok(())
    }

    /// Queues a safety notice (at most one per pair a day).
    async fn safety_notice(
        &self,
        recipient: &UserName,
        about: &UserName,
        text: String,
        now: Millis,
    ) -> ServiceResult<()> {
        let payload = serde_json::to_vec(&Notice {
            kind: NoticeKind::Safety,
            case: String::new(),
            action: None,
            action_id: None,
            reason: None,
            until: None,
            outcome: None,
            about: Some(about.clone()),
            text: Some(text),
            at: ms(now),
        })
        .map_err(|e| ServiceError::Internal(format!("notice: {e}")))?;
        let msg = NewMessage {
            kind: EntryKind::Notice,
            group_id: None,
            sender: None,
            payload,
            frank: None,
            received_at: now,
            expires_at: self.expires_at(now),
        };
        if self
            .store
            .safety_notice(
                recipient,
                about,
                &msg,
                NOTICE_WINDOW_MS,
                &self.store_limits(),
            )
            .await?
        {
            self.wake_user(recipient).await;
        }
        Ok(())
    }

    /// The risk score of `user` now, from its time line since the last risk case was closed.
    async fn compute_risk(
        &self,
        user: &UserName,
        now: Millis,
    ) -> ServiceResult<(Profile, AgeBand, RiskScore, Vec<ContactEventRow>, bool)> {
        let (p, band) = self.profile_of(user).await?;
        let (open, settled) = self.risk_cases(user).await?;
        let since = now.saturating_sub(SIGNAL_WINDOW_MS).max(settled);
        let rows = self.store.contact_events(user, since).await?;
        let (blocks, reports) = self
            .store
            .received(user, now.saturating_sub(RECEIVED_WINDOW_MS).max(settled))
            .await?;
        let events = rows
            .iter()
            .filter_map(|r| {
                Some(ContactEvent {
                    at: r.at,
                    approach: Approach::parse(&r.approach)?,
                    target: r.target.as_str().to_owned(),
                    target_band: r.target_band,
                    connected: r.connected,
                    refused: r.decision.starts_with("refused"),
                    outcome: Outcome::parse(&r.outcome).unwrap_or(Outcome::Pending),
                })
            })
            .collect();
        let score = risk::score(
            &RiskInput {
                now,
                actor_band: band,
                account_created_at: p.created_at,
                events,
                blocks_received_30d: blocks,
                reports_received_30d: reports,
            },
            &self.safety.risk,
        );
        Ok((p, band, score, rows, open))
    }

    /// Recomputes and stores the account's risk; at the case threshold opens a case in the
    /// moderation queue (once: until a moderator decides it) with the contributions and the
    /// time line, which pauses contact with new minors. Returns the level stored.
    pub(crate) async fn refresh_risk(
        &self,
        user: &UserName,
        now: Millis,
    ) -> ServiceResult<RiskLevel> {
        let (_, band, score, rows, open) = self.compute_risk(user, now).await?;
        if score.level == RiskLevel::Case && !open {
            self.open_risk_case(user, band, &score, &rows, now).await?;
        }
        let level = if open { RiskLevel::Case } else { score.level };
        self.store
            .put_risk_state(
                user,
                &RiskStateRow {
                    score: score.score,
                    level: level.as_str().into(),
                    computed_at: now,
                },
            )
            .await?;
        Ok(level)
    }

    async fn open_risk_case(
        &self,
        user: &UserName,
        band: AgeBand,
        score: &RiskScore,
        rows: &[ContactEventRow],
        now: Millis,
    ) -> ServiceResult<()> {
        let id = random_hex::<12>();
        let mut note = format!(
            "Metadata risk signals crossed the case threshold: score {:.1} (case at {:.0}, \
             friction at {:.0}); account band {}. Contact with new minors is paused until this \
             case is decided.\n\nContributions:\n",
            score.score,
            self.safety.risk.case_threshold,
            self.safety.risk.friction_threshold,
            band.as_str()
        );
        for c in score.contributions.iter().filter(|c| c.points > 0.0) {
            note.push_str(&format!(
                "- {}: {:.2} -> {:.1} points ({})\n",
                c.signal, c.value, c.points, c.description
            ));
        }
        note.push_str("\nTime line (UTC, approach, target, target band, decision, outcome):\n");
        for r in rows.iter().rev().take(200).rev() {
            note.push_str(&format!(
                "- {} {} {} {} {} {}\n",
                fmt_time(r.at),
                r.approach,
                r.target,
                r.target_band.as_str(),
                r.decision,
                r.outcome
            ));
        }
        let dedupe = Sha256::digest(format!("risk/{}/{}", user, now / DAY_MS)).to_vec();
        let case = NewCase {
            id: id.clone(),
            source: CaseSource::RiskSignals,
            reason: ReportReason::Grooming,
            priority: crate::moderation::service::priority(ReportReason::Grooming, false),
            reporter: None,
            reporter_is_minor: false,
            reported_user: user.clone(),
            group_id: None,
            dedupe_key: Some(dedupe),
            note_sealed: self
                .evidence_key
                .as_ref()
                .map(|k| k.seal(&id, "note", note.as_bytes())),
            evidence: Vec::new(),
            created_at: now,
        };
        let audit = AuditLine {
            actor: "system".into(),
            action: "risk.case".into(),
            case: Some(id),
            detail: format!("metadata risk signals; score {:.1}", score.score),
            at: now,
        };
        self.store.file_case(&case, &audit).await?;
        Ok(())
    }

    // --- the gates the message path calls ---

    /// Before handing out key packages of `target` for `group`: refuses an approach the rules
    /// refuse (recorded), so a client learns early; the commit decides for good.
    pub(crate) async fn claim_gate(
        &self,
        who: &Authed,
        target: &UserName,
        group: &GroupId,
    ) -> ServiceResult<()> {
        if target == &who.user || self.store.group_users(group).await?.contains(target) {
            return Ok(());
        }
        let approach = match self.store.direct_pair(group).await? {
            Some((a, b)) => {
                if target != &a && target != &b {
                    return Err(ServiceError::Forbidden(
                        "a 1:1 conversation holds only its two accounts",
                    ));
                }
                Approach::FirstMessage
            }
            None => Approach::GroupAdd,
        };
        let now = now_ms();
        let g = self.gate(approach, &who.user, target, now).await?;
        self.decline_holds(approach, &who.user, &g, now).await
    }

    /// A declined 1:1 request holds for [`DECLINE_HOLDS_MS`]: opening another conversation does
    /// not ask again (the sender is told what anyone refused is told).
    async fn decline_holds(
        &self,
        approach: Approach,
        actor: &UserName,
        g: &Gate,
        now: Millis,
    ) -> ServiceResult<()> {
        let target = &g.target.user;
        if approach == Approach::FirstMessage
            && !g.relation.connected
            && self
                .store
                .declined_direct(actor, target, now.saturating_sub(DECLINE_HOLDS_MS))
                .await?
        {
            return Err(ServiceError::Refused(format!(
                "{target} only accepts messages from their contacts"
            )));
        }
        Ok(())
    }

    /// Decides the accounts a commit adds (`added`: the accounts of the added leaves) before it
    /// is applied. Returns the gates to record once it is.
    pub(crate) async fn commit_gate(
        &self,
        who: &Authed,
        group: &GroupId,
        added: &[UserName],
        now: Millis,
    ) -> ServiceResult<(Approach, Vec<Gate>)> {
        let direct = self.store.direct_pair(group).await?;
        if let Some((a, b)) = &direct {
            if let Some(u) = added.iter().find(|u| *u != a && *u != b) {
                return Err(ServiceError::BadRequest(format!(
                    "a 1:1 conversation holds only its two accounts; {u} cannot be added"
                )));
            }
        }
        let approach = if direct.is_some() {
            Approach::FirstMessage
        } else {
            Approach::GroupAdd
        };
        let members = self.store.group_users(group).await?;
        let mut new: Vec<&UserName> = added
            .iter()
            .filter(|u| *u != &who.user && !members.contains(u))
            .collect();
        new.sort();
        new.dedup();
        let mut gates = Vec::with_capacity(new.len());
        for u in new {
            let g = self.gate(approach, &who.user, u, now).await?;
            self.decline_holds(approach, &who.user, &g, now).await?;
            gates.push(g);
        }
        Ok((approach, gates))
    }

    /// Before an application message in a 1:1 conversation: blocks, and the one message a
    /// pending request allows. Returns what to undo if the send then fails.
    pub(crate) async fn send_gate(
        &self,
        who: &Authed,
        group: &GroupId,
        now: Millis,
    ) -> ServiceResult<Option<(UserName, bool)>> {
        let Some((a, b)) = self.store.direct_pair(group).await? else {
            return Ok(None);
        };
        let peer = if who.user == a { b } else { a };
        if peer == who.user {
            return Ok(None);
        }
        let rel = self.store.relation(&who.user, &peer).await?;
        if rel.target_blocked_actor {
            return Err(ServiceError::Refused(format!(
                "{peer} only accepts messages from their contacts"
            )));
        }
        if rel.actor_blocked_target {
            return Err(ServiceError::Refused(format!(
                "you blocked {peer}; unblock them first"
            )));
        }
        let mut took = false;
        if self
            .store
            .unaccepted_request(group, &who.user, &peer)
            .await?
            .is_some()
        {
            if !self
                .store
                .take_request_message(group, &who.user, &peer)
                .await?
            {
                return Err(ServiceError::Refused(format!(
                    "{peer} has not accepted your message request; you can send one message \
                     until they do"
                )));
            }
            took = true;
        }
        if self.level_of(&who.user).await? >= RiskLevel::Elevated {
            let (_, peer_band) = self.profile_of(&peer).await?;
            let (_, own_band) = self.profile_of(&who.user).await?;
            if policy::notice_on_write(own_band, RiskLevel::Elevated, peer_band) {
                self.safety_notice(&peer, &who.user, pattern_notice_text(&who.user), now)
                    .await?;
            }
        }
        Ok(Some((peer, took)))
    }

    /// Gives back a pending request's one message when the send it was taken for failed.
    pub(crate) async fn send_failed(&self, who: &Authed, group: &GroupId, peer: &UserName) {
        if let Err(e) = self
            .store
            .return_request_message(group, &who.user, peer)
            .await
        {
            tracing::warn!(error = %e, "could not return a message request's message");
        }
    }

    /// A report names `reported`: its approaches to `reporter` get the outcome and its risk is
    /// refreshed.
    pub(crate) async fn note_report(&self, reporter: &UserName, reported: &UserName) {
        let now = now_ms();
        let r = async {
            self.store
                .mark_reported(reported, reporter, now.saturating_sub(SIGNAL_WINDOW_MS))
                .await?;
            self.refresh_risk(reported, now).await
        }
        .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "could not update risk signals after a report");
        }
    }

    // --- endpoints ---

    /// Asks `req.user` to connect.
    pub async fn request_contact(
        &self,
        who: &Authed,
        req: c::ContactRequestBody,
    ) -> ServiceResult<api::Accepted> {
        self.write_limit(who).await?;
        if req.user == who.user {
            return Err(ServiceError::BadRequest(
                "you cannot send yourself a contact request".into(),
            ));
        }
        self.restriction_gate(&who.user).await?;
        let now = now_ms();
        let rel = self.store.relation(&who.user, &req.user).await?;
        if rel.connected {
            return Err(ServiceError::Conflict(format!(
                "you and {} are connected already",
                req.user
            )));
        }
        if rel.incoming_pending {
            // They asked first: this accepts their request (so a minor's connection to an
            // adult still exists only because the minor sent or accepted it).
            return self.answer_contact(who, &req.user, true).await;
        }
        let g = self
            .gate(Approach::ContactRequest, &who.user, &req.user, now)
            .await?;
        let event = NewContactEvent {
            actor: who.user.clone(),
            target: req.user.clone(),
            at: now,
            approach: Approach::ContactRequest.as_str(),
            target_band: g.target_band,
            connected: false,
            decision: decision_str(&g.decision),
        };
        let done = self
            .store
            .request_contact(&who.user, &req.user, &event)
            .await?;
        if done == ContactRequested::Created {
            if matches!(g.decision, Decision::Request { notice: true }) {
                self.safety_notice(&req.user, &who.user, request_notice_text(&who.user), now)
                    .await?;
            }
            self.refresh_risk(&who.user, now).await?;
        }
        Ok(api::Accepted {
            count: u32::from(matches!(
                done,
                ContactRequested::Created | ContactRequested::Connected
            )),
        })
    }

    /// Accepts or declines a contact request from `from`.
    pub async fn answer_contact(
        &self,
        who: &Authed,
        from: &UserName,
        accept: bool,
    ) -> ServiceResult<api::Accepted> {
        let now = now_ms();
        if accept && self.level_of(&who.user).await? == RiskLevel::Case {
            let (_, from_band) = self.profile_of(from).await?;
            if from_band.is_minor() {
                return Err(ServiceError::Refused(format!(
                    "{from} only accepts messages from their contacts"
                )));
            }
        }
        if !self
            .store
            .answer_contact(&who.user, from, accept, now)
            .await?
        {
            return Err(ServiceError::NotFound("contact request"));
        }
        if !accept {
            self.refresh_risk(from, now).await?;
        }
        Ok(api::Accepted { count: 1 })
    }

    /// Removes a connection or withdraws a request.
    pub async fn remove_contact(
        &self,
        who: &Authed,
        other: &UserName,
    ) -> ServiceResult<api::Accepted> {
        let n = self.store.remove_contact(&who.user, other).await?;
        if n == 0 {
            return Err(ServiceError::NotFound("contact"));
        }
        Ok(api::Accepted { count: n })
    }

    /// The caller's contacts.
    pub async fn contacts(&self, who: &Authed) -> ServiceResult<ContactList> {
        Ok(self.store.contact_list(&who.user).await?)
    }

    /// Blocks or unblocks.
    pub async fn block(
        &self,
        who: &Authed,
        other: &UserName,
        on: bool,
    ) -> ServiceResult<api::Accepted> {
        if other == &who.user {
            return Err(ServiceError::BadRequest("you cannot block yourself".into()));
        }
        let now = now_ms();
        let changed = self
            .store
            .set_block(
                &who.user,
                other,
                on,
                now,
                now.saturating_sub(SIGNAL_WINDOW_MS),
            )
            .await?;
        if changed && on {
            self.refresh_risk(other, now).await?;
        }
        Ok(api::Accepted {
            count: u32::from(changed),
        })
    }

    /// Restricts or unrestricts.
    pub async fn restrict(
        &self,
        who: &Authed,
        other: &UserName,
        on: bool,
    ) -> ServiceResult<api::Accepted> {
        if other == &who.user {
            return Err(ServiceError::BadRequest(
                "you cannot restrict yourself".into(),
            ));
        }
        let changed = self
            .store
            .set_restrict(&who.user, other, on, now_ms())
            .await?;
        Ok(api::Accepted {
            count: u32::from(changed),
        })
    }

    /// The caller's pending message requests.
    pub async fn message_requests(&self, who: &Authed) -> ServiceResult<MessageRequests> {
        let rows = self.store.message_requests(&who.user).await?;
        Ok(MessageRequests {
            requests: rows
                .into_iter()
                .map(|(r, members)| MessageRequest {
                    from: r.requester,
                    group_id: r.group_id,
                    kind: r.kind,
                    created_at: ms(r.created_at),
                    members: members.into_iter().filter(|m| m != &who.user).collect(),
                })
                .collect(),
        })
    }

    /// Accepts or declines every pending request from `from`.
    pub async fn answer_requests(
        &self,
        who: &Authed,
        from: &UserName,
        accept: bool,
    ) -> ServiceResult<api::Accepted> {
        let now = now_ms();
        let groups = self
            .store
            .answer_message_requests(&who.user, from, accept, now)
            .await?;
        if groups.is_empty() {
            return Err(ServiceError::NotFound("message request"));
        }
        if !accept {
            self.refresh_risk(from, now).await?;
        }
        Ok(api::Accepted {
            count: u32::try_from(groups.len()).unwrap_or(u32::MAX),
        })
    }

    /// Sets who may start conversations with the caller (adults; a minor's is `requests`).
    pub async fn set_message_setting(
        &self,
        who: &Authed,
        req: c::MessageSettingBody,
    ) -> ServiceResult<api::Accepted> {
        let (_, band) = self.profile_of(&who.user).await?;
        if band.is_minor() && req.messages != MessageSetting::Requests {
            return Err(ServiceError::Forbidden(
                "this account's message setting stays at requests",
            ));
        }
        self.store
            .set_message_setting(&who.user, req.messages)
            .await?;
        Ok(api::Accepted { count: 1 })
    }

    /// The caller's own account as the rules see it.
    pub async fn me(&self, who: &Authed) -> ServiceResult<Me> {
        let (p, band) = self.profile_of(&who.user).await?;
        Ok(Me {
            user: p.user,
            age_band: band,
            age_source: p.age.source,
            messages: if band.is_minor() {
                MessageSetting::Requests
            } else {
                p.setting
            },
        })
    }

    /// A moderator's view of an account's risk signals (audited).
    pub async fn risk_report(&self, who: &Authed, user: &UserName) -> ServiceResult<RiskReport> {
        self.require_role(who, Role::Moderator).await?;
        let now = now_ms();
        let (p, band, score, rows, open) = self.compute_risk(user, now).await?;
        self.store
            .append_audit(&AuditLine {
                actor: who.user.as_str().into(),
                action: "signals.view".into(),
                case: None,
                detail: format!("signals of {user}"),
                at: now,
            })
            .await?;
        Ok(risk_report(
            &p,
            band,
            &score,
            &rows,
            open,
            &self.safety.risk,
        ))
    }

    /// The policy in force.
    pub fn policy_view(&self) -> ServiceResult<PolicyView> {
        policy_view(&self.safety)
    }
}

/// The report a moderator sees (also printed by `haven admin`).
pub(crate) fn risk_report(
    p: &Profile,
    band: AgeBand,
    score: &RiskScore,
    rows: &[ContactEventRow],
    open: bool,
    cfg: &risk::RiskConfig,
) -> RiskReport {
    RiskReport {
        user: p.user.clone(),
        age_band: band,
        age_source: p.age.source,
        score: score.score,
        level: if open {
            RiskLevel::Case.as_str().into()
        } else {
            score.level.as_str().into()
        },
        friction_threshold: cfg.friction_threshold,
        case_threshold: cfg.case_threshold,
        contributions: score
            .contributions
            .iter()
            .map(|c| SignalContribution {
                signal: c.signal.into(),
                description: c.description.into(),
                value: c.value,
                points: c.points,
            })
            .collect(),
        timeline: rows
            .iter()
            .map(|r| ContactEventView {
                at: ms(r.at),
                kind: r.approach.clone(),
                target: r.target.clone(),
                target_band: r.target_band,
                decision: r.decision.clone(),
                outcome: r.outcome.clone(),
            })
            .collect(),
    }
}

/// The policy as the API and `haven admin policy` show it.
pub fn policy_view(cfg: &policy::PolicyConfig) -> ServiceResult<PolicyView> {
    Ok(PolicyView {
        version: policy::POLICY_VERSION,
        rules: policy::RULES
            .iter()
            .map(|r| RuleView {
                id: r.id.into(),
                text: r.text.into(),
            })
            .collect(),
        config: serde_json::to_value(cfg)
            .map_err(|e| ServiceError::Internal(format!("policy: {e}")))?,
    })
}

/// The refusal as the error its caller sees.
fn refusal_error(r: &Refusal, target: &UserName, now: Millis) -> ServiceError {
    let message = r.message(target.as_str(), now);
    match r.kind {
        RefusalKind::RateLimited { retry_at } => ServiceError::ContactLimit { message, retry_at },
        RefusalKind::NotAccepting | RefusalKind::YouBlocked => ServiceError::Refused(message),
    }
}

/// The band of a stored age as of `now`.
pub fn band_today(a: &StoredAge, now: Millis) -> AgeBand {
    let record = AgeRecord {
        band: a.band,
        changes_on: a
            .changes_on
            .as_deref()
            .and_then(|d| age::parse_date(d).ok()),
        source: a.source,
    };
    record.at(age::utc_day(now)).band
}

/// The stored form of an age record.
pub fn stored(r: &AgeRecord) -> StoredAge {
    StoredAge {
        band: r.band,
        changes_on: r.changes_on.map(age::format_date),
        source: r.source,
    }
}

fn fmt_time(at: Millis) -> String {
    let day = age::utc_day(at);
    let secs = at.rem_euclid(DAY_MS) / 1000;
    format!(
        "{} {:02}:{:02}:{:02}",
        age::format_date(day),
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}
