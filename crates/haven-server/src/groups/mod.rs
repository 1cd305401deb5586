//! Groups: the server's public view of every MLS group, and the checks every group change
//! passes before it is routed.
//!
//! **Data flow.**
//! 1. *Create.* The creator posts the group's signed `GroupInfo` at epoch 0 with its ratchet
//!    tree. [`verify::GroupView::create`] builds openmls's `PublicGroup` from it (the GroupInfo
//!    signature, the tree's validity); the group must have one member, the caller, whose leaf
//!    key is the caller's registered MLS key. The view's state is stored with the group.
//! 2. *Commit.* Handshake messages are MLS `PublicMessage`s (application messages stay
//!    `PrivateMessage`s). The service checks that the caller is a member before anything else,
//!    then [`verify::GroupView::verify_commit`] processes the commit with `PublicGroup`: the
//!    committer's signature, every proposal and the update path's public keys. Who is
//!    added and removed is read from the verified commit — never from a list the client sends.
//!    Each added key package must name a registered device with its registered key and must
//!    have been claimed by the committer for this group; the Welcome must be for exactly the
//!    added key packages, and is released to exactly those devices. The store then applies the
//!    change, the new view state and the epoch in one transaction, so exactly one commit per
//!    epoch wins and a refused commit changes nothing.
//! 3. *Leave.* A member's Remove of itself is verified the same way and queued in the view, so
//!    the commit that applies it can refer to it; routing to the leaver stops at once.
//!
//! **Trust assumptions and what the server learns.** The server reads the public part of every
//! handshake message: the ratchet tree (each member's credential `user/device`, signature and
//! HPKE public keys, capabilities), who adds and removes whom and when. That is the membership it
//! routes by and already knew; it never sees a path secret, an epoch secret or any content (the
//! update path's secrets are HPKE-encrypted to the members, RFC 9420 §7.6). The server cannot
//! check the membership tag of a `PublicMessage` (it needs the epoch's membership key) — members
//! check it. Identities are bound by the key each device registered (signed with its
//! authentication key): a leaf naming `bob/<device>` with any other key is refused here and by
//! clients. A malicious server could still register a key of its own for a device it invents;
//! key transparency (a later capability) makes that visible to clients.
//!
//! **What the server cannot check.** The parts of a commit that only members can open — the
//! HPKE-encrypted path secrets and the confirmation tag (RFC 9420 §6.1: outside the signed
//! content, keyed by the new epoch's secrets) — are beyond any public verifier. A member can
//! still post a correctly signed commit whose encrypted parts do not open for the others; the
//! server accepts it and the others refuse it. Such a commit is attributable (it carries the
//! committer's signature, and the server records the committer of every epoch), but today it
//! still leaves the other members behind in the old epoch. The way out — members who cannot
//! process an accepted commit rejoin from a GroupInfo with an external commit (RFC 9420 §12.4.3.2)
//! — is not built yet. What the server does check (membership, identities, key packages, the
//! Welcome's recipients) a client can no longer lie about.
//!
//! Groups created before this verification existed have no stored view; commits to them are
//! refused with a clear error (their members create a new group).

pub mod verify;

pub use verify::{
    credential_identity, verify_key_package, AddedLeaf, CreatedGroup, GroupView, Leaf,
    VerifiedCommit, VerifiedKeyPackage, VerifiedLeave, VerifyError, CIPHERSUITE,
};
