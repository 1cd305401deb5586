//! The moderation store: cases, sealed evidence, actions and appeals, roles, the audit log,
//! account events and membership history. Both backends implement [`ModerationStore`] in this
//! folder (`sqlite.rs`, `postgres.rs`) and run the cases in `conformance.rs`.
//!
//! Every method is one transaction. Writes that a moderator makes carry their [`AuditLine`],
//! appended in the same transaction: an action is never taken without its record, and a
//! record never names an action that did not happen.

use async_trait::async_trait;
use haven_proto::moderation::{AppealOutcome, CaseSource, CaseState, ModAction, ReportReason};
use haven_proto::{DeviceId, GroupId, UserName};
use sha2::{Digest, Sha256};

use crate::store::{Limits, Millis, NewMessage, StoreResult};

/// A role the operator grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reviews cases and takes actions.
    Moderator,
    /// Reads the audit log (the operator's role; not a moderator).
    Admin,
}

impl Role {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Moderator => "moderator",
            Role::Admin => "admin",
        }
    }
    /// Parses the stable name.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "moderator" => Some(Role::Moderator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// One audit entry to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditLine {
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// Which case.
    pub case: Option<String>,
    /// Details (never content).
    pub detail: String,
    /// When.
    pub at: Millis,
}

/// A stored audit entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    /// Position, from 1.
    pub seq: i64,
    /// The entry.
    pub line: AuditLine,
    /// Its chain hash.
    pub hash: [u8; 32],
}

/// The label of the audit chain's hash.
pub const AUDIT_LABEL: &[u8] = b"haven/audit/v1";

fn lp(h: &mut Sha256, b: &[u8]) {
    h.update(u32::try_from(b.len()).unwrap_or(u32::MAX).to_be_bytes());
    h.update(b);
}

/// The chain hash of entry `seq`:
/// `SHA-256("haven/audit/v1" ‖ prev ‖ u64be(seq) ‖ u64be(at) ‖ lp(actor) ‖ lp(action) ‖
/// lp(case or "") ‖ u8(case present) ‖ lp(detail))`, with `prev` 32 zero bytes for the first.
pub fn audit_hash(prev: &[u8; 32], seq: i64, line: &AuditLine) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(AUDIT_LABEL);
    h.update(prev);
    h.update(seq.to_be_bytes());
    h.update(line.at.to_be_bytes());
    lp(&mut h, line.actor.as_bytes());
    lp(&mut h, line.action.as_bytes());
    lp(&mut h, line.case.as_deref().unwrap_or("").as_bytes());
    h.update([u8::from(line.case.is_some())]);
    lp(&mut h, line.detail.as_bytes());
    h.finalize().into()
}

/// Checks a run of entries from the first: each hash follows from the one before. Returns the
/// first seq that does not.
pub fn verify_audit_chain(rows: &[AuditRow]) -> Result<(), i64> {
    let mut prev = [0u8; 32];
    for (expect, r) in (1..).zip(rows) {
        if r.seq != expect || audit_hash(&prev, r.seq, &r.line) != r.hash {
            return Err(r.seq);
        }
        prev = r.hash;
    }
    Ok(())
}

/// A case to file.
#[derive(Debug, Clone)]
pub struct NewCase {
    /// Its id (random, unguessable).
    pub id: String,
    /// Where from.
    pub source: CaseSource,
    /// Why.
    pub reason: ReportReason,
    /// Review order.
    pub priority: u8,
    /// Who reported.
    pub reporter: Option<UserName>,
    /// Whether the reporter is known to be a minor.
    pub reporter_is_minor: bool,
    /// The reported account.
    pub reported_user: UserName,
    /// The conversation.
    pub group_id: Option<GroupId>,
    /// Same reporter, same message: the same case.
    pub dedupe_key: Option<Vec<u8>>,
    /// The note, sealed.
    pub note_sealed: Option<Vec<u8>>,
    /// Sealed evidence items (`m<N>`, `f<N>`).
    pub evidence: Vec<(String, Vec<u8>)>,
    /// When.
    pub created_at: Millis,
}

