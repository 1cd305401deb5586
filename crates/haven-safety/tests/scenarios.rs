//! Synthetic traffic through the policy and the risk score: the patterns the score must catch,
//! and ordinary use it must leave alone.

// Test helpers outside `#[test]` functions fail loudly on purpose.
#![allow(clippy::panic)]

use haven_safety::policy::RecentContact;
use haven_safety::risk::{ContactEvent, Outcome, RiskInput};
use haven_safety::{
    decide, score, AgeBand, Approach, Decision, MessageSetting, Party, PolicyConfig, Relation,
    RiskLevel, RiskScore, Standing,
};

const NOW: i64 = 1_750_000_000_000;
const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

fn party(band: AgeBand) -> Party {
    Party {
        band,
        setting: MessageSetting::Requests,
    }
}

/// Runs attempts through `decide` at each time, recording each as the server would.
struct Actor {
    band: AgeBand,
    created_at: i64,
    events: Vec<ContactEvent>,
    recent: Vec<RecentContact>,
    cfg: PolicyConfig,
}

impl Actor {
    fn new(band: AgeBand, created_at: i64) -> Self {
        Actor {
            band,
            created_at,
            events: vec![],
            recent: vec![],
            cfg: PolicyConfig::default(),
        }
    }

    fn score_at(&self, now: i64) -> RiskScore {
        score(
            &RiskInput {
                now,
                actor_band: self.band,
                account_created_at: self.created_at,
                events: self.events.clone(),
                blocks_received_30d: 0,
                reports_received_30d: 0,
            },
            &self.cfg.risk,
        )
    }

    /// One attempt at `at`; the level used is the one the score gives just before it.
    fn attempt(
        &mut self,
        at: i64,
        approach: Approach,
        target: &str,
        target_band: AgeBand,
        connected: bool,
        outcome: Outcome,
    ) -> Decision {
        let level = self.score_at(at).level;
        let rel = Relation {
            connected,
            ..Relation::default()
        };
        let standing = Standing {
            account_created_at: self.created_at,
            level,
            recent: self.recent.clone(),
        };
        let dec = decide(
            approach,
            &party(self.band),
            &party(target_band),
            &rel,
            &standing,
            &self.cfg,
            at,
        );
        if dec.is_new_contact(&rel) {
            self.recent.push(RecentContact {
                at,
                to_minor: target_band.is_minor(),
            });
        }
        let refused = matches!(dec, Decision::Refuse(_));
        self.events.push(ContactEvent {
            at,
            approach,
            target: target.to_string(),
            target_band,
            connected,
            refused,
            outcome: if refused { Outcome::Pending } else { outcome },
        });
        dec
    }
}

fn points(s: &RiskScore, name: &str) -> f64 {
    s.contributions
        .iter()
        .find(|c| c.signal == name)
        .map(|c| c.points)
        .unwrap_or_else(|| panic!("no {name}"))
}

/// One line per scenario (`cargo test -p haven-safety --test scenarios -- --nocapture`): the
/// score, the level and the signals that contributed, so the scores are reported, not just
/// asserted.
fn report(scenario: &str, s: &RiskScore) {
    let parts: Vec<String> = s
        .contributions
        .iter()
        .filter(|c| c.points > 0.0)
        .map(|c| format!("{}={:.1}", c.signal, c.points))
        .collect();
    eprintln!(
        "scenario {scenario}: score {:.1} ({}) {}",
        s.score,
        s.level.as_str(),
        parts.join(" ")
    );
}

fn assert_benign(scenario: &str, s: &RiskScore, cfg: &PolicyConfig) {
    report(scenario, s);
    assert_eq!(s.level, RiskLevel::Normal, "{s:#?}");
    assert!(s.score < cfg.risk.friction_threshold, "{s:#?}");
}

#[test]
fn grooming_burst_by_a_new_adult_opens_a_case() {
    let mut a = Actor::new(AgeBand::Adult, NOW - 2 * DAY);
    let start = NOW - 55 * MIN;
    for i in 0..15 {
        let approach = if i % 2 == 0 {
            Approach::FirstMessage
        } else {
            Approach::ContactRequest
        };
        let dec = a.attempt(
            start + i * 3 * MIN,
            approach,
            &format!("kid{i}"),
            AgeBand::Teen13To15,
            false,
            Outcome::Pending,
        );
        // Every attempt is refused, and the refusal reads like any other "not accepting".
        let Decision::Refuse(r) = dec else {
            panic!("attempt {i} got through: {dec:?}")
        };
        assert_eq!(
            r.message("kid", NOW),
            "kid only accepts messages from their contacts"
        );
    }
    let s = a.score_at(NOW);
    report("grooming_burst_by_a_new_adult_opens_a_case", &s);
    assert_eq!(s.level, RiskLevel::Case, "{s:#?}");
    assert_eq!(s.contributions[0].signal, "minor_contacts_1h");
    assert!(points(&s, "new_account") > 0.0);
    assert!(points(&s, "distinct_minors_7d") > 0.0);
}

