//! Reports, the moderation queue, account actions and appeals: the wire types of `/v1/reports`,
//! `/v1/appeals`, `/v1/mod/…` and `/v1/admin/…` (DESIGN.md capability 3).
//!
//! | method | path | who | body → reply |
//! |---|---|---|---|
//! | POST | `/v1/reports` | device | [`ReportRequest`] → [`ReportFiled`] |
//! | POST | `/v1/reports/user` | device | [`UserReportRequest`] → [`ReportFiled`] |
//! | POST | `/v1/appeals` | device, or device + proof when suspended | [`AppealRequest`] → [`crate::api::Accepted`] |
//! | GET | `/v1/mod/queue?limit=N` | moderator | → [`CaseQueue`] |
//! | GET | `/v1/mod/cases/{case}` | moderator | → [`CaseDetail`] |
//! | GET | `/v1/mod/cases/{case}/files/{file}` | moderator | → the evidence file's bytes |
//! | POST | `/v1/mod/cases/{case}/actions` | moderator | [`ActionRequest`] → [`ActionRecord`] |
//! | POST | `/v1/mod/cases/{case}/escalation` | moderator | [`EscalateRequest`] → [`Escalation`] |
//! | GET | `/v1/mod/appeals` | moderator | → [`AppealQueue`] |
//! | POST | `/v1/mod/appeals/{action}` | moderator (not the one who acted) | [`AppealDecision`] → [`ActionRecord`] |
//! | GET | `/v1/admin/audit?after=N&limit=N` | admin | → [`AuditLog`] |
//!
//! A moderator never handles a case they reported or are reported in (403). `admin` is the
//! operator's role: it reads the audit log and is not a moderator (it sees no case).

use serde::{Deserialize, Serialize};

use crate::api::{b64, Sender};
use crate::ids::{GroupId, UserName};

/// Version of [`EvidenceBundle`] this library writes and accepts.
pub const EVIDENCE_VERSION: u8 = 1;
/// Most preceding messages a report may carry as context.
pub const MAX_CONTEXT: usize = 10;
/// Longest note or statement of reasons, in bytes.
pub const MAX_NOTE: usize = 4096;

/// Why something is reported (`haven report --reason`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum ReportReason {
    /// Child sexual exploitation or abuse material.
    ChildSexualExploitation,
    /// An adult seeking to sexually exploit a child.
    Grooming,
    /// Threats to share intimate images.
    Sextortion,
    /// Harassment.
    Harassment,
    /// Spam.
    Spam,
    /// Violence or threats of it.
    Violence,
    /// Anything else.
    Other,
}

impl ReportReason {
    /// Every reason, in the order they are listed to users.
    pub const ALL: [ReportReason; 7] = [
        ReportReason::ChildSexualExploitation,
        ReportReason::Grooming,
        ReportReason::Sextortion,
        ReportReason::Harassment,
        ReportReason::Spam,
        ReportReason::Violence,
        ReportReason::Other,
    ];

    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportReason::ChildSexualExploitation => "child-sexual-exploitation",
            ReportReason::Grooming => "grooming",
            ReportReason::Sextortion => "sextortion",
            ReportReason::Harassment => "harassment",
            ReportReason::Spam => "spam",
            ReportReason::Violence => "violence",
            ReportReason::Other => "other",
        }
    }

    /// Parses the stable name.
    pub fn parse(s: &str) -> Option<ReportReason> {
        ReportReason::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether this is a child-safety reason (these cases are reviewed first).
    pub fn is_child_safety(self) -> bool {
        matches!(
            self,
            ReportReason::ChildSexualExploitation
                | ReportReason::Grooming
                | ReportReason::Sextortion
        )
    }
}

/// One franked message as its recipient stored it, disclosed in a report: the exact content
/// bytes, the salt that opens the commitment, the commitment, and the server's tag with what it
/// binds (sender device, conversation, receive time).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FrankedMessage {
    /// The conversation (MLS group).
    pub group_id: GroupId,
    /// The server-authenticated sender.
    pub sender: Sender,
    /// Server receive time, ms since the Unix epoch (bound by the tag).
    pub received_at: u64,
    /// The content bytes exactly as decrypted (see `haven-content`).
    #[serde(with = "b64")]
    pub content: Vec<u8>,
    /// The franking salt (32 bytes).
    #[serde(with = "b64")]
    pub salt: Vec<u8>,
    /// The commitment the message carried (32 bytes).
    #[serde(with = "b64")]
    pub commitment: Vec<u8>,
    /// The server's tag as delivered (v1: 32 bytes; v2: 37 bytes).
    #[serde(with = "b64")]
    pub server_tag: Vec<u8>,
}

