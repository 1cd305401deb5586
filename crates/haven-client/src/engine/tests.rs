//! Engine tests: several engines in temporary directories, with bytes passed between them by
//! hand. `Server` plays the server's part in building queue entries: it reads the commitment from
//! the clear-text MLS header (as the real server does) and binds it with a franking tag.

use super::*;
use haven_frank::{ServerKey, ServerTag};
use haven_proto::api::{ClaimedKeyPackage, FrankEnvelope, Sender};
use sha2::Digest as _;
use tempfile::TempDir;

struct Dev {
    _dir: TempDir,
    home: std::path::PathBuf,
    e: Engine,
}

impl Dev {
    fn new(user: &str) -> Dev {
        let mut b = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut b);
        Dev::with_device(user, DeviceId::from_bytes(b))
    }

    /// A device claiming any identity it likes (an attacker's forged leaf).
    fn with_device(user: &str, device_id: DeviceId) -> Dev {
        let dir = TempDir::new().unwrap();
        let home = dir.path().join("profile");
        let id = Identity {
            user: UserName::new(user).unwrap(),
            device_id,
            server_url: "http://127.0.0.1:1".into(),
            auth_secret: AuthSecret::random(),
        };
        let e = Engine::create(&home, id).unwrap();
        Dev { _dir: dir, home, e }
    }

    fn user(&self) -> UserName {
        self.e.identity().user.clone()
    }

    fn device(&self) -> DeviceId {
        self.e.identity().device_id.clone()
    }

    fn sender(&self) -> Sender {
        Sender {
            user: self.user(),
            device_id: self.device(),
        }
    }

    fn claim(&mut self) -> ClaimedKeyPackages {
        ClaimedKeyPackages {
            user: self.user(),
            key_packages: vec![self.claimed_one()],
        }
    }

    fn claimed_one(&mut self) -> ClaimedKeyPackage {
        ClaimedKeyPackage {
            device_id: self.device(),
            key_package: self.e.key_packages(1).unwrap().remove(0),
        }
    }

    fn texts(&self, g: &GroupId) -> Vec<(String, String)> {
        self.e
            .history(g, 100)
            .unwrap()
            .into_iter()
            .map(|m| match m.body {
                Body::Text(t) => (m.from.to_string(), t),
                other => panic!("unexpected body {other:?}"),
            })
            .collect()
    }
}

struct Server {
    key: ServerKey,
    next_id: i64,
}

impl Server {
    fn new() -> Server {
        Server {
            key: ServerKey::random(),
            next_id: 1,
        }
    }

    fn entry(
        &mut self,
        kind: EntryKind,
        group: Option<&GroupId>,
        from: Option<Sender>,
        payload: Vec<u8>,
    ) -> QueueEntry {
        self.next_id += 1;
        let received_at = now_ms();
        let frank = if kind == EntryKind::Application {
            let h = haven_proto::mls_frame::parse_header(&payload).unwrap();
            let c = haven_frank::decode_aad(h.authenticated_data).unwrap();
            let from = from.as_ref().unwrap();
            let tag = haven_frank::server_tag(
                &self.key,
                &haven_frank::Binding {
                    commitment: &c,
                    sender_device: from.device_id.as_str(),
                    group_id: h.group_id,
                    received_at_ms: received_at,
                },
            );
            Some(FrankEnvelope {
                commitment: c.as_bytes().to_vec(),
                server_tag: tag.as_bytes().to_vec(),
                received_at,
            })
        } else {
            None
        };
        QueueEntry {
            id: self.next_id,
            kind,
            group_id: group.cloned(),
            sender: from,
            payload,
            frank,
            received_at,
        }
    }

    /// Encrypts, "accepts" and records a text message; returns the entry every other member gets.
    fn send(&mut self, from: &mut Dev, g: &GroupId, text: &str) -> QueueEntry {
        let m = from.e.encrypt(g, Body::Text(text.into())).unwrap();
        let e = self.entry(
            EntryKind::Application,
            Some(g),
            Some(from.sender()),
            m.mls.clone(),
        );
        from.e.record_sent(&m, e.received_at).unwrap();
        e
    }

    fn body(&mut self, from: &mut Dev, g: &GroupId, body: Body) -> QueueEntry {
        let m = from.e.encrypt(g, body).unwrap();
        self.entry(EntryKind::Application, Some(g), Some(from.sender()), m.mls)
    }

    /// The server accepts a staged commit: the committer merges; returns (commit, welcome).
    fn accept(&mut self, from: &mut Dev, oc: &OutgoingCommit) -> (QueueEntry, Option<QueueEntry>) {
        from.e.merge_pending_commit(&oc.group_id).unwrap();
        let c = self.entry(
            EntryKind::Commit,
            Some(&oc.group_id),
            Some(from.sender()),
            oc.commit.clone(),
        );
        let w = oc.welcome.clone().map(|w| {
            self.entry(
                EntryKind::Welcome,
                Some(&oc.group_id),
                Some(from.sender()),
                w,
            )
        });
        (c, w)
    }
}

fn deliver(to: &mut Dev, e: &QueueEntry) -> Processed {
    to.e.process_entry(e).unwrap()
}

fn expect_text(p: Processed, from: &Dev, text: &str) {
    match p {
        Processed::Message(m) => {
            assert_eq!(m.from, from.user());
            assert_eq!(m.from_device, from.device());
            assert_eq!(m.body, Body::Text(text.into()));
        }
        other => panic!("expected a message, got {other:?}"),
    }
}

fn joined(p: Processed) -> Conversation {
    match p {
        Processed::Joined(c) => c,
        other => panic!("expected a join, got {other:?}"),
    }
}

/// `owner` creates a conversation and adds `others` in one commit; everyone joins.
fn setup(
    s: &mut Server,
    owner: &mut Dev,
    kind: ConversationKind,
    others: &mut [&mut Dev],
) -> GroupId {
    let g = owner.e.create_conversation(kind).unwrap();
    let claims: Vec<_> = others.iter_mut().map(|d| d.claim()).collect();
    let oc = owner.e.add_members(&g, &claims).unwrap();
    assert_eq!(oc.epoch, 0);
    assert_eq!(oc.added.len(), others.len());
    let (_, w) = s.accept(owner, &oc);
    let w = w.unwrap();
    for d in others.iter_mut() {
        let mut w = w.clone();
        s.next_id += 1;
        w.id = s.next_id;
        let c = joined(deliver(d, &w));
        assert_eq!(c.group_id, g);
        assert_eq!(c.state, ConversationState::Active);
    }
    g
}

/// alice and bob in a direct conversation.
fn direct_chat(s: &mut Server) -> (Dev, Dev, GroupId) {
    let (mut a, mut b) = (Dev::new("alice"), Dev::new("bob"));
    let g = setup(s, &mut a, ConversationKind::direct(b.user()), &mut [&mut b]);
    (a, b, g)
}

fn dropped_for(p: Processed) -> DropReason {
    match p {
        Processed::Dropped { reason } => reason,
        other => panic!("expected a drop, got {other:?}"),
    }
}