/// A stored case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseRow {
    /// Id.
    pub id: String,
    /// Source.
    pub source: CaseSource,
    /// Reason.
    pub reason: ReportReason,
    /// Priority.
    pub priority: u8,
    /// State.
    pub state: CaseState,
    /// Reporter.
    pub reporter: Option<UserName>,
    /// Minor reporter.
    pub reporter_is_minor: bool,
    /// Reported account.
    pub reported_user: UserName,
    /// Conversation.
    pub group_id: Option<GroupId>,
    /// Sealed note.
    pub note_sealed: Option<Vec<u8>>,
    /// Filed.
    pub created_at: Millis,
    /// Closed.
    pub closed_at: Option<Millis>,
    /// Preserve hold.
    pub held_until: Option<Millis>,
    /// Evidence deleted from then.
    pub purge_after: Option<Millis>,
    /// Evidence deleted.
    pub evidence_purged: bool,
}

/// An action to take, with its effects.
#[derive(Debug, Clone)]
pub struct NewAction {
    /// Its id.
    pub id: String,
    /// Its case.
    pub case: String,
    /// What.
    pub action: ModAction,
    /// Statement of reasons.
    pub reason: String,
    /// Who.
    pub moderator: UserName,
    /// When.
    pub now: Millis,
    /// Until (restrict, suspend, ban = `Millis::MAX`, preserve).
    pub until: Option<Millis>,
    /// The case's new state (`None`: unchanged, as for preserve).
    pub case_state: Option<CaseState>,
    /// For a dismissal: evidence deleted from then unless held.
    pub purge_after: Option<Millis>,
    /// Notices to queue: to every live device of each account.
    pub notices: Vec<(UserName, NewMessage)>,
    /// The record.
    pub audit: AuditLine,
}

/// A stored action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionRow {
    /// Id.
    pub id: String,
    /// Case.
    pub case: String,
    /// Affected account.
    pub user: UserName,
    /// What.
    pub action: ModAction,
    /// Statement of reasons.
    pub reason: String,
    /// Who.
    pub moderator: UserName,
    /// When.
    pub created_at: Millis,
    /// Until.
    pub until: Option<Millis>,
    /// Lifted (appeal reversed).
    pub lifted_at: Option<Millis>,
    /// Appeal text and time.
    pub appeal: Option<(String, Millis)>,
    /// Decision: by, outcome, reason, when.
    pub decision: Option<(UserName, AppealOutcome, String, Millis)>,
}

/// An account as a moderator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRow {
    /// Registered.
    pub created_at: Millis,
    /// Devices: id, name, created, revoked.
    pub devices: Vec<(DeviceId, String, Millis, Option<Millis>)>,
    /// Suspended until.
    pub suspended_until: Option<Millis>,
    /// Restricted until.
    pub restricted_until: Option<Millis>,
    /// Records held until.
    pub hold_until: Option<Millis>,
}

/// A registration, login or link, with the client's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountEvent {
    /// The device.
    pub device: DeviceId,
    /// `registration`, `login` or `link`.
    pub event: &'static str,
    /// The address.
    pub ip: String,
    /// When.
    pub at: Millis,
}

/// Kinds of [`AccountEvent::event`].
pub const EVENTS: [&str; 3] = ["registration", "login", "link"];

/// What a purge removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModerationPurge {
    /// Cases whose evidence was deleted.
    pub cases: u64,
    /// Account events dropped.
    pub events: u64,
}

/// The moderation store.
#[async_trait]
pub trait ModerationStore: Send + Sync {
    /// Grants `role`; false if `user` had it. `NotFound("user")`.
    async fn grant_role(
        &self,
        user: &UserName,
        role: Role,
        now: Millis,
        audit: &AuditLine,
    ) -> StoreResult<bool>;
    /// Revokes `role`; false if `user` did not have it.
    async fn revoke_role(
        &self,
        user: &UserName,
        role: Role,
        audit: &AuditLine,
    ) -> StoreResult<bool>;
    /// The roles of `user`.
    async fn roles(&self, user: &UserName) -> StoreResult<Vec<Role>>;

