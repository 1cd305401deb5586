//! Quotas and rate limits against a real server on a loopback port (review 2026-12, findings 4,
//! 8, 12 and 14): per-sender shares of recipient queues, byte quotas with all-or-nothing fan-out,
//! per-account write limits, key-package claim limits, and per-IP buckets that live in the
//! database (they survive a restart and two nodes on one PostgreSQL database share them).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::net::IpAddr;
use std::str::FromStr as _;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::SigningKey;
use haven_proto::{api, GroupId};
use haven_server::service::{Service, ServiceError};
use haven_server::{ServerConfig, ServerLimits};
use serde_json::{json, Value};
use support::*;

async fn send(s: &TestServer, who: &Dev, g: &GroupId, msg: &[u8]) -> (u16, Value) {
    call(
        "POST",
        &format!("{}/v1/groups/{g}/messages", s.url),
        Some(&who.token),
        Some(json!({"message": B64.encode(msg)})),
    )
    .await
}

/// A franked application message for `g` at `epoch` whose ciphertext is `size` bytes.
fn sized(g: &GroupId, epoch: u64, size: usize) -> Vec<u8> {
    let salt = haven_frank::FrankSalt::random();
    let c = haven_frank::commit(&salt, b"content");
    private_message(g, epoch, 1, &haven_frank::encode_aad(&c), &vec![0x42; size])
}

fn count_from(q: &[api::QueueEntry], who: &Dev, kind: api::EntryKind) -> usize {
    q.iter()
        .filter(|e| e.kind == kind && e.sender.as_ref().is_some_and(|s| s.device_id == who.id))
        .count()
}

async fn ack_all(s: &TestServer, who: &Dev) {
    let ids: Vec<i64> = s.queue(who).await.iter().map(|e| e.id).collect();
    let (st, v) = call(
        "POST",
        &format!("{}/v1/queue/ack", s.url),
        Some(&who.token),
        Some(json!({ "ids": ids })),
    )
    .await;
    assert_eq!(st, 200, "{v}");
}

/// Finding 4's flood: mallory adds bob to her group (with a key package she claimed) and sends
/// until the server stops her. She stops at her share of bob's queue, with 429
/// `queue_share_exhausted` naming bob's device, and everyone else still reaches bob: alice's
/// messages, and carol adding bob to a new group.
#[tokio::test]
async fn a_flooding_sender_stops_at_its_share_and_others_still_reach_the_victim() {
    let s = server_with(ServerLimits {
        queue_share_device_depth: 20,
        queue_share_account_depth: 30,
        max_queue_depth: 100,
        ..ServerLimits::default()
    })
    .await;
    let a = register(&s, "alice").await;
    let b = register(&s, "bob").await;
    let c = register(&s, "carol").await;
    let m = register(&s, "mallory").await;
    s.upload_key_packages(&b, 5).await;

    let (gm, mut gm_mls) = s.new_group(&m).await;
    assert_eq!(s.add(&m, &mut gm_mls, &gm, &b).await.0, 200);
    let mut sent = 0;
    let refusal = loop {
        let (st, v) = send(&s, &m, &gm, &franked(&gm, 1).0).await;
        if st != 200 {
            break (st, v);
        }
        sent += 1;
        assert!(sent <= 100, "the flood was never refused");
    };
    let (st, v) = refusal;
    assert_eq!(
        (st, v["code"].as_str()),
        (429, Some("queue_share_exhausted")),
        "{v}"
    );
    assert_eq!(v["recipient"].as_str(), Some(b.id.as_str()), "{v}");
    // Mallory's share is 20 entries, and her Welcome is one of them.
    assert_eq!(sent, 19);
    let q = s.queue(&b).await;
    assert_eq!(count_from(&q, &m, api::EntryKind::Application), 19);

    // Alice still reaches bob.
    s.upload_key_packages(&b, 2).await;
    let (ga, mut ga_mls) = s.new_group(&a).await;
    assert_eq!(s.add(&a, &mut ga_mls, &ga, &b).await.0, 200);
    let (st, v) = send(&s, &a, &ga, &franked(&ga, 1).0).await;
    assert_eq!(st, 200, "{v}");
    // Carol can still create a group with bob (the review's `group create team --members bob`).
    let (gc, mut gc_mls) = s.new_group(&c).await;
    assert_eq!(s.add(&c, &mut gc_mls, &gc, &b).await.0, 200);
    let q = s.queue(&b).await;
    assert_eq!(count_from(&q, &a, api::EntryKind::Application), 1);
    assert_eq!(count_from(&q, &c, api::EntryKind::Welcome), 1);

    // Mallory's second device would not help: the account's share (30) bounds both, and bob
    // catching up gives room back.
    ack_all(&s, &b).await;
    let (st, v) = send(&s, &m, &gm, &franked(&gm, 1).0).await;
    assert_eq!(st, 200, "{v}");
    s.running.shutdown().await;
}

