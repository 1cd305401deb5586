//! The contact rules, as data, and the one function that applies them.
//!
//! [`RULES`] lists every rule with a stable id; refusals name the rule that refused. The server
//! calls [`decide`] for each contact request, first message to a non-connection and group add,
//! and [`notice_on_write`] for messages between connections.
//!
//! [`decide`] applies, in order (the first row that matches answers):
//!
//! | # | when | answer | rule |
//! |---|------|--------|------|
//! | 1 | the target blocked the actor | refuse, "only accepts messages from their contacts" | `block` |
//! | 1 | the actor blocked the target | refuse, "you blocked …" | `block` |
//! | 2 | connected, group add of a minor | request, no notice (members shown first) | `minor-group-add` |
//! | 2 | connected, target restricted the actor, first message or group add | request, no notice (silent) | `restrict` |
//! | 2 | connected, otherwise | allow | — |
//! | 3 | not connected, minor target, actor's level is `case` | refuse (not accepting) | `risk-case-pause` |
//! | 3 | not connected, adult actor, minor target | refuse (not accepting) | `minor-contact-connections-only` |
//! | 3 | not connected, minor target, group add | refuse (not accepting) | `minor-group-add` |
//! | 3 | not connected, adult target with `contacts-only`, not a contact request | refuse (not accepting) | `adult-message-setting` |
//! | 4 | the actor's new contacts in the last 24 h reach a limit | refuse, rate limited until a slot frees | `new-contact-rate` |
//! | 5 | contact request | request; notice to a minor target from an older band or an elevated actor | `minor-first-message-request`, `safety-notice` |
//! | 5 | first message to a minor | request, notice as above | `minor-first-message-request` |
//! | 5 | first message or group add, target restricted the actor | request, no notice | `restrict` |
//! | 5 | first message or group add to an adult with `requests` | request, no notice | `adult-message-setting` |
//! | 5 | first message or group add to an adult with `everyone` | allow | `adult-message-setting` |
//!
//! Every "not accepting" refusal has the same text, so a refusal never tells the actor that the
//! target is a minor, has blocked them, or that their own account is paused.

use serde::{Deserialize, Serialize};

use crate::age::{format_date, utc_day, AgeError, AgeRecord};
use crate::risk::{RiskConfig, RiskLevel};
use crate::{AgeBand, MessageSetting};

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 24 * 60 * MINUTE_MS;

/// The version of the rule set; it changes whenever a rule's meaning does.
pub const POLICY_VERSION: u32 = 1;

/// One contact rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Stable id, named by refusals and in the published policy.
    pub id: &'static str,
    /// What the rule says, for people.
    pub text: &'static str,
}

/// The rule ids, as constants for matching on [`Refusal::rule`].
pub mod rule_id {
    /// Registration under 13 is refused by default.
    pub const MIN_AGE: &str = "min-age";
    /// A minor's connection to an adult exists only if the minor sent or accepted it.
    pub const MINOR_CONNECTIONS: &str = "minor-connections";
    /// Adults reach minors only through a connection.
    pub const MINOR_CONTACT_CONNECTIONS_ONLY: &str = "minor-contact-connections-only";
    /// A minor's first message from a non-connection is a message request.
    pub const MINOR_FIRST_MESSAGE_REQUEST: &str = "minor-first-message-request";
    /// An adult's message setting.
    pub const ADULT_MESSAGE_SETTING: &str = "adult-message-setting";
    /// Minors are added to groups only by connections.
    pub const MINOR_GROUP_ADD: &str = "minor-group-add";
    /// Blocks.
    pub const BLOCK: &str = "block";
    /// Restricts.
    pub const RESTRICT: &str = "restrict";
    /// Daily limits on new contacts.
    pub const NEW_CONTACT_RATE: &str = "new-contact-rate";
    /// Safety notices to minors.
    pub const SAFETY_NOTICE: &str = "safety-notice";
    /// Friction at the elevated risk level.
    pub const RISK_FRICTION: &str = "risk-friction";
    /// A case, and contact with new minors paused, at the case risk level.
    pub const RISK_CASE_PAUSE: &str = "risk-case-pause";
}

/// Every contact rule, in one place.
pub const RULES: &[Rule] = &[
    Rule {
        id: rule_id::MIN_AGE,
        text: "Registration is refused to people under 13 unless the operator allows it. The server keeps an age band, the day it next changes and how it was established, never the date of birth.",
    },
    Rule {
        id: rule_id::MINOR_CONNECTIONS,
        text: "A minor's connection to an adult exists only if the minor sent the contact request or accepted it.",
    },
    Rule {
        id: rule_id::MINOR_CONTACT_CONNECTIONS_ONLY,
        text: "An adult cannot start a one-to-one conversation with, send a contact request to, or add to a group a minor who is not their connection.",
    },
    Rule {
        id: rule_id::MINOR_FIRST_MESSAGE_REQUEST,
        text: "For minors, a first message from someone who is not a connection arrives as a message request: one message, text only, and the sender is not told whether it was read.",
    },
    Rule {
        id: rule_id::ADULT_MESSAGE_SETTING,
        text: "Adults choose who may start a conversation with them: contacts only, message requests from others (the default), or everyone. Contact requests are always possible.",
    },
    Rule {
        id: rule_id::MINOR_GROUP_ADD,
        text: "A minor can be added to a group only by a connection, and sees the group's members before accepting.",
    },
    Rule {
        id: rule_id::BLOCK,
        text: "Someone you blocked cannot contact you, send you requests or add you to groups, and is not told that you blocked them.",
    },
    Rule {
        id: rule_id::RESTRICT,
        text: "Messages and group adds from someone you restricted arrive silently as requests.",
    },
    Rule {
        id: rule_id::NEW_CONTACT_RATE,
        text: "Each account may approach a limited number of new contacts per 24 hours, and fewer minors; new accounts get a smaller share of each limit.",
    },
    Rule {
        id: rule_id::SAFETY_NOTICE,
        text: "A minor approached by someone from an older age band, or written to by an account with elevated risk signals, is shown a safety notice with ways to block and report.",
    },
    Rule {
        id: rule_id::RISK_FRICTION,
        text: "Metadata risk signals (never message content) add up to an explainable score; above a first threshold, limits toward minors tighten and minors see safety notices.",
    },
    Rule {
        id: rule_id::RISK_CASE_PAUSE,
        text: "Above a second threshold a moderator reviews the account and contact with new minors is paused until they decide. Signals never ban an account by themselves.",
    },
];