#[test]
fn direct_chat_both_ways_and_redelivery() {
    let mut s = Server::new();
    let (mut alice, mut bob) = (Dev::new("alice"), Dev::new("bob"));
    let g = setup(
        &mut s,
        &mut alice,
        ConversationKind::direct(bob.user()),
        &mut [&mut bob],
    );
    // Bob files it as a direct chat with alice (the tree has two users and alice's device sent
    // the Welcome), not accepted until he accepts or replies.
    let conv = bob.e.conversation(&g).unwrap().unwrap();
    assert_eq!(
        conv.kind,
        ConversationKind::Direct {
            peer: alice.user(),
            accepted: false
        }
    );
    assert_eq!(conv.added_by, Some(alice.user()));
    assert_eq!(bob.e.find_direct(&alice.user()).unwrap(), None);
    assert_eq!(
        bob.e.pending_direct(&alice.user()).unwrap(),
        Some(g.clone())
    );
    assert!(bob.e.accept(&g).unwrap());
    assert!(!bob.e.accept(&g).unwrap());
    assert_eq!(bob.e.find_direct(&alice.user()).unwrap(), Some(g.clone()));
    assert_eq!(bob.e.pending_direct(&alice.user()).unwrap(), None);
    assert_eq!(alice.e.find_direct(&bob.user()).unwrap(), Some(g.clone()));
    let mut m = alice.e.members(&g).unwrap();
    m.sort();
    let mut want = vec![(alice.user(), alice.device()), (bob.user(), bob.device())];
    want.sort();
    assert_eq!(m, want);

    let e1 = s.send(&mut alice, &g, "hi bob");
    expect_text(deliver(&mut bob, &e1), &alice, "hi bob");
    let e2 = s.send(&mut bob, &g, "hi alice");
    expect_text(deliver(&mut alice, &e2), &bob, "hi alice");

    // Redelivery of an entry is a no-op.
    assert_eq!(deliver(&mut bob, &e1), Processed::Duplicate);
    let want = vec![
        ("alice".to_string(), "hi bob".to_string()),
        ("bob".to_string(), "hi alice".to_string()),
    ];
    assert_eq!(bob.texts(&g), want);
    assert_eq!(alice.texts(&g), want);

    // What a report needs is kept and verifies: the commitment opens over the stored content,
    // and the server's tag binds it to the sender device, group and time.
    let hist = bob.e.history(&g, 10).unwrap();
    let first = hist.first().unwrap();
    let r = bob
        .e
        .frank_record(&g, &alice.user(), &first.id)
        .unwrap()
        .unwrap();
    let c = Commitment::from_slice(&r.commitment).unwrap();
    haven_frank::open(&c, &FrankSalt::from_slice(&r.salt).unwrap(), &r.content).unwrap();
    let tag = ServerTag::from_slice(r.server_tag.as_deref().unwrap()).unwrap();
    haven_frank::verify_server_tag(
        &s.key,
        &haven_frank::Binding {
            commitment: &c,
            sender_device: alice.device().as_str(),
            group_id: g.as_bytes(),
            received_at_ms: first.received_at,
        },
        &tag,
    )
    .unwrap();
    assert!(format!("{r:?}").contains("<redacted>"));
}

#[test]
fn three_member_group_with_name() {
    let mut s = Server::new();
    let (mut a, mut b, mut c) = (Dev::new("alice"), Dev::new("bob"), Dev::new("carol"));
    let g = setup(
        &mut s,
        &mut a,
        ConversationKind::group("team"),
        &mut [&mut b, &mut c],
    );
    // Joined groups are unnamed until the GroupName control message arrives.
    let n = s.body(&mut a, &g, Body::GroupName("team".into()));
    for d in [&mut b, &mut c] {
        assert_eq!(
            deliver(d, &n),
            Processed::Renamed {
                group_id: g.clone(),
                by: a.user(),
                requested: "team".into(),
                previous: Some(String::new()),
                stored: Some("team".into()),
            }
        );
        assert_eq!(d.e.find_group("team").unwrap(), Some(g.clone()));
        assert!(d.e.history(&g, 10).unwrap().is_empty());
    }
    assert_eq!(a.e.find_group("team").unwrap(), Some(g.clone()));
    assert_eq!(c.e.members(&g).unwrap().len(), 3);

    let e = s.send(&mut c, &g, "from carol");
    expect_text(deliver(&mut a, &e), &c, "from carol");
    expect_text(deliver(&mut b, &e), &c, "from carol");
    let e = s.send(&mut a, &g, "from alice");
    expect_text(deliver(&mut b, &e), &a, "from alice");
    expect_text(deliver(&mut c, &e), &a, "from alice");
}

#[test]
fn removed_member_cannot_decrypt_what_follows() {
    let mut s = Server::new();
    let (mut a, mut b, mut c) = (Dev::new("alice"), Dev::new("bob"), Dev::new("carol"));
    let g = setup(
        &mut s,
        &mut a,
        ConversationKind::group("g"),
        &mut [&mut b, &mut c],
    );
    let oc = a.e.remove_users(&g, &[c.user()]).unwrap();
    assert_eq!(oc.removed, vec![c.device()]);
    let (commit, _) = s.accept(&mut a, &oc);
    match deliver(&mut b, &commit) {
        Processed::Commit(o) => {
            assert_eq!(o.removed, vec![(c.user(), c.device())]);
            assert!(!o.self_removed);
            assert_eq!(o.epoch, 2);
        }
        other => panic!("{other:?}"),
    }
    match deliver(&mut c, &commit) {
        Processed::Commit(o) => assert!(o.self_removed),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        c.e.conversation(&g).unwrap().unwrap().state,
        ConversationState::Removed
    );
    assert!(matches!(
        c.e.encrypt(&g, Body::Text("x".into())),
        Err(EngineError::NotActive(_))
    ));
    let e = s.send(&mut a, &g, "secret");
    expect_text(deliver(&mut b, &e), &a, "secret");
    assert_eq!(dropped_for(deliver(&mut c, &e)), DropReason::Rejected);
    assert!(c.texts(&g).is_empty());
    assert_eq!(a.e.members(&g).unwrap().len(), 2);
    // Removing oneself this way is refused.
    assert!(matches!(
        a.e.remove_users(&g, &[a.user()]),
        Err(EngineError::Membership(_))
    ));
}

