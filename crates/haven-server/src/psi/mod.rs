//! Known-image detection under end-to-end encryption (DESIGN.md capability 6, issue 12): hash
//! banks, the voucher database built from them, and the safety voucher every upload carries
//! (the protocol is `haven-psi`, pure; this is its server side).
//!
//! **Data flow.**
//! 1. *Banks.* The operator creates named banks (`haven admin bank create`), imports hashes
//!    with their source (`bank import NAME FILE --kind pdq|md5|sha256 --source TEXT`; one row
//!    per entry and source), and enables a bank per use (`bank enable NAME --for vouchers`).
//!    An entry is used only when its bank's policy accepts it — at least `min_sources`
//!    distinct sources added it — and it has not been removed (`bank remove`, kept as a
//!    record with its reason, so a re-import does not bring it back). Every change is a line
//!    of the moderation audit log, in the same transaction.
//! 2. *Releases.* `haven admin bank release` builds the next release from the accepted
//!    entries of the banks enabled for vouchers: each entry's match keys
//!    (`haven_psi::keys`) are blinded into a cuckoo table with a fresh secret `α`; the
//!    header (release number, threshold, keys per voucher, synthetic rate) and the table's
//!    SHA-256 root are signed with the release signing key. The database, the signed release
//!    and `α` (sealed under the evidence key) go into `psi_releases`; the public history
//!    (`GET /v1/psi/releases`) lists every release's number, root, entry count and size, so
//!    anyone can see when the database changed and by how much.
//! 3. *Clients* fetch the newest signed release (`GET /v1/psi/release`) and its database
//!    (`GET /v1/psi/db/{n}`), check the signature under the key they pinned and the root, and
//!    make a voucher for every file they upload.
//! 4. *Uploads.* Once a release exists, `PUT /v1/blobs` needs a voucher for one of the two
//!    newest releases in the `haven-voucher` header; it is decoded and opened before the body
//!    is read, and a missing, malformed or stale voucher refuses the upload with nothing
//!    stored ([`service::Service::check_voucher`]). After the blob is stored, an opened share
//!    is kept per device (`psi_shares`, the first per image); when a device holds at least the
//!    threshold, the server tries to reconstruct, and images revealed for the first time open
//!    a `voucher_match` case: each image's blob is fetched and decrypted with the revealed key,
//!    hashed, matched against the banks in use, and sealed into the case for review.
//!
//! **Trust assumptions and limits** (the protocol's own are in `haven_psi`'s docs).
//! - The server learns, for each upload, whether its voucher opened — a real match or a
//!   synthetic voucher, which it cannot tell apart below the threshold. It stores the opened
//!   share (which it cannot use below the threshold) and never the voucher of a file that
//!   matched nothing.
//! - Presence is enforced, honesty is not: a modified client can attach a well-formed voucher
//!   over garbage keys (it opens for nothing). What the server can enforce is that every
//!   upload carries a voucher that decodes and whose opened pairs decrypt; every voucher has
//!   the same number of keys, real ones padded with random ones, so an image cannot be told
//!   from another file.
//! - Shares are kept per device: each device makes its own account secret, so an account's
//!   devices do not add up towards one threshold (handing the secret to a linked device is
//!   not built yet).
//! - The release signing key and every release's `α` are sealed under the evidence key (a
//!   file beside the database); anyone holding both the database and that file can open
//!   vouchers and, over the threshold, what they carry.
//! - The server decides what is in the database: nothing cryptographic stops an operator
//!   adding hashes of anything; the signed, published roots make every change visible.

pub mod http;
pub mod service;
pub mod store;

mod postgres;
mod sqlite;

#[cfg(test)]
mod conformance;

pub use store::{BankUse, EntryKind, PsiStore};