/// What a report discloses: the reported message and up to [`MAX_CONTEXT`] messages of the
/// same conversation received before it, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EvidenceBundle {
    /// [`EVIDENCE_VERSION`].
    pub v: u8,
    /// The reported message.
    pub reported: FrankedMessage,
    /// Preceding messages.
    #[serde(default)]
    pub context: Vec<FrankedMessage>,
}

/// Report a message (`POST /v1/reports`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportRequest {
    /// Why.
    pub reason: ReportReason,
    /// The reporter's words, if any (at most [`MAX_NOTE`] bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The evidence.
    pub evidence: EvidenceBundle,
}

/// Report an account, with no message evidence (`POST /v1/reports/user`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserReportRequest {
    /// The reported account.
    pub user: UserName,
    /// Why.
    pub reason: ReportReason,
    /// The reporter's words, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A report was filed (or was already on file: the same reporter reporting the same message
/// again gets the same case).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReportFiled {
    /// The case id.
    pub case: String,
    /// How many messages of the bundle were verified (reported + context).
    pub verified_messages: u32,
    /// Evidence files kept (attachments fetched, checked and decrypted).
    pub files: u32,
}

/// Where a case came from. Later capabilities add sources (metadata signals, hash matches).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CaseSource {
    /// A recipient reported a message, with verified evidence.
    MessageReport,
    /// A user reported an account, without message evidence.
    AccountReport,
    /// The account's metadata risk signals crossed the case threshold (`haven-safety`'s
    /// `risk`); the case note carries the contributions and the time line.
    RiskSignals,
    /// An account's safety vouchers crossed the match threshold (`haven-psi`); the case holds
    /// exactly the matching images, decrypted with the keys their vouchers revealed.
    VoucherMatch,
}

impl CaseSource {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            CaseSource::MessageReport => "message_report",
            CaseSource::AccountReport => "account_report",
            CaseSource::RiskSignals => "risk_signals",
            CaseSource::VoucherMatch => "voucher_match",
        }
    }
    /// Parses the stable name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            CaseSource::MessageReport,
            CaseSource::AccountReport,
            CaseSource::RiskSignals,
            CaseSource::VoucherMatch,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

/// Where a case is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CaseState {
    /// Waiting for a moderator.
    Open,
    /// Closed with no violation found.
    Dismissed,
    /// Closed with an action against the account.
    Actioned,
    /// Reported to the clearing house.
    Escalated,
}

impl CaseState {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            CaseState::Open => "open",
            CaseState::Dismissed => "dismissed",
            CaseState::Actioned => "actioned",
            CaseState::Escalated => "escalated",
        }
    }
    /// Parses the stable name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            CaseState::Open,
            CaseState::Dismissed,
            CaseState::Actioned,
            CaseState::Escalated,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

/// One line of the queue.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CaseSummary {
    /// The case id.
    pub case: String,
    /// Where it came from.
    pub source: CaseSource,
    /// Why.
    pub reason: ReportReason,
    /// Review order: smaller first (0: child safety or a minor reporting).
    pub priority: u8,
    /// Where it is.
    pub state: CaseState,
    /// The reported account.
    pub reported_user: UserName,
    /// Who reported (absent for automated sources).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reporter: Option<UserName>,
    /// Whether the reporter is known to be a minor.
    pub reporter_is_minor: bool,
    /// When it was filed, ms.
    pub created_at: u64,
    /// Evidence held until (a `preserve` hold), ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_until: Option<u64>,
}

/// The queue (`GET /v1/mod/queue`): open cases, most urgent first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CaseQueue {
    /// The cases, by priority then age.
    pub cases: Vec<CaseSummary>,
    /// Open cases in all.
    pub open: u64,
}

/// An evidence file kept with a case: an attachment of a reported message, fetched by the
/// server, checked against the hashes the franked content commits to, and decrypted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EvidenceFile {
    /// Id within the case (`GET …/files/{file}`).
    pub file_id: String,
    /// The file name the sender gave.
    pub name: String,
    /// Plaintext size.
    pub size: u64,
    /// SHA-256 of the plaintext, hex.
    pub sha256: String,
    /// MD5 of the plaintext, hex (the clearing house's hash lists use it).
    pub md5: String,
    /// PDQ hash (64 hex digits), for images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pdq: Option<String>,
    /// PDQ quality (0–100), for images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pdq_quality: Option<u8>,
}

/// The state of an attachment named by a reported message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum AttachmentEvidence {
    /// Fetched, both hashes checked, decrypted and kept.
    Kept(EvidenceFile),
    /// The blob is gone from the server (expired); the message itself is still verified.
    Unavailable {
        /// The file name the sender gave.
        name: String,
    },
}