#[test]
fn leave_flow() {
    let mut s = Server::new();
    let (mut a, mut b, mut c) = (Dev::new("alice"), Dev::new("bob"), Dev::new("carol"));
    let g = setup(
        &mut s,
        &mut a,
        ConversationKind::group("g"),
        &mut [&mut b, &mut c],
    );
    let proposal = b.e.leave(&g).unwrap();
    assert_eq!(
        b.e.conversation(&g).unwrap().unwrap().state,
        ConversationState::Left
    );
    assert!(matches!(
        b.e.encrypt(&g, Body::Text("x".into())),
        Err(EngineError::NotActive(_))
    ));
    let pe = s.entry(EntryKind::Proposal, Some(&g), Some(b.sender()), proposal);
    for d in [&mut a, &mut c] {
        assert_eq!(
            deliver(d, &pe),
            Processed::Proposal {
                group_id: g.clone(),
                commit_needed: true
            }
        );
        assert!(d.e.has_pending_proposals(&g).unwrap());
    }
    // Sending waits for the proposal to be committed.
    assert!(matches!(
        a.e.encrypt(&g, Body::Text("x".into())),
        Err(EngineError::PendingProposals(_))
    ));
    let oc = a.e.commit_pending_proposals(&g).unwrap().unwrap();
    assert_eq!(oc.removed, vec![b.device()]);
    let (commit, _) = s.accept(&mut a, &oc);
    match deliver(&mut b, &commit) {
        Processed::Commit(o) => assert!(o.self_removed),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        b.e.conversation(&g).unwrap().unwrap().state,
        ConversationState::Left
    );
    assert!(matches!(deliver(&mut c, &commit), Processed::Commit(_)));
    assert!(a.e.commit_pending_proposals(&g).unwrap().is_none());
    let e = s.send(&mut c, &g, "bye bob");
    expect_text(deliver(&mut a, &e), &c, "bye bob");
    assert_eq!(dropped_for(deliver(&mut b, &e)), DropReason::Rejected);
}

#[test]
fn commit_race_loser_clears_and_catches_up() {
    let mut s = Server::new();
    let (mut a, mut b, mut c) = (Dev::new("alice"), Dev::new("bob"), Dev::new("carol"));
    let (mut d, mut e) = (Dev::new("dave"), Dev::new("erin"));
    let g = setup(
        &mut s,
        &mut a,
        ConversationKind::group("g"),
        &mut [&mut b, &mut c],
    );
    let oa = a.e.add_members(&g, &[d.claim()]).unwrap();
    let ob = b.e.add_members(&g, &[e.claim()]).unwrap();
    assert_eq!(oa.epoch, ob.epoch);
    // openmls lets a member send while its commit is pending (in the current epoch).
    let during = s.send(&mut b, &g, "during");
    // The server accepts alice's; bob gets epoch_conflict.
    let (commit, welcome) = s.accept(&mut a, &oa);
    b.e.clear_pending_commit(&g).unwrap();
    assert!(matches!(deliver(&mut b, &commit), Processed::Commit(_)));
    assert!(matches!(deliver(&mut c, &commit), Processed::Commit(_)));
    // Delivered after the commit, the older epoch's message still decrypts (past epochs kept).
    expect_text(deliver(&mut a, &during), &b, "during");
    expect_text(deliver(&mut c, &during), &b, "during");
    joined(deliver(&mut d, &welcome.unwrap()));
    assert_eq!(b.e.epoch(&g).unwrap(), a.e.epoch(&g).unwrap());

    let m = s.send(&mut b, &g, "after the race");
    for x in [&mut a, &mut c, &mut d] {
        expect_text(deliver(x, &m), &b, "after the race");
    }
    // Bob retries his add against the new epoch.
    let ob = b.e.add_members(&g, &[e.claim()]).unwrap();
    assert_eq!(ob.epoch, oa.epoch + 1);
    let (commit, welcome) = s.accept(&mut b, &ob);
    for x in [&mut a, &mut c, &mut d] {
        assert!(matches!(deliver(x, &commit), Processed::Commit(_)));
    }
    joined(deliver(&mut e, &welcome.unwrap()));
    let m = s.send(&mut e, &g, "hello all");
    for x in [&mut a, &mut b, &mut c, &mut d] {
        expect_text(deliver(x, &m), &e, "hello all");
    }
}

#[test]
fn altered_envelope_commitment_is_dropped() {
    let mut s = Server::new();
    let (mut a, mut b, g) = direct_chat(&mut s);
    let mut e = s.send(&mut a, &g, "hi");
    if let Some(f) = e.frank.as_mut() {
        f.commitment[0] ^= 1;
    }
    assert_eq!(dropped_for(deliver(&mut b, &e)), DropReason::Franking);
    assert!(b.texts(&g).is_empty());
    assert_eq!(
        b.e.processed_outcome(e.id).unwrap().as_deref(),
        Some("franking")
    );
    // Recorded: redelivery is a duplicate, never shown.
    assert_eq!(deliver(&mut b, &e), Processed::Duplicate);
    // A missing envelope is dropped too.
    let mut e = s.send(&mut a, &g, "hi again");
    e.frank = None;
    assert_eq!(dropped_for(deliver(&mut b, &e)), DropReason::Franking);
    // The conversation keeps working.
    let e = s.send(&mut a, &g, "third");
    expect_text(deliver(&mut b, &e), &a, "third");
}

#[test]
fn commitment_that_does_not_open_is_dropped() {
    let mut s = Server::new();
    let (mut a, mut b, g) = direct_chat(&mut s);
    // A cheating sender puts a commitment to something else in the AAD; the server copies it.
    let bogus = haven_frank::commit(&FrankSalt::random(), b"something else");
    let m =
        a.e.encrypt_inner(&g, Body::Text("deniable".into()), None, Some(bogus))
            .unwrap();
    let e = s.entry(EntryKind::Application, Some(&g), Some(a.sender()), m.mls);
    assert_eq!(dropped_for(deliver(&mut b, &e)), DropReason::Franking);
    assert!(b.texts(&g).is_empty());
}

#[test]
fn sender_mismatch_and_malformed_are_dropped_not_errors() {
    let mut s = Server::new();
    let (mut a, mut b, mut c) = (Dev::new("alice"), Dev::new("bob"), Dev::new("carol"));
    let g = setup(
        &mut s,
        &mut a,
        ConversationKind::group("g"),
        &mut [&mut b, &mut c],
    );
    let m = a.e.encrypt(&g, Body::Text("x".into())).unwrap();
    // The server claims carol sent alice's message.
    let e = s.entry(EntryKind::Application, Some(&g), Some(c.sender()), m.mls);
    assert_eq!(dropped_for(deliver(&mut b, &e)), DropReason::SenderMismatch);
    for (kind, payload) in [
        (EntryKind::Application, vec![]),
        (EntryKind::Commit, vec![0, 1, 2, 3]),
        (EntryKind::Welcome, vec![0xff; 64]),
        (EntryKind::Proposal, b"not mls".to_vec()),
        (EntryKind::DeviceLinked, b"{".to_vec()),
    ] {
        let e = QueueEntry {
            id: 10_000 + s.next_id,
            kind,
            group_id: Some(g.clone()),
            sender: Some(a.sender()),
            payload,
            frank: None,
            received_at: 0,
        };
        s.next_id += 1;
        assert_eq!(dropped_for(deliver(&mut b, &e)), DropReason::Malformed);
        assert_eq!(deliver(&mut b, &e), Processed::Duplicate);
    }
    // A commit delivered as an application entry is malformed.
    let oc = a.e.remove_users(&g, &[c.user()]).unwrap();
    let e = s.entry(
        EntryKind::Proposal,
        Some(&g),
        Some(a.sender()),
        oc.commit.clone(),
    );
    assert_eq!(dropped_for(deliver(&mut b, &e)), DropReason::Malformed);
    a.e.clear_pending_commit(&g).unwrap();
}

