//! Safety by design for minors, through the HTTP API as a modified client would use it (no
//! client library in the way): age bands at registration, the contact rules on every path,
//! message requests, blocks and restricts, rate limits with the time to retry, safety notices,
//! and the risk signals that open a case.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use haven_proto::api::EntryKind;
use haven_proto::moderation::{Notice, NoticeKind};
use haven_proto::GroupId;
use haven_server::moderation::store::Role;
use haven_server::ServerLimits;
use serde_json::{json, Value};
use support::*;

fn limits() -> ServerLimits {
    ServerLimits {
        auth_burst: 10_000,
        auth_refill_per_sec: 1000.0,
        write_burst: 10_000,
        write_refill_per_sec: 1000.0,
        claim_burst: 10_000,
        claim_refill_per_sec: 1000.0,
        ..ServerLimits::default()
    }
}

/// The date of birth of someone `years` old today whose next birthday is `days_to_birthday`
/// days away (0: today is the birthday).
fn born(years: i32, days_to_birthday: u16) -> String {
    let mut d = haven_safety::age::utc_day(haven_server::service::now_ms());
    for _ in 0..days_to_birthday {
        d = d.next_day().unwrap();
    }
    let year = d.year() - years - i32::from(days_to_birthday > 0);
    // Feb 29 has no counterpart in most years: a day earlier keeps the age at least `years`.
    let b = d
        .replace_year(year)
        .unwrap_or_else(|_| d.previous_day().unwrap().replace_year(year).unwrap());
    haven_safety::age::format_date(b)
}

const NEUTRAL_WORDS: [&str; 8] = ["minor", "age", "13", "15", "16", "teen", "child", "adult"];

fn assert_neutral(v: &Value, target: &str) {
    let msg = v["message"].as_str().unwrap();
    assert_eq!(
        msg,
        format!("{target} only accepts messages from their contacts")
    );
    let rest = msg.replacen(target, "", 1);
    for word in rest.split(|c: char| !c.is_alphanumeric()) {
        assert!(
            !NEUTRAL_WORDS.contains(&word.to_lowercase().as_str()),
            "{msg:?} says {word:?}"
        );
    }
}

async fn post(s: &TestServer, who: &Dev, path: &str, body: Value) -> (u16, Value) {
    call(
        "POST",
        &format!("{}{path}", s.url),
        Some(&who.token),
        Some(body),
    )
    .await
}

async fn get(s: &TestServer, who: &Dev, path: &str) -> (u16, Value) {
    call("GET", &format!("{}{path}", s.url), Some(&who.token), None).await
}

async fn ask(s: &TestServer, from: &Dev, to: &str) -> (u16, Value) {
    post(s, from, "/v1/contacts/requests", json!({"user": to})).await
}

