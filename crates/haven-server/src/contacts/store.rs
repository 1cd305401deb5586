//! The contacts store: age bands and message settings, connections and contact requests,
//! blocks and restricts, direct groups, message requests, the contact-event time line, risk
//! state and the policy in force. Both backends implement [`ContactStore`] in this folder
//! (`sqlite.rs`, `postgres.rs`) and run the cases in `conformance.rs`.
//!
//! Every method is one transaction.

use async_trait::async_trait;
use haven_proto::contacts::{AgeBand, AgeSource, ContactList, MessageSetting, RequestKind};
use haven_proto::{GroupId, UserName};

use crate::moderation::store::AuditLine;
use crate::store::{corrupt, parse_user, Limits, Millis, NewDevice, NewMessage, StoreResult};

/// An account's age as stored: band, the day it next changes (`YYYY-MM-DD`) and its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAge {
    /// The band as of `changes_on`'s eve (apply `haven_safety::age::AgeRecord::at` to read it).
    pub band: AgeBand,
    /// The day the band next changes.
    pub changes_on: Option<String>,
    /// How it was established.
    pub source: AgeSource,
}

impl StoredAge {
    /// Accounts from before age bands (and the store's own test accounts): adult,
    /// self-declared.
    pub fn legacy_adult() -> Self {
        StoredAge {
            band: AgeBand::Adult,
            changes_on: None,
            source: AgeSource::SelfDeclared,
        }
    }
}

/// What the rules need to know about an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The account.
    pub user: UserName,
    /// When it registered.
    pub created_at: Millis,
    /// Its stored age.
    pub age: StoredAge,
    /// Its message setting.
    pub setting: MessageSetting,
}

/// The facts between an actor and a target account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelationRow {
    /// A connection exists.
    pub connected: bool,
    /// The target blocked the actor.
    pub target_blocked_actor: bool,
    /// The actor blocked the target.
    pub actor_blocked_target: bool,
    /// The target restricted the actor.
    pub target_restricted_actor: bool,
    /// The target has a pending contact request to the actor.
    pub incoming_pending: bool,
    /// The actor has a pending contact request to the target.
    pub outgoing_pending: bool,
}

/// One approach to record on the time line.
#[derive(Debug, Clone, PartialEq)]
pub struct NewContactEvent {
    /// Who approached.
    pub actor: UserName,
    /// Whom.
    pub target: UserName,
    /// When.
    pub at: Millis,
    /// `contact_request`, `first_message`, `group_add`.
    pub approach: &'static str,
    /// The target's band at the time.
    pub target_band: AgeBand,
    /// Whether they were connected.
    pub connected: bool,
    /// `allowed`, `request`, or `refused:<rule>`.
    pub decision: String,
}

/// A recorded approach.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactEventRow {
    /// When.
    pub at: Millis,
    /// `contact_request`, `first_message`, `group_add`.
    pub approach: String,
    /// Whom.
    pub target: UserName,
    /// The target's band at the time.
    pub target_band: AgeBand,
    /// Whether they were connected.
    pub connected: bool,
    /// `allowed`, `request`, or `refused:<rule>`.
    pub decision: String,
    /// `pending`, `accepted`, `declined`, `blocked`, `reported`.
    pub outcome: String,
}

/// How a contact request went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactRequested {
    /// A new pending request.
    Created,
    /// The same request was pending already (nothing written).
    AlreadyPending,
    /// The target had asked the actor already: they are now connected.
    Connected,
    /// They were connected already (nothing written).
    AlreadyConnected,
}

/// A message request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRequestRow {
    /// Whose it is.
    pub recipient: UserName,
    /// The conversation.
    pub group_id: GroupId,
    /// Who started it or added the recipient.
    pub requester: UserName,
    /// Direct or group.
    pub kind: RequestKind,
    /// `pending`, `accepted`, `declined`.
    pub state: String,
    /// The requester's messages while pending.
    pub messages_sent: u32,
    /// When.
    pub created_at: Millis,
}

/// The last risk score of an account.
#[derive(Debug, Clone, PartialEq)]
pub struct RiskStateRow {
    /// The score.
    pub score: f64,
    /// `normal`, `elevated`, `case`.
    pub level: String,
    /// When it was computed.
    pub computed_at: Millis,
}

/// The pair's names in order (connections and direct groups store them so).
pub(crate) fn pair<'a>(a: &'a UserName, b: &'a UserName) -> (&'a str, &'a str) {
    if a.as_str() <= b.as_str() {
        (a.as_str(), b.as_str())
    } else {
        (b.as_str(), a.as_str())
    }
}