/// One verified message of a case.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EvidenceMessage {
    /// 0 for the reported message, then context oldest first.
    pub seq: u32,
    /// `reported` or `context`.
    pub role: String,
    /// Both MACs checked and the reporter was a member then. Only verified messages are kept.
    pub verified: bool,
    /// The sender.
    pub sender: Sender,
    /// Server receive time, ms (bound by the server's tag).
    pub received_at: u64,
    /// The sender's clock, ms (not trusted).
    pub sent_at: u64,
    /// The sender's message id.
    pub message_id: String,
    /// Text, for text messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// For attachments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<AttachmentEvidence>,
    /// For control messages (a group rename, say): what it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<String>,
}

/// What a moderator does to a case.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ModAction {
    /// No violation; the case closes.
    Dismiss,
    /// A notice to the user.
    Warn,
    /// For `days`: cannot start conversations, add members or send contact requests.
    Restrict,
    /// Sessions revoked; cannot log in or send (for `days`, or until lifted).
    Suspend,
    /// Permanently suspended.
    Ban,
    /// Evidence and the account's records held for 365 days, exempt from every purge.
    Preserve,
    /// Reported to the clearing house (see [`EscalateRequest`]).
    Escalate,
}

impl ModAction {
    /// Every action.
    pub const ALL: [ModAction; 7] = [
        ModAction::Dismiss,
        ModAction::Warn,
        ModAction::Restrict,
        ModAction::Suspend,
        ModAction::Ban,
        ModAction::Preserve,
        ModAction::Escalate,
    ];
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            ModAction::Dismiss => "dismiss",
            ModAction::Warn => "warn",
            ModAction::Restrict => "restrict",
            ModAction::Suspend => "suspend",
            ModAction::Ban => "ban",
            ModAction::Preserve => "preserve",
            ModAction::Escalate => "escalate",
        }
    }
    /// Parses the stable name.
    pub fn parse(s: &str) -> Option<Self> {
        ModAction::ALL.into_iter().find(|a| a.as_str() == s)
    }
    /// Whether the affected user may appeal it (an action against the account).
    pub fn appealable(self) -> bool {
        matches!(
            self,
            ModAction::Warn | ModAction::Restrict | ModAction::Suspend | ModAction::Ban
        )
    }
}

/// Take an action on a case.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    /// The action (`escalate` goes through [`EscalateRequest`]).
    pub action: ModAction,
    /// The statement of reasons sent to the affected user (1 to [`MAX_NOTE`] bytes).
    pub reason: String,
    /// For `restrict` (required) and `suspend` (optional; absent = until lifted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<u32>,
}

/// How an appeal was decided.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AppealOutcome {
    /// The action stands.
    Upheld,
    /// The action is lifted.
    Reversed,
}

/// An appeal of an action.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AppealRecord {
    /// The user's words.
    pub text: String,
    /// When filed, ms.
    pub filed_at: u64,
    /// The moderator who decided it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<UserName>,
    /// The decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<AppealOutcome>,
    /// The decision's statement of reasons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_reason: Option<String>,
    /// When decided, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<u64>,
}

/// An action taken.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ActionRecord {
    /// The action's id.
    pub id: String,
    /// Its case.
    pub case: String,
    /// The affected account.
    pub user: UserName,
    /// What.
    pub action: ModAction,
    /// The statement of reasons.
    pub reason: String,
    /// Who.
    pub moderator: UserName,
    /// When, ms.
    pub created_at: u64,
    /// Until when (restrict, suspend, preserve), ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<u64>,
    /// Its appeal, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appeal: Option<AppealRecord>,
}

/// A device of the reported account, as a moderator sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceMeta {
    /// The device id.
    pub device_id: String,
    /// Its name.
    pub name: String,
    /// When registered, ms.
    pub created_at: u64,
    /// When removed, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<u64>,
}

/// An account's enforcement status.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccountStatus {
    /// Suspended until (ms; `u64::MAX` for a ban).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended_until: Option<u64>,
    /// Restricted until, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restricted_until: Option<u64>,
    /// Banned.
    #[serde(default)]
    pub banned: bool,
}

/// The reported account's metadata: never content that nobody reported.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccountMeta {
    /// The account.
    pub user: UserName,
    /// When it registered, ms.
    pub created_at: u64,
    /// Its devices, removed ones included.
    pub devices: Vec<DeviceMeta>,
    /// Enforcement now.
    pub status: AccountStatus,
    /// Other cases about it, newest first.
    pub cases: Vec<CaseSummary>,
    /// Actions against it, newest first.
    pub actions: Vec<ActionRecord>,
}

