//! Moderation: verified reports of end-to-end encrypted messages, the case queue, account
//! actions with statements of reasons, appeals, escalation to the clearing house, and the
//! audit log (DESIGN.md capability 3; design notes `research/safety-tech.md` §4.7, §5.3, §5.4).
//!
//! **Data flow.**
//! 1. *Report.* A recipient's client discloses the reported message and up to ten earlier
//!    messages of the same conversation ([`haven_proto::moderation::EvidenceBundle`]): for each,
//!    the content bytes, the franking salt, the commitment and the server's envelope. The server
//!    ([`service`]) checks, for every message: the salt and content open the commitment
//!    (`haven_content::evidence`); its own tag over (commitment, sender device, conversation,
//!    receive time) verifies under its franking keyring; the sender device belongs to the named
//!    account; the reporter's account had a device in the conversation when the message was
//!    received (the membership history in `group_membership_log`, written by triggers). The
//!    reported message must not be the reporter's own. Any failure refuses the whole report
//!    with a 4xx that names the message and the check; nothing is written. A genuine report
//!    cannot be refused by the sender: nothing the sender can do after sending changes any of
//!    these checks.
//! 2. *Attachments.* For each message whose content references a file, the server reads the
//!    blob (if it has not expired), checks SHA-256 of the ciphertext against the blob id the
//!    content names, decrypts with the key the content carries (which the commitment binds) and
//!    checks SHA-256 of the plaintext against the committed hash. A blob that does not match is
//!    a refused report; an expired blob leaves the message verified and the file marked
//!    unavailable. Kept files get SHA-256, MD5 and, for images, PDQ hash and quality.
//! 3. *Case.* The case, its verified messages (as JSON), the note and the files are sealed with
//!    the evidence key ([`vault`]) and written in one transaction with the audit line. The
//!    priority puts child-safety reasons and reports by minors first.
//! 4. *Review.* Moderators (the `moderator` role, granted by the operator with `haven admin role
//!    grant`) list the queue, open a case (verified evidence, the reported account's metadata —
//!    registration time, devices, earlier cases and actions, never content that nobody
//!    reported) and act. Every view and every action is an audit line. A moderator who is the
//!    reporter or the reported account of a case cannot see or act on it.
//! 5. *Actions* take effect in the same transaction that records them: `restrict` (no new
//!    conversations, no adding members, no contact requests, for N days), `suspend` (sessions
//!    revoked; cannot log in; queued messages kept), `ban`, `warn`, `dismiss` (evidence deleted
//!    after the retention period unless held), `preserve` (evidence and the account's records
//!    held 365 days, exempt from every purge) and `escalate` (a CyberTipline report, built after
//!    human review; see [`escalate`]). The affected account gets a notice with the statement of
//!    reasons through its queue; the reporter learns the outcome category. One appeal per action,
//!    decided by a moderator other than the one who acted.
//!
//! **Trust assumptions.** The server learns the content of reported messages only — exactly what
//! the reporter chose to disclose — and keeps it sealed at rest under a key held in a file
//! beside the database, never in it. The franking tag makes reports unforgeable by reporters
//! (Grubbs–Lu–Ristenpart, CRYPTO 2017, §7); the commitment makes them undeniable by senders.
//! The membership check relies on the server's own record of group membership, which it
//! derives from verified handshake messages (`groups`). Membership times come from the
//! database clock and are compared with the tag's receive time with a slack of
//! [`MEMBERSHIP_SLACK_MS`], so a device added seconds after a message could still report it;
//! such a device cannot decrypt that message (MLS forward secrecy) unless a member gave it the
//! plaintext and salt, and that member could report it anyway. The operator can read the audit
//! log, and nobody can edit it through Haven: the tables refuse UPDATE and DELETE, and each
//! entry carries a hash chained to the previous one, so an edit made behind Haven's back (by a
//! database superuser) breaks the chain that `haven admin audit --verify` checks.

pub mod escalate;
pub mod http;
pub mod postgres;
pub mod service;
pub mod sqlite;
pub mod store;
pub mod vault;

#[cfg(test)]
mod conformance;

pub use store::{AuditLine, ModerationStore, Role};
pub use vault::EvidenceKey;

/// How far apart (ms) a message's receive time and a membership change may be and still count
/// as "a member then" (the membership log uses the database's clock).
pub const MEMBERSHIP_SLACK_MS: i64 = 5_000;
/// How long a dismissed case's evidence is kept, by default.
pub const DISMISSED_RETENTION_MS: i64 = 90 * 24 * 3600 * 1000;
/// How long `preserve` holds a case's evidence and the account's records.
pub const PRESERVE_MS: i64 = 365 * 24 * 3600 * 1000;
/// How long registration and login addresses are kept without a hold.
pub const EVENT_RETENTION_MS: i64 = 30 * 24 * 3600 * 1000;
