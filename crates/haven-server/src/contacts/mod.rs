//! Safety by design for minors: age bands, connections, message requests, blocks, restricts,
//! rate limits on new contacts, safety notices and metadata risk signals (DESIGN.md capability
//! 4; design notes `research/safety-tech.md` §5.1–5.2). Every rule and signal here works on
//! metadata the server already needs — who approaches whom, when, and each account's age band
//! — never on content. The rules are data with a version in `haven_safety::policy` (printed by
//! `haven admin policy`); this module applies them where a modified client cannot skip them.
//!
//! **Data flow.**
//! 1. *Registration* takes a date of birth. The server derives the band (`under-13`, `13-15`,
//!    `16-17`, `adult`) and the day it next changes (`haven_safety::age`), refuses under-13 by
//!    default, and stores band, change day and source (`self-declared`; `verified` after the
//!    operator's `haven admin age`, which is audited) — never the date. The band is read through
//!    `AgeRecord::at(today)`, so a minor becomes an adult on the right day without anyone
//!    acting. Accounts from before this capability are adults with a self-declared age.
//! 2. *Approaches.* Every way to reach another account is one of three approaches, decided by
//!    `haven_safety::policy::decide` from the two accounts' bands and settings, their relation
//!    (connection, blocks, restrict), the actor's new contacts of the last 24 h and its risk
//!    level:
//!    - a contact request (`POST /v1/contacts/requests`);
//!    - a first message: adding the other account to a 1:1 conversation, a group created with
//!      `direct_with` (only the two accounts' devices may ever join it);
//!    - a group add: a commit that adds an account not yet in the group.
//!
//!    The decision is taken at the key-package claim (early, so the client learns before it
//!    builds a commit) and again, authoritatively, when the commit is verified: a commit that
//!    adds an account the rules refuse is refused whole, with the same neutral text
//!    ("USER only accepts messages from their contacts") whatever the reason — a minor, a
//!    block, a `contacts-only` setting, a paused account — so no refusal reveals an age.
//! 3. *Message requests.* An approach the rules answer with `Request` opens a message request
//!    for the target (`message_requests`). In a 1:1 conversation the requester can deliver one
//!    application message until the target accepts (checked on every send; the sender is never
//!    told whether it was read); the recipient's client shows requests as text only. A declined
//!    1:1 request holds for 30 days: the requester's next 1:1 with the same account is refused. A minor
//!    added to any group gets a group request listing the members before accepting.
//! 4. *Time line and risk.* Every approach, allowed or refused, is a row in `contact_events`
//!    (actor, target, the target's band, the decision, and later its outcome: accepted,
//!    declined, blocked, reported). The risk score (`haven_safety::risk::score`) is recomputed
//!    from it after every approach, block, decline and report, and stored in `risk_state`.
//!    Above the friction threshold the limits toward minors tighten and minors the account
//!    writes to get safety notices; above the case threshold a case with the contributions and
//!    the time line opens in the moderation queue (source `risk_signals`), and contact with new
//!    minors is paused while it is open. A moderator's decision closes it; the events before it
//!    no longer count. Nothing here bans anyone automatically.
//!
//! **Trust assumptions.** Ages are self-declared unless the operator verified them: a liar
//! gets the rules of the band they claimed, which is why the signals look at who an account
//! approaches (an "adult-like" pattern from a 16-17 account shows as band mismatch and
//! declines). The server can always route around its own rules — these protect users from
//! other users and modified clients, not from the operator; what protects against the
//! operator is that it still cannot read content. Blocks in a group the blocker shares with the
//! blocked account are enforced by the blocker's client, which hides the blocked sender's
//! messages: the server routes every group message to every member device (an MLS group's
//! ciphertext is one message for all), and dropping the blocker's copy would desynchronise
//! nothing but would tell the blocked account, through delivery counts, who blocked it. All state lives in the database, so every
//! server node applies the same limits; two concurrent approaches by one account can both pass
//! the last rate-limit slot (the count is read, not reserved), an overshoot of at most the
//! number of concurrent requests, which the next approach sees.
//!
//! **What is logged.** Nothing about ages, bands, scores or signals reaches the server's log:
//! refusals are returned to the caller only, and the case note is sealed with the evidence key.

#[cfg(test)]
mod conformance;
pub mod http;
pub mod postgres;
pub mod service;
pub mod sqlite;
pub mod store;

pub use store::ContactStore;

/// How long the time line keeps an approach, and a decided message request its row: longer
/// than every signal's window (7 days) and the received-blocks window (30 days), so a purge
/// never changes a score.
pub const RETENTION_MS: crate::store::Millis = 45 * 24 * 3600 * 1000;
