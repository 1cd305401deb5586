//! Haven's key transparency (DESIGN.md capability 5, issue 11): no device, and so no reader,
//! comes into an account on the server's word.
//!
//! This crate is pure — formats, signatures and proof checks, no I/O — and both sides use it:
//! the server to build and check what it stores and publishes, the client to verify what the
//! server shows it. Two layers:
//!
//! - [`device_list`]: the **account-signed device list**. An account's devices are a versioned
//!   list `(device id, MLS signature key)`, signed by a device the account already trusts: the
//!   first list by the registering device, each next one by a device of the list before it
//!   (the device that linked or removed one). The server holds no key that can sign a list, so
//!   a device the server makes on its own — a link code it wrote, a row it inserted — is in no
//!   signed list, and no honest client encrypts to it. A new device enters the list only after
//!   it proved, end to end, that it holds the link secret made on the existing device
//!   ([`device_list::link_proof`]; the secret never reaches the server).
//! - [`directory`]: the **key directory**. The signed lists are published in an auditable key
//!   directory (facebook/akd 0.13: label = user name, value = the user's current signed list),
//!   whose epoch roots the server signs with its KT key ([`directory::SignedRoot`]). Clients
//!   check a lookup proof against a verified root before they trust a user's list, keep the
//!   last root they verified and accept a newer one only with an append-only (audit) proof,
//!   and check their own account's history on every sync. Anyone can audit the whole chain.
//!
//! **Data flow.**
//! 1. Registration: the server assigns the device id; the device signs list version 1
//!    (itself alone) and uploads it; the server checks and stores it and queues it for the
//!    directory.
//! 2. Link: the existing device makes a link secret and shows `SERVER-CODE + SECRET`; the new
//!    device sends the server code to the server and a MAC under the secret over its own keys
//!    ([`device_list::link_proof`]); the server passes the MAC to the account's devices with
//!    the `DeviceLinked` entry; the device that made the secret checks the MAC, signs the next
//!    list with the new device, uploads it, waits for the directory to publish it, and only
//!    then adds the new device to its conversations.
//! 3. Removal: the removing device signs the next list without the removed device; the
//!    server removes the device and stores the list in one transaction.
//! 4. Every client, before it encrypts to a device (a claimed key package, a Welcome's tree, a
//!    commit's adds), requires it in the user's list as verified through the directory.
//!
//! **Trust assumptions.** The server is not trusted to say which devices an account has; it is
//! trusted for availability only (it can refuse service, delay publishing, or withhold
//! entries, which clients notice as failures, not as silent readers). The first list a client
//! sees of a user it never met is taken from the directory: a server that invents a whole
//! account history for a user is caught by that user's own devices, which monitor their entry
//! ([`directory`]), and by split-view detection between clients. A device that is compromised
//! while in the list can sign lists; that is what removal (and the owner's monitor) is for.
//!
//! Specifications followed: akd (Chase et al., "SEEMless: Secure End-to-End Encrypted
//! Messaging with less Trust", CCS 2019; Melara et al., "CONIKS", USENIX Security 2015; the
//! facebook/akd implementation, whose proofs this crate verifies with `akd_core`/`akd`);
//! Ed25519 (RFC 8032) for list and root signatures; HMAC-SHA-256 (RFC 2104) for the link proof.

pub mod device_list;
pub mod directory;

pub use device_list::{DeviceListError, ListedDevice, SignedDeviceList};