    /// The account that owns `device`, removed devices included.
    async fn device_owner(&self, device: &DeviceId) -> StoreResult<Option<UserName>>;
    /// Whether a device of `user` (removed ones included) was a member of `group` at `at`,
    /// give or take `slack` ms (membership times are the database's clock).
    async fn was_member(
        &self,
        group: &GroupId,
        user: &UserName,
        at: Millis,
        slack: Millis,
    ) -> StoreResult<bool>;
    /// An account's registration time, devices and enforcement state.
    async fn account(&self, user: &UserName) -> StoreResult<Option<AccountRow>>;
    /// Just the enforcement state, `(suspended_until, restricted_until)`, in one lookup (the
    /// login, claim and create-group gates).
    async fn enforcement(
        &self,
        user: &UserName,
    ) -> StoreResult<Option<(Option<Millis>, Option<Millis>)>>;
    /// Records an account event.
    async fn record_event(&self, user: &UserName, event: &AccountEvent) -> StoreResult<()>;
    /// An account's events, newest first.
    async fn events(&self, user: &UserName, limit: u32) -> StoreResult<Vec<AccountEvent>>;

    /// Files a case with its sealed evidence. With a `dedupe_key` already on file, returns that
    /// case's id and `false`, and writes nothing. `NotFound("user")` for an unknown account.
    async fn file_case(&self, case: &NewCase, audit: &AuditLine) -> StoreResult<(String, bool)>;
    /// Open cases, by priority then age, and how many are open in all.
    async fn queue(&self, limit: u32) -> StoreResult<(Vec<CaseRow>, u64)>;
    /// A case.
    async fn case(&self, id: &str) -> StoreResult<Option<CaseRow>>;
    /// Cases about `user`, newest first.
    async fn cases_about(&self, user: &UserName, limit: u32) -> StoreResult<Vec<CaseRow>>;
    /// The sealed evidence items of a case, by item name.
    async fn evidence(&self, case: &str) -> StoreResult<Vec<(String, Vec<u8>)>>;
    /// One sealed evidence item.
    async fn evidence_item(&self, case: &str, item: &str) -> StoreResult<Option<Vec<u8>>>;

    /// Takes an action: records it, applies its effect on the account (restrict, suspend and
    /// ban; suspend and ban also revoke every session), moves the case, queues the notices and
    /// appends the audit line. `NotFound("case")`.
    async fn take_action(&self, action: &NewAction, limits: &Limits) -> StoreResult<ActionRow>;
    /// Actions on a case, oldest first.
    async fn case_actions(&self, case: &str) -> StoreResult<Vec<ActionRow>>;
    /// Actions against an account, newest first.
    async fn user_actions(&self, user: &UserName, limit: u32) -> StoreResult<Vec<ActionRow>>;
    /// An action.
    async fn action(&self, id: &str) -> StoreResult<Option<ActionRow>>;
    /// Files `user`'s appeal of their latest appealable action on `case`. `NotFound("action")`
    /// if there is none; `AlreadyExists("appeal")` if it was appealed.
    async fn file_appeal(
        &self,
        case: &str,
        user: &UserName,
        text: &str,
        now: Millis,
        audit: &AuditLine,
    ) -> StoreResult<ActionRow>;
    /// Undecided appeals, oldest first.
    async fn appeals(&self, limit: u32) -> StoreResult<Vec<ActionRow>>;
    /// Decides an appeal; reversing lifts the action (the account's state is recomputed from
    /// its other live actions). `NotFound("appeal")` if there is no undecided appeal.
    #[allow(clippy::too_many_arguments)]
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
    ) -> StoreResult<ActionRow>;

    /// The `case.view` and `evidence.view` entries of `actor` on `case` (action, detail).
    async fn views(&self, case: &str, actor: &str) -> StoreResult<Vec<(String, String)>>;
    /// Appends to the audit log.
    async fn append_audit(&self, line: &AuditLine) -> StoreResult<i64>;
    /// Audit entries with `seq > after`, in order.
    async fn audit(&self, after: i64, limit: u32) -> StoreResult<Vec<AuditRow>>;

    /// Deletes the evidence of dismissed cases past retention and not held, and account events
    /// older than `events_before` of accounts not under a hold.
    async fn purge_moderation(
        &self,
        now: Millis,
        events_before: Millis,
    ) -> StoreResult<ModerationPurge>;
}

