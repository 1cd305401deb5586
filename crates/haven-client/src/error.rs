//! Engine errors, grouped by cause (CONVENTIONS.md, "Errors and input").
//!
//! Untrusted bytes arriving from the queue never produce an error: they become
//! [`Processed::Dropped`](crate::engine::Processed::Dropped) so the entry is acknowledged and the
//! queue cannot wedge. An [`EngineError`] from [`Engine::process_entry`](crate::engine::Engine::process_entry)
//! therefore always means "nothing was recorded, retry later" (storage or internal failure).

use haven_proto::{DeviceId, GroupId, UserName};

/// The broad cause of an [`EngineError`], for callers that only need to decide what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCause {
    /// Bytes or values from outside are malformed.
    Malformed,
    /// A peer (or the server) sent something well-formed but wrong.
    Peer,
    /// The caller asked for something that cannot be done in the current state.
    Misuse,
    /// The profile database or file system failed.
    Storage,
    /// A bug, or an openmls failure we cannot attribute.
    Internal,
}

/// What is wrong with a claimed key package.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyPackageProblem {
    /// Not a TLS-serialised `MLSMessage` carrying a key package.
    #[error("not a key package")]
    Malformed,
    /// Signatures, lifetime or version do not verify.
    #[error("key package does not verify")]
    Invalid,
    /// A ciphersuite other than Haven's.
    #[error("key package has the wrong ciphersuite")]
    Ciphersuite,
    /// Its credential is not a basic credential `"<user>/<device>"` for the claimed user and
    /// device.
    #[error("key package credential does not match the claimed user and device")]
    WrongIdentity,
    /// Its signature key is not the key this profile knows for that device (from the
    /// directory or seen before).
    #[error("key package carries a different key than the one known for this device")]
    WrongKey,
    /// The device is not in its user's verified device list (`crate::devices`): the server
    /// offered a device that no device of the account signed in.
    #[error("the device is not in the user's verified device list")]
    NotListed,
    /// The device is already a member of the group.
    #[error("device is already a member")]
    AlreadyMember,
    /// The same device appears twice in one request.
    #[error("device listed twice")]
    Duplicate,
}

/// Errors of the [`Engine`](crate::engine::Engine).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    // --- malformed input ---
    /// The message content could not be built (too long a text or name).
    #[error("invalid message content: {0}")]
    Content(#[from] crate::content::ContentError),

    // --- peer misbehaving ---
    /// A key package handed to [`add_members`](crate::engine::Engine::add_members) was refused.
    /// Attributed to the server that handed it out, which is not trusted.
    #[error("key package for {user}/{device_id} refused: {problem}")]
    KeyPackage {
        /// Claimed user.
        user: UserName,
        /// Claimed device.
        device_id: DeviceId,
        /// What is wrong.
        problem: KeyPackageProblem,
    },

    /// A Welcome or commit names a device of `0` and this profile has not checked `0`'s device
    /// list in this session: the client checks it (`Client` does, then processes the entry
    /// again). Nothing of the batch was recorded.
    #[error("the device list of {0} must be checked first")]
    DeviceListNeeded(UserName),

    // --- caller misuse ---
    /// `create` on a directory that already holds a profile.
    #[error("a profile already exists in this directory")]
    ProfileExists,
    /// `open` on a directory without a profile.
    #[error("no profile in this directory")]
    NoProfile,
    /// No conversation with this group id.
    #[error("unknown conversation {0}")]
    UnknownConversation(GroupId),
    /// We left this conversation, or were removed from it.
    #[error("no longer a member of conversation {0}")]
    NotActive(GroupId),
    /// The conversation is an invitation (we were re-added after leaving or being removed):
    /// nothing is sent there until the user accepts it.
    #[error("conversation id:{0} is an invitation you have not accepted: `haven accept id:{0}` joins it, `haven leave id:{0}` declines it")]
    NotAccepted(GroupId),
    /// Another live conversation already has this group name.
    #[error("you already have a group named #{0}")]
    NameTaken(String),
    /// Several live conversations have this name (a profile from before names were unique);
    /// address one by id.
    #[error("several conversations are named #{0}; name one by id")]
    AmbiguousName(String),
    /// A commit of ours is staged and awaits `merge_pending_commit` or `clear_pending_commit`.
    #[error("a commit is pending in conversation {0}")]
    PendingCommit(GroupId),
    /// Proposals are pending; `commit_pending_proposals` must run before sending.
    #[error("proposals are pending in conversation {0}; commit them first")]
    PendingProposals(GroupId),
    /// There is no pending commit to merge.
    #[error("no pending commit in conversation {0}")]
    NoPendingCommit(GroupId),
    /// The request names nobody, or names someone who is not a member, or ourselves.
    #[error("invalid membership change: {0}")]
    Membership(&'static str),
    /// A count or size out of range.
    #[error("out of range: {0}")]
    Limit(&'static str),

    // --- storage ---
    /// SQLite failed.
    #[error("profile database: {0}")]
    Db(#[from] rusqlite::Error),
    /// The file system failed.
    #[error("profile directory: {0}")]
    Io(#[from] std::io::Error),
    /// openmls's schema migrations failed.
    #[error("profile database migration: {0}")]
    Migration(String),
    /// Stored data is unreadable (corrupt or from an unknown version).
    #[error("profile data is corrupt: {0}")]
    Corrupt(&'static str),

    // --- internal ---
    /// openmls failed in a way we cannot attribute to input.
    #[error("MLS failure: {0}")]
    Mls(String),
    /// A bug.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl EngineError {
    /// The broad cause.
    pub fn cause(&self) -> ErrorCause {
        match self {
            EngineError::Content(_) => ErrorCause::Malformed,
            EngineError::KeyPackage { .. } => ErrorCause::Peer,
            EngineError::DeviceListNeeded(_) => ErrorCause::Peer,
            EngineError::ProfileExists
            | EngineError::NoProfile
            | EngineError::UnknownConversation(_)
            | EngineError::NotActive(_)
            | EngineError::NotAccepted(_)
            | EngineError::NameTaken(_)
            | EngineError::AmbiguousName(_)
            | EngineError::PendingCommit(_)
            | EngineError::PendingProposals(_)
            | EngineError::NoPendingCommit(_)
            | EngineError::Membership(_)
            | EngineError::Limit(_) => ErrorCause::Misuse,
            EngineError::Db(_)
            | EngineError::Io(_)
            | EngineError::Migration(_)
            | EngineError::Corrupt(_) => ErrorCause::Storage,
            EngineError::Mls(_) | EngineError::Internal(_) => ErrorCause::Internal,
        }
    }

    pub(crate) fn mls(e: impl std::fmt::Display) -> Self {
        EngineError::Mls(e.to_string())
    }
}
