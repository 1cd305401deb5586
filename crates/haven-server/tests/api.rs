//! The server's HTTP API against a real server on a loopback port, driven by a plain HTTP client
//! with hand-built MLS frames (the server only reads clear-text MLS headers, so these exercise
//! exactly what it checks): authentication, ordering of commits, franking, limits and hostile
//! input. End-to-end tests with real MLS clients live in the `haven` crate.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signer, SigningKey};
use haven_proto::api;
use haven_proto::mls_frame::encode_vector;
use haven_proto::{DeviceId, GroupId};
use haven_server::{ServerConfig, ServerLimits};
use serde_json::{json, Value};

struct TestServer {
    url: String,
    running: haven_server::RunningServer,
    _dir: tempfile::TempDir,
}

async fn server_with(limits: ServerLimits) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::embedded(dir.path().join("data"));
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.limits = limits;
    let running = haven_server::start(config).await.unwrap();
    TestServer {
        url: format!("http://{}", running.addr),
        running,
        _dir: dir,
    }
}

async fn server() -> TestServer {
    server_with(ServerLimits::default()).await
}

struct Dev {
    user: String,
    id: DeviceId,
    token: String,
}

async fn call(method: &str, url: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let c = reqwest::Client::new();
    let mut rb = match method {
        "GET" => c.get(url),
        "PUT" => c.put(url),
        _ => c.post(url),
    };
    if let Some(t) = token {
        rb = rb.header("Authorization", format!("Bearer {t}"));
    }
    if let Some(b) = body {
        rb = rb
            .header("Content-Type", "application/json")
            .body(b.to_string());
    }
    let resp = rb.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn register(s: &TestServer, user: &str) -> Dev {
    let key = SigningKey::from_bytes(&rand_bytes());
    let (st, v) = call(
        "POST",
        &format!("{}/v1/register", s.url),
        None,
        Some(json!({"user": user, "device_name": "test", "auth_key": B64.encode(key.verifying_key().to_bytes())})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let id: DeviceId = v["device_id"].as_str().unwrap().parse().unwrap();
    let token = login(s, &id, &key).await;
    Dev {
        user: user.into(),
        id,
        token,
    }
}

async fn login(s: &TestServer, id: &DeviceId, key: &SigningKey) -> String {
    let (st, v) = call(
        "POST",
        &format!("{}/v1/login/challenge", s.url),
        None,
        Some(json!({"device_id": id})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let nonce = B64.decode(v["nonce"].as_str().unwrap()).unwrap();
    let sig = key.sign(&api::login_message(id, &nonce));
    let (st, v) = call(
        "POST",
        &format!("{}/v1/login", s.url),
        None,
        Some(json!({"device_id": id, "nonce": B64.encode(&nonce), "signature": B64.encode(sig.to_bytes())})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    v["token"].as_str().unwrap().to_owned()
}

fn rand_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
    b
}

/// A `PrivateMessage` frame (RFC 9420 §6.3) with the given header fields and opaque ciphertext.
fn private_message(
    group: &GroupId,
    epoch: u64,
    content_type: u8,
    aad: &[u8],
    body: &[u8],
) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&1u16.to_be_bytes());
    m.extend_from_slice(&2u16.to_be_bytes());
    encode_vector(&mut m, group.as_bytes());
    m.extend_from_slice(&epoch.to_be_bytes());
    m.push(content_type);
    encode_vector(&mut m, aad);
    encode_vector(&mut m, b"encrypted-sender-data");
    encode_vector(&mut m, body);
    m
}

fn welcome() -> Vec<u8> {
    let mut m = vec![0, 1, 0, 3];
    m.extend_from_slice(b"opaque welcome");
    m
}

fn key_package() -> Vec<u8> {
    let mut m = vec![0, 1, 0, 5];
    m.extend_from_slice(&rand_bytes::<16>());
    m
}

fn franked(group: &GroupId, epoch: u64) -> (Vec<u8>, haven_frank::Commitment) {
    let salt = haven_frank::FrankSalt::random();
    let c = haven_frank::commit(&salt, b"content");
    (
        private_message(group, epoch, 1, &haven_frank::encode_aad(&c), b"ciphertext"),
        c,
    )
}

async fn new_group(s: &TestServer, owner: &Dev) -> GroupId {
    let g = GroupId::from_bytes(&rand_bytes::<16>()).unwrap();
    let (st, v) = call(
        "POST",
        &format!("{}/v1/groups", s.url),
        Some(&owner.token),
        Some(json!({"group_id": g})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    g
}

async fn commit(
    s: &TestServer,
    who: &Dev,
    g: &GroupId,
    epoch: u64,
    added: &[&Dev],
    removed: &[&Dev],
) -> (u16, Value) {
    let mut body = json!({
        "commit": B64.encode(private_message(g, epoch, 3, b"", b"commit")),
        "added": added.iter().map(|d| d.id.clone()).collect::<Vec<_>>(),
        "removed": removed.iter().map(|d| d.id.clone()).collect::<Vec<_>>(),
    });
    if !added.is_empty() {
        body["welcome"] = json!(B64.encode(welcome()));
    }
    call(
        "POST",
        &format!("{}/v1/groups/{g}/commits", s.url),
        Some(&who.token),
        Some(body),
    )
    .await
}

async fn queue(s: &TestServer, who: &Dev) -> Vec<api::QueueEntry> {
    let (st, v) = call(
        "GET",
        &format!("{}/v1/queue?limit=500", s.url),
        Some(&who.token),
        None,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    serde_json::from_value::<api::QueueBatch>(v)
        .unwrap()
        .entries
}

#[tokio::test]
async fn login_requires_a_valid_signature_and_single_use_challenge() {
    let s = server().await;
    let key = SigningKey::from_bytes(&rand_bytes());
    let (_, v) = call(
        "POST",
        &format!("{}/v1/register", s.url),
        None,
        Some(json!({"user": "alice", "device_name": "a", "auth_key": B64.encode(key.verifying_key().to_bytes())})),
    )
    .await;
    let id: DeviceId = v["device_id"].as_str().unwrap().parse().unwrap();
    // Wrong key.
    let other = SigningKey::from_bytes(&rand_bytes());
    let (_, v) = call(
        "POST",
        &format!("{}/v1/login/challenge", s.url),
        None,
        Some(json!({"device_id": id})),
    )
    .await;
    let nonce = B64.decode(v["nonce"].as_str().unwrap()).unwrap();
    let forged = other.sign(&api::login_message(&id, &nonce));
    let body = json!({"device_id": id, "nonce": B64.encode(&nonce), "signature": B64.encode(forged.to_bytes())});
    let (st, v) = call("POST", &format!("{}/v1/login", s.url), None, Some(body)).await;
    assert_eq!(st, 401);
    assert_eq!(v["code"], "unauthorized");
    // The challenge was burnt by the failed attempt: even a correct signature over it fails now.
    let good = key.sign(&api::login_message(&id, &nonce));
    let body = json!({"device_id": id, "nonce": B64.encode(&nonce), "signature": B64.encode(good.to_bytes())});
    let (st, _) = call("POST", &format!("{}/v1/login", s.url), None, Some(body)).await;
    assert_eq!(st, 401);
    // A fresh challenge with the right key works, and the token authenticates.
    let token = login(&s, &id, &key).await;
    let (st, v) = call(
        "GET",
        &format!("{}/v1/users/alice", s.url),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["devices"][0]["device_id"], json!(id));
    // Missing and forged tokens are refused.
    let (st, v) = call("GET", &format!("{}/v1/users/alice", s.url), None, None).await;
    assert_eq!((st, v["code"].as_str()), (401, Some("unauthorized")));
    let (st, _) = call(
        "GET",
        &format!("{}/v1/users/alice", s.url),
        Some(&"0".repeat(64)),
        None,
    )
    .await;
    assert_eq!(st, 401);
    // Duplicate name.
    let (st, v) = call(
        "POST",
        &format!("{}/v1/register", s.url),
        None,
        Some(json!({"user": "alice", "device_name": "a", "auth_key": B64.encode(key.verifying_key().to_bytes())})),
    )
    .await;
    assert_eq!((st, v["code"].as_str()), (409, Some("already_exists")));
    s.running.shutdown().await;
}

#[tokio::test]
async fn registration_is_rate_limited() {
    // Registering and logging in take one token each (register, login challenge): a burst of 6
    // lets three users in and refuses the fourth registration.
    let s = server_with(ServerLimits {
        auth_burst: 6,
        auth_refill_per_sec: 0.001,
        ..ServerLimits::default()
    })
    .await;
    for i in 0..3 {
        register(&s, &format!("user{i}")).await;
    }
    let key = SigningKey::from_bytes(&rand_bytes());
    let (st, v) = call(
        "POST",
        &format!("{}/v1/register", s.url),
        None,
        Some(json!({"user": "late", "device_name": "a", "auth_key": B64.encode(key.verifying_key().to_bytes())})),
    )
    .await;
    assert_eq!((st, v["code"].as_str()), (429, Some("rate_limited")), "{v}");
    s.running.shutdown().await;
}

#[tokio::test]
async fn exactly_one_commit_per_epoch_and_welcome_only_after_commit() {
    let s = Arc::new(server().await);
    let a = register(&s, "alice").await;
    let b = register(&s, "bob").await;
    let c = register(&s, "carol").await;
    let g = new_group(&s, &a).await;
    let (st, v) = commit(&s, &a, &g, 0, &[&b], &[]).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["epoch"], 1);
    // Bob got exactly the Welcome.
    let qb = queue(&s, &b).await;
    assert_eq!(qb.len(), 1);
    assert_eq!(qb[0].kind, api::EntryKind::Welcome);

    // Alice and Bob race for epoch 1, many times over: exactly one wins each round.
    let mut epoch = 1;
    for round in 0..5 {
        let added_a: Vec<&Dev> = if round == 0 { vec![&c] } else { vec![] };
        let (ra, rb) = tokio::join!(
            commit(&s, &a, &g, epoch, &added_a, &[]),
            commit(&s, &b, &g, epoch, &[], &[])
        );
        let wins = [ra.0, rb.0].iter().filter(|st| **st == 200).count();
        assert_eq!(wins, 1, "round {round}: {ra:?} {rb:?}");
        let loser = if ra.0 == 200 { &rb } else { &ra };
        assert_eq!(loser.0, 409);
        assert_eq!(loser.1["code"], "epoch_conflict");
        assert_eq!(loser.1["current_epoch"], epoch + 1);
        if round == 0 {
            // Carol's Welcome exists only if Alice's commit won.
            let qc = queue(&s, &c).await;
            assert_eq!(
                qc.iter()
                    .filter(|e| e.kind == api::EntryKind::Welcome)
                    .count(),
                usize::from(ra.0 == 200)
            );
        }
        epoch += 1;
    }
    // The last round's winner resubmitting the same commit (its answer lost, say) is told it
    // is in: 200 with the current state, and nothing is queued again.
    let (qa_before, qb_before) = (queue(&s, &a).await.len(), queue(&s, &b).await.len());
    let (ra, rb) = (
        commit(&s, &a, &g, epoch - 1, &[], &[]).await,
        commit(&s, &b, &g, epoch - 1, &[], &[]).await,
    );
    let (ok, refused) = if ra.0 == 200 { (ra, rb) } else { (rb, ra) };
    assert_eq!((ok.0, ok.1["epoch"].as_u64()), (200, Some(epoch)), "{ok:?}");
    assert_eq!(
        refused.0, 409,
        "only the committer's own resubmission: {refused:?}"
    );
    assert_eq!(
        (queue(&s, &a).await.len(), queue(&s, &b).await.len()),
        (qa_before, qb_before)
    );
    // A stale commit (different bytes) is refused with the current epoch named.
    let stale = json!({
        "commit": B64.encode(private_message(&g, 1, 3, b"", b"another commit")),
        "added": [],
        "removed": [],
    });
    let (st, v) = call(
        "POST",
        &format!("{}/v1/groups/{g}/commits", s.url),
        Some(&a.token),
        Some(stale),
    )
    .await;
    assert_eq!((st, v["current_epoch"].as_u64()), (409, Some(epoch)));
    // A non-member cannot commit.
    let mallory = register(&s, "mallory").await;
    let (st, v) = commit(&s, &mallory, &g, epoch, &[], &[]).await;
    assert_eq!((st, v["code"].as_str()), (403, Some("forbidden")), "{v}");
}

#[tokio::test]
async fn application_messages_need_a_commitment_and_carry_the_server_frank() {
    let s = server().await;
    let a = register(&s, "alice").await;
    let b = register(&s, "bob").await;
    let g = new_group(&s, &a).await;
    assert_eq!(commit(&s, &a, &g, 0, &[&b], &[]).await.0, 200);
    let url = format!("{}/v1/groups/{g}/messages", s.url);

    // No commitment: refused, nothing queued.
    let bare = private_message(&g, 1, 1, b"", b"ciphertext");
    let (st, v) = call(
        "POST",
        &url,
        Some(&a.token),
        Some(json!({"message": B64.encode(&bare)})),
    )
    .await;
    assert_eq!((st, v["code"].as_str()), (400, Some("bad_request")), "{v}");
    assert!(v["message"]
        .as_str()
        .unwrap()
        .contains("franking commitment"));
    let before = queue(&s, &b).await.len();

    let (msg, c) = franked(&g, 1);
    let (st, v) = call(
        "POST",
        &url,
        Some(&a.token),
        Some(json!({"message": B64.encode(&msg)})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["deliveries"], 1);
    let q = queue(&s, &b).await;
    assert_eq!(q.len(), before + 1);
    let e = q.last().unwrap();
    assert_eq!(e.kind, api::EntryKind::Application);
    assert_eq!(e.payload, msg);
    assert_eq!(e.sender.as_ref().unwrap().user.as_str(), "alice");
    let frank = e.frank.as_ref().unwrap();
    assert_eq!(frank.commitment, c.as_bytes().to_vec());
    // The server's tag verifies under its key over exactly (commitment, sender, group, time).
    let tag = haven_frank::ServerTag::from_slice(&frank.server_tag).unwrap();
    let binding = haven_frank::Binding {
        commitment: &c,
        sender_device: a.id.as_str(),
        group_id: g.as_bytes(),
        received_at_ms: frank.received_at,
    };
    haven_frank::verify_server_tag(s.running.service.frank_key(), &binding, &tag).unwrap();
    let other_sender = haven_frank::Binding {
        sender_device: b.id.as_str(),
        ..binding
    };
    assert!(
        haven_frank::verify_server_tag(s.running.service.frank_key(), &other_sender, &tag).is_err()
    );

    // Wrong content type, wrong group, future epoch, garbage: all 400.
    for bad in [
        private_message(&g, 1, 3, &haven_frank::encode_aad(&c), b"x"),
        franked(&GroupId::from_bytes(&[9; 16]).unwrap(), 1).0,
        franked(&g, 99).0,
        b"\x00\x01\x00\x02garbage".to_vec(),
        Vec::new(),
    ] {
        let (st, v) = call(
            "POST",
            &url,
            Some(&a.token),
            Some(json!({"message": B64.encode(&bad)})),
        )
        .await;
        assert_eq!(st, 400, "{v}");
        assert_eq!(v["code"], "bad_request");
    }
    // A non-member cannot send.
    let m = register(&s, "mallory").await;
    let (st, _) = call(
        "POST",
        &url,
        Some(&m.token),
        Some(json!({"message": B64.encode(&msg)})),
    )
    .await;
    assert_eq!(st, 403);
    // Acknowledged entries leave the queue; acking someone else's ids does nothing.
    let ids: Vec<i64> = q.iter().map(|e| e.id).collect();
    let (st, v) = call(
        "POST",
        &format!("{}/v1/queue/ack", s.url),
        Some(&m.token),
        Some(json!({"ids": ids})),
    )
    .await;
    assert_eq!((st, v["count"].as_u64()), (200, Some(0)));
    let (st, v) = call(
        "POST",
        &format!("{}/v1/queue/ack", s.url),
        Some(&b.token),
        Some(json!({"ids": ids})),
    )
    .await;
    assert_eq!((st, v["count"].as_u64()), (200, Some(ids.len() as u64)));
    assert!(queue(&s, &b).await.is_empty());
}

#[tokio::test]
async fn hostile_input_gets_clear_4xx_and_the_server_keeps_serving() {
    let limits = ServerLimits {
        max_blob: 64 << 10,
        max_queue_depth: 3,
        ..ServerLimits::default()
    };
    let s = server_with(limits).await;
    let a = register(&s, "alice").await;
    let b = register(&s, "bob").await;
    let base = &s.url;
    let client = reqwest::Client::new();

    // Oversized JSON body.
    let huge = "x".repeat(2 << 20);
    let resp = client
        .post(format!("{base}/v1/register"))
        .header("Content-Type", "application/json")
        .body(format!("{{\"user\":\"{huge}\"}}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["code"], "payload_too_large");
    // Oversized blob.
    let resp = client
        .put(format!("{base}/v1/blobs"))
        .header("Authorization", format!("Bearer {}", a.token))
        .body(vec![7u8; (64 << 10) + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    // Malformed JSON, wrong types, unknown fields, bad ids, bad base64.
    for (path, body) in [
        ("/v1/register", "{not json".to_string()),
        ("/v1/register", json!({"user": "Bad Name", "device_name": "x", "auth_key": "AAAA"}).to_string()),
        ("/v1/register", json!({"user": "carol", "device_name": "x", "auth_key": "not base64!"}).to_string()),
        ("/v1/register", json!({"user": "carol", "device_name": "x", "auth_key": B64.encode([0u8; 5])}).to_string()),
        ("/v1/register", json!({"user": "carol", "device_name": "x", "auth_key": B64.encode([1u8; 32]), "extra": 1}).to_string()),
        ("/v1/login/challenge", json!({"device_id": "xyz"}).to_string()),
    ] {
        let resp = client.post(format!("{base}{path}")).header("Content-Type", "application/json").body(body.clone()).send().await.unwrap();
        let st = resp.status().as_u16();
        let v: Value = resp.json().await.unwrap();
        assert_eq!(st, 400, "{path} {body}: {v}");
        assert_eq!(v["code"], "bad_request");
        assert!(!v["message"].as_str().unwrap().is_empty());
    }
    // Unknown ids.
    let unknown = DeviceId::from_bytes([1; 16]);
    let (st, v) = call(
        "POST",
        &format!("{base}/v1/login/challenge"),
        None,
        Some(json!({"device_id": unknown})),
    )
    .await;
    assert_eq!((st, v["code"].as_str()), (404, Some("not_found")));
    let (st, _) = call(
        "GET",
        &format!("{base}/v1/users/nobody"),
        Some(&a.token),
        None,
    )
    .await;
    assert_eq!(st, 404);
    let (st, _) = call(
        "GET",
        &format!("{base}/v1/groups/{}", "ab".repeat(16)),
        Some(&a.token),
        None,
    )
    .await;
    assert_eq!(st, 404);
    let (st, _) = call(
        "GET",
        &format!("{base}/v1/groups/nothex"),
        Some(&a.token),
        None,
    )
    .await;
    assert_eq!(st, 400);
    let (st, _) = call(
        "GET",
        &format!("{base}/v1/blobs/{}", "0".repeat(64)),
        Some(&a.token),
        None,
    )
    .await;
    assert_eq!(st, 404);
    let (st, _) = call("GET", &format!("{base}/v1/nowhere"), None, None).await;
    assert_eq!(st, 404);
    // Key packages must be MLS key packages.
    let (st, _) = call(
        "POST",
        &format!("{base}/v1/key-packages"),
        Some(&a.token),
        Some(json!({"key_packages": [B64.encode(b"nope")]})),
    )
    .await;
    assert_eq!(st, 400);
    let (st, v) = call("POST", &format!("{base}/v1/key-packages"), Some(&a.token), Some(json!({"key_packages": [B64.encode(key_package())], "last_resort": B64.encode(key_package())}))).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v, json!({"available": 1, "has_last_resort": true}));

    // Queue depth: Bob's queue holds 3; the 4th send is refused and nothing is half-written.
    let g = new_group(&s, &a).await;
    assert_eq!(commit(&s, &a, &g, 0, &[&b], &[]).await.0, 200); // Welcome: 1 entry
    for _ in 0..2 {
        let (st, v) = call(
            "POST",
            &format!("{base}/v1/groups/{g}/messages"),
            Some(&a.token),
            Some(json!({"message": B64.encode(franked(&g, 1).0)})),
        )
        .await;
        assert_eq!(st, 200, "{v}");
    }
    let (st, v) = call(
        "POST",
        &format!("{base}/v1/groups/{g}/messages"),
        Some(&a.token),
        Some(json!({"message": B64.encode(franked(&g, 1).0)})),
    )
    .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (422, Some("limit_exceeded")),
        "{v}"
    );
    assert_eq!(queue(&s, &b).await.len(), 3);

    // After all that, the server still serves everyone.
    let (st, v) = call("GET", &format!("{base}/v1/health"), None, None).await;
    assert_eq!((st, v["status"].as_str()), (200, Some("ok")));
    let blob = vec![42u8; 1000];
    let resp = client
        .put(format!("{base}/v1/blobs"))
        .header("Authorization", format!("Bearer {}", b.token))
        .body(blob.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let stored: api::BlobStored = resp.json().await.unwrap();
    let got = client
        .get(format!("{base}/v1/blobs/{}", stored.blob_id))
        .header("Authorization", format!("Bearer {}", a.token))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&got[..], &blob[..]);
    let _ = &b.user;
}
