//! Account-signed device lists (DESIGN.md capability 5, issue 11): the server stores each
//! account's lists, checks each upload against the chain rules of `haven_kt::device_list`, and
//! hands out key packages only for listed devices. It cannot make a list: lists are signed by
//! the account's devices (their MLS keys), and clients refuse every device that is not in a
//! list they verified through the key directory ([`crate::kt`]).
//!
//! **Data flow.**
//! - Registration: the new device uploads version 1 (itself) right after `POST /v1/register`.
//! - Link: the device that made the link code checks the new device's link proof (passed on in
//!   the `DeviceLinked` entry), then uploads the next version with the new device.
//! - Removal: the removing device uploads the next version without the device, then removes it
//!   (`POST /v1/devices/{id}/remove` refuses a device that is still listed).
//! - Every stored version is queued for the key directory in the same transaction.
//!
//! **What the server checks on upload** ([`Service::put_device_list`](crate::service::Service)):
//! the chain rules (version, previous hash, signer in the previous list), that the uploader
//! signed it, and that every listed device is a current device of the account with the MLS key
//! it registered. These keep an honest server's directory clean; they are not what protects
//! users — clients check the same rules and the directory's proofs themselves.
//!
//! Trust assumptions: none on the server for who is in a list; the server is trusted to store
//! and serve lists (withholding one is a denial of service that clients see as a failure).

pub mod http;
pub mod service;
pub mod store;

mod postgres;
mod sqlite;

#[cfg(test)]
mod conformance;

pub use store::{DeviceListStore, StoredDeviceList};