/// The published rules as JSON, `[{"id": …, "text": …}, …]` (for `haven admin policy --json`).
pub fn rules_json() -> serde_json::Value {
    serde_json::Value::Array(
        RULES
            .iter()
            .map(|r| serde_json::json!({ "id": r.id, "text": r.text }))
            .collect(),
    )
}

/// A kind of contact attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Approach {
    /// A request to connect.
    ContactRequest,
    /// The first message of a one-to-one conversation.
    FirstMessage,
    /// Adding someone to a group.
    GroupAdd,
}

impl Approach {
    /// Every approach.
    pub const ALL: [Approach; 3] = [
        Approach::ContactRequest,
        Approach::FirstMessage,
        Approach::GroupAdd,
    ];
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Approach::ContactRequest => "contact_request",
            Approach::FirstMessage => "first_message",
            Approach::GroupAdd => "group_add",
        }
    }
    /// Parses the stable name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// One side of a contact attempt.
#[derive(Debug, Clone, Copy)]
pub struct Party {
    /// The band, as of today ([`AgeRecord::at`]).
    pub band: AgeBand,
    /// The message setting; a minor's is ignored (treated as `requests`).
    pub setting: MessageSetting,
}

/// How the actor and the target stand to each other.
#[derive(Debug, Clone, Copy, Default)]
pub struct Relation {
    /// They are connections.
    pub connected: bool,
    /// The target blocked the actor.
    pub target_blocked_actor: bool,
    /// The actor blocked the target.
    pub actor_blocked_target: bool,
    /// The target restricted the actor.
    pub target_restricted_actor: bool,
}

/// One earlier new contact by the actor (an allowed or requested approach to a non-connection).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecentContact {
    /// When (Unix ms).
    pub at: i64,
    /// Whether the target was a minor.
    pub to_minor: bool,
}

/// The actor's standing: what the rate limits and the risk rows depend on.
#[derive(Debug, Clone)]
pub struct Standing {
    /// When the actor's account was created (Unix ms).
    pub account_created_at: i64,
    /// The actor's current risk level.
    pub level: RiskLevel,
    /// The actor's new contacts; [`decide`] itself keeps only those in the 24 h up to `now`.
    pub recent: Vec<RecentContact>,
}

/// Daily limits on new contacts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContactLimits {
    /// New contacts per 24 h (default 50).
    pub per_day: u32,
    /// New contacts with minors per 24 h (default 20).
    pub per_day_to_minors: u32,
    /// An account is new for this many days after creation (default 7).
    pub new_account_days: u32,
    /// New accounts get this percentage of each limit, rounded down, at least 1 (default 50).
    pub new_account_percent: u32,
    /// The limit toward minors at the elevated and case levels (default 3).
    pub elevated_per_day_to_minors: u32,
}

impl Default for ContactLimits {
    fn default() -> Self {
        ContactLimits {
            per_day: 50,
            per_day_to_minors: 20,
            new_account_days: 7,
            new_account_percent: 50,
            elevated_per_day_to_minors: 3,
        }
    }
}

/// The limits in force for one actor at one time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailyLimits {
    /// New contacts per 24 h.
    pub total: u32,
    /// New contacts with minors per 24 h.
    pub to_minors: u32,
}

impl ContactLimits {
    /// The limits for `standing` at `now`: new accounts get [`Self::new_account_percent`] of
    /// each (at least 1, never more than the base), elevated and case levels at most
    /// [`Self::elevated_per_day_to_minors`] toward minors.
    pub fn for_standing(&self, standing: &Standing, now: i64) -> DailyLimits {
        let new_for = i64::from(self.new_account_days).saturating_mul(DAY_MS);
        let is_new = now.saturating_sub(standing.account_created_at) < new_for;
        let scale = |limit: u32| -> u32 {
            if !is_new {
                return limit;
            }
            let scaled = u64::from(limit) * u64::from(self.new_account_percent) / 100;
            u32::try_from(scaled)
                .unwrap_or(u32::MAX)
                .clamp(1, limit.max(1))
        };
        let mut to_minors = scale(self.per_day_to_minors);
        if standing.level >= RiskLevel::Elevated {
            to_minors = to_minors.min(self.elevated_per_day_to_minors);
        }
        DailyLimits {
            total: scale(self.per_day),
            to_minors,
        }
    }
}

/// The operator's policy configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Whether people under 13 may register (default false).
    pub allow_under_13: bool,
    /// Daily limits on new contacts.
    pub limits: ContactLimits,
    /// The risk score's thresholds and weights.
    pub risk: RiskConfig,
}

