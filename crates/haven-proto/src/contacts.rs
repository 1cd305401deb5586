//! Safety by design for minors (DESIGN.md capability 4): age bands, connections, message
//! requests, blocks, restricts, message settings and the moderator's view of an account's
//! metadata risk signals. The rules themselves live in `haven-safety`; these are the wire types.
//!
//! Endpoints (all authenticated as a device of the caller):
//! - `POST /v1/contacts/requests` [`ContactRequestBody`] — ask USER to connect;
//! - `POST /v1/contacts/{user}/accept`, `POST /v1/contacts/{user}/decline` — answer a request;
//! - `DELETE /v1/contacts/{user}` — remove a connection or withdraw an outgoing request;
//! - `GET /v1/contacts` → [`ContactList`];
//! - `PUT|DELETE /v1/blocks/{user}`, `PUT|DELETE /v1/restricts/{user}`;
//! - `GET /v1/requests` → [`MessageRequests`]; `POST /v1/requests/{user}/accept|decline`;
//! - `PUT /v1/settings/messages` [`MessageSettingBody`]; `GET /v1/me` → [`Me`];
//! - moderators: `GET /v1/mod/signals/{user}` → [`RiskReport`]; everyone:
//!   `GET /v1/policy` → [`PolicyView`].

use serde::{Deserialize, Serialize};

use crate::{GroupId, UserName};

/// An account's age band. The server keeps the band and the date it next changes, never the
/// date of birth.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AgeBand {
    /// Younger than 13.
    #[serde(rename = "under-13")]
    Under13,
    /// 13, 14 or 15.
    #[serde(rename = "13-15")]
    Teen13To15,
    /// 16 or 17.
    #[serde(rename = "16-17")]
    Teen16To17,
    /// 18 or older.
    #[serde(rename = "adult")]
    Adult,
}

impl AgeBand {
    /// Every band, youngest first.
    pub const ALL: [AgeBand; 4] = [
        AgeBand::Under13,
        AgeBand::Teen13To15,
        AgeBand::Teen16To17,
        AgeBand::Adult,
    ];
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            AgeBand::Under13 => "under-13",
            AgeBand::Teen13To15 => "13-15",
            AgeBand::Teen16To17 => "16-17",
            AgeBand::Adult => "adult",
        }
    }
    /// Parses the stable name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.as_str() == s)
    }
    /// Whether the band is a minor's.
    pub fn is_minor(self) -> bool {
        self != AgeBand::Adult
    }
}

/// How an account's age was established.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum AgeSource {
    /// The user declared a date of birth at registration.
    SelfDeclared,
    /// The operator confirmed the band.
    Verified,
}

impl AgeSource {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            AgeSource::SelfDeclared => "self-declared",
            AgeSource::Verified => "verified",
        }
    }
    /// Parses the stable name.
    pub fn parse(s: &str) -> Option<Self> {
        [AgeSource::SelfDeclared, AgeSource::Verified]
            .into_iter()
            .find(|b| b.as_str() == s)
    }
}

/// Who may start a conversation with an adult who is not their connection.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum MessageSetting {
    /// Only connections.
    ContactsOnly,
    /// Others arrive as message requests (the default; minors always have this).
    #[default]
    Requests,
    /// Anyone (still subject to blocks and rate limits).
    Everyone,
}

impl MessageSetting {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageSetting::ContactsOnly => "contacts-only",
            MessageSetting::Requests => "requests",
            MessageSetting::Everyone => "everyone",
        }
    }
    /// Parses the stable name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            MessageSetting::ContactsOnly,
            MessageSetting::Requests,
            MessageSetting::Everyone,
        ]
        .into_iter()
        .find(|b| b.as_str() == s)
    }
}

/// Ask a user to connect.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactRequestBody {
    /// Whom.
    pub user: UserName,
}

/// A pending contact request, from the side that lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PendingContact {
    /// The other account.
    pub user: UserName,
    /// When it was sent, ms.
    pub at: u64,
}

/// The caller's connections, pending requests, blocks and restricts.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ContactList {
    /// Connected accounts, by name.
    pub contacts: Vec<UserName>,
    /// Requests others sent the caller.
    pub incoming: Vec<PendingContact>,
    /// Requests the caller sent.
    pub outgoing: Vec<PendingContact>,
    /// Accounts the caller blocked.
    pub blocked: Vec<UserName>,
    /// Accounts the caller restricted.
    pub restricted: Vec<UserName>,
}

/// What a message request is for.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// A 1:1 conversation a non-connection started.
    Direct,
    /// A group the caller was added to (by a non-connection, or any group for a minor, whose
    /// client shows the members before the minor accepts).
    Group,
}

