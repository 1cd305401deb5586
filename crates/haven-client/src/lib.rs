//! Haven's client library: the MLS engine, the local store, message content and franking,
//! attachment encryption.
//!
//! Design in a few lines:
//! - [`engine::Engine`] is synchronous and does no network I/O. It turns user intentions into
//!   bytes to send (key packages, commits, Welcomes, application messages) and processes queue
//!   entries received, persisting everything in `<home>/haven.db`.
//! - That one SQLite file holds openmls's tables (through `openmls_sqlite_storage`) and Haven's
//!   own ([`store`]), so processing an entry is one transaction: openmls's ratchet and group
//!   state, our message row and the processed queue id commit together or not at all
//!   (the private `provider` module explains how). Redelivery is a no-op; a crash before the commit loses nothing.
//!   Entries that arrive together are processed as one batch in one transaction
//!   ([`engine::Engine::process_entries`]) and acknowledged in one frame after it commits.
//! - Groups stay decoded in memory between transactions; the cache is dropped on any rollback
//!   and whenever another process has committed to the profile (`PRAGMA data_version`), so it
//!   never disagrees with storage (`Engine::with_tx` explains).
//! - A commit of ours is recorded with its bytes until merged or cleared; if the server's
//!   answer is lost, it is resubmitted unchanged and the server recognises one it accepted
//!   ([`client`] explains), so a crash never strands the device in an old epoch.
//! - Every application message is franked ([`content`], `haven-frank`): a commitment to the
//!   content rides in MLS `authenticated_data`; receivers drop messages whose commitment does not
//!   open or differs from the server's envelope, and keep what a report needs.
//! - Every MLS leaf's identity is checked against the key known for its device ([`pins`]):
//!   the key the directory gave, or the first one seen; a leaf that names a known device with
//!   another key is refused, and the adder of a Welcome must be its server-authenticated sender.
//! - Conversations are addressed by id; names are local labels, unique among live
//!   conversations, and a name that matches several is refused with the candidates
//!   ([`address`]). A direct chat is one the user opened or accepted, and a Welcome back into a
//!   conversation the user left is an invitation (the engine's `book` module has the rules).
//! - Contacts, message requests, blocks and restricts are the server's to enforce; a sync shows
//!   their effect (requests marked and text only, blocked senders hidden; `client::safety`).
//! - Attachments are sealed with a fresh ChaCha20-Poly1305 key per file ([`attachment`]).
//! - A report discloses a received message and up to ten earlier ones of its conversation
//!   (ours included: the send reply carries the server's tag, stored with the message) exactly
//!   as they were stored; the server verifies each ([`Client::report_bundle`]). A suspended
//!   account cannot log in, and appeals with a device proof instead ([`Client::appeal`]).
//! - Untrusted input never panics and never wedges the queue: bad entries are recorded as
//!   dropped and acknowledged; only storage failures are errors (and are retried).
//!
//! The network layer (`net`, `client`) ties the engine to the server's HTTP/WebSocket API.

#![forbid(unsafe_code)]

pub mod address;
pub use haven_content::attachment;
pub mod client;
pub mod devices;
pub use haven_content::content;
pub mod engine;
pub mod error;
pub mod kt_audit;
pub mod kt_roots;
pub mod net;
pub mod pins;
mod provider;
pub mod store;

pub use address::{Candidate, IdPrefix};
pub use client::{
    Client, ClientError, ConversationInfo, Event, MessageCandidate, MessageScope, RequestAnswer,
    SafetyView, Target, PUSH_BATCH, PUSH_LINGER,
};
pub use content::{AttachmentRef, Body, MessageId};
pub use engine::{
    AuthSecret, CommitOutcome, DropReason, Engine, Identity, OutgoingCommit, OutgoingMessage,
    Processed, SessionToken,
};
pub use error::{EngineError, ErrorCause, KeyPackageProblem};
pub use store::{
    Conversation, ConversationKind, ConversationState, FrankRecord, FrankedRow, StoredMessage,
};
