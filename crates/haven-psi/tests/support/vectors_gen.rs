//! The generator of `vectors/psi-v1.json`, shared by `examples/gen_vectors.rs` (which writes the
//! file) and `tests/vectors.rs` (which regenerates it and compares). Deterministic: every random
//! draw comes from one seeded ChaCha20 stream.

use ed25519_dalek::SigningKey;
use haven_psi::primitives::{hash_to_group, kdf, kdf_scalar, seal, ACCOUNT_SALT};
use haven_psi::{
    reconstruct, AccountSecret, Image, MatchKey, Params, PublicDb, Reconstruction, Voucher,
};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde_json::{json, Value};

/// The seed of the one random stream.
pub const SEED: [u8; 32] = *b"haven psi test vectors, v1......";

fn h(b: &[u8]) -> String {
    hex::encode(b)
}

fn bytes<const N: usize>(rng: &mut ChaCha20Rng) -> [u8; N] {
    let mut b = [0u8; N];
    rng.fill_bytes(&mut b);
    b
}

fn voucher_entry(
    db: &PublicDb,
    key: &haven_psi::ServerKey,
    acct: &AccountSecret,
    digest: [u8; 32],
    keys: &[MatchKey],
    payload: &[u8],
    rng: &mut ChaCha20Rng,
) -> Result<(Value, Option<haven_psi::OpenedShare>), haven_psi::PsiError> {
    let v = Voucher::make(
        db,
        acct,
        &Image {
            digest,
            keys,
            payload,
        },
        rng,
    )?;
    let opened = key.open(db.header().params.keys_per_voucher, &v)?;
    Ok((
        json!({
            "digest": h(&digest),
            "keys": keys.iter().map(|k| h(k.as_bytes())).collect::<Vec<_>>(),
            "payload": h(payload),
            "voucher": h(&v.encode()),
            "opened": opened.as_ref().map(|s| h(&s.encode())),
        }),
        opened,
    ))
}

