//! What verifying group changes costs the server (BENCHMARKS.md, "Verified group changes").
//!
//! For groups of 10, 100 and 1,000 members (one device each) this builds a real MLS group with
//! openmls, hands the server's verifier (`haven_server::groups::GroupView`) the creator's
//! GroupInfo, and then times, per commit, exactly what `Service::commit` does with it: load the
//! stored state, verify the commit (signature, proposals, the update path's public part), merge
//! and serialise the new state. The anchor, measured in the same run on the same commits, is what
//! every member's client already pays: openmls processing and merging the same commit.
//!
//! `cargo run --release -p haven-server --example verify_commits [ROUNDS]`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::{Duration, Instant};

use haven_proto::GroupId;
use haven_server::groups::{GroupView, CIPHERSUITE};
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;

struct Member {
    provider: OpenMlsRustCrypto,
    signer: SignatureKeyPair,
    credential: CredentialWithKey,
}

fn member(i: usize) -> Member {
    let signer = SignatureKeyPair::new(SignatureScheme::ED25519).unwrap();
    let credential = CredentialWithKey {
        credential: BasicCredential::new(format!("user{i}/{:032x}", i + 1).into_bytes()).into(),
        signature_key: signer.public().into(),
    };
    Member {
        provider: OpenMlsRustCrypto::default(),
        signer,
        credential,
    }
}

fn bytes(m: &MlsMessageOut) -> Vec<u8> {
    m.tls_serialize_detached().unwrap()
}

fn process(group: &mut MlsGroup, m: &Member, commit: &[u8]) {
    let pm = MlsMessageIn::tls_deserialize_exact(commit)
        .unwrap()
        .try_into_protocol_message()
        .unwrap();
    let ProcessedMessageContent::StagedCommitMessage(staged) = group
        .process_message(&m.provider, pm)
        .unwrap()
        .into_content()
    else {
        panic!("not a commit")
    };
    group.merge_staged_commit(&m.provider, *staged).unwrap();
}

fn micros(d: Duration, n: u32) -> f64 {
    d.as_secs_f64() * 1e6 / f64::from(n)
}

fn main() {
    let rounds: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    println!("members | verify a commit (server) | process the same commit (a member's client, anchor) | state size | verify the add of all members");
    for n in [10usize, 100, 1000] {
        let members: Vec<Member> = (0..n).map(member).collect();
        let gid = GroupId::from_bytes(&[n as u8; 16]).unwrap();
        let policy = PURE_PLAINTEXT_WIRE_FORMAT_POLICY;
        let create = MlsGroupCreateConfig::builder()
            .ciphersuite(CIPHERSUITE)
            .use_ratchet_tree_extension(true)
            .wire_format_policy(policy)
            .build();
        let creator = &members[0];
        let mut g0 = MlsGroup::new_with_group_id(
            &creator.provider,
            &creator.signer,
            &create,
            openmls::prelude::GroupId::from_slice(gid.as_bytes()),
            creator.credential.clone(),
        )
        .unwrap();
        let info = bytes(
            &g0.export_group_info(creator.provider.crypto(), &creator.signer, true)
                .unwrap(),
        );
        let (view, created) = GroupView::create(&gid, &info).unwrap();
        drop(view);
        let kps: Vec<KeyPackage> = members[1..]
            .iter()
            .map(|m| {
                KeyPackage::builder()
                    .build(CIPHERSUITE, &m.provider, &m.signer, m.credential.clone())
                    .unwrap()
                    .key_package()
                    .clone()
            })
            .collect();
        let (commit, welcome, _) = g0
            .add_members(&creator.provider, &creator.signer, &kps)
            .unwrap();
        let (commit, welcome) = (bytes(&commit), bytes(&welcome));
        let t = Instant::now();
        let added = GroupView::load(&gid, &created.state)
            .unwrap()
            .verify_commit(&commit, Some(&welcome))
            .unwrap();
        let add_all = t.elapsed();
        assert_eq!(added.members_after.len(), n);
        g0.merge_pending_commit(&creator.provider).unwrap();
        let other = &members[1];
        let MlsMessageBodyIn::Welcome(w) = MlsMessageIn::tls_deserialize_exact(&welcome[..])
            .unwrap()
            .extract()
        else {
            panic!("not a welcome")
        };
        let join = MlsGroupJoinConfig::builder()
            .use_ratchet_tree_extension(true)
            .wire_format_policy(policy)
            .build();
        let mut g1 = StagedWelcome::new_from_welcome(&other.provider, &join, w, None)
            .unwrap()
            .into_group(&other.provider)
            .unwrap();
        let mut state = added.state_after;
        let (mut server, mut client) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..rounds {
            let bundle = g0
                .self_update(
                    &creator.provider,
                    &creator.signer,
                    LeafNodeParameters::default(),
                )
                .unwrap();
            let commit = bytes(bundle.commit());
            let t = Instant::now();
            let v = GroupView::load(&gid, &state)
                .unwrap()
                .verify_commit(&commit, None)
                .unwrap();
            server += t.elapsed();
            state = v.state_after;
            let t = Instant::now();
            process(&mut g1, other, &commit);
            client += t.elapsed();
            g0.merge_pending_commit(&creator.provider).unwrap();
        }
        println!(
            "{n:>7} | {:>10.0} µs | {:>10.0} µs | {:>8} KiB | {:>10.0} µs",
            micros(server, rounds),
            micros(client, rounds),
            state.len() / 1024,
            micros(add_all, 1)
        );
    }
}