impl PolicyConfig {
    /// Parses and validates an operator's configuration; missing fields take their defaults,
    /// unknown fields are refused.
    pub fn from_json(s: &str) -> Result<PolicyConfig, String> {
        let cfg: PolicyConfig = serde_json::from_str(s).map_err(|e| e.to_string())?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the configuration: [`RiskConfig::validate`], every limit at least 1 (a limit of 0
    /// would promise a retry time that never comes), the new-account percentage 1 to 100.
    pub fn validate(&self) -> Result<(), String> {
        self.risk.validate()?;
        let l = &self.limits;
        for (name, v) in [
            ("per_day", l.per_day),
            ("per_day_to_minors", l.per_day_to_minors),
            ("elevated_per_day_to_minors", l.elevated_per_day_to_minors),
        ] {
            if v == 0 {
                return Err(format!("limits.{name} must be at least 1"));
            }
        }
        if !(1..=100).contains(&l.new_account_percent) {
            return Err("limits.new_account_percent must be between 1 and 100".into());
        }
        Ok(())
    }
}

/// Refuses registration under 13 unless the operator allows it (rule `min-age`).
pub fn check_registration(record: &AgeRecord, cfg: &PolicyConfig) -> Result<(), AgeError> {
    if record.band == AgeBand::Under13 && !cfg.allow_under_13 {
        return Err(AgeError::TooYoung { min_years: 13 });
    }
    Ok(())
}

/// Why an approach was refused, as the actor may learn it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// The target does not accept this approach (whatever the reason).
    NotAccepting,
    /// The actor blocked the target.
    YouBlocked,
    /// A daily limit was reached; one more fits at `retry_at` (Unix ms).
    RateLimited {
        /// When one more new contact fits.
        retry_at: i64,
    },
}

/// A refusal: the rule that refused (for the server's records) and what the actor is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The refusing rule's id ([`RULES`]). Not for the actor's eyes: it can reveal age.
    pub rule: &'static str,
    /// What the actor may learn.
    pub kind: RefusalKind,
}

impl Refusal {
    /// The text for the actor. Every [`RefusalKind::NotAccepting`] reads the same, whatever the
    /// rule, and every rate limit reads the same whichever limit was reached, so the text never
    /// reveals the target's age or a block.
    pub fn message(&self, target: &str, now: i64) -> String {
        match self.kind {
            RefusalKind::NotAccepting => {
                format!("{target} only accepts messages from their contacts")
            }
            RefusalKind::YouBlocked => format!("you blocked {target}; unblock them first"),
            RefusalKind::RateLimited { retry_at } => {
                // Rounded up to the minute, so "after" holds.
                let at = ceil_minute(retry_at);
                let minutes = ceil_div(retry_at.saturating_sub(now).max(0), MINUTE_MS);
                let of_day = at.rem_euclid(DAY_MS);
                format!(
                    "you have reached today's limit of new contacts; try again after {} {:02}:{:02} UTC (in {minutes} min)",
                    format_date(utc_day(at)),
                    of_day / (60 * MINUTE_MS),
                    of_day % (60 * MINUTE_MS) / MINUTE_MS,
                )
            }
        }
    }
}

fn ceil_div(a: i64, b: i64) -> i64 {
    let q = a.div_euclid(b);
    if a.rem_euclid(b) == 0 {
        q
    } else {
        q.saturating_add(1)
    }
}

fn ceil_minute(ms: i64) -> i64 {
    ceil_div(ms, MINUTE_MS).saturating_mul(MINUTE_MS)
}

/// What happens to an approach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// It goes through.
    Allow,
    /// It arrives as a request the target accepts or declines; `notice`: the target, a minor,
    /// is shown a safety notice with it.
    Request {
        /// Show the minor a safety notice.
        notice: bool,
    },
    /// It is refused.
    Refuse(Refusal),
}

impl Decision {
    /// Whether this approach counts as a new contact toward the rate limits: it reached a
    /// non-connection (allowed or as a request).
    pub fn is_new_contact(&self, rel: &Relation) -> bool {
        !rel.connected && !matches!(self, Decision::Refuse(_))
    }
}

fn refuse(rule: &'static str, kind: RefusalKind) -> Decision {
    Decision::Refuse(Refusal { rule, kind })
}

/// Applies the rule table (see the module docs) to one approach at `now`.
pub fn decide(
    approach: Approach,
    actor: &Party,
    target: &Party,
    rel: &Relation,
    standing: &Standing,
    cfg: &PolicyConfig,
    now: i64,
) -> Decision {
    use rule_id::*;
    use RefusalKind::NotAccepting;

    // 1. Blocks.
    if rel.target_blocked_actor {
        return refuse(BLOCK, NotAccepting);
    }
    if rel.actor_blocked_target {
        return refuse(BLOCK, RefusalKind::YouBlocked);
    }
    let minor = target.band.is_minor();

    // 2. Connections.
    if rel.connected {
        if approach == Approach::GroupAdd && minor {
            return Decision::Request { notice: false };
        }
        if rel.target_restricted_actor && approach != Approach::ContactRequest {
            return Decision::Request { notice: false };
        }
        return Decision::Allow;
    }

    // 3. Non-connections.
    if minor && standing.level == RiskLevel::Case {
        return refuse(RISK_CASE_PAUSE, NotAccepting);
    }
    if !actor.band.is_minor() && minor {
        return refuse(MINOR_CONTACT_CONNECTIONS_ONLY, NotAccepting);
    }
    if minor && approach == Approach::GroupAdd {
        return refuse(MINOR_GROUP_ADD, NotAccepting);
    }
    let setting = if minor {
        MessageSetting::Requests
    } else {
        target.setting
    };
    if setting == MessageSetting::ContactsOnly && approach != Approach::ContactRequest {
        return refuse(ADULT_MESSAGE_SETTING, NotAccepting);
    }

    // 4. Rate limits.
    if let Some(retry_at) = rate_limited(minor, standing, &cfg.limits, now) {
        return refuse(NEW_CONTACT_RATE, RefusalKind::RateLimited { retry_at });
    }

    // 5. What gets through, and how.
    let notice = minor && (actor.band > target.band || standing.level >= RiskLevel::Elevated);
    match approach {
        Approach::ContactRequest => Decision::Request { notice },
        Approach::FirstMessage if minor => Decision::Request { notice },
        _ if rel.target_restricted_actor => Decision::Request { notice: false },
        _ if setting == MessageSetting::Everyone => Decision::Allow,
        _ => Decision::Request { notice: false },
    }
}