// --- rows as both backends select them ---

/// Columns of a case, in [`RawCase`]'s order.
pub(crate) const CASE_COLS: &str = "id, source, reason, priority, state, reporter, reporter_is_minor, \
     reported_user, group_id, note_sealed, created_at, closed_at, held_until, purge_after, evidence_purged";

/// Columns of an action, in [`RawAction`]'s order.
pub(crate) const ACTION_COLS: &str = "id, case_id, user_name, action, reason, moderator, created_at, \
     until, lifted_at, appeal_text, appeal_filed_at, appeal_decided_by, appeal_outcome, appeal_reason, \
     appeal_decided_at";

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct RawCase {
    pub id: String,
    pub source: String,
    pub reason: String,
    pub priority: i64,
    pub state: String,
    pub reporter: Option<String>,
    pub reporter_is_minor: bool,
    pub reported_user: String,
    pub group_id: Option<Vec<u8>>,
    pub note_sealed: Option<Vec<u8>>,
    pub created_at: i64,
    pub closed_at: Option<i64>,
    pub held_until: Option<i64>,
    pub purge_after: Option<i64>,
    pub evidence_purged: bool,
}

impl RawCase {
    pub(crate) fn into_row(self) -> StoreResult<CaseRow> {
        use crate::store::{corrupt, parse_user};
        Ok(CaseRow {
            source: CaseSource::parse(&self.source).ok_or_else(|| corrupt("case source"))?,
            reason: ReportReason::parse(&self.reason).ok_or_else(|| corrupt("case reason"))?,
            priority: u8::try_from(self.priority).map_err(|_| corrupt("case priority"))?,
            state: CaseState::parse(&self.state).ok_or_else(|| corrupt("case state"))?,
            reporter: self.reporter.as_deref().map(parse_user).transpose()?,
            reporter_is_minor: self.reporter_is_minor,
            reported_user: parse_user(&self.reported_user)?,
            group_id: self
                .group_id
                .map(|g| GroupId::from_bytes(&g).map_err(|_| corrupt("group id")))
                .transpose()?,
            note_sealed: self.note_sealed,
            created_at: self.created_at,
            closed_at: self.closed_at,
            held_until: self.held_until,
            purge_after: self.purge_after,
            evidence_purged: self.evidence_purged,
            id: self.id,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct RawAction {
    pub id: String,
    pub case_id: String,
    pub user_name: String,
    pub action: String,
    pub reason: String,
    pub moderator: String,
    pub created_at: i64,
    pub until: Option<i64>,
    pub lifted_at: Option<i64>,
    pub appeal_text: Option<String>,
    pub appeal_filed_at: Option<i64>,
    pub appeal_decided_by: Option<String>,
    pub appeal_outcome: Option<String>,
    pub appeal_reason: Option<String>,
    pub appeal_decided_at: Option<i64>,
}

pub(crate) fn outcome_str(o: AppealOutcome) -> &'static str {
    match o {
        AppealOutcome::Upheld => "upheld",
        AppealOutcome::Reversed => "reversed",
    }
}

impl RawAction {
    pub(crate) fn into_row(self) -> StoreResult<ActionRow> {
        use crate::store::{corrupt, parse_user};
        let decision = match (
            self.appeal_decided_by,
            self.appeal_outcome,
            self.appeal_reason,
            self.appeal_decided_at,
        ) {
            (Some(by), Some(o), Some(r), Some(at)) => Some((
                parse_user(&by)?,
                match o.as_str() {
                    "upheld" => AppealOutcome::Upheld,
                    "reversed" => AppealOutcome::Reversed,
                    _ => return Err(corrupt("appeal outcome")),
                },
                r,
                at,
            )),
            _ => None,
        };
        Ok(ActionRow {
            id: self.id,
            case: self.case_id,
            user: parse_user(&self.user_name)?,
            action: ModAction::parse(&self.action).ok_or_else(|| corrupt("action"))?,
            reason: self.reason,
            moderator: parse_user(&self.moderator)?,
            created_at: self.created_at,
            until: self.until,
            lifted_at: self.lifted_at,
            appeal: self.appeal_text.zip(self.appeal_filed_at),
            decision,
        })
    }
}
