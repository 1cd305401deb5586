//! Verified reporting and moderation against a real server on loopback: forgeries refused,
//! the authorization matrix, each action's effect, escalation to a CyberTipline-shaped report
//! and its submission to a local server that follows the API's documentation, hostile input,
//! and no reported plaintext at rest.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::Signer as _;
use haven_content::{attachment, AttachmentRef, Body, Content};
use haven_frank::FrankSalt;
use haven_proto::api::{self, EntryKind, Sender};
use haven_proto::moderation::{self as m, EvidenceBundle, FrankedMessage, ReportReason};
use haven_proto::{BlobId, GroupId};
use haven_server::moderation::Role;
use haven_server::ServerLimits;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use support::*;

fn limits() -> ServerLimits {
    ServerLimits {
        report_burst: 1_000_000,
        report_refill_per_sec: 1000.0,
        report_contact: Some("safety@haven.example".into()),
        ..ServerLimits::default()
    }
}

/// Sends a franked application message as `from` (the server only reads the clear header of
/// application messages, so the ciphertext is opaque filler) and returns what a recipient
/// keeps for a report.
async fn send(s: &TestServer, from: &Dev, g: &GroupId, epoch: u64, body: Body) -> FrankedMessage {
    let content = Content::new(body, 1).encode().unwrap();
    let salt = FrankSalt::random();
    let c = haven_frank::commit(&salt, &content);
    let msg = private_message(
        g,
        epoch,
        1,
        &haven_frank::encode_aad(&c),
        b"opaque ciphertext",
    );
    let (st, v) = call(
        "POST",
        &format!("{}/v1/groups/{g}/messages", s.url),
        Some(&from.token),
        Some(json!({"message": B64.encode(msg)})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    FrankedMessage {
        group_id: g.clone(),
        sender: Sender {
            user: from.user.parse().unwrap(),
            device_id: from.id.clone(),
        },
        received_at: v["received_at"].as_u64().unwrap(),
        content,
        salt: salt.as_bytes().to_vec(),
        commitment: c.as_bytes().to_vec(),
        server_tag: B64.decode(v["server_tag"].as_str().unwrap()).unwrap(),
    }
}

fn text(t: &str) -> Body {
    Body::Text(t.into())
}

/// A synthesised PNG (a gradient with a marker row), benign test data.
fn png(seed: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(64, 64, |x, y| {
        image::Rgb([(x * 4) as u8 ^ seed, (y * 4) as u8, ((x + y) * 2) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// Seals and uploads `bytes` as `from`; the attachment body that names it.
async fn upload(s: &TestServer, from: &Dev, bytes: &[u8], name: &str) -> Body {
    let (ct, key, sha256) = attachment::seal(bytes).unwrap();
    let resp = reqwest::Client::new()
        .put(format!("{}/v1/blobs", s.url))
        .header("Authorization", format!("Bearer {}", from.token))
        .body(ct)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    Body::Attachment(AttachmentRef {
        blob_id: BlobId::new(v["blob_id"].as_str().unwrap()).unwrap(),
        key,
        sha256,
        size: bytes.len() as u64,
        name: name.into(),
    })
}

fn bundle(reported: &FrankedMessage, context: &[&FrankedMessage]) -> EvidenceBundle {
    EvidenceBundle {
        v: 1,
        reported: reported.clone(),
        context: context.iter().map(|m| (*m).clone()).collect(),
    }
}

async fn report(s: &TestServer, who: &Dev, reason: &str, b: &EvidenceBundle) -> (u16, Value) {
    call(
        "POST",
        &format!("{}/v1/reports", s.url),
        Some(&who.token),
        Some(json!({"reason": reason, "evidence": b})),
    )
    .await
}

/// alice and bob in a group `g` at epoch 1; alice and carol in `g2`; dave in none.
struct World {
    s: TestServer,
    alice: Dev,
    bob: Dev,
    carol: Dev,
    dave: Dev,
    g: GroupId,
    g2: GroupId,
}

async fn world() -> World {
    let s = server_with(limits()).await;
    let alice = register(&s, "alice").await;
    let bob = register(&s, "bob").await;
    let carol = register(&s, "carol").await;
    let dave = register(&s, "dave").await;
    for d in [&bob, &carol] {
        s.upload_key_packages(d, 3).await;
    }
    let (g, mut group) = s.new_group(&alice).await;
    assert_eq!(s.add(&alice, &mut group, &g, &bob).await.0, 200);
    let (g2, mut group2) = s.new_group(&alice).await;
    assert_eq!(s.add(&alice, &mut group2, &g2, &carol).await.0, 200);
    World {
        s,
        alice,
        bob,
        carol,
        dave,
        g,
        g2,
    }
}

async fn open_cases(s: &TestServer, moderator: &Dev) -> u64 {
    let (st, v) = call(
        "GET",
        &format!("{}/v1/mod/queue", s.url),
        Some(&moderator.token),
        None,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    v["open"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_reports_are_refused_and_genuine_ones_verify() {
    let w = world().await;
    let s = &w.s;
    let m1 = send(s, &w.alice, &w.g, 1, text("hello bob")).await;
    let b1 = send(s, &w.bob, &w.g, 1, text("hi alice")).await;
    let m2 = send(s, &w.alice, &w.g, 1, text("send me a photo")).await;
    let m3 = send(s, &w.alice, &w.g, 1, text("or else")).await;
    let x1 = send(s, &w.alice, &w.g2, 1, text("hello carol")).await;
    // What bob's queue delivered is exactly what the report discloses.
    let q = s.queue(&w.bob).await;
    let env = q
        .iter()
        .filter(|e| e.kind == EntryKind::Application)
        .filter_map(|e| e.frank.clone())
        .next_back()
        .unwrap();
    assert_eq!(
        (env.server_tag, env.received_at),
        (m3.server_tag.clone(), m3.received_at)
    );

    let genuine = bundle(&m3, &[&m1, &b1, &m2]);
    let (st, v) = report(s, &w.bob, "sextortion", &genuine).await;
    assert_eq!(st, 200, "{v}");
    let case = v["case"].as_str().unwrap().to_owned();
    assert_eq!(v["verified_messages"], 4);
    // Reporting the same message again is the same case.
    let (st, v) = report(s, &w.bob, "sextortion", &genuine).await;
    assert_eq!((st, v["case"].as_str().unwrap()), (200, case.as_str()));

    let svc = &s.running.service;
    let bob = svc.authenticate(&w.bob.token).await.unwrap();
    let dave = svc.authenticate(&w.dave.token).await.unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x4a11);
    let flip = |rng: &mut rand::rngs::StdRng, b: &mut Vec<u8>| {
        let i = rng.gen_range(0..b.len() * 8);
        b[i / 8] ^= 1 << (i % 8);
    };
    let others = [&w.alice, &w.bob, &w.carol, &w.dave];
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    let mut total = 0;
    while total < 10_000 {
        let mut b = genuine.clone();
        let mut reporter = &bob;
        let kind: &'static str = match rng.gen_range(0..21) {
            0 => {
                flip(&mut rng, &mut b.reported.content);
                "flipped content bit"
            }
            1 => {
                flip(&mut rng, &mut b.reported.salt);
                "flipped salt bit"
            }
            2 => {
                flip(&mut rng, &mut b.reported.commitment);
                "flipped commitment bit"
            }
            3 => {
                flip(&mut rng, &mut b.reported.server_tag);
                "flipped server-tag bit"
            }
            4 => {
                let d: i64 = rng.gen_range(1..10_000_000) * if rng.gen() { 1 } else { -1 };
                b.reported.received_at = b.reported.received_at.wrapping_add_signed(d);
                for c in &mut b.context {
                    c.received_at = c.received_at.min(b.reported.received_at);
                }
                "other receive time"
            }
            5 => {
                let o = others[rng.gen_range(0..others.len())];
                if o.user == "alice" {
                    continue;
                }
                b.reported.sender.user = o.user.parse().unwrap();
                "other sender account"
            }
            6 => {
                let o = others[rng.gen_range(1..others.len())];
                b.reported.sender.device_id = if rng.gen() {
                    o.id.clone()
                } else {
                    haven_proto::DeviceId::from_bytes(rand_bytes())
                };
                "other sender device"
            }
            7 => {
                b.reported.group_id = if rng.gen() {
                    w.g2.clone()
                } else {
                    GroupId::from_bytes(&rand_bytes::<16>()).unwrap()
                };
                b.context.clear();
                "other conversation named"
            }
            8 => {
                // The opening of one message with the envelope of another.
                let src = [&m1, &m2][rng.gen_range(0..2)];
                b.reported.content = src.content.clone();
                b.reported.salt = src.salt.clone();
                b.reported.commitment = src.commitment.clone();
                "messages swapped"
            }
            9 => {
                b = bundle(&x1, &[]);
                "a frank from another conversation"
            }
            10 => {
                b.reported.content =
                    Content::new(text(&format!("I never said {}", rng.gen::<u32>())), 1)
                        .encode()
                        .unwrap();
                "replayed frank with other text"
            }
            11 => {
                let content = Content::new(text("never sent"), 1).encode().unwrap();
                let salt = FrankSalt::random();
                b.reported.commitment = haven_frank::commit(&salt, &content).as_bytes().to_vec();
                b.reported.salt = salt.as_bytes().to_vec();
                b.reported.content = content;
                if rng.gen() {
                    let mut t = vec![2u8, 0, 0, 0, 1];
                    t.extend_from_slice(&rand_bytes::<32>());
                    b.reported.server_tag = t;
                }
                "a message that was never sent"
            }
            12 => {
                reporter = &dave;
                "a reporter who was not a recipient"
            }
            13 => {
                let i = rng.gen_range(0..b.context.len());
                match rng.gen_range(0..3) {
                    0 => flip(&mut rng, &mut b.context[i].content),
                    1 => flip(&mut rng, &mut b.context[i].server_tag),
                    _ => b.context[i].received_at -= rng.gen_range(1..1000),
                }
                "an altered context message"
            }
            14 => {
                b.context.push(x1.clone());
                "context from another conversation"
            }
            15 => {
                b = bundle(&m2, &[&m1, &m3]);
                "context after the reported message"
            }
            16 => {
                let c = b.context[0].clone();
                b.context.push(c);
                "duplicate context"
            }
            17 => {
                while b.context.len() <= m::MAX_CONTEXT {
                    b.context.push(m1.clone());
                }
                "too much context"
            }
            18 => {
                b.v = rng.gen_range(2..=255);
                "unknown bundle version"
            }
            19 => {
                b = bundle(&b1, &[&m1]);
                "the reporter's own message"
            }
            _ => {
                let field = [
                    &mut b.reported.salt,
                    &mut b.reported.commitment,
                    &mut b.reported.server_tag,
                ][rng.gen_range(0..3)]
                .clone();
                let n = rng.gen_range(0..field.len());
                match rng.gen_range(0..3) {
                    0 => b.reported.salt.truncate(n),
                    1 => b.reported.commitment.truncate(n),
                    _ => b.reported.server_tag.truncate(n),
                }
                "truncated field"
            }
        };
        if b == genuine && std::ptr::eq(reporter, &bob) {
            continue; // the mutation changed nothing (a truncation to the same length, say)
        }
        let req = m::ReportRequest {
            reason: ReportReason::Harassment,
            note: None,
            evidence: b,
        };
        let err = match svc.file_report(reporter, req).await {
            Ok(filed) => panic!("{kind}: accepted as case {}", filed.case),
            Err(e) => e,
        };
        let msg = err.to_string();
        let status = haven_server::http::error_response(err).status().as_u16();
        assert!((400..500).contains(&status), "{kind}: {status} {msg}");
        assert!(
            msg.len() > 10 && msg != "internal error",
            "{kind}: unclear message {msg:?}"
        );
        *counts.entry(kind).or_default() += 1;
        *statuses.entry(status).or_default() += 1;
        total += 1;
    }
    eprintln!("refused {total} altered bundles: {counts:#?}\nby status: {statuses:?}");
    assert!(
        counts.len() >= 20,
        "every kind of alteration was tried: {counts:?}"
    );

    // A sample through HTTP too: each a 4xx with a JSON error naming what failed.
    let mut tampered = genuine.clone();
    tampered.reported.content = Content::new(text("edited"), 1).encode().unwrap();
    let (st, v) = report(s, &w.bob, "harassment", &tampered).await;
    assert_eq!(st, 400, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("the reported message"),
        "{v}"
    );
    let (st, v) = report(s, &w.dave, "harassment", &genuine).await;
    assert_eq!(st, 403, "{v}");
    let (st, v) = report(s, &w.bob, "harassment", &bundle(&x1, &[])).await;
    assert_eq!(st, 403, "{v}");
    // Nothing was filed but the one genuine case.
    grant(s, "carol", Role::Moderator).await;
    assert_eq!(open_cases(s, &w.carol).await, 1);
    let (st, v) = call(
        "GET",
        &format!("{}/v1/mod/cases/{case}", s.url),
        Some(&w.carol.token),
        None,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let ev = v["evidence"].as_array().unwrap();
    assert_eq!(ev.len(), 4);
    assert!(ev.iter().all(|e| e["verified"] == true));
    assert_eq!(ev[0]["text"], "or else");
    assert_eq!(ev[0]["role"], "reported");
    assert_eq!(v["summary"]["reason"], "sextortion");
    assert_eq!(v["summary"]["priority"], 1);
    assert_eq!(v["account"]["user"], "alice");
    assert_eq!(v["account"]["devices"].as_array().unwrap().len(), 1);
}

/// The reported user, the reporter, ordinary users and admins get nothing of moderation; a
/// moderator gets it unless they are part of the case; only an admin reads the audit log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_matrix() {
    let w = world().await;
    let s = &w.s;
    let erin = register(s, "erin").await;
    let mod1 = register(s, "mod1").await;
    let mod2 = register(s, "mod2").await;
    let adm = register(s, "adm").await;
    grant(s, "mod1", Role::Moderator).await;
    grant(s, "mod2", Role::Moderator).await;
    grant(s, "adm", Role::Admin).await;
    let pic = upload(s, &w.alice, &png(1), "pic.png").await;
    let m1 = send(s, &w.alice, &w.g, 1, pic).await;
    let (st, v) = report(s, &w.bob, "child-sexual-exploitation", &bundle(&m1, &[])).await;
    assert_eq!(st, 200, "{v}");
    let case = v["case"].as_str().unwrap().to_owned();
    // A second case with an action under appeal, for the appeal endpoints.
    let m2 = send(s, &w.alice, &w.g, 1, text("spam spam")).await;
    let (_, v) = report(s, &w.bob, "spam", &bundle(&m2, &[])).await;
    let case2 = v["case"].as_str().unwrap().to_owned();
    let (st, v) = call(
        "POST",
        &format!("{}/v1/mod/cases/{case2}/actions", s.url),
        Some(&mod1.token),
        Some(json!({"action": "warn", "reason": "no spam"})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let action = v["id"].as_str().unwrap().to_owned();
    let (st, v) = call(
        "POST",
        &format!("{}/v1/appeals", s.url),
        Some(&w.alice.token),
        Some(json!({"case": case2, "text": "it was a joke"})),
    )
    .await;
    assert_eq!(st, 200, "{v}");

    let u = &s.url;
    let endpoints: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", format!("{u}/v1/mod/queue"), None),
        ("GET", format!("{u}/v1/mod/cases/{case}"), None),
        ("GET", format!("{u}/v1/mod/cases/{case}/files/f0"), None),
        (
            "POST",
            format!("{u}/v1/mod/cases/{case}/escalation"),
            Some(json!({"reason": "apparent CSAM, reviewed"})),
        ),
        (
            "POST",
            format!("{u}/v1/mod/cases/{case}/actions"),
            Some(json!({"action": "warn", "reason": "CSAM"})),
        ),
        ("GET", format!("{u}/v1/mod/appeals"), None),
        (
            "POST",
            format!("{u}/v1/mod/appeals/{action}"),
            Some(json!({"outcome": "upheld", "reason": "spam it was"})),
        ),
        ("GET", format!("{u}/v1/admin/audit"), None),
        ("GET", format!("{u}/v1/mod/signals/alice"), None),
    ];
    let roles: [(&str, Option<&Dev>); 6] = [
        ("no session", None),
        ("ordinary user", Some(&erin)),
        ("reported user", Some(&w.alice)),
        ("reporter", Some(&w.bob)),
        ("admin", Some(&adm)),
        // Last: the moderator's cells change state (escalate, warn, decide).
        ("moderator", Some(&mod2)),
    ];
    let mut cells = 0;
    for (method, url, body) in &endpoints {
        let admin_only = url.contains("/v1/admin/");
        for (role, dev) in &roles {
            let (st, v) = call(method, url, dev.map(|d| d.token.as_str()), body.clone()).await;
            let want = match (*role, admin_only) {
                ("no session", _) => 401,
                ("admin", true) | ("moderator", false) => 200,
                _ => 403,
            };
            assert_eq!(st, want, "{method} {url} as {role}: {v}");
            if want != 200 {
                assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
            }
            cells += 1;
        }
    }
    assert_eq!(cells, 54);
    // The moderator who took an action cannot decide its appeal (already decided here, so
    // check on a fresh one), and a moderator who is part of a case cannot open it.
    let m3 = send(s, &w.alice, &w.g, 1, text("more spam")).await;
    let (_, v) = report(s, &w.bob, "spam", &bundle(&m3, &[])).await;
    let case3 = v["case"].as_str().unwrap().to_owned();
    let (_, v) = call(
        "POST",
        &format!("{u}/v1/mod/cases/{case3}/actions"),
        Some(&mod1.token),
        Some(json!({"action": "warn", "reason": "again"})),
    )
    .await;
    let action3 = v["id"].as_str().unwrap().to_owned();
    // The device-proof path of an appeal (what a suspended account uses) works too.
    let (st, v) = appeal_with_proof(s, &w.alice, &case3, "please").await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = call(
        "POST",
        &format!("{u}/v1/mod/appeals/{action3}"),
        Some(&mod1.token),
        Some(json!({"outcome": "reversed", "reason": "mine"})),
    )
    .await;
    assert_eq!(st, 403, "{v}");
    grant(s, "bob", Role::Moderator).await;
    let (st, v) = call(
        "GET",
        &format!("{u}/v1/mod/cases/{case}"),
        Some(&w.bob.token),
        None,
    )
    .await;
    assert_eq!(st, 403, "the reporter as moderator: {v}");
    let (st, v) = call(
        "GET",
        &format!("{u}/v1/mod/queue"),
        Some(&w.bob.token),
        None,
    )
    .await;
    assert_eq!(st, 200);
    assert!(
        v["cases"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["reporter"] != "bob"),
        "{v}"
    );
    // The audit log shows who saw what; the admin reads it.
    let (_, v) = call(
        "GET",
        &format!("{u}/v1/admin/audit"),
        Some(&adm.token),
        None,
    )
    .await;
    let actions: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "role.grant",
        "report.file",
        "case.view",
        "evidence.view",
        "case.escalate",
        "case.action",
        "appeal.file",
        "appeal.decide",
    ] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }
}

async fn appeal_with_proof(s: &TestServer, who: &Dev, case: &str, text: &str) -> (u16, Value) {
    let (st, v) = call(
        "POST",
        &format!("{}/v1/login/challenge", s.url),
        None,
        Some(json!({"device_id": who.id})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let nonce = B64.decode(v["nonce"].as_str().unwrap()).unwrap();
    let sig = who.auth.sign(&api::device_proof_message(
        m::PROOF_APPEAL,
        &who.id,
        &nonce,
        case.as_bytes(),
    ));
    call(
        "POST",
        &format!("{}/v1/appeals", s.url),
        None,
        Some(json!({"case": case, "text": text, "device_id": who.id,
                    "proof": {"nonce": B64.encode(&nonce), "signature": B64.encode(sig.to_bytes())}})),
    )
    .await
}

async fn try_login(s: &TestServer, who: &Dev) -> (u16, Value) {
    let (_, v) = call(
        "POST",
        &format!("{}/v1/login/challenge", s.url),
        None,
        Some(json!({"device_id": who.id})),
    )
    .await;
    let nonce = B64.decode(v["nonce"].as_str().unwrap()).unwrap();
    let sig = who.auth.sign(&api::login_message(&who.id, &nonce));
    call(
        "POST",
        &format!("{}/v1/login", s.url),
        None,
        Some(json!({"device_id": who.id, "nonce": B64.encode(&nonce), "signature": B64.encode(sig.to_bytes())})),
    )
    .await
}

fn notices(q: &[api::QueueEntry]) -> Vec<m::Notice> {
    q.iter()
        .filter(|e| e.kind == EntryKind::Notice)
        .map(|e| serde_json::from_slice(&e.payload).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_take_effect() {
    let w = world().await;
    let s = &w.s;
    let mod1 = register(s, "mod1").await;
    let mod2 = register(s, "mod2").await;
    grant(s, "mod1", Role::Moderator).await;
    grant(s, "mod2", Role::Moderator).await;
    let act = |case: &str, body: Value| {
        let url = format!("{}/v1/mod/cases/{case}/actions", s.url);
        let token = mod1.token.clone();
        async move { call("POST", &url, Some(&token), Some(body)).await }
    };
    let new_case = |text_: &'static str| {
        let (s, alice, bob, g) = (&w.s, &w.alice, &w.bob, w.g.clone());
        async move {
            let m = send(s, alice, &g, 1, text(text_)).await;
            let (st, v) = report(s, bob, "harassment", &bundle(&m, &[])).await;
            assert_eq!(st, 200, "{v}");
            v["case"].as_str().unwrap().to_owned()
        }
    };

    // warn: alice gets the statement of reasons; bob learns the outcome category only.
    let c1 = new_case("you idiot").await;
    let (st, v) = act(
        &c1,
        json!({"action": "warn", "reason": "insults are against the rules"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let n = notices(&s.queue(&w.alice).await);
    assert_eq!(n.len(), 1);
    assert_eq!(
        (n[0].kind, n[0].action),
        (m::NoticeKind::Action, Some(m::ModAction::Warn))
    );
    assert_eq!(
        n[0].reason.as_deref(),
        Some("insults are against the rules")
    );
    let n = notices(&s.queue(&w.bob).await);
    assert_eq!(n.len(), 1);
    assert_eq!(
        (n[0].kind, n[0].outcome.as_deref()),
        (m::NoticeKind::ReportOutcome, Some("action_taken"))
    );
    assert_eq!(n[0].reason, None, "the reporter does not see the statement");
    // A closed case takes no second closing action.
    let (st, _) = act(&c1, json!({"action": "dismiss", "reason": "x"})).await;
    assert_eq!(st, 409);

    // restrict: no new conversations or members; the existing conversation still works.
    let c2 = new_case("again").await;
    let (st, v) = act(
        &c2,
        json!({"action": "restrict", "reason": "cool off", "days": 1}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert!(v["until"].as_u64().unwrap() > haven_server::service::now_ms() as u64);
    let g3 = GroupId::from_bytes(&rand_bytes::<16>()).unwrap();
    let (_, info) = w.alice.mls.create_group(&g3);
    let (st, v) = call(
        "POST",
        &format!("{}/v1/groups", s.url),
        Some(&w.alice.token),
        Some(json!({"group_id": g3, "group_info": B64.encode(info)})),
    )
    .await;
    assert_eq!(st, 403, "{v}");
    assert!(v["message"].as_str().unwrap().contains("restricted"), "{v}");
    let (st, _) = s.claim(&w.alice, "carol", &w.g).await;
    assert_eq!(st, 403);
    send(s, &w.alice, &w.g, 1, text("still talking in an old chat")).await;

    // suspend: sessions revoked, login refused with the reason and how to appeal; messages
    // queued for the account are kept.
    let c3 = new_case("threat").await;
    // Cases for later steps, filed while alice's first session is live.
    let c4 = new_case("worse").await;
    let c5 = new_case("x").await;
    let (st, v) = act(
        &c3,
        json!({"action": "suspend", "reason": "threats of violence"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let (st, _) = call(
        "GET",
        &format!("{}/v1/queue", s.url),
        Some(&w.alice.token),
        None,
    )
    .await;
    assert_eq!(st, 401);
    let (st, v) = try_login(s, &w.alice).await;
    assert_eq!(st, 403, "{v}");
    assert_eq!(v["code"], "account_suspended");
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.contains("suspended") && msg.contains(&c3) && msg.contains("threats of violence"),
        "{msg}"
    );
    let kept = send(s, &w.bob, &w.g, 1, text("are you there?")).await;
    // Appeal: without a session, signed by the device; once only; not by the moderator who acted.
    let (st, v) = appeal_with_proof(s, &w.alice, &c3, "I was quoting a film").await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = appeal_with_proof(s, &w.alice, &c3, "again").await;
    assert_eq!(st, 409, "{v}");
    let (_, v) = call(
        "GET",
        &format!("{}/v1/mod/appeals", s.url),
        Some(&mod1.token),
        None,
    )
    .await;
    assert!(
        v["appeals"].as_array().unwrap().is_empty(),
        "the acting moderator does not see it: {v}"
    );
    let (_, v) = call(
        "GET",
        &format!("{}/v1/mod/appeals", s.url),
        Some(&mod2.token),
        None,
    )
    .await;
    let appeals = v["appeals"].as_array().unwrap();
    assert_eq!(appeals.len(), 1, "{v}");
    let action = appeals[0]["id"].as_str().unwrap().to_owned();
    let decide = |tok: &str, body: Value| {
        let url = format!("{}/v1/mod/appeals/{action}", s.url);
        let tok = tok.to_owned();
        async move { call("POST", &url, Some(&tok), Some(body)).await }
    };
    let (st, _) = decide(&mod1.token, json!({"outcome": "reversed", "reason": "x"})).await;
    assert_eq!(st, 403);
    let (st, v) = decide(
        &mod2.token,
        json!({"outcome": "reversed", "reason": "context shows a quote"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["appeal"]["outcome"], "reversed");
    assert_eq!(v["appeal"]["decided_by"], "mod2");
    let (st, v) = try_login(s, &w.alice).await;
    assert_eq!(st, 200, "{v}");
    let token = v["token"].as_str().unwrap().to_owned();
    let (st, v) = call(
        "GET",
        &format!("{}/v1/queue?limit=500", s.url),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let q = serde_json::from_value::<api::QueueBatch>(v)
        .unwrap()
        .entries;
    assert!(
        q.iter().any(|e| e
            .frank
            .as_ref()
            .is_some_and(|f| f.server_tag == kept.server_tag)),
        "queued message kept"
    );
    let n = notices(&q);
    assert!(
        n.iter()
            .any(|n| n.kind == m::NoticeKind::AppealDecision
                && n.outcome.as_deref() == Some("reversed")),
        "{n:?}"
    );
    assert!(n.iter().any(|n| n.action == Some(m::ModAction::Suspend)
        && n.reason.as_deref() == Some("threats of violence")));

    // ban: no login, until further notice.
    let (st, _) = act(&c4, json!({"action": "ban", "reason": "repeated threats"})).await;
    assert_eq!(st, 200);
    let (st, v) = try_login(s, &w.alice).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (403, Some("account_suspended")),
        "{v}"
    );
    assert!(v["message"].as_str().unwrap().contains("banned"));
    // Input to actions is checked.
    for (body, want) in [
        (json!({"action": "restrict", "reason": "r"}), 400),
        (json!({"action": "suspend", "reason": "r", "days": 0}), 400),
        (json!({"action": "warn", "reason": ""}), 400),
        (json!({"action": "warn", "reason": "r", "days": 3}), 400),
        (json!({"action": "escalate", "reason": "r"}), 400),
        (json!({"action": "obliterate", "reason": "r"}), 400),
        (json!({"action": "warn", "reason": "x".repeat(5000)}), 400),
    ] {
        let (st, v) = act(&c5, body.clone()).await;
        assert_eq!(st, want, "{body}: {v}");
    }
    let (_, v) = call(
        "GET",
        &format!("{}/v1/mod/cases/{c5}", s.url),
        Some(&mod1.token),
        None,
    )
    .await;
    assert!(
        v["actions"].as_array().unwrap().is_empty(),
        "refused actions wrote nothing: {v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dismissed_evidence_is_purged_unless_preserved() {
    let s = {
        let mut l = limits();
        l.evidence_retention = std::time::Duration::ZERO;
        server_with(l).await
    };
    let alice = register(&s, "alice").await;
    let bob = register(&s, "bob").await;
    let mod1 = register(&s, "mod1").await;
    grant(&s, "mod1", Role::Moderator).await;
    s.upload_key_packages(&bob, 2).await;
    let (g, mut group) = s.new_group(&alice).await;
    assert_eq!(s.add(&alice, &mut group, &g, &bob).await.0, 200);
    let mut cases = Vec::new();
    for t in ["one", "two"] {
        let m = send(&s, &alice, &g, 1, text(t)).await;
        let (_, v) = report(&s, &bob, "spam", &bundle(&m, &[])).await;
        cases.push(v["case"].as_str().unwrap().to_owned());
    }
    let act = |c: &str, a: &str| {
        let url = format!("{}/v1/mod/cases/{c}/actions", s.url);
        let (tok, a) = (mod1.token.clone(), a.to_owned());
        async move {
            call(
                "POST",
                &url,
                Some(&tok),
                Some(json!({"action": a, "reason": "r"})),
            )
            .await
        }
    };
    assert_eq!(act(&cases[1], "preserve").await.0, 200);
    assert_eq!(act(&cases[0], "dismiss").await.0, 200);
    assert_eq!(act(&cases[1], "dismiss").await.0, 200);
    s.running.service.purge().await.unwrap();
    let show = |c: &str| {
        let url = format!("{}/v1/mod/cases/{c}", s.url);
        let tok = mod1.token.clone();
        async move { call("GET", &url, Some(&tok), None).await.1 }
    };
    let gone = show(&cases[0]).await;
    assert_eq!(gone["evidence_purged"], true, "{gone}");
    assert!(gone["evidence"].as_array().unwrap().is_empty());
    let held = show(&cases[1]).await;
    assert_eq!(held["evidence_purged"], false, "{held}");
    assert_eq!(held["evidence"][0]["text"], "two");
    assert!(held["summary"]["held_until"].as_u64().unwrap() > 300 * 24 * 3600 * 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalation_report_parses_and_submits_to_the_documented_flow() {
    let w = world().await;
    let s = &w.s;
    let mod1 = register(s, "mod1").await;
    grant(s, "mod1", Role::Moderator).await;
    let original = png(7);
    let pic = upload(s, &w.alice, &original, "beach.png").await;
    let m0 = send(s, &w.alice, &w.g, 1, text("look at this")).await;
    let m1 = send(s, &w.alice, &w.g, 1, pic).await;
    let (st, v) = report(s, &w.bob, "child-sexual-exploitation", &bundle(&m1, &[&m0])).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["files"], 1);
    let case = v["case"].as_str().unwrap().to_owned();
    let u = &s.url;
    let escalate = || {
        let (url, tok) = (
            format!("{u}/v1/mod/cases/{case}/escalation"),
            mod1.token.clone(),
        );
        async move {
            call(
                "POST",
                &url,
                Some(&tok),
                Some(json!({"reason": "apparent CSAM after review"})),
            )
            .await
        }
    };
    // Not before a human has opened the case and viewed the file.
    let (st, v) = escalate().await;
    assert_eq!(st, 409, "{v}");
    let (_, detail) = call(
        "GET",
        &format!("{u}/v1/mod/cases/{case}"),
        Some(&mod1.token),
        None,
    )
    .await;
    let file = &detail["evidence"][0]["attachment"];
    assert_eq!(file["status"], "kept", "{detail}");
    assert_eq!(file["sha256"], hex::encode(attachment::sha256(&original)));
    let pdq = haven_pdq::hash_bytes(&original, &Default::default()).unwrap();
    assert_eq!(file["pdq"], pdq.hash.to_hex());
    let (st, v) = escalate().await;
    assert_eq!(st, 409, "file not viewed yet: {v}");
    let bytes = reqwest::Client::new()
        .get(format!("{u}/v1/mod/cases/{case}/files/f0"))
        .header("Authorization", format!("Bearer {}", mod1.token))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        &bytes[..],
        &original[..],
        "the evidence file is the sender's file"
    );
    let (st, esc) = escalate().await;
    assert_eq!(st, 200, "{esc}");
    let esc: m::Escalation = serde_json::from_value(esc).unwrap();

    let doc = roxmltree::Document::parse(&esc.report_xml).unwrap();
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "report");
    let text_at = |path: &[&str]| -> Vec<String> {
        let mut nodes = vec![root];
        for p in path {
            nodes = nodes
                .iter()
                .flat_map(|n| n.children().filter(|c| c.tag_name().name() == *p))
                .collect();
        }
        nodes
            .iter()
            .map(|n| n.text().unwrap_or("").to_owned())
            .collect()
    };
    assert_eq!(
        text_at(&["incidentSummary", "incidentType"]),
        ["Child Pornography (possession, manufacture, and distribution)"]
    );
    assert!(text_at(&["incidentSummary", "incidentDateTime"])[0].ends_with('Z'));
    let content = &text_at(&["internetDetails", "chatImIncident", "content"])[0];
    assert!(
        content.contains("look at this") && content.contains("beach.png"),
        "{content}"
    );
    assert_eq!(
        text_at(&["internetDetails", "chatImIncident", "chatRoomName"]),
        [w.g.to_hex()]
    );
    assert_eq!(
        text_at(&["reporter", "reportingPerson", "email"]),
        ["safety@haven.example"]
    );
    assert_eq!(
        text_at(&["personOrUserReported", "espIdentifier"]),
        ["alice"]
    );
    assert_eq!(text_at(&["personOrUserReported", "screenName"]), ["alice"]);
    let ips = text_at(&["personOrUserReported", "ipCaptureEvent", "ipAddress"]);
    assert!(
        ips.iter().any(|ip| ip == "127.0.0.1"),
        "registration and login addresses: {ips:?}"
    );
    let events = text_at(&["personOrUserReported", "ipCaptureEvent", "eventName"]);
    assert!(
        events.contains(&"Registration".to_owned()) && events.contains(&"Login".to_owned()),
        "{events:?}"
    );
    assert_eq!(
        text_at(&["personOrUserReported", "deviceId", "idValue"]),
        [w.alice.id.as_str()]
    );
    assert!(text_at(&["additionalInfo"])[0].contains("apparent CSAM after review"));
    assert_eq!(esc.files.len(), 1);
    let fd = roxmltree::Document::parse(&esc.files[0].details_xml).unwrap();
    let find = |name: &str| {
        fd.descendants()
            .filter(|n| n.tag_name().name() == name)
            .map(|n| n.text().unwrap_or("").to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(find("fileViewedByEsp"), ["true"]);
    let hashes = find("originalFileHash");
    assert!(hashes.contains(&cybertip_md5(&original)), "{hashes:?}");
    assert!(
        hashes.contains(&hex::encode(attachment::sha256(&original))),
        "{hashes:?}"
    );
    let hash_details: Vec<_> = fd
        .descendants()
        .filter(|n| n.tag_name().name() == "details" && n.attribute("type") == Some("HASH"))
        .collect();
    assert!(!hash_details.is_empty());
    assert!(
        fd.descendants()
            .any(|n| n.text() == Some(pdq.hash.to_hex().as_str())),
        "PDQ in details"
    );
    // Escalated once only; the case is escalated; the reported user was told nothing.
    let (st, _) = escalate().await;
    assert_eq!(st, 409);
    let (_, detail) = call(
        "GET",
        &format!("{u}/v1/mod/cases/{case}"),
        Some(&mod1.token),
        None,
    )
    .await;
    assert_eq!(detail["summary"]["state"], "escalated");
    assert!(notices(&s.queue(&w.alice).await).is_empty());

    // Submission is a separate, explicit step: here against the local API server.
    let api_server = haven_cybertip::testing::server::TestServer::start("esp", "secret")
        .await
        .unwrap();
    let client = haven_cybertip::Client::new(haven_cybertip::ClientConfig::with_base_url(
        api_server.base_url(),
        haven_cybertip::Credentials::new("esp", "secret"),
    ))
    .unwrap();
    let report_id = client.submit_xml(&esc.report_xml).await.unwrap();
    let receipt = client
        .upload(&report_id, &esc.files[0].file_name, bytes.to_vec())
        .await
        .unwrap();
    let details = esc.files[0]
        .details_xml
        .replace(
            &format!(
                "<reportId>{}</reportId>",
                haven_server::moderation::escalate::PENDING_REPORT_ID
            ),
            &format!("<reportId>{}</reportId>", report_id.as_str()),
        )
        .replace(
            &format!("<fileId>{}</fileId>", esc.files[0].file_id),
            &format!("<fileId>{}</fileId>", receipt.file_id.as_str()),
        );
    client.file_info_xml(&report_id, &details).await.unwrap();
    let finished = client.finish(&report_id).await.unwrap();
    assert_eq!(finished, vec![receipt.file_id.clone()]);
    let stored = api_server.report(&report_id).unwrap();
    assert!(stored.finished);
    assert_eq!(stored.files[0].bytes, original);
    // A second submission retracted before finishing.
    let second = client.submit_xml(&esc.report_xml).await.unwrap();
    client.retract(&second).await.unwrap();
    assert_eq!(api_server.retracted(), vec![second]);
}

fn cybertip_md5(b: &[u8]) -> String {
    haven_cybertip::client::md5_hex(b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_gets_a_clear_4xx_and_writes_nothing() {
    let w = world().await;
    let s = &w.s;
    let mod1 = register(s, "mod1").await;
    grant(s, "mod1", Role::Moderator).await;
    let m1 = send(s, &w.alice, &w.g, 1, text("hi")).await;
    let u = &s.url;
    let raw = |path: &str, body: Vec<u8>, ct: &str| {
        let (url, tok, ct) = (format!("{u}{path}"), w.bob.token.clone(), ct.to_owned());
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .header("Authorization", format!("Bearer {tok}"))
                .header("Content-Type", ct)
                .body(body)
                .send()
                .await
                .unwrap();
            let st = r.status().as_u16();
            (st, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let mut big =
        serde_json::to_vec(&json!({"reason": "spam", "evidence": bundle(&m1, &[])})).unwrap();
    big.extend(std::iter::repeat_n(b' ', 3 << 20));
    for (body, ct, want) in [
        (big, "application/json", 413),
        (b"{not json".to_vec(), "application/json", 400),
        (b"{}".to_vec(), "application/json", 400),
        (
            serde_json::to_vec(
                &json!({"reason": "spam", "evidence": bundle(&m1, &[]), "extra": 1}),
            )
            .unwrap(),
            "application/json",
            400,
        ),
        (
            serde_json::to_vec(&json!({"reason": "csam", "evidence": bundle(&m1, &[])})).unwrap(),
            "application/json",
            400,
        ),
        (
            serde_json::to_vec(&json!({"reason": "spam", "evidence": bundle(&m1, &[])})).unwrap(),
            "text/plain",
            400,
        ),
        (
            serde_json::to_vec(
                &json!({"reason": "spam", "note": "n".repeat(5000), "evidence": bundle(&m1, &[])}),
            )
            .unwrap(),
            "application/json",
            400,
        ),
    ] {
        let (st, v) = raw("/v1/reports", body, ct).await;
        assert_eq!(st, want, "{v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    }
    for (body, want) in [
        (json!({"user": "bob", "reason": "spam"}), 400),
        (json!({"user": "nobody", "reason": "spam"}), 404),
        (json!({"user": "NOT A NAME", "reason": "spam"}), 400),
    ] {
        let (st, v) = call(
            "POST",
            &format!("{u}/v1/reports/user"),
            Some(&w.bob.token),
            Some(body.clone()),
        )
        .await;
        assert_eq!(st, want, "{body}: {v}");
    }
    let unknown = "0123456789abcdef01234567";
    for (method, path, body, want) in [
        ("GET", format!("/v1/mod/cases/{unknown}"), None, 404),
        ("GET", "/v1/mod/cases/zzz".to_owned(), None, 400),
        (
            "GET",
            format!("/v1/mod/cases/{unknown}/files/f0"),
            None,
            404,
        ),
        (
            "POST",
            format!("/v1/mod/cases/{unknown}/actions"),
            Some(json!({"action": "warn", "reason": "r"})),
            404,
        ),
        (
            "POST",
            format!("/v1/mod/cases/{unknown}/escalation"),
            Some(json!({"reason": "r"})),
            404,
        ),
        (
            "POST",
            format!("/v1/mod/appeals/{unknown}"),
            Some(json!({"outcome": "upheld", "reason": "r"})),
            404,
        ),
        (
            "POST",
            "/v1/mod/appeals/x".to_owned(),
            Some(json!({"outcome": "upheld", "reason": "r"})),
            400,
        ),
        ("GET", "/v1/mod/queue?limit=minus".to_owned(), None, 400),
    ] {
        let (st, v) = call(method, &format!("{u}{path}"), Some(&mod1.token), body).await;
        assert_eq!(st, want, "{method} {path}: {v}");
    }
    for (body, want) in [
        (json!({"case": unknown, "text": "t"}), 404),
        (json!({"case": "nope", "text": "t"}), 400),
        (json!({"case": unknown, "text": ""}), 400),
    ] {
        let (st, v) = call(
            "POST",
            &format!("{u}/v1/appeals"),
            Some(&w.alice.token),
            Some(body.clone()),
        )
        .await;
        assert_eq!(st, want, "{body}: {v}");
    }
    let (st, _) = call(
        "POST",
        &format!("{u}/v1/appeals"),
        None,
        Some(json!({"case": unknown, "text": "t"})),
    )
    .await;
    assert_eq!(st, 401);
    // None of it filed a case; the file of a real case with no attachment is a 404.
    assert_eq!(open_cases(s, &mod1).await, 0);
    let (_, v) = report(s, &w.bob, "spam", &bundle(&m1, &[])).await;
    let case = v["case"].as_str().unwrap();
    for (file, want) in [
        ("f0", 404),
        ("f", 400),
        ("..", 404),
        ("f12345", 400),
        ("m00", 400),
    ] {
        let (st, v) = call(
            "GET",
            &format!("{u}/v1/mod/cases/{case}/files/{file}"),
            Some(&mod1.token),
            None,
        )
        .await;
        assert_eq!(st, want, "{file}: {v}");
    }
}

/// What nobody reported never reaches the server in the clear, and what was reported is
/// sealed at rest: random markers in a reported message and its attachment appear nowhere in
/// the data directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reported_content_is_sealed_at_rest() {
    let w = world().await;
    let s = &w.s;
    let marker = hex::encode(rand_bytes::<16>());
    let file_marker = hex::encode(rand_bytes::<16>());
    let mut file = png(3);
    file.extend_from_slice(file_marker.as_bytes());
    let pic = upload(s, &w.alice, &file, &format!("{marker}.png")).await;
    let m0 = send(
        s,
        &w.alice,
        &w.g,
        1,
        text(&format!("the secret is {marker}")),
    )
    .await;
    let m1 = send(s, &w.alice, &w.g, 1, pic).await;
    let (st, v) = call(
        "POST",
        &format!("{}/v1/reports", s.url),
        Some(&w.bob.token),
        Some(json!({"reason": "harassment", "note": format!("note {marker}"), "evidence": bundle(&m1, &[&m0])})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["files"], 1);
    let (st, _) = call(
        "POST",
        &format!("{}/v1/reports/user", s.url),
        Some(&w.bob.token),
        Some(json!({"user": "alice", "reason": "harassment", "note": format!("also {marker}")})),
    )
    .await;
    assert_eq!(st, 200);
    // The evidence is readable through the moderation API (so it really was kept)…
    let mod1 = register(s, "mod1").await;
    grant(s, "mod1", Role::Moderator).await;
    let (_, detail) = call(
        "GET",
        &format!("{}/v1/mod/cases/{}", s.url, v["case"].as_str().unwrap()),
        Some(&mod1.token),
        None,
    )
    .await;
    assert!(detail.to_string().contains(&marker));
    // …and nowhere on disk.
    let mut files = 0;
    let mut stack = vec![s.dir().join("data")];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).unwrap() {
            let e = e.unwrap().path();
            if e.is_dir() {
                stack.push(e);
                continue;
            }
            let bytes = std::fs::read(&e).unwrap();
            files += 1;
            for mk in [&marker, &file_marker] {
                assert!(
                    !bytes.windows(mk.len()).any(|x| x == mk.as_bytes()),
                    "marker in {}",
                    e.display()
                );
            }
        }
    }
    assert!(
        files >= 3,
        "searched the database, its WAL, the blobs and the keys"
    );
}

/// What the sender does after sending cannot make a genuine report fail: removing the reporter
/// from the conversation leaves the earlier messages reportable (the membership history), and
/// only those.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_genuine_report_survives_the_senders_denial() {
    // No slack between the membership log and receive times (one clock on one machine).
    let s = server_with(ServerLimits {
        membership_slack: std::time::Duration::ZERO,
        ..limits()
    })
    .await;
    let alice = register(&s, "alice").await;
    let bob = register(&s, "bob").await;
    s.upload_key_packages(&bob, 2).await;
    let (g, mut group) = s.new_group(&alice).await;
    assert_eq!(s.add(&alice, &mut group, &g, &bob).await.0, 200);
    let m1 = send(&s, &alice, &g, 1, text("you will regret this")).await;
    // alice removes bob from the conversation (a verified commit)…
    let bob_leaf = group
        .members()
        .find(|m| {
            m.credential
                .serialized_content()
                .ends_with(bob.id.as_str().as_bytes())
        })
        .unwrap()
        .index
        .u32();
    let commit = alice.mls.remove(&mut group, &[bob_leaf]);
    let (st, v) = s.post_commit(&alice, &g, &commit, None).await;
    assert_eq!(st, 200, "{v}");
    // …and a message sent after that, bob cannot report: he was no longer a recipient.
    alice.mls.merge(&mut group);
    let later = send(&s, &alice, &g, 2, text("after")).await;
    let (st, v) = report(&s, &bob, "harassment", &bundle(&later, &[])).await;
    assert_eq!(st, 403, "{v}");
    // The earlier one still verifies.
    let (st, v) = report(&s, &bob, "harassment", &bundle(&m1, &[])).await;
    assert_eq!(st, 200, "{v}");
}