/// When one more new contact fits, if a limit binds now.
fn rate_limited(
    target_minor: bool,
    standing: &Standing,
    limits: &ContactLimits,
    now: i64,
) -> Option<i64> {
    let start = now.saturating_sub(DAY_MS);
    let mut all: Vec<RecentContact> = standing
        .recent
        .iter()
        .copied()
        .filter(|c| c.at > start && c.at <= now)
        .collect();
    all.sort_by_key(|c| c.at);
    let minors: Vec<i64> = all.iter().filter(|c| c.to_minor).map(|c| c.at).collect();
    let all: Vec<i64> = all.iter().map(|c| c.at).collect();
    let lim = limits.for_standing(standing, now);
    // With `count` contacts in the window and a limit of `limit`, one more fits once
    // `count - limit + 1` have left it: when the (count - limit)-th oldest (0-based) turns 24 h.
    let retry = |sorted: &[i64], limit: u32| -> Option<i64> {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        (sorted.len() >= limit).then(|| {
            sorted
                .get(sorted.len() - limit)
                // Only a limit of 0 (refused by validation) has no such contact.
                .map_or(now, |at| *at)
                .saturating_add(DAY_MS)
        })
    };
    let total = retry(&all, lim.total);
    let to_minors = if target_minor {
        retry(&minors, lim.to_minors)
    } else {
        None
    };
    total.max(to_minors)
}

