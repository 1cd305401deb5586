//! The key directory's proofs (`haven_kt::directory`) on arbitrary bytes, as clients and
//! auditors receive them from a server: decoding a signed root, a lookup, history or audit
//! proof never panics, and verifying any that decodes against a fixed root and pinned keys
//! never panics (and, for bytes no honest server made, never succeeds for the fixed root).
#![no_main]

use haven_kt::directory::{
    decode_audit_proof, decode_history_proof, decode_lookup_proof, verify_audit, verify_history,
    verify_lookup, KtKeys, SignedRoot, VrfSecret,
};
use libfuzzer_sys::fuzz_target;

thread_local! {
    /// akd's auditor spawns Tokio tasks, so audits run in a runtime (as in the client).
    static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a Tokio runtime");
}

fuzz_target!(|data: &[u8]| {
    let sk = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let keys = KtKeys {
        root_key: sk.verifying_key().to_bytes(),
        vrf_key: VrfSecret([7; 32]).public_key().unwrap_or([0; 32]),
    };
    let r1 = SignedRoot::sign(&sk, 1, [3; 32]);
    let r2 = SignedRoot::sign(&sk, 2, [4; 32]);
    if let Ok(r) = SignedRoot::decode(data) {
        assert_eq!(r.encode().as_slice(), data);
        let _ = r.verify(&keys);
    }
    let (selector, rest) = data.split_first().unwrap_or((&0, &[]));
    match selector % 3 {
        0 => {
            if decode_lookup_proof(rest).is_ok() {
                assert!(verify_lookup(&keys, &r1, "alice", rest).is_err());
            }
        }
        1 => {
            if decode_history_proof(rest).is_ok() {
                assert!(verify_history(&keys, &r1, "alice", rest).is_err());
            }
        }
        _ => {
            if decode_audit_proof(rest).is_ok() {
                RT.with(|rt| {
                    let _ = rt.block_on(verify_audit(&keys, &[r1, r2], rest));
                });
            }
        }
    }
});