/// Finding 8: a byte quota per recipient device. A group send that would take one recipient
/// over its quota is refused as a whole (422 `limit_exceeded`, "queue bytes"): the other
/// recipient, who has room, gets nothing of it either, and every accepted send reached both.
#[tokio::test]
async fn a_byte_quota_refuses_the_whole_fan_out_and_writes_nothing() {
    let s = server_with(ServerLimits {
        max_queue_bytes: 20_000,
        ..ServerLimits::default()
    })
    .await;
    let a = register(&s, "alice").await;
    let b = register(&s, "bob").await;
    let c = register(&s, "carol").await;
    s.upload_key_packages(&b, 3).await;
    s.upload_key_packages(&c, 3).await;
    // Bob already holds 8 KB from a 1:1 group with alice.
    let (g1, mut g1_mls) = s.new_group(&a).await;
    assert_eq!(s.add(&a, &mut g1_mls, &g1, &b).await.0, 200);
    for _ in 0..2 {
        assert_eq!(send(&s, &a, &g1, &sized(&g1, 1, 4000)).await.0, 200);
    }
    // A group of alice, bob and carol.
    let (g, mut g_mls) = s.new_group(&a).await;
    assert_eq!(s.add(&a, &mut g_mls, &g, &b).await.0, 200);
    let (commit, welcome) = {
        let (st, kps) = s.claim(&a, "carol", &g).await;
        assert_eq!(st, 200);
        a.mls.add(&mut g_mls, &kps)
    };
    assert_eq!(s.post_commit(&a, &g, &commit, Some(&welcome)).await.0, 200);
    a.mls.merge(&mut g_mls);
    let mut accepted = 0;
    let (st, v) = loop {
        let (st, v) = send(&s, &a, &g, &sized(&g, 2, 4000)).await;
        if st != 200 {
            break (st, v);
        }
        accepted += 1;
        assert!(accepted < 10, "the quota was never reached");
    };
    assert_eq!(
        (st, v["code"].as_str()),
        (422, Some("limit_exceeded")),
        "{v}"
    );
    assert!(
        v["message"].as_str().unwrap().contains("queue bytes"),
        "{v}"
    );
    // Bob holds at least 8 KB more than carol, so his quota is reached first.
    assert!(accepted >= 1);
    let in_group = |q: &[api::QueueEntry]| {
        q.iter()
            .filter(|e| e.kind == api::EntryKind::Application && e.group_id.as_ref() == Some(&g))
            .count()
    };
    assert_eq!(in_group(&s.queue(&b).await), accepted);
    assert_eq!(
        in_group(&s.queue(&c).await),
        accepted,
        "carol got nothing of the refused send"
    );
    // Once bob catches up, everything flows again.
    ack_all(&s, &b).await;
    assert_eq!(send(&s, &a, &g, &sized(&g, 2, 4000)).await.0, 200);
    s.running.shutdown().await;
}

