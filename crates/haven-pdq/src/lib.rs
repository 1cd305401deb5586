//! PDQ perceptual hashing and exact Hamming-range matching.
//!
//! (Design notes are filled in as the modules land: `hash` for the algorithm and the details
//! that matter for bit-exactness, `decode` for image decoding and its limits, `index` for
//! multi-index hashing, `hashlist` for the list and snapshot formats.)

pub mod decode;
pub mod hash;
pub mod hashlist;
pub mod index;
mod types;

pub use types::{ParseHashError, PdqHash, HASH_BITS, HASH_BYTES};
