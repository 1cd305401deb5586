//! Writes the safety-voucher test vectors (deterministic):
//!
//! `cargo run -p haven-psi --example gen_vectors > crates/haven-psi/vectors/psi-v1.json`
//!
//! `tests/vectors.rs` regenerates them and compares; `vectors/crosscheck.py` recomputes them
//! with independent code.

#[path = "../tests/support/vectors_gen.rs"]
mod vectors_gen;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let v = vectors_gen::generate()?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}