/// Finding 14: authenticated writes are limited per account. Mallory spends her budget (create
/// group, sends, a blob upload) and is refused with 429 `rate_limited`; alice, another account,
/// is not affected.
#[tokio::test]
async fn one_account_spending_its_write_budget_does_not_stop_others() {
    let s = server_with(ServerLimits {
        write_burst: 12,
        write_refill_per_sec: 0.001,
        ..ServerLimits::default()
    })
    .await;
    let a = register(&s, "alice").await;
    let m = register(&s, "mallory").await;
    let (gm, _) = s.new_group(&m).await;
    let mut sent = 0;
    let (st, v) = loop {
        let (st, v) = send(&s, &m, &gm, &franked(&gm, 0).0).await;
        if st != 200 {
            break (st, v);
        }
        sent += 1;
        assert!(sent < 100, "writes were never limited");
    };
    assert_eq!((st, v["code"].as_str()), (429, Some("rate_limited")), "{v}");
    assert_eq!(sent, 11, "the group creation was the first write");
    // Every kind of write draws on the same budget.
    let resp = reqwest::Client::new()
        .put(format!("{}/v1/blobs", s.url))
        .header("Authorization", format!("Bearer {}", m.token))
        .body(vec![1u8; 100])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    // Reads are not writes: mallory can still fetch her queue.
    s.queue(&m).await;
    // Alice is untouched.
    let (ga, _) = s.new_group(&a).await;
    for _ in 0..5 {
        let (st, v) = send(&s, &a, &ga, &franked(&ga, 0).0).await;
        assert_eq!(st, 200, "{v}");
    }
    s.running.shutdown().await;
}

/// Finding 12: claims are limited per claiming account (429 past it) and one-time packages per
/// claimed account (past it, claims get the last-resort package and the one-time ones stay).
#[tokio::test]
async fn key_package_claims_are_limited_per_claimer_and_per_target() {
    let s = server_with(ServerLimits {
        claim_burst: 4,
        claim_refill_per_sec: 0.001,
        claim_target_burst: 6,
        claim_target_refill_per_sec: 0.001,
        ..ServerLimits::default()
    })
    .await;
    let a = register(&s, "alice").await;
    let b = register(&s, "bob").await;
    let c = register(&s, "carol").await;
    let m = register(&s, "mallory").await;
    let e = register(&s, "eve").await;
    s.upload_key_packages(&b, 10).await;
    s.upload_key_packages(&c, 2).await;
    let count = |who: &Dev| {
        let (url, token) = (format!("{}/v1/key-packages", s.url), who.token.clone());
        async move {
            let (st, v) = call("GET", &url, Some(&token), None).await;
            assert_eq!(st, 200);
            v["available"].as_u64().unwrap()
        }
    };
    let (gm, _) = s.new_group(&m).await;
    let mut drained = BTreeSet::new();
    for _ in 0..4 {
        let (st, kps) = s.claim(&m, "bob", &gm).await;
        assert_eq!(st, 200);
        drained.insert(kps[0].clone());
    }
    assert_eq!(drained.len(), 4, "one-time packages, each once");
    let (st, _) = s.claim(&m, "bob", &gm).await;
    assert_eq!(st, 429, "the claimer's budget is spent");
    assert_eq!(count(&b).await, 6);

    // Eve, a second claimer, gets bob's last two one-time packages of the target's budget (6),
    // then the last-resort package, again and again, and bob keeps his one-time packages.
    let (ge, _) = s.new_group(&e).await;
    let mut got = Vec::new();
    for _ in 0..4 {
        let (st, kps) = s.claim(&e, "bob", &ge).await;
        assert_eq!(st, 200);
        got.push(kps[0].clone());
    }
    assert!(!drained.contains(&got[0]) && !drained.contains(&got[1]));
    assert_ne!(got[0], got[1]);
    assert_eq!(
        got[2], got[3],
        "past the target's budget: the last-resort package"
    );
    assert_eq!(count(&b).await, 4);
    // Other users' budgets are their own: alice claims carol's one-time package.
    let (ga, _) = s.new_group(&a).await;
    let (st, _) = s.claim(&a, "carol", &ga).await;
    assert_eq!(st, 200);
    assert_eq!(count(&c).await, 1);
    s.running.shutdown().await;
}