#[test]
fn rollback_leaves_everything_unchanged_and_retry_succeeds() {
    let mut s = Server::new();
    let (mut a, mut b, mut c) = (Dev::new("alice"), Dev::new("bob"), Dev::new("carol"));
    let g = setup(
        &mut s,
        &mut a,
        ConversationKind::group("g"),
        &mut [&mut b, &mut c],
    );

    // Application message: openmls decrypts (advancing and storing the ratchet) and we write the
    // message and processed rows — then the commit fails.
    let e1 = s.send(&mut a, &g, "one");
    b.e.fail_before_commit = true;
    assert!(matches!(
        b.e.process_entry(&e1),
        Err(EngineError::Internal(_))
    ));
    assert!(b.texts(&g).is_empty());
    assert_eq!(b.e.processed_outcome(e1.id).unwrap(), None);
    // The same entry processes again: had the ratchet advance survived, openmls would refuse to
    // decrypt the same generation twice.
    expect_text(deliver(&mut b, &e1), &a, "one");
    assert_eq!(b.texts(&g).len(), 1);

    // Commit: the merge is rolled back with everything else.
    let oc = a.e.remove_users(&g, &[c.user()]).unwrap();
    let (commit, _) = s.accept(&mut a, &oc);
    let epoch = b.e.epoch(&g).unwrap();
    b.e.fail_before_commit = true;
    assert!(b.e.process_entry(&commit).is_err());
    assert_eq!(b.e.epoch(&g).unwrap(), epoch);
    assert_eq!(b.e.members(&g).unwrap().len(), 3);
    assert!(matches!(deliver(&mut b, &commit), Processed::Commit(_)));
    assert_eq!(b.e.epoch(&g).unwrap(), epoch + 1);
    assert_eq!(b.e.members(&g).unwrap().len(), 2);

    // A reopened engine sees the committed state.
    let e2 = s.send(&mut a, &g, "two");
    drop(b.e);
    b.e = Engine::open(&b.home).unwrap();
    expect_text(deliver(&mut b, &e2), &a, "two");
    assert_eq!(b.texts(&g).len(), 2);
}

/// A batch is one transaction: drops and rejections inside it do not disturb the entries after
/// them (a commit in the middle included), a failed commit of the batch records nothing, and a
/// redelivered batch is all duplicates.
#[test]
fn batch_is_one_transaction_and_survives_rejections() {
    let mut s = Server::new();
    let (mut a, mut b, mut c) = (Dev::new("alice"), Dev::new("bob"), Dev::new("carol"));
    let g = setup(
        &mut s,
        &mut a,
        ConversationKind::group("g"),
        &mut [&mut b, &mut c],
    );
    let e1 = s.send(&mut a, &g, "one");
    let mut altered = s.send(&mut a, &g, "altered");
    if let Some(f) = altered.frank.as_mut() {
        f.commitment[0] ^= 1;
    }
    // The same ciphertext again under a new queue id: openmls refuses the used generation, so
    // the MLS phase is rolled back and the cached group must be dropped.
    let mut replay = e1.clone();
    s.next_id += 1;
    replay.id = s.next_id;
    let e2 = s.send(&mut a, &g, "two");
    let oc = a.e.remove_users(&g, &[c.user()]).unwrap();
    let (commit, _) = s.accept(&mut a, &oc);
    let e3 = s.send(&mut a, &g, "three");
    let batch = vec![e1, altered, replay, e2, commit, e3];

    b.e.fail_before_commit = true;
    assert!(b.e.process_entries(&batch).is_err());
    assert!(b.texts(&g).is_empty());
    assert!(batch
        .iter()
        .all(|e| b.e.processed_outcome(e.id).unwrap().is_none()));

    let out = b.e.process_entries(&batch).unwrap();
    assert_eq!(out.len(), batch.len());
    let mut out = out.into_iter();
    expect_text(out.next().unwrap(), &a, "one");
    assert_eq!(dropped_for(out.next().unwrap()), DropReason::Franking);
    assert_eq!(dropped_for(out.next().unwrap()), DropReason::Rejected);
    expect_text(out.next().unwrap(), &a, "two");
    assert!(matches!(out.next().unwrap(), Processed::Commit(_)));
    expect_text(out.next().unwrap(), &a, "three");
    assert_eq!(
        b.texts(&g),
        vec![
            ("alice".into(), "one".into()),
            ("alice".into(), "two".into()),
            ("alice".into(), "three".into())
        ]
    );
    assert_eq!(b.e.members(&g).unwrap().len(), 2);
    assert_eq!(
        b.e.process_entries(&batch).unwrap(),
        vec![Processed::Duplicate; batch.len()]
    );
    // Storage, not only the batch's cache, holds the new state: a fresh engine decrypts on.
    let e4 = s.send(&mut a, &g, "four");
    drop(b.e);
    b.e = Engine::open(&b.home).unwrap();
    expect_text(deliver(&mut b, &e4), &a, "four");
}

/// Two engines on one profile (two `haven` processes): each one's cached groups are dropped as
/// soon as the other commits, so neither sends from a stale ratchet (which would reuse a
/// generation's key and nonce) nor decrypts with stale state.
#[test]
fn second_process_on_the_profile_invalidates_cached_groups() {
    let mut s = Server::new();
    let (mut a, mut b, g) = direct_chat(&mut s);
    let mut a2 = Engine::open(&a.home).unwrap();
    let e1 = s.send(&mut a, &g, "one"); // `a.e` now holds the group in memory
    let m2 = a2.encrypt(&g, Body::Text("two".into())).unwrap();
    let e2 = s.entry(EntryKind::Application, Some(&g), Some(a.sender()), m2.mls);
    let e3 = s.send(&mut a, &g, "three");
    expect_text(deliver(&mut b, &e1), &a, "one");
    expect_text(deliver(&mut b, &e2), &a, "two");
    expect_text(deliver(&mut b, &e3), &a, "three");

    // The same on the receiving side: bob's second process handles an epoch change.
    let mut b2 = Engine::open(&b.home).unwrap();
    let e4 = s.send(&mut a, &g, "four");
    expect_text(deliver(&mut b, &e4), &a, "four");
    let mut c = Dev::new("carol");
    let oc = a.e.add_members(&g, &[c.claim()]).unwrap();
    let (commit, _) = s.accept(&mut a, &oc);
    assert!(matches!(
        b2.process_entry(&commit).unwrap(),
        Processed::Commit(_)
    ));
    let e5 = s.send(&mut a, &g, "five");
    expect_text(deliver(&mut b, &e5), &a, "five");
    assert_eq!(b.e.members(&g).unwrap().len(), 3);
}