/// Whether a message from an actor to a target (connected or not) comes with a safety notice
/// to the target: an account at the elevated level or above writing to a minor (rule
/// `safety-notice`). The actor's band does not change the answer today — a flagged account's
/// messages to a minor get the notice whatever its band — and is part of the signature so the
/// rule can tighten without changing callers.
pub fn notice_on_write(actor_band: AgeBand, actor_level: RiskLevel, target_band: AgeBand) -> bool {
    let _ = actor_band;
    target_band.is_minor() && actor_level >= RiskLevel::Elevated
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: i64 = 1_750_000_000_000;
    const ADULT: Party = Party {
        band: AgeBand::Adult,
        setting: MessageSetting::Requests,
    };
    const TEEN: Party = Party {
        band: AgeBand::Teen13To15,
        setting: MessageSetting::Requests,
    };
    const OLDER_TEEN: Party = Party {
        band: AgeBand::Teen16To17,
        setting: MessageSetting::Requests,
    };

    fn adult(setting: MessageSetting) -> Party {
        Party {
            band: AgeBand::Adult,
            setting,
        }
    }

    fn standing() -> Standing {
        Standing {
            account_created_at: NOW - 365 * DAY_MS,
            level: RiskLevel::Normal,
            recent: vec![],
        }
    }

    fn connected() -> Relation {
        Relation {
            connected: true,
            ..Relation::default()
        }
    }

    fn d(
        approach: Approach,
        actor: Party,
        target: Party,
        rel: Relation,
        st: &Standing,
    ) -> Decision {
        decide(
            approach,
            &actor,
            &target,
            &rel,
            st,
            &PolicyConfig::default(),
            NOW,
        )
    }

    fn rule_of(dec: Decision) -> Option<&'static str> {
        match dec {
            Decision::Refuse(r) => Some(r.rule),
            _ => None,
        }
    }

    #[test]
    fn rules_have_the_required_unique_ids() {
        for id in [
            "min-age",
            "minor-connections",
            "minor-contact-connections-only",
            "minor-first-message-request",
            "adult-message-setting",
            "minor-group-add",
            "block",
            "restrict",
            "new-contact-rate",
            "safety-notice",
            "risk-friction",
            "risk-case-pause",
        ] {
            assert_eq!(RULES.iter().filter(|r| r.id == id).count(), 1, "{id}");
        }
        let j = rules_json();
        let arr = j.as_array().unwrap();
        assert_eq!(arr.len(), RULES.len());
        assert_eq!(arr[0]["id"], RULES[0].id);
        assert_eq!(arr[0]["text"], RULES[0].text);
        assert_eq!(arr[0].as_object().unwrap().len(), 2);
    }

    #[test]
    fn approach_names_round_trip() {
        for a in Approach::ALL {
            assert_eq!(Approach::parse(a.as_str()), Some(a));
        }
        assert_eq!(Approach::parse("dm"), None);
        assert_eq!(Approach::ContactRequest.as_str(), "contact_request");
    }

    #[test]
    fn registration_min_age() {
        let kid = AgeRecord::corrected(AgeBand::Under13, None, false);
        let teen = AgeRecord::corrected(AgeBand::Teen13To15, None, false);
        let mut cfg = PolicyConfig::default();
        assert_eq!(
            check_registration(&kid, &cfg),
            Err(AgeError::TooYoung { min_years: 13 })
        );
        assert_eq!(check_registration(&teen, &cfg), Ok(()));
        cfg.allow_under_13 = true;
        assert_eq!(check_registration(&kid, &cfg), Ok(()));
    }

    #[test]
    fn block_rows() {
        let st = standing();
        for a in Approach::ALL {
            for rel0 in [Relation::default(), connected()] {
                let rel = Relation {
                    target_blocked_actor: true,
                    actor_blocked_target: true,
                    ..rel0
                };
                // The target's block wins and reads as "not accepting".
                assert_eq!(
                    d(a, ADULT, ADULT, rel, &st),
                    refuse("block", RefusalKind::NotAccepting)
                );
                let rel = Relation {
                    actor_blocked_target: true,
                    ..rel0
                };
                assert_eq!(
                    d(a, ADULT, ADULT, rel, &st),
                    refuse("block", RefusalKind::YouBlocked)
                );
                assert_ne!(rule_of(d(a, ADULT, ADULT, rel0, &st)), Some("block"));
            }
        }
    }

    #[test]
    fn connected_rows() {
        let st = standing();
        // A parent and their child.
        for a in [Approach::ContactRequest, Approach::FirstMessage] {
            assert_eq!(d(a, ADULT, TEEN, connected(), &st), Decision::Allow);
        }
        // minor-group-add, connected: the minor sees the members first.
        assert_eq!(
            d(Approach::GroupAdd, ADULT, TEEN, connected(), &st),
            Decision::Request { notice: false }
        );
        assert_eq!(
            d(Approach::GroupAdd, ADULT, ADULT, connected(), &st),
            Decision::Allow
        );
        // restrict.
        let r = Relation {
            target_restricted_actor: true,
            ..connected()
        };
        for a in [Approach::FirstMessage, Approach::GroupAdd] {
            assert_eq!(
                d(a, ADULT, ADULT, r, &st),
                Decision::Request { notice: false }
            );
        }
        assert_eq!(
            d(Approach::ContactRequest, ADULT, ADULT, r, &st),
            Decision::Allow
        );
        // A connection is reachable whatever the setting, even at the case level.
        let case = Standing {
            level: RiskLevel::Case,
            ..standing()
        };
        let target = adult(MessageSetting::ContactsOnly);
        assert_eq!(
            d(Approach::FirstMessage, ADULT, target, connected(), &case),
            Decision::Allow
        );
        assert_eq!(
            d(Approach::FirstMessage, ADULT, TEEN, connected(), &case),
            Decision::Allow
        );
    }

    #[test]
    fn minor_contact_connections_only_rows() {
        let st = standing();
        let none = Relation::default();
        for a in Approach::ALL {
            for t in [AgeBand::Under13, AgeBand::Teen13To15, AgeBand::Teen16To17] {
                let target = Party {
                    band: t,
                    setting: MessageSetting::Everyone,
                };
                assert_eq!(
                    rule_of(d(a, ADULT, target, none, &st)),
                    Some("minor-contact-connections-only"),
                    "{a:?} {t:?}"
                );
            }
            // Negative: adult to adult, minor to minor.
            assert_eq!(rule_of(d(a, ADULT, ADULT, none, &st)), None);
            assert_ne!(
                rule_of(d(a, OLDER_TEEN, TEEN, none, &st)),
                Some("minor-contact-connections-only")
            );
        }
    }

    #[test]
    fn minor_first_message_request_rows() {
        let st = standing();
        let none = Relation::default();
        // A minor's setting is ignored: "everyone" still gives a request.
        let open_teen = Party {
            band: AgeBand::Teen13To15,
            setting: MessageSetting::Everyone,
        };
        let closed_teen = Party {
            band: AgeBand::Teen13To15,
            setting: MessageSetting::ContactsOnly,
        };
        assert_eq!(
            d(Approach::FirstMessage, TEEN, open_teen, none, &st),
            Decision::Request { notice: false }
        );
        assert_eq!(
            d(Approach::FirstMessage, TEEN, closed_teen, none, &st),
            Decision::Request { notice: false }
        );
        // safety-notice: from an older band.
        assert_eq!(
            d(Approach::FirstMessage, OLDER_TEEN, TEEN, none, &st),
            Decision::Request { notice: true }
        );
        assert_eq!(
            d(Approach::ContactRequest, OLDER_TEEN, TEEN, none, &st),
            Decision::Request { notice: true }
        );
        // A younger minor writing to an older one: no notice.
        assert_eq!(
            d(Approach::FirstMessage, TEEN, OLDER_TEEN, none, &st),
            Decision::Request { notice: false }
        );
        // risk-friction: an elevated peer gets a notice.
        let el = Standing {
            level: RiskLevel::Elevated,
            ..standing()
        };
        assert_eq!(
            d(Approach::FirstMessage, TEEN, TEEN, none, &el),
            Decision::Request { notice: true }
        );
        // Minors writing to adults follow the adult's setting.
        assert_eq!(
            d(
                Approach::FirstMessage,
                TEEN,
                adult(MessageSetting::Everyone),
                none,
                &st
            ),
            Decision::Allow
        );
    }

    #[test]
    fn adult_message_setting_rows() {
        let st = standing();
        let none = Relation::default();
        let co = adult(MessageSetting::ContactsOnly);
        for a in [Approach::FirstMessage, Approach::GroupAdd] {
            assert_eq!(
                rule_of(d(a, ADULT, co, none, &st)),
                Some("adult-message-setting")
            );
            assert_eq!(
                d(a, ADULT, adult(MessageSetting::Requests), none, &st),
                Decision::Request { notice: false }
            );
            assert_eq!(
                d(a, ADULT, adult(MessageSetting::Everyone), none, &st),
                Decision::Allow
            );
        }
        // Contact requests are always possible.
        assert_eq!(
            d(Approach::ContactRequest, ADULT, co, none, &st),
            Decision::Request { notice: false }
        );
        assert_eq!(
            d(
                Approach::ContactRequest,
                ADULT,
                adult(MessageSetting::Everyone),
                none,
                &st
            ),
            Decision::Request { notice: false }
        );
    }

    #[test]
    fn minor_group_add_rows() {
        let st = standing();
        let none = Relation::default();
        // Not connected: refused even between teens of one band.
        assert_eq!(
            rule_of(d(Approach::GroupAdd, TEEN, TEEN, none, &st)),
            Some("minor-group-add")
        );
        // Connected: a request.
        assert_eq!(
            d(Approach::GroupAdd, TEEN, TEEN, connected(), &st),
            Decision::Request { notice: false }
        );
        // A minor adding an adult follows the adult's setting.
        assert_eq!(
            d(
                Approach::GroupAdd,
                TEEN,
                adult(MessageSetting::Everyone),
                none,
                &st
            ),
            Decision::Allow
        );
    }

    #[test]
    fn restrict_rows_unconnected() {
        let st = standing();
        let r = Relation {
            target_restricted_actor: true,
            ..Relation::default()
        };
        let open = adult(MessageSetting::Everyone);
        assert_eq!(
            d(Approach::FirstMessage, ADULT, open, r, &st),
            Decision::Request { notice: false }
        );
        assert_eq!(
            d(Approach::GroupAdd, ADULT, open, r, &st),
            Decision::Request { notice: false }
        );
        assert_eq!(
            d(
                Approach::FirstMessage,
                ADULT,
                open,
                Relation::default(),
                &st
            ),
            Decision::Allow
        );
    }

    #[test]
    fn risk_case_pause_rows() {
        let case = Standing {
            level: RiskLevel::Case,
            ..standing()
        };
        let none = Relation::default();
        for a in Approach::ALL {
            assert_eq!(
                rule_of(d(a, TEEN, TEEN, none, &case)),
                Some("risk-case-pause")
            );
            assert_eq!(
                rule_of(d(a, ADULT, TEEN, none, &case)),
                Some("risk-case-pause")
            );
            // Adults are not paused.
            assert_eq!(rule_of(d(a, ADULT, ADULT, none, &case)), None);
        }
        assert_eq!(
            rule_of(d(Approach::FirstMessage, TEEN, TEEN, none, &standing())),
            None
        );
    }

    #[test]
    fn refusal_text_never_reveals_age_or_block() {
        let st = standing();
        let none = Relation::default();
        let minor = d(Approach::FirstMessage, ADULT, TEEN, none, &st);
        let contacts_only = d(
            Approach::FirstMessage,
            ADULT,
            adult(MessageSetting::ContactsOnly),
            none,
            &st,
        );
        let blocked = d(
            Approach::FirstMessage,
            ADULT,
            ADULT,
            Relation {
                target_blocked_actor: true,
                ..none
            },
            &st,
        );
        let paused = d(
            Approach::FirstMessage,
            TEEN,
            TEEN,
            none,
            &Standing {
                level: RiskLevel::Case,
                ..standing()
            },
        );
        let texts: Vec<String> = [minor, contacts_only, blocked, paused]
            .into_iter()
            .map(|dec| match dec {
                Decision::Refuse(r) => r.message("sam", NOW),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(texts[0], "sam only accepts messages from their contacts");
        assert!(texts.iter().all(|t| *t == texts[0]));
        let you = Refusal {
            rule: "block",
            kind: RefusalKind::YouBlocked,
        };
        assert_eq!(
            you.message("sam", NOW),
            "you blocked sam; unblock them first"
        );
    }

    fn recent(ats: &[i64], to_minor: bool) -> Vec<RecentContact> {
        ats.iter()
            .map(|&at| RecentContact { at, to_minor })
            .collect()
    }

    fn retry_of(dec: Decision) -> i64 {
        match dec {
            Decision::Refuse(Refusal {
                rule: "new-contact-rate",
                kind: RefusalKind::RateLimited { retry_at },
            }) => retry_at,
            other => panic!("not rate limited: {other:?}"),
        }
    }

    #[test]
    fn total_limit_and_exact_retry_at() {
        // 50 adult contacts at NOW - 100 min + i min; the oldest (i = 0) frees the slot.
        let ats: Vec<i64> = (0..50)
            .map(|i| NOW - 100 * MINUTE_MS + i * MINUTE_MS)
            .collect();
        let mut st = Standing {
            recent: recent(&ats, false),
            ..standing()
        };
        let dec = d(
            Approach::ContactRequest,
            ADULT,
            ADULT,
            Relation::default(),
            &st,
        );
        assert_eq!(retry_of(dec), ats[0] + DAY_MS);
        // 49 in the window: passes.
        st.recent.remove(0);
        assert_eq!(
            d(
                Approach::ContactRequest,
                ADULT,
                ADULT,
                Relation::default(),
                &st
            ),
            Decision::Request { notice: false }
        );
        // Over the limit (53, e.g. counted while limits were higher): four must leave, so the
        // slot frees when index 3 (the fourth oldest, at NOW - 49 min) turns 24 h.
        let ats: Vec<i64> = (0..53).rev().map(|i| NOW - i * MINUTE_MS).collect();
        st.recent = recent(&ats, false);
        let retry = retry_of(d(
            Approach::FirstMessage,
            ADULT,
            ADULT,
            Relation::default(),
            &st,
        ));
        assert_eq!(retry, NOW - 49 * MINUTE_MS + DAY_MS);
        // Contacts older than 24 h, or in the future, are not counted.
        st.recent = recent(&[NOW - DAY_MS; 60], false);
        st.recent.extend(recent(&[NOW + 1; 60], false));
        assert_eq!(
            d(
                Approach::FirstMessage,
                ADULT,
                ADULT,
                Relation::default(),
                &st
            ),
            Decision::Request { notice: false }
        );
        // Connected approaches are never rate limited.
        st.recent = recent(&[NOW; 60], false);
        assert_eq!(
            d(Approach::FirstMessage, ADULT, ADULT, connected(), &st),
            Decision::Allow
        );
    }

    #[test]
    fn minor_limit_and_retry_message() {
        // 20 toward minors in the window: a minor target is refused, an adult target is not.
        let ats: Vec<i64> = (0..20)
            .map(|i| NOW - 89 * MINUTE_MS + i * MINUTE_MS)
            .collect();
        let st = Standing {
            recent: recent(&ats, true),
            ..standing()
        };
        let minor_dec = d(
            Approach::ContactRequest,
            TEEN,
            TEEN,
            Relation::default(),
            &st,
        );
        assert_eq!(retry_of(minor_dec), NOW + DAY_MS - 89 * MINUTE_MS);
        assert_eq!(
            d(
                Approach::ContactRequest,
                TEEN,
                ADULT,
                Relation::default(),
                &st
            ),
            Decision::Request { notice: false }
        );
        // The total limit reached with the same oldest contact reads exactly the same.
        let ats: Vec<i64> = (0..50).map(|i| NOW - 89 * MINUTE_MS + i).collect();
        let st = Standing {
            recent: recent(&ats, false),
            ..standing()
        };
        let total_dec = d(
            Approach::ContactRequest,
            TEEN,
            ADULT,
            Relation::default(),
            &st,
        );
        let (Decision::Refuse(m), Decision::Refuse(t)) = (minor_dec, total_dec) else {
            panic!("both refused");
        };
        assert_eq!(m.message("sam", NOW), t.message("sam", NOW));
        assert!(m.message("sam", NOW).ends_with("(in 1351 min)"));
    }

    #[test]
    fn rate_message_format() {
        // 2025-06-15 14:50:00 UTC is 1_749_999_000_000 ms.
        let now = 1_749_999_000_000 - 90 * MINUTE_MS;
        let r = Refusal {
            rule: "new-contact-rate",
            kind: RefusalKind::RateLimited {
                retry_at: 1_749_999_000_000,
            },
        };
        assert_eq!(
            r.message("sam", now),
            "you have reached today's limit of new contacts; try again after 2025-06-15 14:50 UTC (in 90 min)"
        );
        // Seconds round up.
        let r = Refusal {
            rule: "new-contact-rate",
            kind: RefusalKind::RateLimited {
                retry_at: 1_749_999_000_000 + 1,
            },
        };
        assert!(r
            .message("sam", now)
            .ends_with("after 2025-06-15 14:51 UTC (in 91 min)"));
    }

    #[test]
    fn both_limits_bind_take_the_later() {
        // 50 total in the window, 20 of them toward minors, the minors' ones the newest.
        let mut rec = recent(
            &(0..30)
                .map(|i| NOW - 600 * MINUTE_MS + i)
                .collect::<Vec<_>>(),
            false,
        );
        let minor_ats: Vec<i64> = (0..20)
            .map(|i| NOW - 100 * MINUTE_MS + i * MINUTE_MS)
            .collect();
        rec.extend(recent(&minor_ats, true));
        let st = Standing {
            recent: rec,
            ..standing()
        };
        let retry = retry_of(d(
            Approach::ContactRequest,
            TEEN,
            TEEN,
            Relation::default(),
            &st,
        ));
        // Total frees at the oldest + 24 h; minors at the oldest minor one + 24 h, which is later.
        assert_eq!(retry, minor_ats[0] + DAY_MS);
        let retry = retry_of(d(
            Approach::ContactRequest,
            TEEN,
            ADULT,
            Relation::default(),
            &st,
        ));
        assert_eq!(retry, NOW - 600 * MINUTE_MS + DAY_MS);
    }

    #[test]
    fn new_accounts_get_half() {
        let limits = ContactLimits::default();
        let mut st = Standing {
            account_created_at: NOW - 7 * DAY_MS + 1,
            ..standing()
        };
        assert_eq!(
            limits.for_standing(&st, NOW),
            DailyLimits {
                total: 25,
                to_minors: 10
            }
        );
        st.account_created_at = NOW - 7 * DAY_MS;
        assert_eq!(
            limits.for_standing(&st, NOW),
            DailyLimits {
                total: 50,
                to_minors: 20
            }
        );
        // Rounded down, at least 1.
        let odd = ContactLimits {
            per_day: 3,
            per_day_to_minors: 1,
            ..ContactLimits::default()
        };
        st.account_created_at = NOW;
        assert_eq!(
            odd.for_standing(&st, NOW),
            DailyLimits {
                total: 1,
                to_minors: 1
            }
        );
        // Through decide: 25 contacts refuse a new account's 26th.
        st.recent = recent(&[NOW - 1; 25], false);
        assert!(matches!(
            d(
                Approach::ContactRequest,
                ADULT,
                ADULT,
                Relation::default(),
                &st
            ),
            Decision::Refuse(_)
        ));
        st.recent.pop();
        assert!(!matches!(
            d(
                Approach::ContactRequest,
                ADULT,
                ADULT,
                Relation::default(),
                &st
            ),
            Decision::Refuse(_)
        ));
    }

    #[test]
    fn elevated_tightens_toward_minors_only() {
        let limits = ContactLimits::default();
        let mut st = Standing {
            level: RiskLevel::Elevated,
            ..standing()
        };
        assert_eq!(
            limits.for_standing(&st, NOW),
            DailyLimits {
                total: 50,
                to_minors: 3
            }
        );
        st.recent = recent(&[NOW - 10, NOW - 5, NOW - 1], true);
        let retry = retry_of(d(
            Approach::ContactRequest,
            TEEN,
            TEEN,
            Relation::default(),
            &st,
        ));
        assert_eq!(retry, NOW - 10 + DAY_MS);
        // The same history at Normal passes, and an adult target passes at Elevated.
        assert_eq!(
            d(
                Approach::ContactRequest,
                TEEN,
                ADULT,
                Relation::default(),
                &st
            ),
            Decision::Request { notice: false }
        );
        st.level = RiskLevel::Normal;
        assert_eq!(
            d(
                Approach::ContactRequest,
                TEEN,
                TEEN,
                Relation::default(),
                &st
            ),
            Decision::Request { notice: false }
        );
    }

    #[test]
    fn new_contacts_count() {
        let none = Relation::default();
        assert!(Decision::Allow.is_new_contact(&none));
        assert!(Decision::Request { notice: true }.is_new_contact(&none));
        assert!(!Decision::Allow.is_new_contact(&connected()));
        assert!(!refuse("block", RefusalKind::NotAccepting).is_new_contact(&none));
    }

    #[test]
    fn notices_on_write() {
        for b in AgeBand::ALL {
            assert!(!notice_on_write(b, RiskLevel::Normal, AgeBand::Teen13To15));
            assert!(notice_on_write(b, RiskLevel::Elevated, AgeBand::Teen13To15));
            assert!(notice_on_write(b, RiskLevel::Case, AgeBand::Under13));
            assert!(!notice_on_write(b, RiskLevel::Case, AgeBand::Adult));
        }
    }

    #[test]
    fn config_json() {
        let def = PolicyConfig::default();
        let j = serde_json::to_string(&def).unwrap();
        assert_eq!(PolicyConfig::from_json(&j).unwrap(), def);
        assert_eq!(PolicyConfig::from_json("{}").unwrap(), def);
        let c =
            PolicyConfig::from_json(r#"{"allow_under_13":true,"limits":{"per_day":10}}"#).unwrap();
        assert!(c.allow_under_13);
        assert_eq!(c.limits.per_day, 10);
        assert_eq!(c.limits.per_day_to_minors, 20);
        // Partial weights: the missing signals contribute 0.
        let c = PolicyConfig::from_json(
            r#"{"risk":{"weights":{"reports_received_30d":{"weight":1,"free":0,"cap":5}}}}"#,
        )
        .unwrap();
        assert_eq!(c.risk.weights.len(), 1);
        for bad in [
            r#"{"risk":{"friction_threshold":60,"case_threshold":60}}"#,
            r#"{"risk":{"friction_threshold":70}}"#,
            r#"{"risk":{"friction_threshold":-1}}"#,
            r#"{"risk":{"weights":{"new_account":{"weight":-1,"free":0,"cap":1}}}}"#,
            r#"{"risk":{"weights":{"new_account":{"weight":1,"free":0,"cap":-1}}}}"#,
            r#"{"risk":{"weights":{"new_account":{"weight":1,"free":0}}}}"#,
            r#"{"risk":{"weights":{"new_acount":{"weight":1,"free":0,"cap":1}}}}"#,
            r#"{"unknown":1}"#,
            r#"{"limits":{"per_day":50,"burst":2}}"#,
            r#"{"limits":{"per_day":0}}"#,
            r#"{"limits":{"new_account_percent":101}}"#,
            "not json",
        ] {
            assert!(PolicyConfig::from_json(bad).is_err(), "{bad}");
        }
    }

    fn any_band() -> impl Strategy<Value = AgeBand> {
        prop::sample::select(AgeBand::ALL.to_vec())
    }
    fn any_setting() -> impl Strategy<Value = MessageSetting> {
        prop::sample::select(vec![
            MessageSetting::ContactsOnly,
            MessageSetting::Requests,
            MessageSetting::Everyone,
        ])
    }
    fn any_level() -> impl Strategy<Value = RiskLevel> {
        prop::sample::select(RiskLevel::ALL.to_vec())
    }

    proptest! {
        #[test]
        fn decide_is_total_and_adults_never_reach_unconnected_minors(
            approach in prop::sample::select(Approach::ALL.to_vec()),
            (ab, as_, tb, ts) in (any_band(), any_setting(), any_band(), any_setting()),
            flags in any::<[bool; 4]>(),
            level in any_level(),
            created in any::<i64>(),
            now in any::<i64>(),
            recent in prop::collection::vec((any::<i64>(), any::<bool>()), 0..80),
            limits in (0u32..60, 0u32..30, 0u32..10, 0u32..150, 0u32..5),
        ) {
            let actor = Party { band: ab, setting: as_ };
            let target = Party { band: tb, setting: ts };
            let rel = Relation {
                connected: flags[0],
                target_blocked_actor: flags[1],
                actor_blocked_target: flags[2],
                target_restricted_actor: flags[3],
            };
            // Half the recent contacts near `now`, so the limits are exercised.
            let recent = recent
                .into_iter()
                .enumerate()
                .map(|(i, (at, to_minor))| RecentContact {
                    at: if i % 2 == 0 { now.saturating_sub(at.rem_euclid(2 * DAY_MS)) } else { at },
                    to_minor,
                })
                .collect();
            let st = Standing { account_created_at: created, level, recent };
            let cfg = PolicyConfig {
                limits: ContactLimits {
                    per_day: limits.0,
                    per_day_to_minors: limits.1,
                    new_account_days: limits.2,
                    new_account_percent: limits.3,
                    elevated_per_day_to_minors: limits.4,
                },
                ..PolicyConfig::default()
            };
            let dec = decide(approach, &actor, &target, &rel, &st, &cfg, now);
            if let Decision::Refuse(r) = dec {
                prop_assert!(RULES.iter().any(|x| x.id == r.rule));
                let _ = r.message("t", now);
            }
            if ab == AgeBand::Adult && tb.is_minor() && !rel.connected {
                prop_assert!(matches!(dec, Decision::Refuse(_)), "{:?}", dec);
            }
            if rel.target_blocked_actor || rel.actor_blocked_target {
                let blocked = matches!(dec, Decision::Refuse(Refusal { rule: "block", .. }));
                prop_assert!(blocked);
            }
        }

        #[test]
        fn refusal_message_is_total(retry_at in any::<i64>(), now in any::<i64>()) {
            let r = Refusal { rule: "new-contact-rate", kind: RefusalKind::RateLimited { retry_at } };
            prop_assert!(r.message("t", now).starts_with("you have reached"));
        }
    }
}