#[test]
fn older_teen_mass_requests_to_younger_teens_opens_a_case_and_pauses() {
    let mut a = Actor::new(AgeBand::Teen16To17, NOW - 90 * DAY);
    // Build the traffic directly (outcomes known); the policy's own path is checked below.
    for i in 0..20 {
        let outcome = match i {
            3 | 11 => Outcome::Accepted,
            _ if i % 2 == 0 => Outcome::Declined,
            _ => Outcome::Blocked,
        };
        a.events.push(ContactEvent {
            at: NOW - 20 * HOUR + i * HOUR,
            approach: Approach::ContactRequest,
            target: format!("teen{i}"),
            target_band: AgeBand::Teen13To15,
            connected: false,
            refused: false,
            outcome,
        });
    }
    let s = a.score_at(NOW);
    report(
        "older_teen_mass_requests_to_younger_teens_opens_a_case_and_pauses",
        &s,
    );
    assert_eq!(s.level, RiskLevel::Case, "{s:#?}");
    assert!(points(&s, "negative_share") > 0.0);
    assert!(points(&s, "band_mismatch_share") > 0.0);
    // At the case level, contact with new minors is paused; adults and connections are not.
    let standing = Standing {
        account_created_at: a.created_at,
        level: s.level,
        recent: vec![],
    };
    let cfg = PolicyConfig::default();
    let to = |band, connected| {
        decide(
            Approach::FirstMessage,
            &party(AgeBand::Teen16To17),
            &party(band),
            &Relation {
                connected,
                ..Relation::default()
            },
            &standing,
            &cfg,
            NOW,
        )
    };
    assert!(
        matches!(to(AgeBand::Teen13To15, false), Decision::Refuse(r) if r.rule == "risk-case-pause")
    );
    assert_eq!(to(AgeBand::Teen13To15, true), Decision::Allow);
    assert!(!matches!(to(AgeBand::Adult, false), Decision::Refuse(_)));
}

#[test]
fn the_score_feeds_back_into_the_policy() {
    // An older teen sending requests to younger teens, all declined, one every 10 minutes:
    // the notices start at once, the elevated limit binds, and the case pause follows.
    let mut a = Actor::new(AgeBand::Teen16To17, NOW - 90 * DAY);
    let mut levels = vec![];
    let mut rules = vec![];
    for i in 0..40 {
        let at = NOW - 40 * 10 * MIN + i * 10 * MIN;
        levels.push(a.score_at(at).level);
        let dec = a.attempt(
            at,
            Approach::ContactRequest,
            &format!("t{i}"),
            AgeBand::Teen13To15,
            false,
            Outcome::Declined,
        );
        if i == 0 {
            assert_eq!(dec, Decision::Request { notice: true });
        }
        if let Decision::Refuse(r) = dec {
            rules.push(r.rule);
        }
    }
    assert!(levels.windows(2).all(|w| w[0] <= w[1]), "{levels:?}");
    assert!(levels.contains(&RiskLevel::Elevated));
    assert!(rules.contains(&"new-contact-rate"));
    assert_eq!(a.score_at(NOW).level, RiskLevel::Case);
    assert_eq!(rules.last(), Some(&"risk-case-pause"));
}

#[test]
fn teens_befriending_their_own_band_are_normal() {
    let mut a = Actor::new(AgeBand::Teen13To15, NOW - 200 * DAY);
    for i in 0..40 {
        let dec = a.attempt(
            NOW - 20 * HOUR + i * 30 * MIN,
            Approach::ContactRequest,
            &format!("classmate{i}"),
            AgeBand::Teen13To15,
            false,
            if i % 4 == 0 {
                Outcome::Declined
            } else {
                Outcome::Accepted
            },
        );
        // The daily limit toward minors (20) holds for teens too; the rest are refused.
        if i < 20 {
            assert!(!matches!(dec, Decision::Refuse(_)), "{i}: {dec:?}");
        } else {
            assert!(matches!(dec, Decision::Refuse(r) if r.rule == "new-contact-rate"));
        }
    }
    assert_eq!(a.events.len(), 40);
    assert_benign(
        "teens_befriending_their_own_band_are_normal",
        &a.score_at(NOW),
        &a.cfg,
    );
}

#[test]
fn a_parent_writing_to_their_child_is_normal() {
    let mut a = Actor::new(AgeBand::Adult, NOW - 400 * DAY);
    for i in 0..200 {
        let dec = a.attempt(
            NOW - 6 * DAY + i * 40 * MIN,
            Approach::FirstMessage,
            "child",
            AgeBand::Under13,
            true,
            Outcome::Pending,
        );
        assert_eq!(dec, Decision::Allow);
    }
    assert_benign(
        "a_parent_writing_to_their_child_is_normal",
        &a.score_at(NOW),
        &a.cfg,
    );
}

#[test]
fn a_school_parents_group_is_normal() {
    let mut a = Actor::new(AgeBand::Adult, NOW - 30 * DAY);
    for i in 0..30 {
        let dec = a.attempt(
            NOW - 3 * HOUR + i * 5 * MIN,
            Approach::GroupAdd,
            &format!("parent{i}"),
            AgeBand::Adult,
            false,
            Outcome::Accepted,
        );
        assert!(!matches!(dec, Decision::Refuse(_)), "{i}: {dec:?}");
    }
    assert_benign("a_school_parents_group_is_normal", &a.score_at(NOW), &a.cfg);
}

#[test]
fn a_new_adult_writing_to_adults_is_normal() {
    let mut a = Actor::new(AgeBand::Adult, NOW - DAY);
    for i in 0..25 {
        let dec = a.attempt(
            NOW - 10 * HOUR + i * 20 * MIN,
            Approach::FirstMessage,
            &format!("seller{i}"),
            AgeBand::Adult,
            false,
            Outcome::Pending,
        );
        // Within the new account's halved daily limit of 25.
        assert!(!matches!(dec, Decision::Refuse(_)), "{i}: {dec:?}");
    }
    assert_benign(
        "a_new_adult_writing_to_adults_is_normal",
        &a.score_at(NOW),
        &a.cfg,
    );
    // The 26th is over the new account's limit.
    let dec = a.attempt(
        NOW,
        Approach::FirstMessage,
        "seller25",
        AgeBand::Adult,
        false,
        Outcome::Pending,
    );
    assert!(matches!(dec, Decision::Refuse(r) if r.rule == "new-contact-rate"));
}
