//! Minors' safety by design for Haven, on metadata only.
//!
//! Haven's messages are end-to-end encrypted, so the server cannot read them and this crate never
//! sees content. What it decides from is what the server already holds: each account's age band,
//! who is connected to whom, blocks and restricts, and the times and outcomes of contact attempts.
//! The crate is pure — no I/O, no async, no clock reads: every function takes `now` (Unix
//! milliseconds) or `today` (a UTC calendar day) from the caller, so the server's behaviour is
//! reproducible in tests.
//!
//! Data flow:
//! 1. registration: the client sends a date of birth once; the server calls [`age::parse_date`]
//!    and [`AgeRecord::from_birth_date`], checks [`policy::check_registration`], keeps only the
//!    [`AgeRecord`] (band, the day the band next changes, how it was established) and drops the
//!    date. Whenever it reads the record it calls [`AgeRecord::at`] with today's date, so bands
//!    advance on the birthday without a background job;
//! 2. every contact attempt (a contact request, a first message to a non-connection, a group add)
//!    goes through [`policy::decide`], which applies the rule table in [`policy::RULES`] and
//!    answers allow, message request (optionally with a safety notice to the minor), or a
//!    [`policy::Refusal`] whose text never reveals the other account's age or a block;
//! 3. the server records each attempt and its later outcome as a [`risk::ContactEvent`] and calls
//!    [`risk::score`]: an explainable sum of named signal contributions. Above the friction
//!    threshold ([`RiskLevel::Elevated`]) limits toward minors tighten and minors get safety
//!    notices; above the case threshold ([`RiskLevel::Case`]) the server opens a moderation case
//!    and contact with new minors pauses. Nothing here bans an account: people decide that.
//!
//! Trust assumptions:
//! - the date of birth is self-declared unless an operator corrected it ([`AgeSource`]); the
//!   rules protect minors who tell the truth and cannot detect an adult claiming to be a teen —
//!   the risk score's signals (contacts toward younger bands, declines, blocks, reports) exist
//!   for that case;
//! - the caller passes a correct `now`/`today` and complete event history; the functions are
//!   total (they never panic) on any input, including times far outside the calendar;
//! - a [`PolicyConfig`] is operator input: [`PolicyConfig::from_json`] validates it, and the
//!   scoring treats weights that would fail validation as contributing nothing;
//! - event target ids ([`risk::ContactEvent::target`]) are opaque; they are only compared for
//!   equality.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod age;
pub mod policy;
pub mod risk;

pub use age::{AgeError, AgeRecord};
pub use haven_proto::contacts::{AgeBand, AgeSource, MessageSetting};
pub use policy::{
    decide, notice_on_write, Approach, ContactLimits, Decision, Party, PolicyConfig, Refusal,
    RefusalKind, Relation, Standing, POLICY_VERSION, RULES,
};
pub use risk::{score, RiskConfig, RiskLevel, RiskScore};