async fn connect(s: &TestServer, from: &Dev, to: &Dev) {
    let (st, v) = ask(s, from, &to.user).await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = post(
        s,
        to,
        &format!("/v1/contacts/{}/accept", from.user),
        json!({}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
}

async fn send(s: &TestServer, who: &Dev, g: &GroupId, epoch: u64) -> (u16, Value) {
    let (m, _) = franked(g, epoch);
    post(
        s,
        who,
        &format!("/v1/groups/{g}/messages"),
        json!({"message": B64.encode(m)}),
    )
    .await
}

async fn set_messages(s: &TestServer, who: &Dev, setting: &str) -> (u16, Value) {
    call(
        "PUT",
        &format!("{}/v1/settings/messages", s.url),
        Some(&who.token),
        Some(json!({"messages": setting})),
    )
    .await
}

async fn me(s: &TestServer, who: &Dev) -> Value {
    let (st, v) = get(s, who, "/v1/me").await;
    assert_eq!(st, 200, "{v}");
    v
}

fn notices(q: &[haven_proto::api::QueueEntry]) -> Vec<Notice> {
    q.iter()
        .filter(|e| e.kind == EntryKind::Notice)
        .map(|e| serde_json::from_slice(&e.payload).unwrap())
        .collect()
}

#[tokio::test]
async fn registration_keeps_a_band_and_refuses_under_13() {
    let s = server_with(limits()).await;
    let key = ed25519_dalek::SigningKey::from_bytes(&rand_bytes());
    let mls = Member::new(
        openmls_basic_credential::SignatureKeyPair::new(openmls::prelude::SignatureScheme::ED25519)
            .unwrap(),
        b"x",
    );
    let kid = born(11, 30);
    for (date, status) in [
        (kid.as_str(), 403),
        ("2010-2-03", 400),
        ("2010-02-30", 400),
        ("3000-01-01", 400),
        ("1800-01-01", 400),
    ] {
        let (st, v) = call(
            "POST",
            &format!("{}/v1/register", s.url),
            None,
            Some(register_body_born("kid", &key, mls.signer.public(), date)),
        )
        .await;
        assert_eq!(st, status, "{date}: {v}");
        assert!(!v["message"].as_str().unwrap().contains(date), "{v}");
    }
    // Nothing was created by the refusals.
    let teen = register_born(&s, "kid", &born(14, 100)).await;
    let v = me(&s, &teen).await;
    assert_eq!(v["age_band"], "13-15");
    assert_eq!(v["age_source"], "self-declared");
    assert_eq!(v["messages"], "requests");
    let older = register_born(&s, "older", &born(16, 3)).await;
    assert_eq!(me(&s, &older).await["age_band"], "16-17");
    let grown = register(&s, "grown").await;
    assert_eq!(me(&s, &grown).await["age_band"], "adult");
    // A minor's message setting stays at requests; an adult's changes.
    let (st, _) = set_messages(&s, &teen, "everyone").await;
    assert_eq!(st, 403);
    let (st, _) = set_messages(&s, &grown, "contacts-only").await;
    assert_eq!(st, 200);
    assert_eq!(me(&s, &grown).await["messages"], "contacts-only");
    let (st, _) = set_messages(&s, &grown, "all").await;
    assert_eq!(st, 400, "an unknown setting is refused");
}

#[tokio::test]
async fn a_birthday_crosses_the_band_without_anyone_acting() {
    let s = server_with(limits()).await;
    let date = born(17, 1);
    let sam = register_born(&s, "sam", &date).await;
    let adult = register(&s, "dana").await;
    assert_eq!(me(&s, &sam).await["age_band"], "16-17");
    let (st, v) = ask(&s, &adult, "sam").await;
    assert_eq!(st, 403);
    assert_neutral(&v, "sam");
    // The database holds the band and the day it changes, never the date of birth.
    let db = rusqlite::Connection::open(s.dir().join("data/haven.db")).unwrap();
    let (band, changes_on): (String, String) = db
        .query_row(
            "SELECT age_band, age_changes_on FROM users WHERE name = 'sam'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(band, "16-17");
    let tomorrow = haven_safety::age::format_date(
        haven_safety::age::utc_day(haven_server::service::now_ms())
            .next_day()
            .unwrap(),
    );
    assert_eq!(changes_on, tomorrow);
    let row: Vec<String> = db
        .prepare("SELECT * FROM users WHERE name = 'sam'")
        .unwrap()
        .query_map([], |r| {
            Ok((0..r.as_ref().column_count())
                .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                .collect::<Vec<_>>())
        })
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert!(row.iter().all(|c| !c.contains(&date)), "{row:?}");
    // The day arrives (the stored change day is today): sam is an adult, and the rules for
    // adults apply with nobody having touched the band.
    let today =
        haven_safety::age::format_date(haven_safety::age::utc_day(haven_server::service::now_ms()));
    db.execute(
        "UPDATE users SET age_changes_on = ?1 WHERE name = 'sam'",
        [&today],
    )
    .unwrap();
    assert_eq!(me(&s, &sam).await["age_band"], "adult");
    let (st, v) = ask(&s, &adult, "sam").await;
    assert_eq!(st, 200, "{v}");
}

#[tokio::test]
async fn an_unconnected_adult_cannot_reach_a_minor_by_any_path() {
    let s = server_with(limits()).await;
    let mia = register_born(&s, "mia", &born(14, 40)).await;
    let mal = register(&s, "mal").await;
    let dad = register(&s, "dad").await;
    let bob = register(&s, "bob").await;
    for d in [&mia, &bob] {
        s.upload_key_packages(d, 3).await;
    }
    // Contact request.
    let (st, v) = ask(&s, &mal, "mia").await;
    assert_eq!(st, 403);
    assert_neutral(&v, "mia");
    // A 1:1 conversation: the claim is refused.
    let (g, _) = s.new_direct(&mal, "mia").await;
    let (st, _) = s.claim(&mal, "mia", &g).await;
    assert_eq!(st, 403);
    // A group: the claim is refused.
    let (g2, _) = s.new_group(&mal).await;
    let (st, _) = s.claim(&mal, "mia", &g2).await;
    assert_eq!(st, 403);
    // An adult whose setting is contacts-only gets the same text.
    let (st, _) = set_messages(&s, &bob, "contacts-only").await;
    assert_eq!(st, 200);
    let (g3, _) = s.new_direct(&mal, "bob").await;
    let (st, _) = s.claim(&mal, "bob", &g3).await;
    assert_eq!(st, 403);
    let (st, v) = post(
        &s,
        &mal,
        "/v1/users/bob/key-packages/claim",
        json!({"group_id": g3}),
    )
    .await;
    assert_eq!(st, 403);
    assert_neutral(&v, "bob");

    // The commit decides for good: a key package claimed while connected does not let the
    // adult add the minor after the connection is gone.
    connect(&s, &mia, &dad).await;
    let (g4, mut group) = s.new_group(&dad).await;
    let (st, kps) = s.claim(&dad, "mia", &g4).await;
    assert_eq!(st, 200);
    let (st, v) = call(
        "DELETE",
        &format!("{}/v1/contacts/dad", s.url),
        Some(&mia.token),
        None,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let (commit, welcome) = dad.mls.add(&mut group, &kps);
    let (st, v) = s.post_commit(&dad, &g4, &commit, Some(&welcome)).await;
    assert_eq!(st, 403, "{v}");
    assert_neutral(&v, "mia");
    dad.mls.discard(&mut group);
    let (_, state) = s.group_state(&dad, &g4).await;
    assert_eq!(state["epoch"], 0);
    assert_eq!(state["members"].as_array().unwrap().len(), 1);
    assert!(s
        .queue(&mia)
        .await
        .iter()
        .all(|e| e.kind != EntryKind::Welcome));

    // A 1:1 conversation holds only its two accounts.
    connect(&s, &mia, &dad).await;
    let (g5, mut direct) = s.new_direct(&dad, "mia").await;
    let (st, _, _) = s.add(&dad, &mut direct, &g5, &mia).await;
    assert_eq!(st, 200);
    let (st, _) = s.claim(&dad, "bob", &g5).await;
    assert_eq!(st, 403);
    // Connected: the adult writes freely; no request for the minor.
    let (st, v) = send(&s, &dad, &g5, 1).await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = send(&s, &dad, &g5, 1).await;
    assert_eq!(st, 200, "{v}");
}

#[tokio::test]
async fn a_minor_sees_a_groups_members_before_accepting_it() {
    let s = server_with(limits()).await;
    let mia = register_born(&s, "mia", &born(14, 40)).await;
    let dad = register(&s, "dad").await;
    let aunt = register(&s, "aunt").await;
    s.upload_key_packages(&mia, 2).await;
    s.upload_key_packages(&aunt, 2).await;
    connect(&s, &mia, &dad).await;
    let (g, mut group) = s.new_group(&dad).await;
    let (st, _, _) = s.add(&dad, &mut group, &g, &aunt).await;
    assert_eq!(st, 200);
    let (st, v, _) = s.add(&dad, &mut group, &g, &mia).await;
    assert_eq!(st, 200, "{v}");
    let (_, v) = get(&s, &mia, "/v1/requests").await;
    let reqs = v["requests"].as_array().unwrap();
    assert_eq!(reqs.len(), 1, "{v}");
    assert_eq!(reqs[0]["from"], "dad");
    assert_eq!(reqs[0]["kind"], "group");
    assert_eq!(reqs[0]["members"], json!(["aunt", "dad"]));
    let (st, _) = post(&s, &mia, "/v1/requests/dad/accept", json!({})).await;
    assert_eq!(st, 200);
    let (_, v) = get(&s, &mia, "/v1/requests").await;
    assert!(v["requests"].as_array().unwrap().is_empty());
    // The aunt (an adult, not the minor's connection) cannot add her to another group.
    let (g2, _) = s.new_group(&aunt).await;
    let (st, _) = s.claim(&aunt, "mia", &g2).await;
    assert_eq!(st, 403);
}

#[tokio::test]
async fn a_message_request_delivers_one_message_until_accepted() {
    let s = server_with(limits()).await;
    let mia = register_born(&s, "mia", &born(14, 40)).await;
    let tom = register_born(&s, "tom", &born(15, 200)).await;
    let tina = register_born(&s, "tina", &born(13, 200)).await;
    s.upload_key_packages(&mia, 4).await;
    let (g, mut direct) = s.new_direct(&tom, "mia").await;
    let (st, v, _) = s.add(&tom, &mut direct, &g, &mia).await;
    assert_eq!(st, 200, "{v}");
    let (_, v) = get(&s, &mia, "/v1/requests").await;
    assert_eq!(v["requests"][0]["from"], "tom");
    assert_eq!(v["requests"][0]["kind"], "direct");
    let (st, v) = send(&s, &tom, &g, 1).await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = send(&s, &tom, &g, 1).await;
    assert_eq!(st, 403, "{v}");
    let refused = v["message"].as_str().unwrap().to_owned();
    assert!(
        refused.contains("mia has not accepted your message request"),
        "{refused}"
    );
    // The recipient can answer in the conversation (it is their request, not the sender's).
    // Accepting lets the sender write again.
    let (st, _) = post(&s, &mia, "/v1/requests/tom/accept", json!({})).await;
    assert_eq!(st, 200);
    let (st, v) = send(&s, &tom, &g, 1).await;
    assert_eq!(st, 200, "{v}");
    // Declining: the sender gets the same answer as while pending (it learns nothing).
    let (g2, mut d2) = s.new_direct(&tina, "mia").await;
    let (st, _, _) = s.add(&tina, &mut d2, &g2, &mia).await;
    assert_eq!(st, 200);
    let (st, _) = post(&s, &mia, "/v1/requests/tina/decline", json!({})).await;
    assert_eq!(st, 200);
    let (st, v) = send(&s, &tina, &g2, 1).await;
    assert_eq!(st, 403);
    assert_eq!(v["message"].as_str().unwrap(), refused);
    let (st, _) = post(&s, &mia, "/v1/requests/tina/accept", json!({})).await;
    assert_eq!(st, 404, "a declined request is not pending any more");
    // Opening another 1:1 conversation does not ask again.
    let (g3, _) = s.new_direct(&tina, "mia").await;
    let (st, v) = s.claim(&tina, "mia", &g3).await;
    assert_eq!(st, 403, "{v:?}");
    let (st, v) = post(
        &s,
        &tina,
        "/v1/users/mia/key-packages/claim",
        json!({"group_id": g3}),
    )
    .await;
    assert_eq!(st, 403);
    assert_neutral(&v, "mia");
    // The declined approach is on tina's time line as declined.
    let mo = register(&s, "mo").await;
    grant(&s, "mo", Role::Moderator).await;
    let (_, v) = get(&s, &mo, "/v1/mod/signals/tina").await;
    let tl = v["timeline"].as_array().unwrap();
    assert!(
        tl.iter()
            .any(|e| e["kind"] == "first_message" && e["outcome"] == "declined"),
        "{v}"
    );
}

#[tokio::test]
async fn blocks_and_restricts() {
    let s = server_with(limits()).await;
    let mia = register_born(&s, "mia", &born(14, 40)).await;
    let tom = register_born(&s, "tom", &born(15, 200)).await;
    let alice = register(&s, "alice").await;
    let bob = register(&s, "bob").await;
    s.upload_key_packages(&mia, 4).await;
    s.upload_key_packages(&alice, 4).await;
    let (g, mut direct) = s.new_direct(&tom, "mia").await;
    let (st, _, _) = s.add(&tom, &mut direct, &g, &mia).await;
    assert_eq!(st, 200);
    post(&s, &mia, "/v1/requests/tom/accept", json!({})).await;
    let (st, _) = send(&s, &tom, &g, 1).await;
    assert_eq!(st, 200);
    let (st, _) = call(
        "PUT",
        &format!("{}/v1/blocks/tom", s.url),
        Some(&mia.token),
        None,
    )
    .await;
    assert_eq!(st, 200);
    let (st, v) = send(&s, &tom, &g, 1).await;
    assert_eq!(st, 403);
    assert_neutral(&v, "mia");
    let (st, v) = ask(&s, &tom, "mia").await;
    assert_eq!(st, 403);
    assert_neutral(&v, "mia");
    let (_, v) = get(&s, &mia, "/v1/contacts").await;
    assert_eq!(v["blocked"], json!(["tom"]));
    // The blocker is told plainly why they cannot write.
    let (st, v) = send(&s, &mia, &g, 1).await;
    assert_eq!(st, 403);
    assert!(
        v["message"].as_str().unwrap().contains("you blocked tom"),
        "{v}"
    );
    let (st, _) = call(
        "DELETE",
        &format!("{}/v1/blocks/tom", s.url),
        Some(&mia.token),
        None,
    )
    .await;
    assert_eq!(st, 200);
    let (st, v) = send(&s, &tom, &g, 1).await;
    assert_eq!(st, 200, "{v}");

    // Restrict: a restricted connection's new conversation lands in requests, silently.
    connect(&s, &bob, &alice).await;
    let (st, _) = call(
        "PUT",
        &format!("{}/v1/restricts/bob", s.url),
        Some(&alice.token),
        None,
    )
    .await;
    assert_eq!(st, 200);
    let (g2, mut d2) = s.new_direct(&bob, "alice").await;
    let (st, _, _) = s.add(&bob, &mut d2, &g2, &alice).await;
    assert_eq!(st, 200);
    let (_, v) = get(&s, &alice, "/v1/requests").await;
    assert_eq!(v["requests"][0]["from"], "bob", "{v}");
    assert!(notices(&s.queue(&alice).await).is_empty());
    let (_, v) = get(&s, &alice, "/v1/contacts").await;
    assert_eq!(v["restricted"], json!(["bob"]));
    let (st, _) = call(
        "DELETE",
        &format!("{}/v1/restricts/bob", s.url),
        Some(&alice.token),
        None,
    )
    .await;
    assert_eq!(st, 200);
    let (_, v) = get(&s, &alice, "/v1/contacts").await;
    assert_eq!(v["restricted"], json!([]));
    assert_eq!(v["contacts"], json!(["bob"]));
}

#[tokio::test]
async fn new_contacts_are_rate_limited_and_the_refusal_says_when() {
    let s = server_with(limits()).await;
    let new = register(&s, "newbie").await;
    // A new account gets half the daily limit of new contacts (25 of 50).
    let cfg = haven_safety::policy::PolicyConfig::default();
    let limit = cfg.limits.per_day * cfg.limits.new_account_percent / 100;
    let mut first_at = None;
    for i in 0..limit {
        register(&s, &format!("p{i}")).await;
        let (st, v) = ask(&s, &new, &format!("p{i}")).await;
        assert_eq!(st, 200, "request {i}: {v}");
        first_at.get_or_insert(haven_server::service::now_ms());
    }
    register(&s, "one-more").await;
    let (st, v) = ask(&s, &new, "one-more").await;
    assert_eq!(st, 429, "{v}");
    assert_eq!(v["code"], "rate_limited");
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.contains("try again after") && msg.contains("UTC"),
        "{msg}"
    );
    let retry_at = v["retry_at"].as_i64().unwrap();
    let day = 24 * 3600 * 1000;
    let first = first_at.unwrap();
    assert!(
        retry_at >= first - 5_000 + day && retry_at <= first + 5_000 + day,
        "retry at {retry_at}, first request at {first}"
    );
    // A refused request writes nothing.
    let (_, v) = get(&s, &new, "/v1/contacts").await;
    assert_eq!(v["outgoing"].as_array().unwrap().len(), limit as usize);
}

#[tokio::test]
async fn an_older_teens_request_comes_with_a_safety_notice() {
    let s = server_with(limits()).await;
    let mia = register_born(&s, "mia", &born(13, 40)).await;
    let sam = register_born(&s, "sam", &born(17, 40)).await;
    let (st, v) = ask(&s, &sam, "mia").await;
    assert_eq!(st, 200, "{v}");
    let n = notices(&s.queue(&mia).await);
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].kind, NoticeKind::Safety);
    assert_eq!(n[0].about.as_ref().unwrap().as_str(), "sam");
    let text = n[0].text.as_deref().unwrap();
    assert!(text.contains("block") && text.contains("report"), "{text}");
    // The sender is told nothing about it.
    assert!(notices(&s.queue(&sam).await).is_empty());
    // A same-age request comes without one.
    let ann = register_born(&s, "ann", &born(13, 100)).await;
    let (st, _) = ask(&s, &ann, "mia").await;
    assert_eq!(st, 200);
    assert_eq!(notices(&s.queue(&mia).await).len(), 1);
}

async fn signals(s: &TestServer, mo: &Dev, user: &str) -> Value {
    let (st, v) = get(s, mo, &format!("/v1/mod/signals/{user}")).await;
    assert_eq!(st, 200, "{v}");
    v
}

fn points(v: &Value, signal: &str) -> f64 {
    v["contributions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["signal"] == signal)
        .unwrap()["points"]
        .as_f64()
        .unwrap()
}

async fn risk_cases(s: &TestServer, mo: &Dev) -> Vec<Value> {
    let (st, v) = get(s, mo, "/v1/mod/queue").await;
    assert_eq!(st, 200, "{v}");
    v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["source"] == "risk_signals")
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_grooming_pattern_opens_a_case_and_benign_patterns_do_not() {
    let s = server_with(limits()).await;
    let mo = register(&s, "mo").await;
    grant(&s, "mo", Role::Moderator).await;
    let groomer = register(&s, "groomer").await;
    let mut kids = Vec::new();
    for i in 0..15 {
        kids.push(register_born(&s, &format!("kid{i}"), &born(13 + i % 3, 50)).await);
    }
    // Benign: a teen befriends teens of their own age; a parent writes to their child.
    let teen = register_born(&s, "teen", &born(14, 10)).await;
    for k in kids.iter().filter(|k| k.user != "kid0") {
        let (st, _) = ask(&s, &teen, &k.user).await;
        assert!(st == 200 || st == 429);
    }
    let parent = register(&s, "parent").await;
    connect(&s, &kids[0], &parent).await;
    s.upload_key_packages(&kids[0], 2).await;
    let (g, mut d) = s.new_direct(&parent, "kid0").await;
    let (st, _, _) = s.add(&parent, &mut d, &g, &kids[0]).await;
    assert_eq!(st, 200);
    for _ in 0..5 {
        assert_eq!(send(&s, &parent, &g, 1).await.0, 200);
    }
    // Grooming-like: an adult asks fifteen unconnected minors within minutes. Every request
    // is refused, and each refusal reads like any other.
    for k in &kids {
        let (st, v) = ask(&s, &groomer, &k.user).await;
        assert_eq!(st, 403, "{v}");
        assert_neutral(&v, &k.user);
    }
    let v = signals(&s, &mo, "groomer").await;
    assert_eq!(v["level"], "case", "{v}");
    assert!(v["score"].as_f64().unwrap() >= v["case_threshold"].as_f64().unwrap());
    assert_eq!(v["contributions"][0]["signal"], "minor_contacts_1h", "{v}");
    assert_eq!(v["timeline"].as_array().unwrap().len(), 15);
    let cases = risk_cases(&s, &mo).await;
    assert_eq!(cases.len(), 1, "{cases:?}");
    assert_eq!(cases[0]["reported_user"], "groomer");
    let id = cases[0]["case"].as_str().unwrap();
    let (st, detail) = get(&s, &mo, &format!("/v1/mod/cases/{id}")).await;
    assert_eq!(st, 200, "{detail}");
    let note = detail["note"].as_str().unwrap();
    assert!(
        note.contains("minor_contacts_1h") && note.contains("kid7"),
        "{note}"
    );
    for benign in ["teen", "parent", "kid0"] {
        let v = signals(&s, &mo, benign).await;
        assert_eq!(v["level"], "normal", "{benign}: {v}");
        assert!(v["score"].as_f64().unwrap() < v["friction_threshold"].as_f64().unwrap());
    }
}

#[tokio::test]
async fn a_claimed_teen_asking_many_younger_teens_is_paused_until_a_moderator_decides() {
    let s = server_with(limits()).await;
    let mo = register(&s, "mo").await;
    grant(&s, "mo", Role::Moderator).await;
    // An account that says it is 16 asks younger teens, most of whom decline.
    let liar = register_born(&s, "liar", &born(16, 100)).await;
    let mut kids = Vec::new();
    for i in 0..12 {
        kids.push(register_born(&s, &format!("kid{i}"), &born(13, 30 + i)).await);
    }
    let mut sent = Vec::new();
    for k in &kids {
        let (st, v) = ask(&s, &liar, &k.user).await;
        if st != 200 {
            // Paused once the case opened (or the day's limit toward minors): same neutral
            // text or the rate-limit text, never an age.
            assert!(st == 403 || st == 429, "{v}");
            break;
        }
        sent.push(k);
    }
    // The friction threshold tightened the limit toward minors after a few requests.
    assert!(sent.len() >= 4 && sent.len() < kids.len(), "{}", sent.len());
    let (st, _) = post(&s, sent[0], "/v1/contacts/liar/accept", json!({})).await;
    assert_eq!(st, 200);
    for k in sent.iter().skip(1) {
        let (st, _) = post(&s, k, "/v1/contacts/liar/decline", json!({})).await;
        assert_eq!(st, 200);
    }
    let v = signals(&s, &mo, "liar").await;
    assert_eq!(v["level"], "case", "{v}");
    assert!(points(&v, "negative_share") > 0.0, "{v}");
    assert!(points(&v, "band_mismatch_share") > 0.0, "{v}");
    let cases = risk_cases(&s, &mo).await;
    assert_eq!(cases.len(), 1);
    // Paused: a new minor cannot be approached; an adult still can.
    let fresh = register_born(&s, "fresh", &born(13, 60)).await;
    let (st, v) = ask(&s, &liar, "fresh").await;
    assert_eq!(st, 403);
    assert_neutral(&v, "fresh");
    register(&s, "grown").await;
    let (st, v) = ask(&s, &liar, "grown").await;
    assert_eq!(st, 200, "{v}");
    // The moderator decides (dismiss): the pause lifts and the settled events no longer count.
    let id = cases[0]["case"].as_str().unwrap();
    let (st, v) = post(
        &s,
        &mo,
        &format!("/v1/mod/cases/{id}/actions"),
        json!({"action": "dismiss", "reason": "siblings' friends, checked"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = ask(&s, &liar, "fresh").await;
    assert_eq!(st, 200, "{v}");
    let _ = fresh;
    assert_ne!(signals(&s, &mo, "liar").await["level"], "case");
}

#[tokio::test]
async fn contact_endpoints_need_a_session_and_refuse_bad_input() {
    let s = server_with(limits()).await;
    let a = register(&s, "alice").await;
    for (method, path) in [
        ("GET", "/v1/contacts"),
        ("POST", "/v1/contacts/requests"),
        ("GET", "/v1/requests"),
        ("GET", "/v1/me"),
        ("PUT", "/v1/blocks/bob"),
        ("GET", "/v1/mod/signals/alice"),
    ] {
        let (st, _) = call(method, &format!("{}{path}", s.url), None, Some(json!({}))).await;
        assert_eq!(st, 401, "{method} {path}");
    }
    let (st, _) = ask(&s, &a, "alice").await;
    assert_eq!(st, 400);
    let (st, _) = ask(&s, &a, "nobody").await;
    assert_eq!(st, 404);
    let (st, _) = post(
        &s,
        &a,
        "/v1/contacts/requests",
        json!({"user": "bob", "x": 1}),
    )
    .await;
    assert_eq!(st, 400);
    let (st, _) = call(
        "PUT",
        &format!("{}/v1/blocks/no%20one", s.url),
        Some(&a.token),
        None,
    )
    .await;
    assert_eq!(st, 400);
    let (st, _) = post(&s, &a, "/v1/contacts/bob/accept", json!({})).await;
    assert_eq!(st, 404);
    let (st, v) = call("GET", &format!("{}/v1/policy", s.url), None, None).await;
    assert_eq!(st, 200);
    assert_eq!(v["version"], 1);
    assert!(v["rules"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["id"] == "minor-contact-connections-only"));
    assert_eq!(v["config"]["risk"]["case_threshold"], 60.0);
}

#[tokio::test]
async fn an_elevated_account_writing_to_a_minor_brings_a_safety_notice() {
    let s = server_with(limits()).await;
    let mo = register(&s, "mo").await;
    grant(&s, "mo", Role::Moderator).await;
    let mia = register_born(&s, "mia", &born(13, 40)).await;
    let sam = register_born(&s, "sam", &born(17, 40)).await;
    s.upload_key_packages(&mia, 2).await;
    connect(&s, &mia, &sam).await;
    let (g, mut d) = s.new_direct(&sam, "mia").await;
    let (st, _, _) = s.add(&sam, &mut d, &g, &mia).await;
    assert_eq!(st, 200);
    assert_eq!(send(&s, &sam, &g, 1).await.0, 200);
    assert!(
        notices(&s.queue(&mia).await).is_empty(),
        "normal signals: no notice"
    );
    // Sam asks younger teens he does not know, quickly, until his signals are elevated.
    let mut i = 0;
    loop {
        let kid = format!("kid{i}");
        register_born(&s, &kid, &born(13, 60 + i)).await;
        let (st, v) = ask(&s, &sam, &kid).await;
        assert!(st == 200 || st == 429, "{v}");
        let level = signals(&s, &mo, "sam").await["level"].clone();
        if level == "elevated" {
            break;
        }
        assert_eq!(level, "normal");
        i += 1;
        assert!(i < 10, "never elevated");
    }
    assert_eq!(send(&s, &sam, &g, 1).await.0, 200);
    let n = notices(&s.queue(&mia).await);
    assert_eq!(n.len(), 1, "{n:?}");
    assert_eq!(n[0].kind, NoticeKind::Safety);
    assert_eq!(n[0].about.as_ref().unwrap().as_str(), "sam");
    // One a day per pair, not one per message.
    assert_eq!(send(&s, &sam, &g, 1).await.0, 200);
    assert_eq!(notices(&s.queue(&mia).await).len(), 1);
}
