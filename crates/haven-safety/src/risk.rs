//! An explainable risk score from contact metadata.
//!
//! The score is a sum of named signal contributions, each `weight × clamp(value − free, 0, cap)`:
//! `free` is how much of a signal ordinary use produces at no cost, `cap` bounds what one signal
//! can add. Every contribution is reported, so a moderator (and the account holder, on appeal)
//! sees exactly why a level was reached. The level drives friction above
//! [`RiskConfig::friction_threshold`] and a moderation case above [`RiskConfig::case_threshold`];
//! it never bans anyone.
//!
//! Contact signals look at the 7 days up to `now`. "Toward minors" means an event with a
//! non-connection whose target is a minor in a band *younger* than the actor's — so teens writing
//! to teens of their own band never count, and an adult's attempts on minors count even when the
//! policy refused them (the attempt is the signal).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::policy::Approach;
use crate::AgeBand;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// An account's risk level.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum RiskLevel {
    /// Below the friction threshold.
    #[default]
    Normal,
    /// At or above the friction threshold: tighter limits toward minors, safety notices.
    Elevated,
    /// At or above the case threshold: a moderation case, and contact with new minors paused.
    Case,
}

impl RiskLevel {
    /// Every level, lowest first.
    pub const ALL: [RiskLevel; 3] = [RiskLevel::Normal, RiskLevel::Elevated, RiskLevel::Case];
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            RiskLevel::Normal => "normal",
            RiskLevel::Elevated => "elevated",
            RiskLevel::Case => "case",
        }
    }
    /// Parses the stable name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

/// What became of a contact attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Not answered yet (or nothing to answer: an allowed message).
    Pending,
    /// The target accepted the request.
    Accepted,
    /// The target declined it.
    Declined,
    /// The target blocked the actor.
    Blocked,
    /// The target reported the actor.
    Reported,
}

impl Outcome {
    /// Every outcome.
    pub const ALL: [Outcome; 5] = [
        Outcome::Pending,
        Outcome::Accepted,
        Outcome::Declined,
        Outcome::Blocked,
        Outcome::Reported,
    ];
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pending => "pending",
            Outcome::Accepted => "accepted",
            Outcome::Declined => "declined",
            Outcome::Blocked => "blocked",
            Outcome::Reported => "reported",
        }
    }
    /// Parses the stable name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }
    /// Declined, blocked or reported.
    pub fn is_negative(self) -> bool {
        matches!(
            self,
            Outcome::Declined | Outcome::Blocked | Outcome::Reported
        )
    }
}

/// One contact attempt by the scored account.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactEvent {
    /// When (Unix ms).
    pub at: i64,
    /// What kind of attempt.
    pub approach: Approach,
    /// The target, as an opaque id (the server passes the user name); only compared.
    pub target: String,
    /// The target's band at the time.
    pub target_band: AgeBand,
    /// Whether the two were connected.
    pub connected: bool,
    /// Whether the policy refused it.
    pub refused: bool,
    /// What became of it.
    pub outcome: Outcome,
}

/// Everything the score is computed from.
#[derive(Debug, Clone)]
pub struct RiskInput {
    /// The time the score is for (Unix ms).
    pub now: i64,
    /// The scored account's band.
    pub actor_band: AgeBand,
    /// When the account was created (Unix ms).
    pub account_created_at: i64,
    /// Its contact attempts (any order; those outside the 7 days up to `now` are ignored).
    pub events: Vec<ContactEvent>,
    /// Blocks by others in the last 30 days.
    pub blocks_received_30d: u32,
    /// Reports by others in the last 30 days.
    pub reports_received_30d: u32,
}

/// How one signal turns into points: `weight × clamp(value − free, 0, cap)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalWeight {
    /// Points per unit above `free`.
    pub weight: f64,
    /// The part of the value that costs nothing.
    pub free: f64,
    /// The most units (above `free`) that count.
    pub cap: f64,
}

