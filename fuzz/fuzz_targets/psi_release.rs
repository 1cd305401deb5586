//! The voucher-database decoders on arbitrary bytes, as a client meets them: a release (header,
//! root, signature) and a database download checked against a verified release. Never a panic;
//! a decoded release or header encodes back to its bytes; nothing but the release's exact
//! database is accepted.
//!
//! Seed corpus: `release` and `db` of `crates/haven-psi/vectors/psi-v1.json`.
#![no_main]

use std::sync::OnceLock;

use ed25519_dalek::SigningKey;
use haven_psi::{DbHeader, MatchKey, Params, PublicDb, SignedRelease, VerifiedRelease};
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;

fn verified() -> &'static (VerifiedRelease, Vec<u8>) {
    static R: OnceLock<(VerifiedRelease, Vec<u8>)> = OnceLock::new();
    R.get_or_init(|| {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(2);
        let keys: Vec<MatchKey> = (0..4u8).map(|i| MatchKey::sha256(&[i; 32])).collect();
        let params = Params { threshold: 3, keys_per_voucher: 2, synthetic_rate: 0 };
        let built = PublicDb::build(&keys, params, 1, &mut rng).expect("build");
        let signer = SigningKey::from_bytes(&[9; 32]);
        let release = SignedRelease::decode(&built.db.sign(&signer).encode())
            .expect("decode")
            .verify(&signer.verifying_key())
            .expect("verify");
        (release, built.db.encode())
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = SignedRelease::decode(data) {
        assert_eq!(r.encode(), data);
        let key = SigningKey::from_bytes(&[9; 32]).verifying_key();
        let _ = r.verify(&key);
    }
    if let Ok(h) = DbHeader::decode(data) {
        assert_eq!(h.encode(), data);
    }
    let (release, db) = verified();
    if let Ok(accepted) = release.accept(data) {
        assert_eq!(accepted.encode(), data);
        assert_eq!(&data, &db.as_slice());
    }
});
