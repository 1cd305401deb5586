//! The server's HTTP API against a real server on a loopback port, driven by a plain HTTP client
//! and a minimal MLS member on openmls (`support`): authentication, verified group changes and
//! their ordering, franking, limits and hostile input. Attacks from the 2026-12 security review
//! are reproduced here with exactly the APIs an attacker has, and must fail. End-to-end tests
//! with real Haven clients live in the `haven` crate.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signer, SigningKey};
use haven_proto::api;
use haven_proto::{DeviceId, GroupId};
use haven_server::ServerLimits;
use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::OpenMlsProvider as _;
use serde_json::{json, Value};
use support::*;

#[tokio::test]
async fn login_requires_a_valid_signature_and_single_use_challenge() {
    let s = server().await;
    let key = SigningKey::from_bytes(&rand_bytes());
    let mls = Member::forged("alice/x");
    let (_, v) = call(
        "POST",
        &format!("{}/v1/register", s.url),
        None,
        Some(register_body("alice", &key, mls.signer.public())),
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
    let (st, w) = call("GET", &format!("{}/v1/users/alice", s.url), None, None).await;
    assert_eq!((st, w["code"].as_str()), (401, Some("unauthorized")));
    let (st, _) = call(
        "GET",
        &format!("{}/v1/users/alice", s.url),
        Some(&"0".repeat(64)),
        None,
    )
    .await;
    assert_eq!(st, 401);
    // The directory lists the device's registered MLS key.
    assert_eq!(
        v["devices"][0]["mls_key"],
        json!(B64.encode(mls.signer.public()))
    );
    // Duplicate name.
    let (st, v) = call(
        "POST",
        &format!("{}/v1/register", s.url),
        None,
        Some(register_body("alice", &key, mls.signer.public())),
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
    let mls = Member::forged("late/x");
    let (st, v) = call(
        "POST",
        &format!("{}/v1/register", s.url),
        None,
        Some(register_body("late", &key, mls.signer.public())),
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
    for d in [&b, &c] {
        s.upload_key_packages(d, 3).await;
    }
    let (g, mut ga) = s.new_group(&a).await;
    let (st, v, welcome) = s.add(&a, &mut ga, &g, &b).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["epoch"], 1);
    assert_eq!(v["members"].as_array().unwrap().len(), 2);
    // Bob got exactly the Welcome, and it makes him a member.
    let qb = s.queue(&b).await;
    assert_eq!(qb.len(), 1);
    assert_eq!(qb[0].kind, api::EntryKind::Welcome);
    assert_eq!(qb[0].payload, welcome);
    let mut gb = b.mls.join(&welcome);

    // Alice and Bob race for each epoch: exactly one of their (real) commits wins.
    let mut epoch = 1;
    for round in 0..4 {
        let ca = a.mls.update(&mut ga);
        let cb = b.mls.update(&mut gb);
        let (ra, rb) = tokio::join!(
            s.post_commit(&a, &g, &ca, None),
            s.post_commit(&b, &g, &cb, None)
        );
        let wins = [ra.0, rb.0].iter().filter(|st| **st == 200).count();
        assert_eq!(wins, 1, "round {round}: {ra:?} {rb:?}");
        let loser = if ra.0 == 200 { &rb } else { &ra };
        assert_eq!(loser.0, 409);
        assert_eq!(loser.1["code"], "epoch_conflict");
        assert_eq!(loser.1["current_epoch"], epoch + 1);
        // The winner merges; the loser processes the winner's commit.
        let (winner, wg, lg, lm, commit) = if ra.0 == 200 {
            (&a, &mut ga, &mut gb, &b.mls, ca)
        } else {
            (&b, &mut gb, &mut ga, &a.mls, cb)
        };
        winner.mls.merge(wg);
        lm.discard(lg);
        let pm = openmls::prelude::MlsMessageIn::tls_deserialize_exact(&commit[..])
            .unwrap()
            .try_into_protocol_message()
            .unwrap();
        let processed = lg.process_message(&lm.provider, pm).unwrap();
        let openmls::prelude::ProcessedMessageContent::StagedCommitMessage(st) =
            processed.into_content()
        else {
            panic!("not a commit")
        };
        lg.merge_staged_commit(&lm.provider, *st).unwrap();
        epoch += 1;
        // The last round: the winner resubmits the same commit (its answer lost, say) and is
        // told it is in; the loser's resubmission is not its commit and is refused.
        if round == 3 {
            let (qa, qb) = (s.queue(&a).await.len(), s.queue(&b).await.len());
            let again = s.post_commit(winner, &g, &commit, None).await;
            assert_eq!(
                (again.0, again.1["epoch"].as_u64()),
                (200, Some(epoch)),
                "{again:?}"
            );
            let other = if ra.0 == 200 { &b } else { &a };
            let foreign = s.post_commit(other, &g, &commit, None).await;
            assert_eq!(
                foreign.0, 409,
                "only the committer's own resubmission: {foreign:?}"
            );
            assert_eq!((s.queue(&a).await.len(), s.queue(&b).await.len()), (qa, qb));
        }
    }
    // Carol is added by a real commit with a key package claimed for this group.
    let (st, v, welcome) = s.add(&a, &mut ga, &g, &c).await;
    assert_eq!((st, v["epoch"].as_u64()), (200, Some(epoch + 1)), "{v}");
    let qc = s.queue(&c).await;
    assert_eq!(qc.len(), 1);
    assert_eq!(qc[0].payload, welcome);
    // A non-member cannot commit.
    let mallory = register(&s, "mallory").await;
    let junk = junk_public_message(&g, epoch + 1, 3);
    let (st, v) = s.post_commit(&mallory, &g, &junk, None).await;
    assert_eq!((st, v["code"].as_str()), (403, Some("forbidden")), "{v}");
}

/// Finding 3: a member posts a PublicMessage header followed by junk as the epoch's commit. It
/// is refused, the epoch does not move, and the group's real commits — removing that member
/// included — go on working.
#[tokio::test]
async fn a_junk_commit_is_refused_and_the_group_keeps_working() {
    let s = server().await;
    let carol = register(&s, "carol").await;
    let mallory = register(&s, "mallory").await;
    s.upload_key_packages(&mallory, 2).await;
    let (g, mut gc) = s.new_group(&carol).await;
    assert_eq!(s.add(&carol, &mut gc, &g, &mallory).await.0, 200);
    let gm = mallory.mls.join(&s.queue(&mallory).await[0].payload);
    let before = s.group_state(&carol, &g).await.1;
    for junk in [
        junk_public_message(&g, 1, 3),
        private_message(&g, 1, 3, b"", b"opaque commit"),
        b"\x00\x01\x00\x01garbage".to_vec(),
    ] {
        let (st, v) = s.post_commit(&mallory, &g, &junk, None).await;
        assert_eq!((st, v["code"].as_str()), (400, Some("bad_request")), "{v}");
        // With a "Welcome" and the old declared-membership fields: refused as well.
        let body = json!({"commit": B64.encode(&junk), "welcome": B64.encode([0u8, 1, 0, 3, 9]),
                          "added": [carol.id], "removed": [carol.id]});
        let (st, _) = call(
            "POST",
            &format!("{}/v1/groups/{g}/commits", s.url),
            Some(&mallory.token),
            Some(body),
        )
        .await;
        assert_eq!(st, 400);
    }
    assert_eq!(s.group_state(&carol, &g).await.1, before, "nothing changed");
    assert!(s.queue(&carol).await.is_empty(), "nothing was routed");
    // Removing mallory works.
    let leaf = gm.own_leaf_index().u32();
    let remove = carol.mls.remove(&mut gc, &[leaf]);
    let (st, v) = s.post_commit(&carol, &g, &remove, None).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["members"], json!([carol.id]));
    // And the group carries carol's messages to nobody else now.
    let (msg, _) = franked(&g, 2);
    let (st, v) = call(
        "POST",
        &format!("{}/v1/groups/{g}/messages", s.url),
        Some(&carol.token),
        Some(json!({"message": B64.encode(msg)})),
    )
    .await;
    assert_eq!((st, v["deliveries"].as_u64()), (200, Some(0)), "{v}");
}

/// Findings 4 and 5: nobody becomes a member (nor stops being one) on a member's word. A device
/// can be added only by a verified commit carrying a key package that device signed with its
/// registered key, claimed by the committer for this group; a device added any other way never
/// receives anything.
#[tokio::test]
async fn a_device_is_added_only_with_its_own_key_package_claimed_for_the_group() {
    let s = server().await;
    let mallory = register(&s, "mallory").await;
    let bob = register(&s, "bob").await;
    s.upload_key_packages(&bob, 3).await;
    let (g, mut gm) = s.new_group(&mallory).await;

    // (a) A key package in bob's name with mallory's key: the server refuses the upload, and a
    // commit adding it is refused.
    let fake_bob = Member::forged(&format!("bob/{}", bob.id));
    let forged_kp = fake_bob.key_package(false);
    let (st, _) = call(
        "POST",
        &format!("{}/v1/key-packages", s.url),
        Some(&mallory.token),
        Some(json!({"key_packages": [B64.encode(&forged_kp)]})),
    )
    .await;
    assert_eq!(st, 400);
    let (commit, welcome) = mallory.mls.add(&mut gm, &[forged_kp]);
    let (st, v) = s.post_commit(&mallory, &g, &commit, Some(&welcome)).await;
    assert_eq!((st, v["code"].as_str()), (400, Some("bad_request")), "{v}");
    mallory.mls.discard(&mut gm);

    // (b) Bob's real key package, claimed for another group: refused for this one.
    let (other, _) = s.new_group(&mallory).await;
    let (_, kps) = s.claim(&mallory, "bob", &other).await;
    let (commit, welcome) = mallory.mls.add(&mut gm, &kps);
    let (st, v) = s.post_commit(&mallory, &g, &commit, Some(&welcome)).await;
    assert_eq!((st, v["code"].as_str()), (400, Some("bad_request")), "{v}");
    assert!(v["message"].as_str().unwrap().contains("claim"), "{v}");
    mallory.mls.discard(&mut gm);

    // (c) A real commit with a Welcome that is not for the added key package.
    let (_, kps) = s.claim(&mallory, "bob", &g).await;
    let (commit, _) = mallory.mls.add(&mut gm, &kps);
    mallory.mls.discard(&mut gm);
    let other_bob = Member::forged("eve/x");
    let (mut ge, _) = other_bob.create_group(&GroupId::from_bytes(&[7; 16]).unwrap());
    let (_, stray_welcome) = other_bob.add(&mut ge, &[bob.mls.key_package(false)]);
    let (st, v) = s
        .post_commit(&mallory, &g, &commit, Some(&stray_welcome))
        .await;
    assert_eq!((st, v["code"].as_str()), (400, Some("bad_request")), "{v}");
    let (st, _) = s.post_commit(&mallory, &g, &commit, None).await;
    assert_eq!(st, 400, "added members need a Welcome");

    // (d) A device cannot be claimed for a group by a non-member.
    let eve = register(&s, "eve").await;
    assert_eq!(s.claim(&eve, "bob", &g).await.0, 403);

    // Through all of it bob received nothing and is in no group.
    assert!(s.queue(&bob).await.is_empty());
    assert_eq!(
        s.group_state(&mallory, &g).await.1["members"],
        json!([mallory.id])
    );
}

/// Finding 1 (server side): a leaf naming someone else's device, or any device with a key other
/// than the one it registered, is refused wherever it appears.
#[tokio::test]
async fn a_leaf_must_carry_its_devices_registered_key() {
    let s = server().await;
    let mallory = register(&s, "mallory").await;
    let bob = register(&s, "bob").await;
    // A group whose creator leaf says bob/<bob's device>, signed with mallory's key.
    let fake_bob = Member::forged(&format!("bob/{}", bob.id));
    let g = GroupId::from_bytes(&rand_bytes::<16>()).unwrap();
    let (_, info) = fake_bob.create_group(&g);
    let (st, v) = call(
        "POST",
        &format!("{}/v1/groups", s.url),
        Some(&mallory.token),
        Some(json!({"group_id": g, "group_info": B64.encode(&info)})),
    )
    .await;
    assert_eq!((st, v["code"].as_str()), (400, Some("bad_request")), "{v}");
    // Even posted with bob's own session it fails: the key is not bob's.
    let (st, _) = call(
        "POST",
        &format!("{}/v1/groups", s.url),
        Some(&bob.token),
        Some(json!({"group_id": g, "group_info": B64.encode(&info)})),
    )
    .await;
    assert_eq!(st, 400);
    // Mallory's own leaf under her own name, but another key than she registered.
    let other_key = Member::forged(&format!("mallory/{}", mallory.id));
    let (_, info) = other_key.create_group(&g);
    let (st, _) = call(
        "POST",
        &format!("{}/v1/groups", s.url),
        Some(&mallory.token),
        Some(json!({"group_id": g, "group_info": B64.encode(&info)})),
    )
    .await;
    assert_eq!(st, 400);
    // A GroupInfo that is not one, or without the ratchet tree, or for another group id.
    for bad in [b"junk".to_vec(), mallory.mls.key_package(false)] {
        let (st, _) = call(
            "POST",
            &format!("{}/v1/groups", s.url),
            Some(&mallory.token),
            Some(json!({"group_id": g, "group_info": B64.encode(&bad)})),
        )
        .await;
        assert_eq!(st, 400);
    }
    let (_, info) = mallory
        .mls
        .create_group(&GroupId::from_bytes(&[3; 16]).unwrap());
    let (st, _) = call(
        "POST",
        &format!("{}/v1/groups", s.url),
        Some(&mallory.token),
        Some(json!({"group_id": g, "group_info": B64.encode(&info)})),
    )
    .await;
    assert_eq!(st, 400);
    // Nothing was created: the id is still free for its rightful creator.
    let (_, info) = mallory.mls.create_group(&g);
    let (st, v) = call(
        "POST",
        &format!("{}/v1/groups", s.url),
        Some(&mallory.token),
        Some(json!({"group_id": g, "group_info": B64.encode(&info)})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    // Registration must bind the MLS key with the auth key's signature.
    let auth = SigningKey::from_bytes(&rand_bytes());
    let mut body = register_body("dave", &auth, fake_bob.signer.public());
    body["mls_key_signature"] = json!(B64.encode([0u8; 64]));
    let (st, v) = call("POST", &format!("{}/v1/register", s.url), None, Some(body)).await;
    assert_eq!((st, v["code"].as_str()), (400, Some("bad_request")), "{v}");
}

/// Finding 15: a non-member learns nothing about a group's epoch — every commit attempt is
/// refused the same way, whatever epoch it names.
#[tokio::test]
async fn a_non_member_learns_no_epoch() {
    let s = server().await;
    let a = register(&s, "alice").await;
    let b = register(&s, "bob").await;
    s.upload_key_packages(&b, 2).await;
    let (g, mut ga) = s.new_group(&a).await;
    assert_eq!(s.add(&a, &mut ga, &g, &b).await.0, 200);
    let mallory = register(&s, "mallory").await;
    for epoch in 0..4 {
        let (st, v) = s
            .post_commit(&mallory, &g, &junk_public_message(&g, epoch, 3), None)
            .await;
        assert_eq!(
            (st, v["code"].as_str()),
            (403, Some("forbidden")),
            "epoch {epoch}: {v}"
        );
        let body = json!({"proposal": B64.encode(junk_public_message(&g, epoch, 2))});
        let (st, _) = call(
            "POST",
            &format!("{}/v1/groups/{g}/proposals", s.url),
            Some(&mallory.token),
            Some(body),
        )
        .await;
        assert_eq!(st, 403);
    }
}

/// Leaving is a verified self-Remove: the leaver is out of routing at once, and the commit that
/// applies the proposal by reference is accepted. A proposal to remove someone else is refused.
#[tokio::test]
async fn leaving_is_verified_and_committed_by_reference() {
    let s = server().await;
    let a = register(&s, "alice").await;
    let b = register(&s, "bob").await;
    let c = register(&s, "carol").await;
    for d in [&b, &c] {
        s.upload_key_packages(d, 2).await;
    }
    let (g, mut ga) = s.new_group(&a).await;
    assert_eq!(s.add(&a, &mut ga, &g, &b).await.0, 200);
    assert_eq!(s.add(&a, &mut ga, &g, &c).await.0, 200);
    let q = s.queue(&b).await;
    let mut gb = b.mls.join(&q[0].payload);
    let pm = openmls::prelude::MlsMessageIn::tls_deserialize_exact(&q[1].payload[..])
        .unwrap()
        .try_into_protocol_message()
        .unwrap();
    let openmls::prelude::ProcessedMessageContent::StagedCommitMessage(st) = gb
        .process_message(&b.mls.provider, pm)
        .unwrap()
        .into_content()
    else {
        panic!("not a commit")
    };
    gb.merge_staged_commit(&b.mls.provider, *st).unwrap();
    // Bob proposes to remove carol: refused.
    let (prop, _) = gb
        .propose_remove_member(
            &b.mls.provider,
            &b.mls.signer,
            openmls::prelude::LeafNodeIndex::new(2),
        )
        .unwrap();
    let body = json!({"proposal": B64.encode(serialize(&prop))});
    let (st, v) = call(
        "POST",
        &format!("{}/v1/groups/{g}/proposals", s.url),
        Some(&b.token),
        Some(body),
    )
    .await;
    assert_eq!((st, v["code"].as_str()), (400, Some("bad_request")), "{v}");
    gb.clear_pending_proposals(b.mls.provider.storage())
        .unwrap();
    // Bob leaves.
    let leave = b.mls.leave(&mut gb);
    let body = json!({"proposal": B64.encode(&leave)});
    let (st, v) = call(
        "POST",
        &format!("{}/v1/groups/{g}/proposals", s.url),
        Some(&b.token),
        Some(body),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let members = s.group_state(&a, &g).await.1["members"].clone();
    assert!(
        !members.as_array().unwrap().contains(&json!(b.id)),
        "{members}"
    );
    // Alice stores the proposal and commits it by reference.
    let pm = openmls::prelude::MlsMessageIn::tls_deserialize_exact(&leave[..])
        .unwrap()
        .try_into_protocol_message()
        .unwrap();
    let openmls::prelude::ProcessedMessageContent::ProposalMessage(qp) = ga
        .process_message(&a.mls.provider, pm)
        .unwrap()
        .into_content()
    else {
        panic!("not a proposal")
    };
    ga.store_pending_proposal(a.mls.provider.storage(), *qp)
        .unwrap();
    let (commit, _, _) = ga
        .commit_to_pending_proposals(&a.mls.provider, &a.mls.signer)
        .unwrap();
    let (st, v) = s.post_commit(&a, &g, &serialize(&commit), None).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["members"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn application_messages_need_a_commitment_and_carry_the_server_frank() {
    let s = server().await;
    let a = register(&s, "alice").await;
    let b = register(&s, "bob").await;
    s.upload_key_packages(&b, 2).await;
    let (g, mut ga) = s.new_group(&a).await;
    assert_eq!(s.add(&a, &mut ga, &g, &b).await.0, 200);
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
    let before = s.queue(&b).await.len();

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
    let q = s.queue(&b).await;
    assert_eq!(q.len(), before + 1);
    let e = q.last().unwrap();
    assert_eq!(e.kind, api::EntryKind::Application);
    assert_eq!(e.payload, msg);
    assert_eq!(e.sender.as_ref().unwrap().user.as_str(), "alice");
    let frank = e.frank.as_ref().unwrap();
    assert_eq!(frank.commitment, c.as_bytes().to_vec());
    // The server's tag is a v2 tag naming its current key, and verifies under that key over
    // exactly (commitment, sender, group, time).
    let keys = s.running.service.frank_keys();
    match haven_frank::EncodedTag::decode(&frank.server_tag).unwrap() {
        haven_frank::EncodedTag::V2 { key_id, .. } => assert_eq!(key_id, keys.current_id()),
        other => panic!("expected a v2 tag, got {other:?}"),
    }
    let tag = frank.server_tag.clone();
    let binding = haven_frank::Binding {
        commitment: &c,
        sender_device: a.id.as_str(),
        group_id: g.as_bytes(),
        received_at_ms: frank.received_at,
    };
    keys.verify(&binding, &tag).unwrap();
    let other_sender = haven_frank::Binding {
        sender_device: b.id.as_str(),
        ..binding
    };
    assert!(keys.verify(&other_sender, &tag).is_err());

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
    assert!(s.queue(&b).await.is_empty());
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
        ("/v1/register", json!({"user": "carol", "device_name": "x", "auth_key": B64.encode([1u8; 32])}).to_string()),
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
    // Key packages must be valid MLS key packages of the uploading device, with its key, and
    // the last-resort flag where it belongs.
    let mut header_only = vec![0, 1, 0, 5];
    header_only.extend_from_slice(&rand_bytes::<16>());
    for bad in [
        json!({"key_packages": [B64.encode(b"nope")]}),
        json!({"key_packages": [B64.encode(&header_only)]}),
        json!({"key_packages": [B64.encode(b.mls.key_package(false))]}),
        json!({"key_packages": [B64.encode(a.mls.key_package(true))]}),
        json!({"key_packages": [], "last_resort": B64.encode(a.mls.key_package(false))}),
    ] {
        let (st, v) = call(
            "POST",
            &format!("{base}/v1/key-packages"),
            Some(&a.token),
            Some(bad.clone()),
        )
        .await;
        assert_eq!(st, 400, "{bad}: {v}");
    }
    let (st, v) = call("POST", &format!("{base}/v1/key-packages"), Some(&a.token), Some(json!({"key_packages": [B64.encode(a.mls.key_package(false))], "last_resort": B64.encode(a.mls.key_package(true))}))).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v, json!({"available": 1, "has_last_resort": true}));

    // Queue depth: Bob's queue holds 3; the 4th send is refused and nothing is half-written.
    s.upload_key_packages(&b, 1).await;
    let (g, mut ga) = s.new_group(&a).await;
    assert_eq!(s.add(&a, &mut ga, &g, &b).await.0, 200); // Welcome: 1 entry
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
    assert_eq!(s.queue(&b).await.len(), 3);

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