/// The scoring configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiskConfig {
    /// The score from which the level is [`RiskLevel::Elevated`] (default 30).
    pub friction_threshold: f64,
    /// The score from which the level is [`RiskLevel::Case`] (default 60).
    pub case_threshold: f64,
    /// The fewest events a share signal needs before it is more than 0 (default 5).
    pub min_decided_for_share: u32,
    /// Per signal name ([`SIGNALS`]); a signal missing here contributes 0.
    pub weights: BTreeMap<String, SignalWeight>,
}

impl Default for RiskConfig {
    fn default() -> Self {
        let w = |weight, free, cap| SignalWeight { weight, free, cap };
        let weights = [
            (MINOR_CONTACTS_1H, w(5.0, 2.0, 10.0)),
            (MINOR_CONTACTS_24H, w(2.0, 5.0, 20.0)),
            (MINOR_CONTACTS_7D, w(0.5, 10.0, 40.0)),
            (NEGATIVE_SHARE, w(40.0, 0.3, 0.7)),
            (DISTINCT_MINORS_7D, w(1.0, 10.0, 30.0)),
            (MINOR_GROUP_ADDS_7D, w(5.0, 0.0, 6.0)),
            (NEW_ACCOUNT, w(10.0, 0.0, 1.0)),
            (BAND_MISMATCH_SHARE, w(20.0, 0.5, 0.5)),
            (BLOCKS_RECEIVED_30D, w(4.0, 1.0, 10.0)),
            (REPORTS_RECEIVED_30D, w(6.0, 0.0, 10.0)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        RiskConfig {
            friction_threshold: 30.0,
            case_threshold: 60.0,
            min_decided_for_share: 5,
            weights,
        }
    }
}

impl RiskConfig {
    /// Checks an operator's configuration: thresholds finite and positive with friction below
    /// case; every weight names a known signal, with `weight` and `cap` finite and ≥ 0 and
    /// `free` finite.
    pub fn validate(&self) -> Result<(), String> {
        let (f, c) = (self.friction_threshold, self.case_threshold);
        if !(f.is_finite() && f > 0.0 && c.is_finite() && c > 0.0) {
            return Err("risk thresholds must be finite and positive".into());
        }
        if f >= c {
            return Err("risk.friction_threshold must be below risk.case_threshold".into());
        }
        for (name, w) in &self.weights {
            if !SIGNALS.iter().any(|(n, _)| n == name) {
                return Err(format!("risk.weights: unknown signal {name:?}"));
            }
            if !(w.weight.is_finite() && w.weight >= 0.0) {
                return Err(format!(
                    "risk.weights.{name}: weight must be finite and >= 0"
                ));
            }
            if !(w.cap.is_finite() && w.cap >= 0.0) {
                return Err(format!("risk.weights.{name}: cap must be finite and >= 0"));
            }
            if !w.free.is_finite() {
                return Err(format!("risk.weights.{name}: free must be finite"));
            }
        }
        Ok(())
    }
}

/// One signal's part in a score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Contribution {
    /// The signal's name ([`SIGNALS`]).
    pub signal: &'static str,
    /// What it measures, for people.
    pub description: &'static str,
    /// The measured value.
    pub value: f64,
    /// The points it adds.
    pub points: f64,
}

/// A score with its explanation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RiskScore {
    /// The sum of the contributions' points.
    pub score: f64,
    /// The level the score reaches.
    pub level: RiskLevel,
    /// Every signal, most points first, then by name.
    pub contributions: Vec<Contribution>,
}

const MINOR_CONTACTS_1H: &str = "minor_contacts_1h";
const MINOR_CONTACTS_24H: &str = "minor_contacts_24h";
const MINOR_CONTACTS_7D: &str = "minor_contacts_7d";
const NEGATIVE_SHARE: &str = "negative_share";
const DISTINCT_MINORS_7D: &str = "distinct_minors_7d";
const MINOR_GROUP_ADDS_7D: &str = "minor_group_adds_7d";
const NEW_ACCOUNT: &str = "new_account";
const BAND_MISMATCH_SHARE: &str = "band_mismatch_share";
const BLOCKS_RECEIVED_30D: &str = "blocks_received_30d";
const REPORTS_RECEIVED_30D: &str = "reports_received_30d";

