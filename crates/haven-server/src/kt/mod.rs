//! The key directory (DESIGN.md capability 5, issue 11): every account's current signed device
//! list, published in an auditable key directory (facebook/akd 0.13) whose epoch roots the
//! server signs. Clients check a user's list against a lookup proof before they encrypt to any
//! of its devices, monitor their own account's history, and audit that the directory only
//! grew; `haven kt audit` does the last for anyone.
//!
//! **Data flow.**
//! 1. A device uploads a list (`crate::device_lists`); the same transaction queues it in
//!    `kt_pending` (the newest list of each account).
//! 2. The publisher ([`service::Kt::publish_pending`]) publishes the queue as one epoch every
//!    interval, or at once on `POST /v1/kt/publish`, and signs the new root with the KT key
//!    ([`keys`]).
//! 3. The endpoints ([`http`]) serve the newest signed root and the keys, lookup and history
//!    proofs at the newest root, and append-only proofs between any two epochs. They are
//!    public (the directory hides user names behind akd's VRF; a lookup names only the user
//!    asked about) and cacheable (a proof at an epoch never changes).
//!
//! **Storage.** The directory lives in the server's database through akd's storage trait
//! ([`akd_db`] over [`store::KtStore`], SQLite and PostgreSQL side by side in this folder, one
//! conformance suite that includes akd's own storage cases). A publish is one database
//! transaction, so restarts and SIGKILL leave the directory at an epoch boundary.
//!
//! **Trust assumptions.** The server runs the directory and holds its keys, so it *can* publish
//! a wrong value; what it cannot do is publish one nobody notices. A value is an account-signed
//! device list: other clients refuse a value that is not the list they verified from the chain,
//! and the account's own devices see every value in their history. A root is signed, so two
//! roots for one epoch are evidence; clients compare roots through their messages, and
//! auditors check that each epoch only added to the one before.

pub mod akd_db;
pub mod http;
pub mod keys;
pub mod service;
pub mod store;

mod postgres;
mod sqlite;

#[cfg(test)]
mod conformance;

pub use service::Kt;
pub use store::KtStore;

/// This node's name for the publisher lease: its host name and data directory.
pub fn node_name(data_dir: &std::path::Path) -> String {
    let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    format!("{}:{}", host.trim(), dir.display())
}
