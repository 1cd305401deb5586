//! Report verification and the moderation queue (BENCHMARKS.md, "Reports and the moderation
//! queue").
//!
//! 1. **Verification.** `Service::file_report` on one core (a current-thread runtime; the
//!    blocking pool runs one job at a time because reports are filed one after another) for a
//!    report of an image message (a 1 MiB PNG) with 5 text context messages: 6 commitment
//!    openings and tag checks, membership and sender lookups, the blob read, SHA-256 of the
//!    ciphertext, ChaCha20-Poly1305 decryption, SHA-256 and MD5 of the plaintext, PNG decoding
//!    and PDQ, sealing, and the case written. The anchor, in the same run, is the file work
//!    alone (decrypt + SHA-256 + MD5 + decode + PDQ of the same file), the floor of any
//!    verifier that checks attachments.
//! 2. **Queue.** `ModerationStore::queue(100)` latency with 1,000 open cases (the anchor) and
//!    with 100,000, on a SQLite file and, when `HAVEN_TEST_POSTGRES_URL` is set, PostgreSQL
//!    (in a scratch schema, dropped at the end).
//!
//! `cargo run --release -p haven-server --example report_bench [REPORTS]`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use haven_content::{attachment, AttachmentRef, Body, Content};
use haven_frank::{FrankSalt, KeyEntry, KeyId, Keyring, ServerKey};
use haven_proto::api::{self, Sender};
use haven_proto::moderation::{
    CaseSource, EvidenceBundle, FrankedMessage, ReportReason, ReportRequest,
};
use haven_proto::{DeviceId, GroupId, UserName};
use haven_server::blobs::LocalBlobStore;
use haven_server::moderation::store::{AuditLine, NewCase};
use haven_server::moderation::EvidenceKey;
use haven_server::service::{now_ms, Authed, Service};
use haven_server::store::{self, CommitApply, Limits, NewDevice, NewMessage, Store};
use haven_server::ServerLimits;
use sha2::{Digest, Sha256};

fn summary(name: &str, mut t: Vec<Duration>) {
    t.sort();
    let n = t.len();
    let mean = t.iter().sum::<Duration>() / u32::try_from(n).unwrap();
    println!(
        "{name:<48} n={n:>5}  mean {:>9.3} ms  p50 {:>9.3} ms  p99 {:>9.3} ms",
        mean.as_secs_f64() * 1e3,
        t[n / 2].as_secs_f64() * 1e3,
        t[n * 99 / 100].as_secs_f64() * 1e3,
    );
}

/// A noisy RGB PNG of about 1 MiB (noise does not compress).
fn png_1mib() -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    let img = image::RgbImage::from_fn(600, 600, |_, _| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let b = x.to_le_bytes();
        image::Rgb([b[0], b[1], b[2]])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

async fn user_with_session(store: &dyn Store, name: &str) -> (UserName, DeviceId, String) {
    let user = UserName::new(name).unwrap();
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
    (user, device, token)
}

fn frame(g: &GroupId, aad: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&1u16.to_be_bytes());
    m.extend_from_slice(&2u16.to_be_bytes());
    haven_proto::mls_frame::encode_vector(&mut m, g.as_bytes());
    m.extend_from_slice(&1u64.to_be_bytes());
    m.push(1);
    haven_proto::mls_frame::encode_vector(&mut m, aad);
    haven_proto::mls_frame::encode_vector(&mut m, b"sender-data");
    haven_proto::mls_frame::encode_vector(&mut m, b"ciphertext");
    m
}

async fn send(
    svc: &Service,
    who: &Authed,
    user: &UserName,
    g: &GroupId,
    body: Body,
) -> FrankedMessage {
    let content = Content::new(body, now_ms() as u64).encode().unwrap();
    let salt = FrankSalt::random();
    let c = haven_frank::commit(&salt, &content);
    let r = svc
        .send(
            who,
            g,
            api::SendRequest {
                message: frame(g, &haven_frank::encode_aad(&c)),
            },
        )
        .await
        .unwrap();
    FrankedMessage {
        group_id: g.clone(),
        sender: Sender {
            user: user.clone(),
            device_id: who.device.clone(),
        },
        received_at: r.received_at,
        content,
        salt: salt.as_bytes().to_vec(),
        commitment: c.as_bytes().to_vec(),
        server_tag: r.server_tag.unwrap(),
    }
}