#[test]
fn multi_device_user() {
    let mut s = Server::new();
    let mut a = Dev::new("alice");
    let (mut b1, mut b2) = (Dev::new("bob"), Dev::new("bob"));
    let g =
        a.e.create_conversation(ConversationKind::direct(b1.user()))
            .unwrap();
    // Claiming "bob" returns one key package per device; adding the user adds both.
    let claim = ClaimedKeyPackages {
        user: b1.user(),
        key_packages: vec![b1.claimed_one(), b2.claimed_one()],
    };
    let oc = a.e.add_members(&g, &[claim]).unwrap();
    assert_eq!(oc.added, vec![b1.device(), b2.device()]);
    let (_, w) = s.accept(&mut a, &oc);
    let w = w.unwrap();
    for d in [&mut b1, &mut b2] {
        let mut w = w.clone();
        s.next_id += 1;
        w.id = s.next_id;
        let c = joined(deliver(d, &w));
        assert_eq!(
            c.kind,
            ConversationKind::Direct {
                peer: a.user(),
                accepted: false
            }
        );
    }
    assert_eq!(a.e.members(&g).unwrap().len(), 3);
    let e = s.send(&mut a, &g, "to both");
    expect_text(deliver(&mut b1, &e), &a, "to both");
    expect_text(deliver(&mut b2, &e), &a, "to both");
    // A message from one of bob's devices reaches alice and bob's other device.
    let e = s.send(&mut b1, &g, "from laptop");
    expect_text(deliver(&mut a, &e), &b1, "from laptop");
    expect_text(deliver(&mut b2, &e), &b1, "from laptop");

    // Device-link notices are returned, except one naming this very device.
    let linked = DeviceLinked {
        device_id: b2.device(),
        link_code_sha256: Some(vec![7; 32]),
        auth_key: None,
        mls_key: None,
        link_proof: None,
    };
    let e = s.entry(
        EntryKind::DeviceLinked,
        None,
        None,
        serde_json::to_vec(&linked).unwrap(),
    );
    assert_eq!(deliver(&mut b1, &e), Processed::DeviceLinked(linked));
    assert_eq!(dropped_for(deliver(&mut b2, &e)), DropReason::NotForUs);
    // A link notice is recognised as ours only for a code this device minted, once.
    let code_hash = sha2::Sha256::digest(b"ABCD-EFGH-JKMN");
    assert_eq!(b1.e.take_minted_link_code(&code_hash).unwrap(), None);
    b1.e.record_minted_link_code("ABCD-EFGH-JKMN", "PQRST", 1_000, 500)
        .unwrap();
    assert_eq!(b1.e.take_minted_link_code(&[8; 32]).unwrap(), None);
    let taken = b1.e.take_minted_link_code(&code_hash).unwrap().unwrap();
    assert_eq!(
        (
            taken.server_code.as_str(),
            taken.secret.as_str(),
            taken.expires_at
        ),
        ("ABCD-EFGH-JKMN", "PQRST", 1_000)
    );
    assert_eq!(b1.e.take_minted_link_code(&code_hash).unwrap(), None);
    // Device-removal notices are returned to every device (each removes it from its groups).
    let removed = haven_proto::api::DeviceRemoved {
        device_id: b2.device(),
    };
    let e = s.entry(
        EntryKind::DeviceRemoved,
        None,
        None,
        serde_json::to_vec(&removed).unwrap(),
    );
    assert_eq!(deliver(&mut b1, &e), Processed::DeviceRemoved(removed));

    // Removing the user removes both devices.
    let oc = a.e.remove_users(&g, &[b1.user()]).unwrap();
    assert_eq!(oc.removed.len(), 2);
}

#[test]
fn key_packages_are_checked_against_their_claim() {
    let mut s = Server::new();
    let (mut a, mut b, mut c) = (Dev::new("alice"), Dev::new("bob"), Dev::new("carol"));
    let g =
        a.e.create_conversation(ConversationKind::group("g"))
            .unwrap();
    // The server hands out carol's key package as bob's.
    let mut claim = b.claim();
    claim.key_packages[0].key_package = c.claimed_one().key_package;
    match a.e.add_members(&g, &[claim]) {
        Err(EngineError::KeyPackage { problem, .. }) => {
            assert_eq!(problem, KeyPackageProblem::WrongIdentity)
        }
        other => panic!("{other:?}"),
    }
    let mut claim = b.claim();
    claim.key_packages[0].key_package = vec![1, 2, 3];
    match a.e.add_members(&g, &[claim]) {
        Err(e @ EngineError::KeyPackage { .. }) => assert_eq!(e.cause(), crate::ErrorCause::Peer),
        other => panic!("{other:?}"),
    }
    // A flipped bit breaks the signature.
    let mut claim = b.claim();
    if let Some(x) = claim.key_packages[0].key_package.last_mut() {
        *x ^= 1;
    }
    assert!(matches!(
        a.e.add_members(&g, &[claim]),
        Err(EngineError::KeyPackage { .. })
    ));
    // Nothing was staged by the failures: a good add works.
    let oc = a.e.add_members(&g, &[b.claim()]).unwrap();
    let (_, w) = s.accept(&mut a, &oc);
    joined(deliver(&mut b, &w.unwrap()));
}

#[test]
fn last_resort_key_package_is_reusable() {
    let mut s = Server::new();
    let (mut a, mut b) = (Dev::new("alice"), Dev::new("bob"));
    let lr = b.e.last_resort_key_package().unwrap();
    for i in 0..2 {
        // Group names are unique among live conversations.
        let g =
            a.e.create_conversation(ConversationKind::group(format!("g{i}")))
                .unwrap();
        let claim = ClaimedKeyPackages {
            user: b.user(),
            key_packages: vec![ClaimedKeyPackage {
                device_id: b.device(),
                key_package: lr.clone(),
            }],
        };
        let oc = a.e.add_members(&g, &[claim]).unwrap();
        let (_, w) = s.accept(&mut a, &oc);
        joined(deliver(&mut b, &w.unwrap()));
    }
    // A one-time key package is consumed by its Welcome.
    let kp = b.claim();
    let mut welcomes = Vec::new();
    for i in 0..2 {
        let g =
            a.e.create_conversation(ConversationKind::group(format!("h{i}")))
                .unwrap();
        let oc = a.e.add_members(&g, std::slice::from_ref(&kp)).unwrap();
        welcomes.push(s.accept(&mut a, &oc).1.unwrap());
    }
    joined(deliver(&mut b, &welcomes[0]));
    assert_eq!(
        dropped_for(deliver(&mut b, &welcomes[1])),
        DropReason::Rejected
    );
}