impl RequestKind {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Direct => "direct",
            RequestKind::Group => "group",
        }
    }
    /// Parses the stable name.
    pub fn parse(s: &str) -> Option<Self> {
        [RequestKind::Direct, RequestKind::Group]
            .into_iter()
            .find(|b| b.as_str() == s)
    }
}

/// A pending message request to the caller.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MessageRequest {
    /// Who started the conversation or added the caller.
    pub from: UserName,
    /// The conversation.
    pub group_id: GroupId,
    /// Direct or group.
    pub kind: RequestKind,
    /// When, ms.
    pub created_at: u64,
    /// The group's other members' accounts as the server routes to them (for a group, shown
    /// before the caller accepts).
    pub members: Vec<UserName>,
}

/// The caller's pending message requests.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct MessageRequests {
    /// Oldest first.
    pub requests: Vec<MessageRequest>,
}

/// Set who may start conversations with the caller.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageSettingBody {
    /// The setting.
    pub messages: MessageSetting,
}

/// The caller's own account, as the server applies the rules to it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Me {
    /// The account.
    pub user: UserName,
    /// Its age band today.
    pub age_band: AgeBand,
    /// How the age was established.
    pub age_source: AgeSource,
    /// The message setting in force (minors: always `requests`).
    pub messages: MessageSetting,
}

/// One signal's part in a risk score.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SignalContribution {
    /// The signal's stable name (`minor_contacts_1h`, …).
    pub signal: String,
    /// What it measures, for people.
    pub description: String,
    /// Its value.
    pub value: f64,
    /// The points it adds to the score.
    pub points: f64,
}

/// One contact event on an account's time line (metadata only).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ContactEventView {
    /// When, ms.
    pub at: u64,
    /// `contact_request`, `first_message`, `group_add`.
    pub kind: String,
    /// The account contacted.
    pub target: UserName,
    /// Its band.
    pub target_band: AgeBand,
    /// `allowed`, `request` or `refused:<rule>`.
    pub decision: String,
    /// `pending`, `accepted`, `declined`, `blocked`, `reported`.
    pub outcome: String,
}

/// An account's metadata risk signals, for a moderator.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RiskReport {
    /// The account.
    pub user: UserName,
    /// Its band and how it was established.
    pub age_band: AgeBand,
    /// How it was established.
    pub age_source: AgeSource,
    /// The score now.
    pub score: f64,
    /// `normal`, `elevated` (friction) or `case` (a case is open and contact with new minors
    /// is paused).
    pub level: String,
    /// The thresholds in force.
    pub friction_threshold: f64,
    /// The case threshold.
    pub case_threshold: f64,
    /// Each signal's part, largest first.
    pub contributions: Vec<SignalContribution>,
    /// Contact events of the last seven days, oldest first.
    pub timeline: Vec<ContactEventView>,
}

/// One rule of the contact policy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RuleView {
    /// Stable id (`minor-contact-connections-only`, …).
    pub id: String,
    /// What it says.
    pub text: String,
}

/// The contact policy in force: its rules, rate limits and risk configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PolicyView {
    /// The policy's version.
    pub version: u32,
    /// The rules.
    pub rules: Vec<RuleView>,
    /// Rate limits, weights and thresholds as JSON (the server's `SafetyConfig`).
    pub config: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for b in AgeBand::ALL {
            assert_eq!(AgeBand::parse(b.as_str()), Some(b));
            assert_eq!(
                serde_json::to_string(&b).unwrap(),
                format!("\"{}\"", b.as_str())
            );
        }
        for s in [AgeSource::SelfDeclared, AgeSource::Verified] {
            assert_eq!(AgeSource::parse(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        for m in [
            MessageSetting::ContactsOnly,
            MessageSetting::Requests,
            MessageSetting::Everyone,
        ] {
            assert_eq!(MessageSetting::parse(m.as_str()), Some(m));
            assert_eq!(
                serde_json::to_string(&m).unwrap(),
                format!("\"{}\"", m.as_str())
            );
        }
        for k in [RequestKind::Direct, RequestKind::Group] {
            assert_eq!(RequestKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(AgeBand::parse("child"), None);
        assert!(AgeBand::Teen16To17.is_minor() && !AgeBand::Adult.is_minor());
    }

    #[test]
    fn bodies_refuse_unknown_fields() {
        assert!(serde_json::from_str::<MessageSettingBody>(r#"{"messages":"everyone"}"#).is_ok());
        assert!(serde_json::from_str::<MessageSettingBody>(r#"{"messages":"all"}"#).is_err());
        assert!(serde_json::from_str::<ContactRequestBody>(r#"{"user":"bob","x":1}"#).is_err());
    }
}
