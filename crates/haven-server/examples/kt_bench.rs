//! The key directory's costs (BENCHMARKS.md, "Key directory"): publishing an epoch of updated
//! labels over a directory of existing users, on the server's SQLite file store, on PostgreSQL
//! when `HAVEN_TEST_POSTGRES_URL` is set, and — the anchor, in the same run — on akd's own
//! in-memory store; then, on the in-memory directory, a lookup proof's size and its
//! verification time (what a client pays per user it checks) and an audit step's
//! verification time.
//!
//! `cargo run --release -p haven-server --example kt_bench [USERS] [BATCH...]`
//! (defaults: 100000 users, batches 1000 and 10000; `KT_BENCH_ONLY=memory,sqlite,sqlite+c,
//! postgres+c` picks stores). `+c`: akd's node cache, fresh for each epoch, as the server's
//! publisher runs it; without: no cache, as lookups run. Values are 200-byte stand-ins for signed
//! device lists (a two-device list encodes to about 200 bytes).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use akd::storage::memory::AsyncInMemoryDatabase;
use akd::storage::{Database, StorageManager};
use akd::{AkdLabel, AkdValue, AzksParallelismConfig};
use haven_kt::directory::{
    encode_audit_proof, encode_lookup_proof, verify_audit, verify_lookup, KtConfig, KtKeys,
    SignedRoot, VrfSecret,
};
use haven_server::kt::akd_db::AkdDb;
use haven_server::kt::KtStore;

fn value(i: usize, round: u8) -> AkdValue {
    let mut v = vec![round; 200];
    v[..8].copy_from_slice(&(i as u64).to_be_bytes());
    AkdValue(v)
}

fn label(i: usize) -> AkdLabel {
    AkdLabel(format!("user{i:07}").into_bytes())
}

/// A directory over `db`: without akd's cache, or (as the server's publisher runs it,
/// `haven_server::kt::Kt`) with a fresh cache for each epoch.
async fn directory<D: Database + 'static>(
    db: D,
    cached: bool,
) -> akd::Directory<KtConfig, D, VrfSecret> {
    let storage = if cached {
        StorageManager::new(
            db,
            Some(Duration::from_secs(3600)),
            Some(512 * 1024 * 1024),
            None,
        )
    } else {
        StorageManager::new_no_cache(db)
    };
    akd::Directory::<KtConfig, D, VrfSecret>::new(
        storage,
        VrfSecret([7; 32]),
        AzksParallelismConfig::default(),
    )
    .await
    .unwrap()
}

async fn run<D: Database + Clone + 'static>(
    name: &str,
    db: D,
    cached: bool,
    users: usize,
    batches: &[usize],
) {
    let t = Instant::now();
    // The directory of `users` is built in epochs of 10,000 (as a publisher would).
    for start in (0..users).step_by(10_000) {
        let end = (start + 10_000).min(users);
        directory(db.clone(), cached)
            .await
            .publish((start..end).map(|i| (label(i), value(i, 0))).collect())
            .await
            .unwrap();
    }
    println!(
        "{name:<10} build {users} users: {:>8.1} s",
        t.elapsed().as_secs_f64()
    );
    for (round, &b) in batches.iter().enumerate() {
        let step = users / b;
        let updates = (0..b)
            .map(|k| (label(k * step), value(k * step, round as u8 + 1)))
            .collect();
        let t = Instant::now();
        directory(db.clone(), cached)
            .await
            .publish(updates)
            .await
            .unwrap();
        println!(
            "{name:<10} publish {b:>6} updated labels over {users}: {:>8.3} s",
            t.elapsed().as_secs_f64()
        );
    }
}

async fn client_costs(users: usize) {
    let dir = akd::Directory::<KtConfig, _, VrfSecret>::new(
        StorageManager::new_no_cache(AsyncInMemoryDatabase::new()),
        VrfSecret([7; 32]),
        AzksParallelismConfig::default(),
    )
    .await
    .unwrap();
    for start in (0..users).step_by(10_000) {
        let end = (start + 10_000).min(users);
        dir.publish((start..end).map(|i| (label(i), value(i, 0))).collect())
            .await
            .unwrap();
    }
    let before = dir.get_epoch_hash().await.unwrap();
    dir.publish((0..1000).map(|i| (label(i * 7), value(i * 7, 1))).collect())
        .await
        .unwrap();
    let sk = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let keys = KtKeys {
        root_key: sk.verifying_key().to_bytes(),
        vrf_key: VrfSecret([7; 32]).public_key().unwrap(),
    };
    let mut sizes = Vec::new();
    let mut times = Vec::new();
    for i in 0..100 {
        let (proof, eh) = dir.lookup(label(i * 997 % users)).await.unwrap();
        let root = SignedRoot::sign(&sk, eh.epoch(), eh.hash());
        let bytes = encode_lookup_proof(&proof);
        let name = format!("user{:07}", i * 997 % users);
        let t = Instant::now();
        verify_lookup(&keys, &root, &name, &bytes).unwrap();
        times.push(t.elapsed());
        sizes.push(bytes.len());
    }
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    println!(
        "lookup proof over {users} users: {:.0} bytes mean (max {}), verify {:.2} ms mean, 100 users {:.1} ms",
        sizes.iter().sum::<usize>() as f64 / sizes.len() as f64,
        sizes.iter().max().unwrap(),
        mean.as_secs_f64() * 1e3,
        mean.as_secs_f64() * 1e5,
    );
    let after = dir.get_epoch_hash().await.unwrap();
    let proof = dir.audit(before.epoch(), after.epoch()).await.unwrap();
    let bytes = encode_audit_proof(&proof);
    let roots = [
        SignedRoot::sign(&sk, before.epoch(), before.hash()),
        SignedRoot::sign(&sk, after.epoch(), after.hash()),
    ];
    let t = Instant::now();
    verify_audit(&keys, &roots, &bytes).await.unwrap();
    println!(
        "audit step of 1000 updates over {users}: proof {} bytes, verify {:.1} ms",
        bytes.len(),
        t.elapsed().as_secs_f64() * 1e3
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let users = args.first().copied().unwrap_or(100_000);
    let batches: Vec<usize> = if args.len() > 1 {
        args[1..].to_vec()
    } else {
        vec![1000, 10_000]
    };
    let only: Option<String> = std::env::var("KT_BENCH_ONLY").ok();
    let want = |n: &str| only.as_deref().is_none_or(|o| o.split(',').any(|x| x == n));
    if want("memory") {
        run(
            "memory",
            AsyncInMemoryDatabase::new(),
            false,
            users,
            &batches,
        )
        .await;
    }
    for cached in [false, true] {
        let name = if cached { "sqlite+c" } else { "sqlite" };
        if !want(name) {
            continue;
        }
        let tmp = tempfile::tempdir().unwrap();
        let sqlite =
            haven_server::store::open_store(&tmp.path().join("haven.db").to_string_lossy())
                .await
                .unwrap();
        let kt: Arc<dyn KtStore> = sqlite;
        run(name, AkdDb::new(kt), cached, users, &batches).await;
    }
    if let Ok(url) = std::env::var("HAVEN_TEST_POSTGRES_URL") {
        if want("postgres+c") {
            let pg = haven_server::store::open_store(&url).await.unwrap();
            // A fresh directory: the bench's tables must be empty.
            let kt: Arc<dyn KtStore> = pg;
            run("postgres+c", AkdDb::new(kt), true, users, &batches).await;
        }
    }
    client_costs(users).await;
}