#[test]
fn profile_persists_and_secrets_are_redacted() {
    let d = Dev::new("alice");
    let id = d.e.identity().clone();
    assert!(!format!("{id:?}").contains(&hex::encode(id.auth_secret.as_bytes())));
    assert!(matches!(
        Engine::create(&d.home, id.clone()),
        Err(EngineError::ProfileExists)
    ));
    let Dev { _dir, home, mut e } = d;
    assert_eq!(e.session_token().unwrap().map(|t| t.token.clone()), None);
    e.set_session_token(&SessionToken {
        token: "s3cr3t-token-value".into(),
        expires_at: 42,
    })
    .unwrap();
    drop(e);
    let mut e = Engine::open(&home).unwrap();
    assert_eq!(e.identity().user, id.user);
    assert_eq!(
        e.identity().auth_secret.as_bytes(),
        id.auth_secret.as_bytes()
    );
    let t = e.session_token().unwrap().unwrap();
    assert_eq!((t.token.as_str(), t.expires_at), ("s3cr3t-token-value", 42));
    assert!(!format!("{t:?}").contains("s3cr3t"));
    e.clear_session_token().unwrap();
    assert!(e.session_token().unwrap().is_none());
    assert!(matches!(
        Engine::open(&home.join("nowhere")),
        Err(EngineError::NoProfile)
    ));
    assert_eq!(e.key_packages(3).unwrap().len(), 3);
    assert!(matches!(e.key_packages(101), Err(EngineError::Limit(_))));
}

/// Finding 1 of the 2026-12 review, client side: a Welcome is accepted only if the member who
/// signed it (the adder's leaf) is the device the server authenticated as its sender — nobody can
/// add us under another user's name, even through a server that lets the forgery through.
#[test]
fn welcome_from_someone_else_than_its_adder_is_refused() {
    let mut s = Server::new();
    let (mut mallory, mut dave, bob) = (Dev::new("mallory"), Dev::new("dave"), Dev::new("bob"));
    let g = mallory
        .e
        .create_conversation(ConversationKind::group("g"))
        .unwrap();
    let oc = mallory.e.add_members(&g, &[dave.claim()]).unwrap();
    let (_, w) = s.accept(&mut mallory, &oc);
    let mut w = w.unwrap();
    // The entry claims to come from bob; the Welcome was signed by mallory's leaf.
    w.sender = Some(bob.sender());
    assert_eq!(
        dropped_for(deliver(&mut dave, &w)),
        DropReason::SenderMismatch
    );
    w.sender = None;
    w.id += 1;
    assert_eq!(
        dropped_for(deliver(&mut dave, &w)),
        DropReason::SenderMismatch
    );
    assert!(dave.e.conversation(&g).unwrap().is_none(), "nothing joined");
    // With its true sender it is accepted (a refused Welcome consumes nothing).
    w.sender = Some(mallory.sender());
    w.id += 1;
    assert_eq!(joined(deliver(&mut dave, &w)).group_id, g);
}

/// A device's MLS key is pinned when first seen (or when the directory gave it); a leaf that
/// later names the same device with another key is refused, in a Welcome and in key packages.
#[test]
fn a_known_device_with_another_key_is_refused() {
    let mut s = Server::new();
    let (mut alice, mut bob) = (Dev::new("alice"), Dev::new("bob"));
    // Bob's profile was told another key for alice's device (the directory, or an earlier leaf).
    bob.e
        .pin_device_keys(&alice.user(), &[(alice.device(), vec![1; 32])])
        .unwrap();
    let g = alice
        .e
        .create_conversation(ConversationKind::group("g"))
        .unwrap();
    let oc = alice.e.add_members(&g, &[bob.claim()]).unwrap();
    let (_, w) = s.accept(&mut alice, &oc);
    assert_eq!(
        dropped_for(deliver(&mut bob, &w.unwrap())),
        DropReason::InvalidMember
    );
    // And bob, adding alice, refuses her key package for the same reason.
    let h = bob
        .e
        .create_conversation(ConversationKind::group("h"))
        .unwrap();
    let e = bob.e.add_members(&h, &[alice.claim()]).unwrap_err();
    assert!(
        matches!(
            e,
            EngineError::KeyPackage {
                problem: KeyPackageProblem::WrongKey,
                ..
            }
        ),
        "{e:?}"
    );
    // The key alice really has is accepted once it is the one known.
    let mut carol = Dev::new("carol");
    carol
        .e
        .pin_device_keys(
            &alice.user(),
            &[(alice.device(), alice.e.mls_public_key().to_vec())],
        )
        .unwrap();
    let k = carol
        .e
        .create_conversation(ConversationKind::group("k"))
        .unwrap();
    carol.e.add_members(&k, &[alice.claim()]).unwrap();
}

// ------------------------------------------------------------ names, direct chats, consent

fn renamed(p: Processed) -> (Option<String>, Option<String>) {
    match p {
        Processed::Renamed {
            previous, stored, ..
        } => (previous, stored),
        other => panic!("expected a rename, got {other:?}"),
    }
}

