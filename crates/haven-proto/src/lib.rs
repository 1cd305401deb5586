//! Haven's wire types, identifiers, codecs and API errors. No I/O.
//!
//! Shared by the client library and the server so that neither depends on the other:
//! - [`ids`]: identifiers as checked newtypes (user names, device ids, MLS group ids, blob ids);
//! - [`api`]: the HTTP/JSON API, its request and reply types and the error body;
//! - [`contacts`]: age bands, connections, message requests, blocks and risk signals;
//! - [`moderation`]: reports, the moderation queue, account actions, appeals and notices;
//! - [`mls_frame`]: a reader for the clear-text header of an RFC 9420 message (the server's
//!   first, cheap look at MLS traffic; handshake messages it then verifies in full with openmls).

pub mod api;
pub mod contacts;
pub mod ids;
pub mod mls_frame;
pub mod moderation;

pub use ids::{mls_identity, parse_mls_identity, BlobId, DeviceId, GroupId, IdError, UserName};
