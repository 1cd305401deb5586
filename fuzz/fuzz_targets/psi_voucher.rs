//! The safety-voucher decoders on arbitrary bytes, as the server meets them: a voucher with an
//! upload, then opened under a real release's key; an opened share read back from the store;
//! reconstruction over whatever shares decode. Never a panic; every decoded value encodes back
//! to the bytes it came from.
//!
//! Input: `u8 threshold | u16 len | voucher bytes | rest = stored shares, each u16 len | bytes`.
//! Seed corpus: the vouchers and opened shares of `crates/haven-psi/vectors/psi-v1.json`.
#![no_main]

use std::sync::OnceLock;

use haven_psi::{
    reconstruct, AccountSecret, Image, MatchKey, OpenedShare, Params, PublicDb, ServerKey,
    Voucher,
};
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;

const KEYS: u8 = 2;

/// A small real release (four listed keys), its server key, and one real voucher whose pairs
/// the fuzzer can splice.
fn release() -> &'static (PublicDb, ServerKey) {
    static R: OnceLock<(PublicDb, ServerKey)> = OnceLock::new();
    R.get_or_init(|| {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let keys: Vec<MatchKey> = (0..4u8).map(|i| MatchKey::sha256(&[i; 32])).collect();
        let params = Params { threshold: 2, keys_per_voucher: KEYS, synthetic_rate: 1 << 30 };
        let built = PublicDb::build(&keys, params, 1, &mut rng).expect("build");
        (built.db, built.key)
    })
}

fn take<'a>(data: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (len, rest) = data.split_first_chunk::<2>()?;
    let len = usize::from(u16::from_be_bytes(*len));
    let (head, tail) = rest.split_at_checked(len)?;
    *data = tail;
    Some(head)
}

fuzz_target!(|data: &[u8]| {
    let (db, key) = release();
    let Some((&t, mut rest)) = data.split_first() else { return };
    let mut shares = Vec::new();
    if let Some(vb) = take(&mut rest) {
        if let Ok(v) = Voucher::decode(vb) {
            assert_eq!(v.encode(), vb);
            // Under the release's own id (spliced in) as well as the voucher's.
            let mut retarget = vb.to_vec();
            if let Some(id) = retarget.get_mut(4..20) {
                id.copy_from_slice(&key.db_id());
            }
            for bytes in [vb, &retarget[..]] {
                if let Ok(v) = Voucher::decode(bytes) {
                    if let Ok(Some(share)) = key.open(KEYS, &v) {
                        assert_eq!(OpenedShare::decode(&share.encode()).as_ref(), Ok(&share));
                        shares.push(share);
                    }
                }
            }
        }
    }
    while let Some(sb) = take(&mut rest) {
        if let Ok(s) = OpenedShare::decode(sb) {
            assert_eq!(s.encode(), sb);
            shares.push(s);
        }
    }
    // A real voucher of the release always opens or not, and never errs.
    if data.len() == 1 {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(u64::from(t));
        let acct = AccountSecret::from_bytes([t; 32]);
        let keys = [MatchKey::sha256(&[t % 8; 32]), MatchKey::md5(&[t; 16])];
        let v = Voucher::make(db, &acct, &Image { digest: [t; 32], keys: &keys, payload: &[t] }, &mut rng)
            .expect("make");
        assert!(key.open(KEYS, &v).is_ok());
    }
    let _ = reconstruct(u16::from(t % 8), &shares);
});
