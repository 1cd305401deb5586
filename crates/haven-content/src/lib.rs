//! What Haven puts inside an MLS application message, shared by the client (which seals and
//! opens it) and the server (which verifies it when a recipient reports it):
//!
//! - [`content`]: the content JSON, the envelope `"HVE1" ‖ salt ‖ content` and its bounds;
//! - [`attachment`]: ChaCha20-Poly1305 attachment encryption, one fresh key per file;
//! - [`evidence`]: the evidence bundle a reporter discloses — each reported message's content,
//!   its franking salt, commitment and the server's tag with what the tag binds — and the
//!   checks on it that need no server secret (openings, bounds, one conversation).
//!
//! No I/O. The server's half of report verification (its franking key, group membership, the
//! blob store) lives in `haven-server`'s moderation module.

#![forbid(unsafe_code)]

pub mod attachment;
pub mod content;
pub mod evidence;

pub use content::{AttachmentRef, Body, Content, ContentError, KtRootRef, MessageId};