/// Every signal: (name, description).
pub const SIGNALS: &[(&str, &str)] = &[
    (
        MINOR_CONTACTS_1H,
        "attempts to contact younger minors who are not connections, last hour",
    ),
    (
        MINOR_CONTACTS_24H,
        "attempts to contact younger minors who are not connections, last 24 hours",
    ),
    (
        MINOR_CONTACTS_7D,
        "attempts to contact younger minors who are not connections, last 7 days",
    ),
    (
        NEGATIVE_SHARE,
        "share of answered requests to younger minors that were declined, blocked or reported, last 7 days",
    ),
    (
        DISTINCT_MINORS_7D,
        "distinct younger minors approached without a connection, last 7 days",
    ),
    (
        MINOR_GROUP_ADDS_7D,
        "attempts to add younger minors who are not connections to groups, last 7 days",
    ),
    (
        NEW_ACCOUNT,
        "account younger than 7 days that approached younger minors",
    ),
    (
        BAND_MISMATCH_SHARE,
        "share of approaches to non-connections in another age band, last 7 days",
    ),
    (BLOCKS_RECEIVED_30D, "blocks received, last 30 days"),
    (REPORTS_RECEIVED_30D, "reports received, last 30 days"),
];

/// `weight × clamp(value − free, 0, cap)`; a weight that would fail validation (negative, not
/// finite) contributes 0, so an unchecked configuration can neither panic nor lower a score.
fn points(value: f64, w: Option<&SignalWeight>) -> f64 {
    let Some(w) = w else { return 0.0 };
    // f64::max/min ignore NaN, and unlike f64::clamp they cannot panic on a bad cap.
    let units = (value - w.free).max(0.0).min(w.cap.max(0.0));
    let p = w.weight * units;
    if p.is_finite() && p > 0.0 {
        p
    } else {
        0.0
    }
}