/// The whole vector file as JSON.
pub fn generate() -> Result<Value, haven_psi::PsiError> {
    let mut rng = ChaCha20Rng::from_seed(SEED);

    let h2g: Vec<Value> = [
        &b""[..],
        b"abc",
        MatchKey::sha256(&[0u8; 32]).as_bytes(),
        &[0xa5; 64],
    ]
    .iter()
    .map(|m| Ok(json!({"msg": h(m), "point": h(hash_to_group(m)?.compress().as_bytes())})))
    .collect::<Result<_, haven_psi::PsiError>>()?;

    let kdf_cases: Vec<Value> = (0..3)
        .map(|i| {
            let salt = bytes::<16>(&mut rng);
            let ikm = bytes::<32>(&mut rng);
            let info = format!("label {i}").into_bytes();
            json!({
                "salt": h(&salt), "ikm": h(&ikm), "info": h(&info),
                "okm": h(kdf(&salt, &ikm, &[&info]).as_slice()),
                "scalar": h(kdf_scalar(&salt, &ikm, &[&info]).as_bytes()),
            })
        })
        .collect();

    let mut aead = Vec::new();
    for pt_len in [0usize, 32, 77] {
        let key = bytes::<32>(&mut rng);
        let aad = bytes::<20>(&mut rng);
        let mut pt = vec![0u8; pt_len];
        rng.fill_bytes(&mut pt);
        aead.push(json!({
            "key": h(&key), "aad": h(&aad), "pt": h(&pt), "sealed": h(&seal(&key, &aad, &pt)?),
        }));
    }

    // The database: four listed images' keys (each matches through a different key kind) and
    // four unrelated keys, threshold 3, two keys per voucher, no synthetic vouchers.
    let params = Params {
        threshold: 3,
        keys_per_voucher: 2,
        synthetic_rate: 0,
    };
    let mut images = Vec::new();
    for i in 0..6u8 {
        let digest = bytes::<32>(&mut rng);
        let pdq = bytes::<32>(&mut rng);
        let keys = vec![MatchKey::sha256(&digest), MatchKey::pdq(&pdq)];
        let payload = format!("media key, blob id and PDQ of image {i}").into_bytes();
        images.push((digest, keys, payload));
    }
    let mut listed: Vec<MatchKey> = images
        .iter()
        .take(4)
        .enumerate()
        .filter_map(|(i, (_, keys, _))| keys.get(i % 2).cloned())
        .collect();
    for _ in 0..4 {
        listed.push(MatchKey::new("pdq-band0", &bytes::<4>(&mut rng))?);
    }
    let built = PublicDb::build(&listed, params, 7, &mut rng)?;
    let signing_seed = bytes::<32>(&mut rng);
    let signer = SigningKey::from_bytes(&signing_seed);
    let release = built.db.sign(&signer);
    let acct_bytes = bytes::<32>(&mut rng);
    let acct = AccountSecret::from_bytes(acct_bytes);

    let mut vouchers = Vec::new();
    let mut shares = Vec::new();
    // Images 0..4 are listed, 4 and 5 are not; image 0 is sent twice (one share).
    for i in [0usize, 1, 4, 2, 0, 5, 3] {
        let Some((digest, keys, payload)) = images.get(i) else {
            return Err(haven_psi::PsiError::Internal("image index"));
        };
        let (v, opened) = voucher_entry(
            &built.db, &built.key, &acct, *digest, keys, payload, &mut rng,
        )?;
        vouchers.push(v);
        shares.extend(opened);
    }
    let revealed = match reconstruct(params.threshold, &shares) {
        Reconstruction::Revealed { images, .. } => images
            .iter()
            .map(|i| json!({"id": h(&i.id), "payload": h(&i.payload)}))
            .collect::<Vec<_>>(),
        Reconstruction::Below { .. } => Vec::new(),
    };

    // A synthetic voucher: a release where (almost) every image's voucher is synthetic.
    let syn_params = Params {
        threshold: 3,
        keys_per_voucher: 2,
        synthetic_rate: u32::MAX,
    };
    let syn_db = PublicDb::build(&listed, syn_params, 8, &mut rng)?;
    let (digest, keys, payload) = images
        .get(5)
        .ok_or(haven_psi::PsiError::Internal("image index"))?;
    let (syn_voucher, _) = voucher_entry(
        &syn_db.db,
        &syn_db.key,
        &acct,
        *digest,
        keys,
        payload,
        &mut rng,
    )?;

    Ok(json!({
        "about": "haven-psi v1 test vectors; written by `cargo run -p haven-psi --example gen_vectors`, checked by tests/vectors.rs and independently by vectors/crosscheck.py",
        "hash_to_group": {"dst": h(haven_psi::primitives::H2G_DST), "cases": h2g},
        "kdf": kdf_cases,
        "aead": aead,
        "account": {"salt": h(ACCOUNT_SALT), "secret": h(&acct_bytes)},
        "database": {
            "threshold": params.threshold,
            "keys_per_voucher": params.keys_per_voucher,
            "synthetic_rate": params.synthetic_rate,
            "listed_keys": listed.iter().map(|k| h(k.as_bytes())).collect::<Vec<_>>(),
            "server_key": h(&built.key.to_bytes()),
            "db": h(&built.db.encode()),
            "root": h(&built.db.root()),
            "signing_seed": h(&signing_seed),
            "verifying_key": h(signer.verifying_key().as_bytes()),
            "release": h(&release.encode()),
        },
        "vouchers": vouchers,
        "reconstruction": {"threshold": params.threshold, "revealed": revealed},
        "synthetic": {
            "synthetic_rate": syn_params.synthetic_rate,
            "server_key": h(&syn_db.key.to_bytes()),
            "db": h(&syn_db.db.encode()),
            "voucher": syn_voucher,
        },
    }))
}