pub(crate) fn band(s: &str) -> StoreResult<AgeBand> {
    AgeBand::parse(s).ok_or_else(|| corrupt("age band"))
}

pub(crate) fn group(b: &[u8]) -> StoreResult<GroupId> {
    GroupId::from_bytes(b).map_err(|_| corrupt("group id"))
}

/// A `message_requests` row as both backends read it ([`REQUEST_COLS`]).
pub(crate) type RawRequest = (String, Vec<u8>, String, String, String, i64, i64);

pub(crate) const REQUEST_COLS: &str =
    "recipient, group_id, requester, kind, state, messages_sent, created_at";

pub(crate) fn request_row(raw: RawRequest) -> StoreResult<MessageRequestRow> {
    let (recipient, g, requester, kind, state, sent, at) = raw;
    Ok(MessageRequestRow {
        recipient: parse_user(&recipient)?,
        group_id: group(&g)?,
        requester: parse_user(&requester)?,
        kind: RequestKind::parse(&kind).ok_or_else(|| corrupt("request kind"))?,
        state,
        messages_sent: u32::try_from(sent).unwrap_or(u32::MAX),
        created_at: at,
    })
}

/// Every approach, for outcomes that apply to all (a block, a report).
pub(crate) const ALL_APPROACHES: [&str; 3] = ["contact_request", "first_message", "group_add"];

/// The contacts store.
#[async_trait]
pub trait ContactStore: Send + Sync {
    // --- ages and settings ---

    /// Creates an account with its first device and its age, in one transaction.
    /// `AlreadyExists("user")` if the name is taken.
    async fn create_account(
        &self,
        user: &UserName,
        device: &NewDevice,
        age: &StoredAge,
    ) -> StoreResult<()>;
    /// An account's profile; `None` if it does not exist.
    async fn profile(&self, user: &UserName) -> StoreResult<Option<Profile>>;
    /// The operator's correction of an account's age, with its audit line.
    /// `NotFound("user")` for an unknown account.
    async fn set_age(&self, user: &UserName, age: &StoredAge, audit: &AuditLine)
        -> StoreResult<()>;
    /// Sets an account's message setting. `NotFound("user")` for an unknown account.
    async fn set_message_setting(
        &self,
        user: &UserName,
        setting: MessageSetting,
    ) -> StoreResult<()>;

    // --- connections, blocks, restricts ---

    /// The facts between `actor` and `target`.
    async fn relation(&self, actor: &UserName, target: &UserName) -> StoreResult<RelationRow>;
    /// Records a contact request from `from` to `to` and its time-line event. If `to` had
    /// asked `from` already, they are connected instead (and `to`'s event is marked accepted).
    async fn request_contact(
        &self,
        from: &UserName,
        to: &UserName,
        event: &NewContactEvent,
    ) -> StoreResult<ContactRequested>;
    /// Answers the pending request from `from` to `answerer`: accepting connects them.
    /// Returns whether there was one. The request's event gets its outcome.
    async fn answer_contact(
        &self,
        answerer: &UserName,
        from: &UserName,
        accept: bool,
        now: Millis,
    ) -> StoreResult<bool>;
    /// Removes the connection between `user` and `other` and `user`'s pending request to
    /// `other`. Returns how many rows went.
    async fn remove_contact(&self, user: &UserName, other: &UserName) -> StoreResult<u32>;
    /// The account's contacts, pending requests both ways, blocks and restricts.
    async fn contact_list(&self, user: &UserName) -> StoreResult<ContactList>;
    /// Blocks (`on`) or unblocks. Blocking also removes any connection and pending contact
    /// requests between the two, and marks the blocked account's approaches to the blocker
    /// in the last `since` as `blocked`. Returns whether anything changed.
    /// `NotFound("user")` for an unknown account.
    async fn set_block(
        &self,
        blocker: &UserName,
        blocked: &UserName,
        on: bool,
        now: Millis,
        since: Millis,
    ) -> StoreResult<bool>;
    /// Restricts (`on`) or unrestricts. Returns whether anything changed.
    async fn set_restrict(
        &self,
        restricter: &UserName,
        restricted: &UserName,
        on: bool,
        now: Millis,
    ) -> StoreResult<bool>;

    // --- conversations ---

