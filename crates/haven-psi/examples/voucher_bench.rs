//! Safety-voucher costs on one core (issue 12): the client's voucher per image, the server's
//! work per voucher, reconstruction at the threshold, and the database's build time and size.
//!
//! `cargo run --release -p haven-psi --example voucher_bench -- [ENTRIES...]` (default
//! `100000 1000000`). The anchor, measured in the same run, is one variable-base ristretto255
//! scalar multiplication (curve25519-dalek), the unit every step is built from: a voucher with
//! `m` keys costs about `8m` of them (`2m` pairs × (β·H, γ·G, β·P, γ·L)), opening one costs `2m`,
//! a database entry one (plus hashing to the group).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::print_stdout
)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::scalar::Scalar;
use haven_psi::primitives::hash_to_group;
use haven_psi::{
    reconstruct, AccountSecret, Image, MatchKey, OpenedShare, Params, PublicDb, Reconstruction,
    SignedRelease, Voucher,
};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

fn per_op(total: Duration, n: usize) -> f64 {
    total.as_secs_f64() * 1e3 / n as f64
}

fn random_keys(rng: &mut ChaCha20Rng, n: usize) -> Vec<MatchKey> {
    (0..n)
        .map(|_| {
            let mut d = [0u8; 32];
            rng.fill_bytes(&mut d);
            MatchKey::pdq(&d)
        })
        .collect()
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("entries"))
        .collect();
    let sizes = if sizes.is_empty() {
        vec![100_000, 1_000_000]
    } else {
        sizes
    };
    let mut rng = ChaCha20Rng::seed_from_u64(12);

    // Anchor: variable-base scalar multiplication, and hashing to the group.
    let p = RistrettoPoint::mul_base(&Scalar::random(&mut rng));
    let s = Scalar::random(&mut rng);
    let n = 20_000;
    let t0 = Instant::now();
    let mut acc = p;
    for _ in 0..n {
        acc = black_box(s * acc);
    }
    let mul = per_op(t0.elapsed(), n);
    let t0 = Instant::now();
    for i in 0..n as u64 {
        black_box(hash_to_group(&i.to_be_bytes()).unwrap());
    }
    let h2g = per_op(t0.elapsed(), n);
    println!(
        "anchor: scalar mult {:.4} ms, hash to group {:.4} ms",
        mul, h2g
    );

    // Voucher work against a database of 100,000 keys, by keys per image.
    let listed = random_keys(&mut rng, 10_000);
    for m in [1u8, 4, 8, 16] {
        let params = Params {
            threshold: 30,
            keys_per_voucher: m,
            synthetic_rate: 1 << 26,
        };
        let built = PublicDb::build(&listed, params, 1, &mut rng).unwrap();
        let acct = AccountSecret::generate(&mut rng);
        let images = 200;
        let keys: Vec<Vec<MatchKey>> = (0..images)
            .map(|i| {
                let mut k = random_keys(&mut rng, usize::from(m));
                if i % 2 == 0 {
                    k[0] = listed[i % listed.len()].clone();
                }
                k
            })
            .collect();
        let payload = [7u8; 120];
        let t0 = Instant::now();
        let vouchers: Vec<Voucher> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let mut digest = [0u8; 32];
                digest[..8].copy_from_slice(&(i as u64).to_be_bytes());
                Voucher::make(
                    &built.db,
                    &acct,
                    &Image {
                        digest,
                        keys: k,
                        payload: &payload,
                    },
                    &mut rng,
                )
                .unwrap()
            })
            .collect();
        let make = per_op(t0.elapsed(), images);
        let bytes = vouchers[0].encode().len();
        let t0 = Instant::now();
        let mut shares: Vec<OpenedShare> = Vec::new();
        for v in &vouchers {
            let v = Voucher::decode(&v.encode()).unwrap();
            shares.extend(built.key.open(m, &v).unwrap());
        }
        let open = per_op(t0.elapsed(), images);
        println!(
            "keys/voucher {m:>2}: make {make:.2} ms/image ({:.1}× mult), server open {open:.2} ms/voucher ({:.1}× mult), voucher {bytes} bytes, {} of {images} opened",
            make / mul,
            open / mul,
            shares.len()
        );
        if m == 4 {
            // Reconstruction: t = 30 with the opened shares (100 real, some synthetic).
            let t0 = Instant::now();
            let r = reconstruct(30, &shares);
            let rec = t0.elapsed().as_secs_f64() * 1e3;
            let revealed = match r {
                Reconstruction::Revealed { images, .. } => images.len(),
                Reconstruction::Below { .. } => 0,
            };
            println!(
                "reconstruct t = 30 over {} shares: {rec:.1} ms, {revealed} revealed",
                shares.len()
            );
            let below: Vec<OpenedShare> = shares.iter().take(29).cloned().collect();
            let t0 = Instant::now();
            black_box(reconstruct(30, &below));
            println!(
                "reconstruct t = 30 over 29 shares (below): {:.3} ms",
                t0.elapsed().as_secs_f64() * 1e3
            );
        }
    }

    // Database build, size, and the client's acceptance check.
    let signer = ed25519_dalek::SigningKey::generate(&mut rng);
    for &n in &sizes {
        let keys = random_keys(&mut rng, n);
        let params = Params {
            threshold: 30,
            keys_per_voucher: 4,
            synthetic_rate: 1 << 26,
        };
        let t0 = Instant::now();
        let built = PublicDb::build(&keys, params, 1, &mut rng).unwrap();
        let build = t0.elapsed().as_secs_f64();
        let t0 = Instant::now();
        let bytes = built.db.encode();
        let release = built.db.sign(&signer).encode();
        let sign = t0.elapsed().as_secs_f64();
        let t0 = Instant::now();
        let verified = SignedRelease::decode(&release)
            .unwrap()
            .verify(&signer.verifying_key())
            .unwrap();
        let accepted = verified.accept(&bytes).unwrap();
        let accept = t0.elapsed().as_secs_f64();
        black_box(accepted);
        println!(
            "database of {n} keys: build {build:.1} s, encode+sign {sign:.2} s, {:.1} MB ({} slots), client verify+accept {accept:.2} s",
            bytes.len() as f64 / 1e6,
            built.db.header().n_slots
        );
    }
}
