//! What authenticating a request costs now that sessions are not cached in the process
//! (BENCHMARKS.md, "Session lookup").
//!
//! Times `Service::authenticate` (SHA-256 of the token, then one primary-key lookup in the
//! store) over a SQLite file store, and over PostgreSQL when `HAVEN_TEST_POSTGRES_URL` is set.
//! The anchor, measured in the same run, is what the removed in-process cache cost on a hit:
//! the same SHA-256, then a `Mutex<HashMap>` lookup (the code that was in `authenticate`).
//!
//! `cargo run --release -p haven-server --example session_lookup [ROUNDS]`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use haven_frank::{KeyEntry, KeyId, Keyring, ServerKey};
use haven_proto::{DeviceId, UserName};
use haven_server::blobs::LocalBlobStore;
use haven_server::service::{now_ms, Service};
use haven_server::store::{self, NewDevice, Store};
use sha2::{Digest, Sha256};

fn summary(name: &str, mut t: Vec<Duration>) {
    t.sort();
    let n = t.len();
    let mean = t.iter().sum::<Duration>() / u32::try_from(n).unwrap();
    println!(
        "{name:<34} n={n:>6}  mean {:>7.2} µs  p50 {:>7.2} µs  p99 {:>7.2} µs",
        mean.as_secs_f64() * 1e6,
        t[n / 2].as_secs_f64() * 1e6,
        t[n * 99 / 100].as_secs_f64() * 1e6,
    );
}

async fn service_over(
    store: Arc<dyn Store>,
    dir: &std::path::Path,
    tag: &str,
) -> (Service, String) {
    let user = UserName::new(&format!("bench{tag}{}", now_ms())).unwrap();
    let device = DeviceId::from_bytes(rand::random());
    store
        .create_user(
            &user,
            &NewDevice {
                device_id: device.clone(),
                name: "bench".into(),
                auth_key: vec![1; 32],
                mls_key: vec![2; 32],
                created_at: now_ms(),
            },
        )
        .await
        .unwrap();
    let token = hex::encode(rand::random::<[u8; 32]>());
    store
        .put_session(
            &Sha256::digest(token.as_bytes()),
            &device,
            now_ms() + 3_600_000,
        )
        .await
        .unwrap();
    let keys = Keyring::new(
        KeyId::new(1),
        KeyEntry {
            key: ServerKey::random(),
            created_at_ms: 0,
        },
        false,
    );
    let blobs = LocalBlobStore::new(dir.join("blobs")).unwrap();
    let service = Service::new(store, Arc::new(blobs), Default::default(), keys);
    (service, token)
}

async fn time_authenticate(name: &str, service: &Service, token: &str, rounds: usize) {
    for _ in 0..rounds / 10 {
        service.authenticate(token).await.unwrap();
    }
    let mut t = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let start = Instant::now();
        let who = service.authenticate(token).await.unwrap();
        t.push(start.elapsed());
        std::hint::black_box(who);
    }
    summary(name, t);
}

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let dir = tempfile::tempdir().unwrap();

    // Anchor: the removed cache's hit path.
    let cache: Mutex<HashMap<Vec<u8>, (DeviceId, i64)>> = Mutex::default();
    let token = hex::encode(rand::random::<[u8; 32]>());
    let device = DeviceId::from_bytes(rand::random());
    for i in 0..1000u32 {
        let other = hex::encode(Sha256::digest(i.to_be_bytes()));
        cache.lock().unwrap().insert(
            Sha256::digest(other.as_bytes()).to_vec(),
            (device.clone(), i64::MAX),
        );
    }
    cache.lock().unwrap().insert(
        Sha256::digest(token.as_bytes()).to_vec(),
        (device.clone(), i64::MAX),
    );
    let mut t = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let start = Instant::now();
        let hash = Sha256::digest(token.as_bytes()).to_vec();
        let now = now_ms();
        let hit = {
            let map = cache.lock().unwrap();
            map.get(&hash)
                .filter(|(_, exp)| *exp > now)
                .map(|(d, _)| d.clone())
        };
        t.push(start.elapsed());
        std::hint::black_box(hit.unwrap());
    }
    summary("anchor: removed cache, hit", t);

    let sqlite = store::open_store(&dir.path().join("haven.db").to_string_lossy())
        .await
        .unwrap();
    let (service, token) = service_over(sqlite, dir.path(), "s").await;
    time_authenticate("authenticate, SQLite file", &service, &token, rounds).await;

    if let Ok(url) = std::env::var("HAVEN_TEST_POSTGRES_URL") {
        let pg = store::open_store(&url).await.unwrap();
        let (service, token) = service_over(pg, dir.path(), "p").await;
        time_authenticate(
            "authenticate, PostgreSQL (loopback)",
            &service,
            &token,
            rounds,
        )
        .await;
    }
}