    /// Marks a group a 1:1 conversation of `a` and `b`. Only a group at epoch 0 with a single
    /// member device of `a` or `b` can be marked; `Conflict`-free: returns whether it was.
    async fn mark_direct(&self, group: &GroupId, a: &UserName, b: &UserName) -> StoreResult<bool>;
    /// The two accounts of a direct group, in name order; `None` for other groups.
    async fn direct_pair(&self, group: &GroupId) -> StoreResult<Option<(UserName, UserName)>>;
    /// The accounts with a device in the group, by name.
    async fn group_users(&self, group: &GroupId) -> StoreResult<Vec<UserName>>;
    /// Opens pending message requests (recipient, kind) in `group` from `requester`; a
    /// recipient with a pending request in the group keeps it, and one who answered an earlier
    /// request (and has been added again since, having left) is asked again.
    async fn open_message_requests(
        &self,
        group: &GroupId,
        requester: &UserName,
        recipients: &[(UserName, RequestKind)],
        now: Millis,
    ) -> StoreResult<()>;
    /// The recipient's pending message requests, oldest first, each with the group's accounts.
    async fn message_requests(
        &self,
        recipient: &UserName,
    ) -> StoreResult<Vec<(MessageRequestRow, Vec<UserName>)>>;
    /// Accepts or declines every pending request from `from` to `recipient`; the matching
    /// time-line events get their outcome. Returns the groups.
    async fn answer_message_requests(
        &self,
        recipient: &UserName,
        from: &UserName,
        accept: bool,
        now: Millis,
    ) -> StoreResult<Vec<GroupId>>;
    /// The request in `group` that `sender` made and `recipient` has not accepted, if any.
    async fn unaccepted_request(
        &self,
        group: &GroupId,
        sender: &UserName,
        recipient: &UserName,
    ) -> StoreResult<Option<MessageRequestRow>>;
    /// Whether `recipient` declined a 1:1 request from `requester` decided after `since`.
    async fn declined_direct(
        &self,
        requester: &UserName,
        recipient: &UserName,
        since: Millis,
    ) -> StoreResult<bool>;
    /// Counts one message of the requester's against a pending request, if none was counted:
    /// returns whether it was (false: declined, accepted meanwhile, or the one message used).
    async fn take_request_message(
        &self,
        group: &GroupId,
        sender: &UserName,
        recipient: &UserName,
    ) -> StoreResult<bool>;
    /// Gives back the message [`Self::take_request_message`] counted (the send then failed).
    async fn return_request_message(
        &self,
        group: &GroupId,
        sender: &UserName,
        recipient: &UserName,
    ) -> StoreResult<()>;

    // --- time line, risk, notices ---

    /// Appends approaches to the time line.
    async fn record_contact_events(&self, events: &[NewContactEvent]) -> StoreResult<()>;
    /// The actor's approaches with `at > since`, oldest first.
    async fn contact_events(
        &self,
        actor: &UserName,
        since: Millis,
    ) -> StoreResult<Vec<ContactEventRow>>;
    /// Marks the actor's approaches to `target` after `since` as reported.
    async fn mark_reported(
        &self,
        actor: &UserName,
        target: &UserName,
        since: Millis,
    ) -> StoreResult<()>;
    /// Blocks and reports (cases filed about the account) received after `since`.
    async fn received(&self, user: &UserName, since: Millis) -> StoreResult<(u32, u32)>;
    /// The account's last risk state.
    async fn risk_state(&self, user: &UserName) -> StoreResult<Option<RiskStateRow>>;
    /// Stores the account's risk state.
    async fn put_risk_state(&self, user: &UserName, state: &RiskStateRow) -> StoreResult<()>;
    /// Queues a safety notice to `recipient` about `about` unless one was queued in the last
    /// `window` ms; returns whether it was queued.
    async fn safety_notice(
        &self,
        recipient: &UserName,
        about: &UserName,
        notice: &NewMessage,
        window: Millis,
        limits: &Limits,
    ) -> StoreResult<bool>;
    /// Deletes time-line events, decided message requests and safety-notice marks older than
    /// `before`. Returns the rows deleted.
    async fn purge_contacts(&self, before: Millis) -> StoreResult<u64>;
    /// Records the policy the server runs with.
    async fn write_policy(&self, version: u32, config: &str, now: Millis) -> StoreResult<()>;
    /// The policy in force (version, config JSON), if one was written.
    async fn policy(&self) -> StoreResult<Option<(u32, String)>>;
}
