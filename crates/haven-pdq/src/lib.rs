//! PDQ perceptual hashing and exact Hamming-range matching.
//!
//! (Design notes are filled in by the modules as they land: `hash` for the algorithm and the
//! details that matter for bit-exactness, `decode` for the image decoding and its limits,
//! `index` for multi-index hashing, `hashlist` for the list and snapshot formats.)

mod types;

pub use types::{ParseHashError, PdqHash, HASH_BITS, HASH_BYTES};