/// Finding 2: a member renames an older shared group to the name of the victim's real group.
/// The rename is stored disambiguated, and the name keeps meaning the real group.
#[test]
fn a_received_rename_never_makes_a_name_ambiguous() {
    let mut s = Server::new();
    let (mut mallory, mut dave, mut carol) =
        (Dev::new("mallory"), Dev::new("dave"), Dev::new("carol"));
    let book = setup(
        &mut s,
        &mut mallory,
        ConversationKind::group("book"),
        &mut [&mut dave],
    );
    let n = s.body(&mut mallory, &book, Body::GroupName("book".into()));
    assert_eq!(renamed(deliver(&mut dave, &n)).1.as_deref(), Some("book"));
    let family = setup(
        &mut s,
        &mut dave,
        ConversationKind::group("family"),
        &mut [&mut carol],
    );
    // The attack: mallory's client announces "family" for the book group.
    let n = s.body(&mut mallory, &book, Body::GroupName("family".into()));
    match deliver(&mut dave, &n) {
        Processed::Renamed {
            group_id,
            by,
            requested,
            previous,
            stored,
        } => {
            assert_eq!(group_id, book);
            assert_eq!(by, mallory.user());
            assert_eq!(requested, "family");
            assert_eq!(previous.as_deref(), Some("book"));
            assert_eq!(stored.as_deref(), Some("family-2"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(dave.e.find_group("family").unwrap(), Some(family.clone()));
    assert_eq!(dave.e.find_group("family-2").unwrap(), Some(book.clone()));
    // Announcing it again changes nothing; the group keeps what it announced.
    let n = s.body(&mut mallory, &book, Body::GroupName("family".into()));
    assert_eq!(
        renamed(deliver(&mut dave, &n)),
        (Some("family-2".into()), Some("family-2".into()))
    );
    assert_eq!(
        dave.e.conversation(&book).unwrap().unwrap().kind,
        ConversationKind::Group {
            name: "family-2".into(),
            announced: "family".into()
        }
    );
    // The user's own create of a taken name is refused, and nothing is created.
    let before = dave.e.conversations().unwrap().len();
    assert!(matches!(
        dave.e
            .create_conversation(ConversationKind::group("family")),
        Err(EngineError::NameTaken(_))
    ));
    assert!(matches!(
        dave.e
            .create_conversation(ConversationKind::group("family-2")),
        Err(EngineError::NameTaken(_))
    ));
    assert_eq!(dave.e.conversations().unwrap().len(), before);
    // Received names are display text: what a name may not hold is replaced.
    let n = s.body(
        &mut mallory,
        &book,
        Body::GroupName("a b\u{1b}[31m#".into()),
    );
    assert_eq!(
        renamed(deliver(&mut dave, &n)).1.as_deref(),
        Some("a_b_[31m_")
    );
}

/// Finding 1, the client half: a two-user group is a direct chat only when the other user's
/// own device sent the Welcome; a Welcome whose server-authenticated sender is someone else is
/// a group, whatever the leaves claim.
#[test]
fn a_direct_chat_is_never_inferred_from_someone_elses_welcome() {
    let mut s = Server::new();
    let (mallory, mut dave, bob) = (Dev::new("mallory"), Dev::new("dave"), Dev::new("bob"));
    // Mallory's own leaf claims to be bob's real device.
    let mut fake_bob = Dev::with_device("bob", bob.device());
    let g = fake_bob
        .e
        .create_conversation(ConversationKind::direct(dave.user()))
        .unwrap();
    let oc = fake_bob.e.add_members(&g, &[dave.claim()]).unwrap();
    fake_bob.e.merge_pending_commit(&g).unwrap();
    // The server authenticates the Welcome as sent by mallory's device: refused outright (the
    // adder's leaf is not its sender), so it never becomes a conversation. `book::joined`'s own
    // tests show that, past that check, such a Welcome would be filed as a group.
    let w = s.entry(
        EntryKind::Welcome,
        Some(&g),
        Some(mallory.sender()),
        oc.welcome.clone().unwrap(),
    );
    assert_eq!(
        dropped_for(deliver(&mut dave, &w)),
        DropReason::SenderMismatch
    );
    assert!(dave.e.conversation(&g).unwrap().is_none());
    assert_eq!(dave.e.find_direct(&bob.user()).unwrap(), None);
    assert_eq!(dave.e.pending_direct(&bob.user()).unwrap(), None);
    drop(mallory);

    // The real bob opens a direct chat: filed as not accepted; an older accepted one wins.
    let mut bob = bob;
    let older = dave
        .e
        .create_conversation(ConversationKind::direct(bob.user()))
        .unwrap();
    let g2 = setup(
        &mut s,
        &mut bob,
        ConversationKind::direct(dave.user()),
        &mut [&mut dave],
    );
    assert!(dave.e.conversation(&g2).unwrap().unwrap().is_request());
    assert_eq!(
        dave.e.find_direct(&bob.user()).unwrap(),
        Some(older.clone())
    );
    assert_eq!(
        dave.e.pending_direct(&bob.user()).unwrap(),
        Some(g2.clone())
    );
    // A rename never turns an accepted direct chat into a group…
    let n = s.body(&mut bob, &g2, Body::GroupName("x".into()));
    dave.e.accept(&g2).unwrap();
    assert_eq!(renamed(deliver(&mut dave, &n)), (None, None));
    assert_eq!(
        dave.e.conversation(&g2).unwrap().unwrap().peer(),
        Some(&bob.user())
    );
    // …and the oldest accepted one is still the one `send bob` uses.
    assert_eq!(dave.e.find_direct(&bob.user()).unwrap(), Some(older));

    // A rename of a chat not accepted yet names the two-user group its creator made.
    let mut erin = Dev::new("erin");
    let g3 = setup(
        &mut s,
        &mut erin,
        ConversationKind::group("pair"),
        &mut [&mut dave],
    );
    assert!(dave.e.conversation(&g3).unwrap().unwrap().is_request());
    let n = s.body(&mut erin, &g3, Body::GroupName("pair".into()));
    assert_eq!(renamed(deliver(&mut dave, &n)), (None, Some("pair".into())));
    assert_eq!(dave.e.find_group("pair").unwrap(), Some(g3));
    assert_eq!(dave.e.pending_direct(&erin.user()).unwrap(), None);
}

/// A Welcome from another device of our own user (adding this device to the account's
/// conversations) files the direct chat as accepted: the account already had it.
#[test]
fn our_own_devices_welcome_keeps_a_direct_chat_accepted() {
    let mut s = Server::new();
    let (mut a1, mut a2, mut bob) = (Dev::new("alice"), Dev::new("alice"), Dev::new("bob"));
    let g = setup(
        &mut s,
        &mut a1,
        ConversationKind::direct(bob.user()),
        &mut [&mut bob],
    );
    let oc = a1.e.add_members(&g, &[a2.claim()]).unwrap();
    let (_, w) = s.accept(&mut a1, &oc);
    let c = joined(deliver(&mut a2, &w.unwrap()));
    assert_eq!(c.kind, ConversationKind::direct(bob.user()));
    assert_eq!(a2.e.find_direct(&bob.user()).unwrap(), Some(g));

    // A two-user *group* of ours: our other device announces its name, which names it here.
    let pair =
        a1.e.create_conversation(ConversationKind::group("pair"))
            .unwrap();
    let oc = a1.e.add_members(&pair, &[bob.claim(), a2.claim()]).unwrap();
    let (_, w) = s.accept(&mut a1, &oc);
    let w = w.unwrap();
    assert!(joined(deliver(&mut a2, &w)).peer().is_some());
    let n = s.body(&mut a1, &pair, Body::GroupName("pair".into()));
    assert_eq!(renamed(deliver(&mut a2, &n)), (None, Some("pair".into())));
    assert_eq!(a2.e.find_group("pair").unwrap(), Some(pair));
}

/// "Silent re-add after leaving": a Welcome back into a group we left, or were removed from,
/// is an invitation: applied to MLS state, nothing sent until accepted, leaving declines.
#[test]
fn a_re_add_after_leaving_or_removal_is_an_invitation() {
    let mut s = Server::new();
    let (mut a, mut b) = (Dev::new("alice"), Dev::new("bob"));
    let g = setup(
        &mut s,
        &mut a,
        ConversationKind::group("team"),
        &mut [&mut b],
    );
    let n = s.body(&mut a, &g, Body::GroupName("team".into()));
    deliver(&mut b, &n);
    // Bob leaves; alice commits it.
    let proposal = b.e.leave(&g).unwrap();
    let pe = s.entry(EntryKind::Proposal, Some(&g), Some(b.sender()), proposal);
    deliver(&mut a, &pe);
    let oc = a.e.commit_pending_proposals(&g).unwrap().unwrap();
    let (commit, _) = s.accept(&mut a, &oc);
    deliver(&mut b, &commit);
    // Meanwhile bob has a new live group with the old name.
    let other =
        b.e.create_conversation(ConversationKind::group("team"))
            .unwrap();
    // Alice re-adds bob.
    let oc = a.e.add_members(&g, &[b.claim()]).unwrap();
    let (_, w) = s.accept(&mut a, &oc);
    let c = match deliver(&mut b, &w.unwrap()) {
        Processed::Invited(c) => c,
        other => panic!("expected an invitation, got {other:?}"),
    };
    assert_eq!(c.state, ConversationState::Invited);
    assert_eq!(c.added_by, Some(a.user()));
    // Live again, it may not take the name of bob's other live group.
    assert_eq!(c.group_name(), Some("team-2"));
    assert_eq!(b.e.find_group("team").unwrap(), Some(other));
    // Nothing is sent there, not even a commit, until bob accepts.
    assert!(matches!(
        b.e.encrypt(&g, Body::Text("x".into())),
        Err(EngineError::NotAccepted(_))
    ));
    assert!(matches!(
        b.e.add_members(&g, &[Dev::new("carol").claim()]),
        Err(EngineError::NotAccepted(_))
    ));
    // What arrives meanwhile is stored (the client shows it marked as from an invitation).
    let m = s.send(&mut a, &g, "come back?");
    expect_text(deliver(&mut b, &m), &a, "come back?");
    assert!(b.e.accept(&g).unwrap());
    assert_eq!(
        b.e.conversation(&g).unwrap().unwrap().state,
        ConversationState::Active
    );
    let m = s.send(&mut b, &g, "back");
    expect_text(deliver(&mut a, &m), &b, "back");

    // Removed, then re-added: an invitation again; leaving it declines it.
    let oc = a.e.remove_users(&g, &[b.user()]).unwrap();
    let (commit, _) = s.accept(&mut a, &oc);
    deliver(&mut b, &commit);
    assert_eq!(
        b.e.conversation(&g).unwrap().unwrap().state,
        ConversationState::Removed
    );
    assert!(matches!(b.e.accept(&g), Err(EngineError::NotActive(_))));
    let oc = a.e.add_members(&g, &[b.claim()]).unwrap();
    let (_, w) = s.accept(&mut a, &oc);
    assert!(matches!(
        deliver(&mut b, &w.unwrap()),
        Processed::Invited(_)
    ));
    let proposal = b.e.leave(&g).unwrap();
    assert_eq!(
        b.e.conversation(&g).unwrap().unwrap().state,
        ConversationState::Left
    );
    let pe = s.entry(EntryKind::Proposal, Some(&g), Some(b.sender()), proposal);
    assert!(matches!(deliver(&mut a, &pe), Processed::Proposal { .. }));
    // A brand-new group is joined at once: consent is about coming back.
    let mut carol = Dev::new("carol");
    let fresh = setup(
        &mut s,
        &mut carol,
        ConversationKind::group("new"),
        &mut [&mut b, &mut Dev::new("erin")],
    );
    assert_eq!(
        b.e.conversation(&fresh).unwrap().unwrap().state,
        ConversationState::Active
    );
}

/// Finding 10, the store half: a message id is looked up everywhere it occurs, never "the
/// oldest", and can be narrowed by conversation and sender.
#[test]
fn message_ids_are_scoped_by_conversation_and_sender() {
    let mut s = Server::new();
    let (mut bob, mut dave, mut mallory) = (Dev::new("bob"), Dev::new("dave"), Dev::new("mallory"));
    let family = setup(
        &mut s,
        &mut mallory,
        ConversationKind::group("family"),
        &mut [&mut dave],
    );
    let photos = setup(
        &mut s,
        &mut bob,
        ConversationKind::group("photos"),
        &mut [&mut dave, &mut mallory],
    );
    let e = s.send(&mut bob, &photos, "bob's");
    deliver(&mut mallory, &e);
    let id = match deliver(&mut dave, &e) {
        Processed::Message(m) => m.id,
        other => panic!("{other:?}"),
    };
    // Mallory reuses the id in the older conversation she shares with dave.
    let m = mallory
        .e
        .encrypt_with_id(&family, id.clone(), Body::Text("mallory's".into()))
        .unwrap();
    let e = s.entry(
        EntryKind::Application,
        Some(&family),
        Some(mallory.sender()),
        m.mls,
    );
    expect_text(deliver(&mut dave, &e), &mallory, "mallory's");
    let all = dave.e.messages_with_id(&id, None, None).unwrap();
    assert_eq!(all.len(), 2);
    let only = |g: Option<&GroupId>, u: Option<&UserName>| {
        let v = dave.e.messages_with_id(&id, g, u).unwrap();
        assert_eq!(v.len(), 1, "{v:?}");
        v.into_iter().next().unwrap()
    };
    assert_eq!(only(Some(&photos), None).from, bob.user());
    assert_eq!(only(None, Some(&bob.user())).group, photos);
    assert_eq!(only(None, Some(&mallory.user())).group, family);
    assert!(dave
        .e
        .messages_with_id(&id, Some(&family), Some(&bob.user()))
        .unwrap()
        .is_empty());
}

#[test]
fn report_material_is_the_nearest_tagged_messages_before_it_oldest_first() {
    let mut s = Server::new();
    let (mut a, mut b, g) = direct_chat(&mut s);
    let texts = |rows: &[FrankedRow]| -> Vec<String> {
        rows.iter()
            .map(|r| match Content::decode(&r.frank.content).unwrap().body {
                Body::Text(t) => t,
                other => panic!("unexpected body {other:?}"),
            })
            .collect()
    };
    for t in ["a1", "a2"] {
        let e = s.send(&mut a, &g, t);
        deliver(&mut b, &e);
    }
    // Bob's own: one stored without a tag (as before send replies carried it), one with.
    let e = s.send(&mut b, &g, "b-untagged");
    deliver(&mut a, &e);
    let m = b.e.encrypt(&g, Body::Text("b-tagged".into())).unwrap();
    let e = s.entry(
        EntryKind::Application,
        Some(&g),
        Some(b.sender()),
        m.mls.clone(),
    );
    let tag = e.frank.as_ref().unwrap().server_tag.clone();
    b.e.record_sent_tagged(&m, e.received_at, Some(&tag))
        .unwrap();
    deliver(&mut a, &e);
    let e = s.send(&mut a, &g, "reported");
    let id = match deliver(&mut b, &e) {
        Processed::Message(m) => m.id,
        other => panic!("expected a message, got {other:?}"),
    };
    let e = s.send(&mut a, &g, "after");
    deliver(&mut b, &e);

    let (row, before) =
        b.e.report_material(&g, &a.user(), &id, 10)
            .unwrap()
            .unwrap();
    assert_eq!(texts(std::slice::from_ref(&row)), ["reported"]);
    assert!(!row.outgoing);
    assert_eq!(row.from, a.user());
    assert!(row.frank.server_tag.is_some());
    assert_eq!(texts(&before), ["a1", "a2", "b-tagged"]);
    let own = before.last().unwrap();
    assert!(own.outgoing);
    assert_eq!(own.frank.server_tag.as_deref(), Some(tag.as_slice()));
    let (_, before) = b.e.report_material(&g, &a.user(), &id, 2).unwrap().unwrap();
    assert_eq!(texts(&before), ["a2", "b-tagged"]);
    let (_, before) = b.e.report_material(&g, &a.user(), &id, 0).unwrap().unwrap();
    assert!(before.is_empty());
    // The id under another sender is no message.
    assert!(b
        .e
        .report_material(&g, &b.user(), &id, 3)
        .unwrap()
        .is_none());
}

mod device_lists;