async fn raw_register(url: &str, user: &str) -> (u16, Value) {
    let key = SigningKey::from_bytes(&rand_bytes());
    let mls = Member::forged(&format!("{user}/x"));
    call(
        "POST",
        &format!("{url}/v1/register"),
        None,
        Some(register_body(user, &key, mls.signer.public())),
    )
    .await
}

/// Finding 8 (free devices): the per-IP registration bucket is kept in the database, so a
/// restart does not refill it.
#[tokio::test]
async fn the_registration_limit_per_ip_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let start = || async {
        let mut config = ServerConfig::embedded(dir.path().join("data"));
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.limits = ServerLimits {
            auth_burst: 3,
            auth_refill_per_sec: 0.001,
            ..ServerLimits::default()
        };
        let running = haven_server::start(config).await.unwrap();
        let url = format!("http://{}", running.addr);
        (running, url)
    };
    let (running, url) = start().await;
    for i in 0..3 {
        assert_eq!(raw_register(&url, &format!("u{i}")).await.0, 200);
    }
    let (st, v) = raw_register(&url, "u3").await;
    assert_eq!((st, v["code"].as_str()), (429, Some("rate_limited")), "{v}");
    running.shutdown().await;
    let (running, url) = start().await;
    let (st, v) = raw_register(&url, "u4").await;
    assert_eq!((st, v["code"].as_str()), (429, Some("rate_limited")), "{v}");
    running.shutdown().await;
}

/// Two server nodes (two `Service`s) on one PostgreSQL database share the per-IP bucket: what
/// one node gave out, the other does not give again, also when both are asked at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_postgres_database_share_the_buckets() {
    let Ok(url) = std::env::var("HAVEN_TEST_POSTGRES_URL") else {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED two_nodes_on_one_postgres_database_share_the_buckets: HAVEN_TEST_POSTGRES_URL is not set"
        );
        return;
    };
    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
    let schema = format!("haven_q_{}", hex::encode(rand_bytes::<8>()));
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .unwrap();
    let limits = ServerLimits {
        auth_burst: 10,
        auth_refill_per_sec: 0.001,
        ..ServerLimits::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    for n in 0..2 {
        let options = PgConnectOptions::from_str(&url)
            .unwrap()
            .options([("search_path", schema.as_str())]);
        let store = haven_server::store::postgres::PgStore::connect_with(options)
            .await
            .unwrap();
        let blobs =
            haven_server::blobs::LocalBlobStore::new(dir.path().join(format!("blobs{n}"))).unwrap();
        // Both nodes read the deployment's one franking key file.
        let keys = haven_server::frank_keys::load_or_create(dir.path(), &store, 1)
            .await
            .unwrap();
        let svc = Service::new(Arc::new(store), Arc::new(blobs), limits.clone(), keys);
        nodes.push(Arc::new(svc));
    }
    let ip: IpAddr = "203.0.113.9".parse().unwrap();
    // Node 0 gives out four, node 1 two.
    for _ in 0..4 {
        nodes[0].rate_limit(ip).await.unwrap();
    }
    for _ in 0..2 {
        nodes[1].rate_limit(ip).await.unwrap();
    }
    // The remaining four, asked for by 16 concurrent callers across both nodes.
    let mut tasks = Vec::new();
    for i in 0..16 {
        let node = nodes[i % 2].clone();
        tasks.push(tokio::spawn(async move { node.rate_limit(ip).await }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => ok += 1,
            Err(ServiceError::RateLimited) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(ok, 4);
    assert!(matches!(
        nodes[0].rate_limit(ip).await,
        Err(ServiceError::RateLimited)
    ));
    // Another address has its own bucket.
    nodes[1]
        .rate_limit("203.0.113.10".parse().unwrap())
        .await
        .unwrap();
    drop(nodes);
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
}