fn msg(kind: api::EntryKind, g: &GroupId, from: &DeviceId, payload: &[u8]) -> NewMessage {
    NewMessage {
        kind,
        group_id: Some(g.clone()),
        sender: Some(from.clone()),
        payload: payload.to_vec(),
        frank: None,
        received_at: now_ms(),
        expires_at: now_ms() + 3_600_000,
    }
}

async fn verification(reports: usize) {
    let dir = tempfile::tempdir().unwrap();
    let store = store::open_store(dir.path().join("haven.db").to_str().unwrap())
        .await
        .unwrap();
    let (alice, a_dev, a_tok) = user_with_session(&*store, "alice").await;
    let (_bob, b_dev, b_tok) = user_with_session(&*store, "bob").await;
    let g = GroupId::from_bytes(&rand::random::<[u8; 16]>()).unwrap();
    store
        .create_group(&g, &a_dev, now_ms(), b"state")
        .await
        .unwrap();
    let limits = Limits {
        max_group_members: 100,
        max_key_packages: 10,
        max_queue_depth: 1_000_000,
        max_queue_bytes: 1 << 40,
        max_account_queue_bytes: 1 << 40,
        share_device_depth: 1_000_000,
        share_device_bytes: 1 << 40,
        share_account_depth: 1_000_000,
        share_account_bytes: 1 << 40,
        max_devices: 16,
    };
    store
        .apply_commit(
            &CommitApply {
                group_id: g.clone(),
                epoch: 0,
                sender: a_dev.clone(),
                commit_sha256: rand::random(),
                added: vec![b_dev.clone()],
                removed: vec![],
                claimed: vec![],
                public_state: b"state 1".to_vec(),
                commit: msg(api::EntryKind::Commit, &g, &a_dev, b"commit"),
                welcome: Some(msg(api::EntryKind::Welcome, &g, &a_dev, b"welcome")),
            },
            &limits,
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
    let blobs = LocalBlobStore::new(dir.path().join("blobs")).unwrap();
    let server_limits = ServerLimits {
        report_burst: 1_000_000,
        report_refill_per_sec: 1e6,
        write_burst: 1_000_000,
        write_refill_per_sec: 1e6,
        max_queue_depth: 1_000_000,
        queue_share_device_depth: 1_000_000,
        queue_share_account_depth: 1_000_000,
        queue_share_device_bytes: 1 << 40,
        queue_share_account_bytes: 1 << 40,
        max_queue_bytes: 1 << 40,
        max_account_queue_bytes: 1 << 40,
        ..ServerLimits::default()
    };
    let svc = Service::new(store.clone(), Arc::new(blobs), server_limits, keys)
        .with_evidence_key(EvidenceKey::random());
    let alice_s = svc.authenticate(&a_tok).await.unwrap();
    let bob_s = svc.authenticate(&b_tok).await.unwrap();

    let image = png_1mib();
    println!("image: {} bytes PNG, 600x600", image.len());
    let (ct, key, sha) = attachment::seal(&image).unwrap();
    let body: haven_server::blobs::ByteStream = Box::pin(futures_util::stream::iter(
        ct.clone()
            .chunks(64 << 10)
            .map(|c| Ok(axum::body::Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    ));
    let stored = svc
        .put_blob(&alice_s, body, Some(ct.len() as u64), None)
        .await
        .unwrap();
    let mut context = Vec::new();
    for i in 0..5 {
        context.push(
            send(
                &svc,
                &alice_s,
                &alice,
                &g,
                Body::Text(format!("context message {i} with some words in it")),
            )
            .await,
        );
    }
    let mut reported = Vec::new();
    for _ in 0..reports + reports / 10 {
        let r = AttachmentRef {
            blob_id: stored.blob_id.clone(),
            key: key.clone(),
            sha256: sha,
            size: image.len() as u64,
            name: "photo.png".into(),
        };
        reported.push(send(&svc, &alice_s, &alice, &g, Body::Attachment(r)).await);
    }

    // Anchor: the file work alone, on the same bytes.
    let mut floor = Vec::new();
    for _ in 0..reports {
        let t = Instant::now();
        let pt = attachment::open(&ct, &key, &sha).unwrap();
        let _ = Sha256::digest(&ct);
        let _ = haven_cybertip::client::md5_hex(&pt);
        let _ = haven_pdq::hash_bytes(&pt, &Default::default()).unwrap();
        floor.push(t.elapsed());
    }
    let mut full = Vec::new();
    for (i, m) in reported.iter().enumerate() {
        let req = ReportRequest {
            reason: ReportReason::Harassment,
            note: None,
            evidence: EvidenceBundle {
                v: 1,
                reported: m.clone(),
                context: context.clone(),
            },
        };
        let t = Instant::now();
        let filed = svc.file_report(&bob_s, req).await.unwrap();
        let e = t.elapsed();
        assert_eq!(filed.files, 1);
        if i >= reports / 10 {
            full.push(e);
        }
    }
    summary(
        "anchor: decrypt+sha256+md5+decode+PDQ (1 MiB)",
        floor.clone(),
    );
    summary("file_report: 5 context + 1 MiB image, SQLite", full.clone());
    let mean = full.iter().sum::<Duration>().as_secs_f64() / full.len() as f64;
    println!("=> {:.1} reports/s on one core", 1.0 / mean);
}

fn case(i: usize, now: i64) -> NewCase {
    let reasons = ReportReason::ALL;
    let reason = reasons[i % reasons.len()];
    NewCase {
        id: format!("{:024x}", i as u128 * 2_654_435_761 + 1),
        source: CaseSource::MessageReport,
        reason,
        priority: haven_server::moderation::service::priority(reason, false),
        reporter: Some(UserName::new("bob").unwrap()),
        reporter_is_minor: false,
        reported_user: UserName::new("alice").unwrap(),
        group_id: None,
        dedupe_key: Some(format!("k{i}").into_bytes()),
        note_sealed: None,
        evidence: vec![("m00".into(), vec![0u8; 200])],
        created_at: now - i as i64,
    }
}

async fn queue_latency(name: &str, store: Arc<dyn Store>) {
    user_with_session(&*store, "alice").await;
    user_with_session(&*store, "bob").await;
    let now = now_ms();
    let line = AuditLine {
        actor: "bench".into(),
        action: "report.file".into(),
        case: None,
        detail: String::new(),
        at: now,
    };
    let mut filed = 0;
    for target in [1_000usize, 100_000] {
        let t = Instant::now();
        while filed < target {
            store.file_case(&case(filed, now), &line).await.unwrap();
            filed += 1;
        }
        eprintln!(
            "{name}: {target} open cases filed ({:.1} s)",
            t.elapsed().as_secs_f64()
        );
        let mut lat = Vec::new();
        for i in 0..220 {
            let t = Instant::now();
            let (rows, open) = store.queue(100).await.unwrap();
            if i >= 20 {
                lat.push(t.elapsed());
            }
            assert_eq!((rows.len(), open), (100, target as u64));
        }
        summary(&format!("queue(100), {target} open cases, {name}"), lat);
    }
}

fn main() {
    let reports: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().unwrap())
        .unwrap_or(100);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(1)
        .build()
        .unwrap();
    rt.block_on(async {
        verification(reports).await;
        let dir = tempfile::tempdir().unwrap();
        let sqlite = store::open_store(dir.path().join("q.db").to_str().unwrap())
            .await
            .unwrap();
        queue_latency("SQLite", sqlite).await;
        if let Ok(url) = std::env::var("HAVEN_TEST_POSTGRES_URL") {
            use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
            use std::str::FromStr as _;
            let schema = format!("haven_bench_{}", now_ms());
            let admin = PgPoolOptions::new()
                .max_connections(1)
                .connect(&url)
                .await
                .unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                .execute(&admin)
                .await
                .unwrap();
            let opts = PgConnectOptions::from_str(&url)
                .unwrap()
                .options([("search_path", schema.as_str())]);
            let pg = Arc::new(
                haven_server::store::postgres::PgStore::connect_with(opts)
                    .await
                    .unwrap(),
            );
            queue_latency("PostgreSQL", pg.clone()).await;
            pg.close().await;
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .execute(&admin)
                .await
                .unwrap();
        }
    });
}
