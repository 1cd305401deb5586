//! The per-delivery floor MLS sets: every recipient verifies the sender's Ed25519 signature on
//! each application message (RFC 9420 §6.1, `FramedContentTBS`). This times `verify_strict` (what
//! openmls's RustCrypto provider calls) on one core, so BENCHMARKS.md can say how much of the
//! machine a delivery rate costs in signature checks alone.
//!
//! `cargo run --release -p haven-client --example verify_cost`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ed25519_dalek::{Signer, SigningKey, Verifier as _};
use std::time::Instant;

fn main() {
    let key = SigningKey::from_bytes(&[7u8; 32]);
    // About the size of a bench message's signed content (framing, AAD commitment, ciphertext).
    let msg = vec![0x5au8; 300];
    let sig = key.sign(&msg);
    let vk = key.verifying_key();
    for _ in 0..2_000 {
        vk.verify_strict(&msg, &sig).unwrap();
    }
    let n = 20_000u32;
    let t = Instant::now();
    for _ in 0..n {
        vk.verify_strict(&msg, &sig).unwrap();
    }
    let per = t.elapsed().as_secs_f64() / f64::from(n);
    // Keep the non-strict path honest too (same cost class).
    assert!(vk.verify(&msg, &sig).is_ok());
    println!(
        "ed25519 verify_strict: {:.1} µs each, {:.0}/s on one core; 20,000/s would take {:.2} cores",
        per * 1e6,
        1.0 / per,
        20_000.0 * per
    );
}