/// A case opened (`GET /v1/mod/cases/{case}`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CaseDetail {
    /// The summary.
    pub summary: CaseSummary,
    /// The reporter's note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The conversation of the reported message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<GroupId>,
    /// The verified messages: the reported one (seq 0) then the context.
    pub evidence: Vec<EvidenceMessage>,
    /// Whether the evidence was deleted (dismissed and past retention).
    pub evidence_purged: bool,
    /// The reported account.
    pub account: AccountMeta,
    /// Actions on this case.
    pub actions: Vec<ActionRecord>,
}

/// Escalate a case to the clearing house, after a human review.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalateRequest {
    /// The CyberTipline incident type (its documented string, or a short name such as
    /// `child-pornography`); derived from the case's reason if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_type: Option<String>,
    /// The moderator's statement (goes into `additionalInfo`).
    pub reason: String,
}

/// One evidence file's CyberTipline file details.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EscalationFile {
    /// The evidence file (`GET …/files/{file}` has its bytes).
    pub file_id: String,
    /// The file name to upload it as.
    pub file_name: String,
    /// The file-details XML document.
    pub details_xml: String,
}

/// A case escalated: the report as the CyberTipline Reporting API expects it. Nothing is sent
/// anywhere; submission is a separate, explicit step.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Escalation {
    /// The case.
    pub case: String,
    /// The `report.xml` document.
    pub report_xml: String,
    /// One per evidence file.
    pub files: Vec<EscalationFile>,
}

/// The moderators' list of open appeals.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AppealQueue {
    /// Actions with an undecided appeal, oldest appeal first.
    pub appeals: Vec<ActionRecord>,
}

/// Appeal an action (`haven appeal CASE TEXT`): the caller's latest appealable action on that
/// case. An account that is suspended has no session, so it signs instead: `device_id` and a
/// [`crate::api::DeviceProof`] for [`PROOF_APPEAL`] with the case id as subject.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppealRequest {
    /// The case.
    pub case: String,
    /// The user's words (1 to [`MAX_NOTE`] bytes).
    pub text: String,
    /// Without a session: the appealing device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<crate::ids::DeviceId>,
    /// Without a session: its proof.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<crate::api::DeviceProof>,
}

/// Purpose of a [`crate::api::DeviceProof`] for an appeal without a session.
pub const PROOF_APPEAL: &str = "appeal";

/// Decide an appeal.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppealDecision {
    /// Uphold or reverse.
    pub outcome: AppealOutcome,
    /// The statement of reasons.
    pub reason: String,
}

/// What a notice is about.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// A moderator took an action against this account.
    Action,
    /// A report this account filed was decided.
    ReportOutcome,
    /// An appeal this account filed was decided.
    AppealDecision,
    /// A safety notice to a minor about another account (`about`): a request from an account
    /// outside their contacts, or an account with unusual contact patterns writing to them. The
    /// client offers block, restrict and report.
    Safety,
}

/// A notice from the operator, queued to every device of the account (payload of an
/// [`crate::api::EntryKind::Notice`] entry).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Notice {
    /// What it is about.
    pub kind: NoticeKind,
    /// The case.
    pub case: String,
    /// For `action`: the action; for `appeal_decision`: the action appealed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<ModAction>,
    /// For `action`: the action's id (to appeal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_id: Option<String>,
    /// The statement of reasons (never shown to a reporter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Until when the action lasts, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<u64>,
    /// For `report_outcome`: `action_taken` or `no_violation`; for `appeal_decision`:
    /// `upheld` or `reversed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// For `safety`: the account the notice is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub about: Option<crate::UserName>,
    /// For `safety`: the text to show.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// When, ms.
    pub at: u64,
}

/// One line of the audit log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuditEntry {
    /// Position (increasing, never reused).
    pub seq: i64,
    /// When, ms.
    pub at: u64,
    /// Who (a moderator, an admin, a user, or `admin-cli` for the operator's command line).
    pub actor: String,
    /// What (`case.view`, `case.action`, `role.grant`, …).
    pub action: String,
    /// Which case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case: Option<String>,
    /// Details (never content).
    pub detail: String,
    /// SHA-256 chain value, hex: `H(previous ‖ this entry)` (see the server's moderation docs).
    pub hash: String,
}

/// A page of the audit log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuditLog {
    /// Entries in order.
    pub entries: Vec<AuditEntry>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for r in ReportReason::ALL {
            assert_eq!(ReportReason::parse(r.as_str()), Some(r));
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
        }
        for a in ModAction::ALL {
            assert_eq!(ModAction::parse(a.as_str()), Some(a));
            assert_eq!(
                serde_json::to_string(&a).unwrap(),
                format!("\"{}\"", a.as_str())
            );
        }
        assert_eq!(ReportReason::parse("csam"), None);
        assert!(ReportReason::Grooming.is_child_safety());
        assert!(!ReportReason::Spam.is_child_safety());
    }
}