/// A share, or 0 below `min` events.
fn share(part: usize, whole: usize, min: u32) -> f64 {
    if whole == 0 || whole < min as usize {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Scores an account's contact metadata.
pub fn score(input: &RiskInput, cfg: &RiskConfig) -> RiskScore {
    let now = input.now;
    let within = |at: i64, span: i64| at <= now && at > now.saturating_sub(span);
    let week: Vec<&ContactEvent> = input
        .events
        .iter()
        .filter(|e| within(e.at, 7 * DAY_MS))
        .collect();
    let toward_minor = |e: &&ContactEvent| {
        !e.connected && e.target_band.is_minor() && e.target_band < input.actor_band
    };
    let minors: Vec<&ContactEvent> = week.iter().copied().filter(toward_minor).collect();
    let count_within = |span: i64| minors.iter().filter(|e| within(e.at, span)).count();

    let decided: Vec<&&ContactEvent> = minors
        .iter()
        .filter(|e| !e.refused && e.outcome != Outcome::Pending)
        .collect();
    let negative = decided.iter().filter(|e| e.outcome.is_negative()).count();
    let distinct: BTreeSet<&str> = minors.iter().map(|e| e.target.as_str()).collect();
    let group_adds = minors
        .iter()
        .filter(|e| e.approach == Approach::GroupAdd)
        .count();
    let young = now.saturating_sub(input.account_created_at) < 7 * DAY_MS;
    let unconnected: Vec<&&ContactEvent> = week.iter().filter(|e| !e.connected).collect();
    let mismatched = unconnected
        .iter()
        .filter(|e| e.target_band != input.actor_band)
        .count();

    let values = [
        (MINOR_CONTACTS_1H, count_within(HOUR_MS) as f64),
        (MINOR_CONTACTS_24H, count_within(DAY_MS) as f64),
        (MINOR_CONTACTS_7D, minors.len() as f64),
        (
            NEGATIVE_SHARE,
            share(negative, decided.len(), cfg.min_decided_for_share),
        ),
        (DISTINCT_MINORS_7D, distinct.len() as f64),
        (MINOR_GROUP_ADDS_7D, group_adds as f64),
        (
            NEW_ACCOUNT,
            if young && !minors.is_empty() {
                1.0
            } else {
                0.0
            },
        ),
        (
            BAND_MISMATCH_SHARE,
            share(mismatched, unconnected.len(), cfg.min_decided_for_share),
        ),
        (BLOCKS_RECEIVED_30D, f64::from(input.blocks_received_30d)),
        (REPORTS_RECEIVED_30D, f64::from(input.reports_received_30d)),
    ];
    let mut contributions: Vec<Contribution> = SIGNALS
        .iter()
        .map(|&(signal, description)| {
            let value = values
                .iter()
                .find(|(n, _)| *n == signal)
                .map_or(0.0, |(_, v)| *v);
            Contribution {
                signal,
                description,
                value,
                points: points(value, cfg.weights.get(signal)),
            }
        })
        .collect();
    contributions.sort_by(|a, b| {
        b.points
            .total_cmp(&a.points)
            .then_with(|| a.signal.cmp(b.signal))
    });
    let score: f64 = contributions.iter().map(|c| c.points).sum();
    RiskScore {
        score,
        level: level_for(score, cfg),
        contributions,
    }
}

/// The level a score reaches under `cfg`.
pub fn level_for(score: f64, cfg: &RiskConfig) -> RiskLevel {
    if score >= cfg.case_threshold {
        RiskLevel::Case
    } else if score >= cfg.friction_threshold {
        RiskLevel::Elevated
    } else {
        RiskLevel::Normal
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: i64 = 1_750_000_000_000;

    fn ev(at: i64, target: &str, band: AgeBand) -> ContactEvent {
        ContactEvent {
            at,
            approach: Approach::ContactRequest,
            target: target.into(),
            target_band: band,
            connected: false,
            refused: false,
            outcome: Outcome::Pending,
        }
    }

    fn input(actor_band: AgeBand, events: Vec<ContactEvent>) -> RiskInput {
        RiskInput {
            now: NOW,
            actor_band,
            account_created_at: NOW - 365 * DAY_MS,
            events,
            blocks_received_30d: 0,
            reports_received_30d: 0,
        }
    }

    fn value(s: &RiskScore, name: &str) -> f64 {
        s.contributions
            .iter()
            .find(|c| c.signal == name)
            .unwrap()
            .value
    }

    fn pts(s: &RiskScore, name: &str) -> f64 {
        s.contributions
            .iter()
            .find(|c| c.signal == name)
            .unwrap()
            .points
    }

    #[test]
    fn names_round_trip() {
        for l in RiskLevel::ALL {
            assert_eq!(RiskLevel::parse(l.as_str()), Some(l));
            assert_eq!(
                serde_json::to_string(&l).unwrap(),
                format!("\"{}\"", l.as_str())
            );
        }
        for o in Outcome::ALL {
            assert_eq!(Outcome::parse(o.as_str()), Some(o));
        }
        assert_eq!(RiskLevel::parse("high"), None);
        assert!(RiskLevel::Normal < RiskLevel::Elevated && RiskLevel::Elevated < RiskLevel::Case);
        let neg: Vec<_> = Outcome::ALL
            .into_iter()
            .filter(|o| o.is_negative())
            .collect();
        assert_eq!(
            neg,
            [Outcome::Declined, Outcome::Blocked, Outcome::Reported]
        );
    }

    #[test]
    fn default_weights_cover_every_signal() {
        let cfg = RiskConfig::default();
        assert_eq!(cfg.weights.len(), SIGNALS.len());
        for (name, _) in SIGNALS {
            assert!(cfg.weights.contains_key(*name), "{name}");
        }
        assert!(cfg.validate().is_ok());
    }

    #[test]
    fn nothing_scores_nothing() {
        let s = score(&input(AgeBand::Adult, vec![]), &RiskConfig::default());
        assert_eq!(s.score, 0.0);
        assert_eq!(s.level, RiskLevel::Normal);
        assert_eq!(s.contributions.len(), SIGNALS.len());
        // Ties at 0 are ordered by name.
        let names: Vec<_> = s.contributions.iter().map(|c| c.signal).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
    }

    #[test]
    fn windows_bound_the_counts() {
        let events = vec![
            ev(NOW, "a", AgeBand::Teen13To15),
            ev(NOW - HOUR_MS + 1, "b", AgeBand::Teen13To15),
            ev(NOW - HOUR_MS, "c", AgeBand::Teen13To15), // out of the hour
            ev(NOW - DAY_MS + 1, "d", AgeBand::Teen13To15),
            ev(NOW - DAY_MS, "e", AgeBand::Teen13To15), // out of the day
            ev(NOW - 7 * DAY_MS + 1, "f", AgeBand::Under13),
            ev(NOW - 7 * DAY_MS, "g", AgeBand::Under13), // out of the week
            ev(NOW + 1, "h", AgeBand::Under13),          // in the future
        ];
        let s = score(&input(AgeBand::Adult, events), &RiskConfig::default());
        assert_eq!(value(&s, MINOR_CONTACTS_1H), 2.0);
        assert_eq!(value(&s, MINOR_CONTACTS_24H), 4.0);
        assert_eq!(value(&s, MINOR_CONTACTS_7D), 6.0);
        assert_eq!(value(&s, DISTINCT_MINORS_7D), 6.0);
    }

    #[test]
    fn toward_minors_means_younger_band_and_unconnected() {
        let mut connected = ev(NOW, "kid", AgeBand::Under13);
        connected.connected = true;
        let events = vec![
            ev(NOW, "same", AgeBand::Teen13To15),
            ev(NOW, "older", AgeBand::Teen16To17),
            ev(NOW, "adult", AgeBand::Adult),
            connected,
            ev(NOW, "younger", AgeBand::Under13),
        ];
        let s = score(&input(AgeBand::Teen13To15, events), &RiskConfig::default());
        assert_eq!(value(&s, MINOR_CONTACTS_7D), 1.0);
        // Refused attempts count.
        let mut refused = ev(NOW, "x", AgeBand::Teen16To17);
        refused.refused = true;
        let s = score(
            &input(AgeBand::Adult, vec![refused]),
            &RiskConfig::default(),
        );
        assert_eq!(value(&s, MINOR_CONTACTS_7D), 1.0);
    }

    #[test]
    fn points_follow_weight_free_cap() {
        let events: Vec<_> = (0..30)
            .map(|i| ev(NOW - i, &format!("t{i}"), AgeBand::Teen13To15))
            .collect();
        let s = score(&input(AgeBand::Adult, events), &RiskConfig::default());
        // 30 in the hour: 5 × min(30 − 2, 10) = 50.
        assert_eq!(pts(&s, MINOR_CONTACTS_1H), 50.0);
        // 2 × min(30 − 5, 20) = 40.
        assert_eq!(pts(&s, MINOR_CONTACTS_24H), 40.0);
        // 0.5 × (30 − 10) = 10.
        assert_eq!(pts(&s, MINOR_CONTACTS_7D), 10.0);
        assert_eq!(pts(&s, DISTINCT_MINORS_7D), 20.0);
        let total: f64 = s.contributions.iter().map(|c| c.points).sum();
        assert_eq!(s.score, total);
        assert_eq!(s.contributions[0].signal, MINOR_CONTACTS_1H);
        assert!(s
            .contributions
            .windows(2)
            .all(|w| w[0].points >= w[1].points));
    }

    #[test]
    fn negative_share_needs_enough_decided_non_refused() {
        let mut events: Vec<_> = (0..4)
            .map(|i| {
                let mut e = ev(NOW - i, &format!("t{i}"), AgeBand::Teen13To15);
                e.outcome = Outcome::Declined;
                e
            })
            .collect();
        let cfg = RiskConfig::default();
        let s = score(&input(AgeBand::Teen16To17, events.clone()), &cfg);
        assert_eq!(value(&s, NEGATIVE_SHARE), 0.0);
        // A refused or pending one does not make it five.
        let mut r = ev(NOW, "r", AgeBand::Teen13To15);
        r.refused = true;
        r.outcome = Outcome::Blocked;
        events.push(r);
        events.push(ev(NOW, "p", AgeBand::Teen13To15));
        let s = score(&input(AgeBand::Teen16To17, events.clone()), &cfg);
        assert_eq!(value(&s, NEGATIVE_SHARE), 0.0);
        let mut a = ev(NOW, "a", AgeBand::Teen13To15);
        a.outcome = Outcome::Accepted;
        events.push(a);
        let s = score(&input(AgeBand::Teen16To17, events), &cfg);
        assert_eq!(value(&s, NEGATIVE_SHARE), 0.8);
        assert!((pts(&s, NEGATIVE_SHARE) - 40.0 * 0.5).abs() < 1e-9);
    }

    #[test]
    fn group_adds_new_account_mismatch_blocks_reports() {
        let mut g = ev(NOW, "kid", AgeBand::Under13);
        g.approach = Approach::GroupAdd;
        g.refused = true;
        let mut i = input(AgeBand::Adult, vec![g]);
        i.account_created_at = NOW - 7 * DAY_MS + 1;
        i.blocks_received_30d = 3;
        i.reports_received_30d = 2;
        let s = score(&i, &RiskConfig::default());
        assert_eq!(pts(&s, MINOR_GROUP_ADDS_7D), 5.0);
        assert_eq!(pts(&s, NEW_ACCOUNT), 10.0);
        assert_eq!(pts(&s, BLOCKS_RECEIVED_30D), 8.0);
        assert_eq!(pts(&s, REPORTS_RECEIVED_30D), 12.0);
        // One unconnected event is below the five a share needs.
        assert_eq!(value(&s, BAND_MISMATCH_SHARE), 0.0);
        // Seven days old: no longer new.
        i.account_created_at = NOW - 7 * DAY_MS;
        assert_eq!(value(&score(&i, &RiskConfig::default()), NEW_ACCOUNT), 0.0);
        // A new account with no approaches toward minors is not a signal.
        let mut quiet = input(AgeBand::Adult, vec![ev(NOW, "a", AgeBand::Adult)]);
        quiet.account_created_at = NOW;
        assert_eq!(
            value(&score(&quiet, &RiskConfig::default()), NEW_ACCOUNT),
            0.0
        );

        let events: Vec<_> = (0..6)
            .map(|k| {
                let b = if k < 4 {
                    AgeBand::Adult
                } else {
                    AgeBand::Teen16To17
                };
                ev(NOW - k, &format!("t{k}"), b)
            })
            .collect();
        let s = score(&input(AgeBand::Teen16To17, events), &RiskConfig::default());
        assert!((value(&s, BAND_MISMATCH_SHARE) - 4.0 / 6.0).abs() < 1e-12);
        assert!((pts(&s, BAND_MISMATCH_SHARE) - 20.0 * (4.0 / 6.0 - 0.5)).abs() < 1e-9);
    }

    #[test]
    fn levels_at_thresholds_and_missing_weights() {
        let cfg = RiskConfig::default();
        assert_eq!(level_for(29.999, &cfg), RiskLevel::Normal);
        assert_eq!(level_for(30.0, &cfg), RiskLevel::Elevated);
        assert_eq!(level_for(60.0, &cfg), RiskLevel::Case);
        let mut i = input(AgeBand::Adult, vec![]);
        i.reports_received_30d = 10;
        assert_eq!(score(&i, &cfg).level, RiskLevel::Case);
        let mut only = cfg.clone();
        only.weights.remove(REPORTS_RECEIVED_30D);
        let s = score(&i, &only);
        assert_eq!(pts(&s, REPORTS_RECEIVED_30D), 0.0);
        assert_eq!(value(&s, REPORTS_RECEIVED_30D), 10.0);
        assert_eq!(s.level, RiskLevel::Normal);
        // Weights that would fail validation contribute nothing and do not panic.
        let mut bad = cfg.clone();
        bad.weights.insert(
            REPORTS_RECEIVED_30D.into(),
            SignalWeight {
                weight: -5.0,
                free: f64::NAN,
                cap: -1.0,
            },
        );
        assert!(bad.validate().is_err());
        assert_eq!(pts(&score(&i, &bad), REPORTS_RECEIVED_30D), 0.0);
    }

    #[test]
    fn validation() {
        let ok = RiskConfig::default();
        let mut c = ok.clone();
        c.friction_threshold = 60.0;
        assert!(c.validate().is_err());
        let mut c = ok.clone();
        c.friction_threshold = 0.0;
        assert!(c.validate().is_err());
        let mut c = ok.clone();
        c.case_threshold = f64::INFINITY;
        assert!(c.validate().is_err());
        let mut c = ok.clone();
        c.weights.insert(
            "typo".into(),
            SignalWeight {
                weight: 1.0,
                free: 0.0,
                cap: 1.0,
            },
        );
        assert!(c.validate().is_err());
        let mut c = ok.clone();
        c.weights.get_mut(NEW_ACCOUNT).unwrap().cap = -1.0;
        assert!(c.validate().is_err());
        let mut c = ok;
        c.weights.get_mut(NEW_ACCOUNT).unwrap().weight = f64::NAN;
        assert!(c.validate().is_err());
    }

    fn any_band() -> impl Strategy<Value = AgeBand> {
        prop::sample::select(AgeBand::ALL.to_vec())
    }
    fn any_outcome() -> impl Strategy<Value = Outcome> {
        prop::sample::select(Outcome::ALL.to_vec())
    }
    fn any_approach() -> impl Strategy<Value = Approach> {
        prop::sample::select(Approach::ALL.to_vec())
    }
    fn any_event() -> impl Strategy<Value = ContactEvent> {
        (
            -8 * DAY_MS..HOUR_MS,
            any_approach(),
            0u8..12,
            any_band(),
            any::<bool>(),
            any::<bool>(),
            any_outcome(),
        )
            .prop_map(
                |(dt, approach, t, target_band, connected, refused, outcome)| ContactEvent {
                    at: NOW + dt,
                    approach,
                    target: format!("t{t}"),
                    target_band,
                    connected,
                    refused,
                    outcome,
                },
            )
    }

    proptest! {
        /// Adding an attempt toward a younger minor never lowers any count signal, and never
        /// lowers the score unless it was accepted (an accepted request is evidence of benign
        /// contact and lowers `negative_share` by design).
        #[test]
        fn adding_a_toward_minor_event_is_monotone(
            actor in any_band(),
            events in prop::collection::vec(any_event(), 0..40),
            mut extra in any_event(),
            created_ago in 0i64..20 * DAY_MS,
            blocks in 0u32..20, reports in 0u32..20,
        ) {
            let younger: Vec<AgeBand> = AgeBand::ALL.into_iter().filter(|b| *b < actor).collect();
            prop_assume!(!younger.is_empty());
            extra.target_band = younger[extra.target.len() % younger.len()];
            extra.connected = false;
            extra.at = NOW - (extra.at - NOW).rem_euclid(7 * DAY_MS - 1);
            let mut i = input(actor, events);
            i.account_created_at = NOW - created_ago;
            i.blocks_received_30d = blocks;
            i.reports_received_30d = reports;
            let cfg = RiskConfig::default();
            let before = score(&i, &cfg);
            i.events.push(extra.clone());
            let after = score(&i, &cfg);
            for name in [MINOR_CONTACTS_1H, MINOR_CONTACTS_24H, MINOR_CONTACTS_7D,
                         DISTINCT_MINORS_7D, MINOR_GROUP_ADDS_7D, NEW_ACCOUNT, BAND_MISMATCH_SHARE] {
                prop_assert!(value(&after, name) >= value(&before, name), "{}", name);
            }
            prop_assert!(value(&after, MINOR_CONTACTS_7D) == value(&before, MINOR_CONTACTS_7D) + 1.0);
            if extra.refused || extra.outcome != Outcome::Accepted {
                prop_assert!(after.score >= before.score - 1e-9,
                    "{} -> {}", before.score, after.score);
                prop_assert!(after.level >= before.level);
            }
        }

        #[test]
        fn score_is_total(
            actor in any_band(),
            events in prop::collection::vec(any_event(), 0..30),
            now in any::<i64>(), created in any::<i64>(),
        ) {
            let mut i = input(actor, events);
            i.now = now;
            i.account_created_at = created;
            let s = score(&i, &RiskConfig::default());
            prop_assert!(s.score.is_finite() && s.score >= 0.0);
        }
    }
}
