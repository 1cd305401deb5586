//! End-to-end: a real server on a loopback port, real clients (the client library over HTTP and
//! WebSocket, MLS through openmls), real storage.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;
use support::ADULT_BIRTH_DATE;

use std::path::{Path, PathBuf};
use std::time::Duration;

use haven_client::{
    AttachmentRef, AuthSecret, Body, Client, ClientError, ConversationKind, ConversationState,
    Engine, Event, Identity, MessageScope, Processed, Target,
};
use haven_proto::api::{CommitRequest, EntryKind, ErrorCode};
use haven_proto::{GroupId, UserName};
use haven_server::{RunningServer, ServerConfig};

fn u(s: &str) -> UserName {
    UserName::new(s).unwrap()
}

fn marker(tag: &str) -> String {
    format!("{tag}-{:016x}", rand::random::<u64>())
}

struct World {
    dir: tempfile::TempDir,
    server: Option<RunningServer>,
    url: String,
}

impl World {
    async fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServerConfig::embedded(dir.path().join("server"));
        config.listen = "127.0.0.1:0".parse().unwrap();
        let server = haven_server::start(config).await.unwrap();
        let url = server.url(false);
        World {
            dir,
            server: Some(server),
            url,
        }
    }

    fn home(&self, name: &str) -> PathBuf {
        self.dir.path().join("clients").join(name)
    }

    async fn register(&self, name: &str) -> Client {
        Client::register(
            &self.home(name),
            &self.url,
            &u(name),
            "test",
            ADULT_BIRTH_DATE,
        )
        .await
        .unwrap()
    }

    fn server_dir(&self) -> PathBuf {
        self.dir.path().join("server")
    }
}

fn texts(events: &[Event]) -> Vec<(String, String, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message {
                message,
                conversation,
            } => match &message.body {
                Body::Text(t) => Some((conversation.clone(), message.from.to_string(), t.clone())),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// The user names of a group's member devices as `c` sees them, sorted.
fn member_names(c: &Client, g: &GroupId) -> Vec<String> {
    let mut names: Vec<String> = c
        .engine()
        .members(g)
        .unwrap()
        .into_iter()
        .map(|(u, _)| u.to_string())
        .collect();
    names.sort();
    names
}

fn history_texts(c: &Client, conv: &str) -> Vec<String> {
    c.history(conv, 1000)
        .unwrap()
        .into_iter()
        .filter_map(|m| match m.body {
            Body::Text(t) => Some(t),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_users_group_remove_and_leave() {
    let w = World::new().await;
    let mut alice = w.register("alice").await;
    let mut bob = w.register("bob").await;
    let mut carol = w.register("carol").await;

    // 1:1 both ways.
    alice
        .send_text(&Target::User(u("bob")), "hi bob")
        .await
        .unwrap();
    assert_eq!(
        texts(&bob.sync().await.unwrap()),
        vec![("alice".into(), "alice".into(), "hi bob".into())]
    );
    bob.send_text(&Target::User(u("alice")), "hi alice")
        .await
        .unwrap();
    assert_eq!(
        texts(&alice.sync().await.unwrap()),
        vec![("bob".into(), "bob".into(), "hi alice".into())]
    );
    // The reply reused the same conversation.
    assert_eq!(alice.conversations().unwrap().len(), 1);

    // A group of three, messages from everyone.
    let team = Target::Group("team".into());
    alice
        .create_group("team", &[u("bob"), u("carol")])
        .await
        .unwrap();
    bob.sync().await.unwrap();
    carol.sync().await.unwrap();
    bob.send_text(&team, "bob to team").await.unwrap();
    carol.send_text(&team, "carol to team").await.unwrap();
    alice.send_text(&team, "alice to team").await.unwrap();
    let got_a = texts(&alice.sync().await.unwrap());
    assert_eq!(
        got_a,
        vec![
            ("#team".into(), "bob".into(), "bob to team".into()),
            ("#team".into(), "carol".into(), "carol to team".into())
        ]
    );
    let got_c = texts(&carol.sync().await.unwrap());
    assert_eq!(
        got_c,
        vec![
            ("#team".into(), "bob".into(), "bob to team".into()),
            ("#team".into(), "alice".into(), "alice to team".into())
        ]
    );
    bob.sync().await.unwrap();
    assert_eq!(
        history_texts(&bob, "#team"),
        vec!["bob to team", "carol to team", "alice to team"]
    );

    // Alice removes Carol: Carol learns it and cannot read what follows.
    alice.remove_member("team", &u("carol")).await.unwrap();
    alice.send_text(&team, "after carol left").await.unwrap();
    let ev_c = carol.sync().await.unwrap();
    assert!(
        ev_c.iter().any(|e| matches!(
            e,
            Event::Membership {
                self_removed: true,
                ..
            }
        )),
        "{ev_c:?}"
    );
    assert!(texts(&ev_c).is_empty());
    assert!(!history_texts(&carol, "#team").contains(&"after carol left".to_string()));
    assert!(carol.send_text(&team, "can I still write?").await.is_err());
    assert_eq!(
        texts(&bob.sync().await.unwrap()),
        vec![("#team".into(), "alice".into(), "after carol left".into())]
    );

    // Bob leaves: Alice's client commits his leave on its next sync; Bob gets nothing after.
    bob.leave_group("team").await.unwrap();
    alice.sync().await.unwrap();
    let members: Vec<String> = alice
        .engine()
        .members(&alice.resolve("#team").unwrap())
        .unwrap()
        .into_iter()
        .map(|(u, _)| u.to_string())
        .collect();
    assert_eq!(members, vec!["alice"]);
    alice.send_text(&team, "alone now").await.unwrap();
    let ev_b = bob.sync().await.unwrap();
    assert!(texts(&ev_b).is_empty(), "{ev_b:?}");
    assert!(!history_texts(&bob, "#team").contains(&"alone now".to_string()));
    assert!(bob.send_text(&team, "still here?").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_plaintext_reaches_the_server() {
    let w = World::new().await;
    let mut alice = w.register("alice").await;
    let mut bob = w.register("bob").await;
    let mut carol = w.register("carol").await;
    let m1 = marker("direct");
    let m2 = marker("group");
    let m3 = marker("file");
    let fname = marker("filename");
    let gname = marker("grp");
    alice.send_text(&Target::User(u("bob")), &m1).await.unwrap();
    alice
        .create_group(&gname, &[u("bob"), u("carol")])
        .await
        .unwrap();
    bob.sync().await.unwrap();
    bob.send_text(&Target::Group(gname.clone()), &m2)
        .await
        .unwrap();
    let file = w.dir.path().join(&fname);
    std::fs::write(&file, format!("{m3}\n").repeat(1000)).unwrap();
    let sent = carol
        .sync()
        .await
        .and(carol.send_file(&Target::Group(gname.clone()), &file).await)
        .unwrap();
    alice.sync().await.unwrap();
    let out = w.dir.path().join("downloaded");
    alice
        .get_file(sent.id.as_str(), &MessageScope::default(), &out)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&file).unwrap());
    // The markers are in the clients' stores (the test can find them), and nowhere on the server.
    assert!(contains(&w.home("alice"), m3.as_bytes()) || contains(&out, m3.as_bytes()));
    // The group's name travels only inside MLS, so the server never learns it either.
    for m in [&m1, &m2, &m3, &fname, &gname] {
        assert!(
            !contains(&w.server_dir(), m.as_bytes()),
            "{m} found in the server's data directory"
        );
    }
}

fn contains(path: &Path, needle: &[u8]) -> bool {
    if path.is_dir() {
        std::fs::read_dir(path)
            .unwrap()
            .any(|e| contains(&e.unwrap().path(), needle))
    } else {
        std::fs::read(path)
            .map(|b| b.windows(needle.len()).any(|w| w == needle))
            .unwrap_or(false)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_race_one_wins_and_the_loser_recovers() {
    let w = World::new().await;
    let mut alice = w.register("alice").await;
    let mut bob = w.register("bob").await;
    let _carol = w.register("carol").await;
    let _dave = w.register("dave").await;
    alice.create_group("race", &[u("bob")]).await.unwrap();
    bob.sync().await.unwrap();
    let g = alice.resolve("#race").unwrap();

    // Both stage a commit for the same epoch (by hand: the engine encrypts only to devices in
    // lists its client checked, so they check them first as `claim` does).
    alice.device_list(&u("carol")).await.unwrap();
    bob.device_list(&u("dave")).await.unwrap();
    let kc = alice
        .api()
        .claim_key_packages(&u("carol"), &g)
        .await
        .unwrap();
    let kd = bob.api().claim_key_packages(&u("dave"), &g).await.unwrap();
    let ca = alice.engine_mut().add_members(&g, &[kc]).unwrap();
    let cb = bob.engine_mut().add_members(&g, &[kd]).unwrap();
    assert_eq!(ca.epoch, cb.epoch);
    let req = |c: haven_client::engine::OutgoingCommit| haven_proto::api::CommitRequest {
        commit: c.commit,
        welcome: c.welcome,
    };
    let (qa, qb) = (req(ca), req(cb));
    let (ra, rb) = tokio::join!(alice.api().commit(&g, &qa), bob.api().commit(&g, &qb));
    assert_eq!(
        usize::from(ra.is_ok()) + usize::from(rb.is_ok()),
        1,
        "exactly one commit wins: {ra:?} {rb:?}"
    );
    let (winner, loser) = if ra.is_ok() {
        (&mut alice, &mut bob)
    } else {
        (&mut bob, &mut alice)
    };
    let err = match (ra, rb) {
        (Ok(_), Err(e)) | (Err(e), Ok(_)) => e,
        other => panic!("exactly one commit wins: {other:?}"),
    };
    assert_eq!(err.code(), Some(ErrorCode::EpochConflict));
    winner.engine_mut().merge_pending_commit(&g).unwrap();
    loser.engine_mut().clear_pending_commit(&g).unwrap();
    // The loser processes the winning commit and can still send; the winner reads it.
    loser.sync().await.unwrap();
    assert_eq!(
        loser.engine().epoch(&g).unwrap(),
        winner.engine().epoch(&g).unwrap()
    );
    let loser_name = loser.user().to_string();
    loser
        .send_text(
            &Target::Group("race".into()),
            "I lost the race but I can talk",
        )
        .await
        .unwrap();
    let got = texts(&winner.sync().await.unwrap());
    assert_eq!(
        got,
        vec![(
            "#race".into(),
            loser_name,
            "I lost the race but I can talk".into()
        )]
    );
}

/// The server accepts a commit but the committer never hears back (it crashes, or the answer
/// is lost): after reopening, the committer resubmits the same commit, learns it was accepted,
/// merges it and reads what others sent in the new epoch. A staged commit that never reached
/// the server is submitted then. And one that lost its epoch to another commit is cleared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_whose_answer_was_lost_is_settled_after_restart() {
    let w = World::new().await;
    let mut alice = w.register("alice").await;
    let mut bob = w.register("bob").await;
    let mut carol = w.register("carol").await;
    let _dave = w.register("dave").await;
    alice.create_group("lost", &[u("bob")]).await.unwrap();
    bob.sync().await.unwrap();
    let g = alice.resolve("#lost").unwrap();
    let to = Target::Group("lost".into());

    // 1. Accepted, answer lost: alice stages "add carol", the server applies it, alice crashes.
    alice.device_list(&u("carol")).await.unwrap();
    let kc = alice
        .api()
        .claim_key_packages(&u("carol"), &g)
        .await
        .unwrap();
    let staged = alice.engine_mut().add_members(&g, &[kc]).unwrap();
    let epoch = staged.epoch;
    let req = haven_proto::api::CommitRequest {
        commit: staged.commit,
        welcome: staged.welcome,
    };
    assert_eq!(alice.api().commit(&g, &req).await.unwrap().epoch, epoch + 1);
    drop(alice);
    // Meanwhile the others move on in the new epoch.
    carol.sync().await.unwrap();
    bob.sync().await.unwrap();
    bob.send_text(&to, "said in the new epoch").await.unwrap();
    let mut alice = Client::open(&w.home("alice")).await.unwrap();
    assert_eq!(alice.engine().epoch(&g).unwrap(), epoch, "not merged yet");
    // Sending first settles the commit, so carol (added by it) can read this.
    alice.send_text(&to, "back in step").await.unwrap();
    assert_eq!(alice.engine().epoch(&g).unwrap(), epoch + 1);
    assert!(alice.engine().pending_commits().unwrap().is_empty());
    let got = texts(&alice.sync().await.unwrap());
    assert_eq!(
        got,
        vec![("#lost".into(), "bob".into(), "said in the new epoch".into())]
    );
    for c in [&mut bob, &mut carol] {
        let got = texts(&c.sync().await.unwrap());
        assert_eq!(got.last().unwrap().2, "back in step");
    }

    // 2. Staged, never submitted: the next send submits it first.
    let staged = alice.engine_mut().remove_users(&g, &[u("carol")]).unwrap();
    drop(alice);
    let mut alice = Client::open(&w.home("alice")).await.unwrap();
    alice.send_text(&to, "after the removal").await.unwrap();
    assert_eq!(alice.engine().epoch(&g).unwrap(), staged.epoch + 1);
    assert_eq!(alice.engine().members(&g).unwrap().len(), 2);
    let got = texts(&bob.sync().await.unwrap());
    assert_eq!(bob.engine().epoch(&g).unwrap(), staged.epoch + 1);
    assert_eq!(got.last().unwrap().2, "after the removal");

    // 3. Staged, but another commit won the epoch: cleared, and the winner is processed.
    alice.device_list(&u("dave")).await.unwrap();
    let kd = alice
        .api()
        .claim_key_packages(&u("dave"), &g)
        .await
        .unwrap();
    let lost = alice.engine_mut().add_members(&g, &[kd]).unwrap();
    drop(alice);
    bob.add_member("lost", &u("carol")).await.unwrap();
    let mut alice = Client::open(&w.home("alice")).await.unwrap();
    alice.sync().await.unwrap();
    assert!(alice.engine().pending_commits().unwrap().is_empty());
    assert_eq!(alice.engine().epoch(&g).unwrap(), lost.epoch + 1);
    assert_eq!(member_names(&alice, &g), vec!["alice", "bob", "carol"]);
    alice.send_text(&to, "still here").await.unwrap();
    let got = texts(&bob.sync().await.unwrap());
    assert_eq!(got.last().unwrap().2, "still here");

    // 4. Staged, and meanwhile we were removed: refused, cleared, and the sync goes on to
    //    process our removal instead of failing on the stale commit forever.
    let kd = alice
        .api()
        .claim_key_packages(&u("dave"), &g)
        .await
        .unwrap();
    alice.engine_mut().add_members(&g, &[kd]).unwrap();
    drop(alice);
    bob.remove_member("lost", &u("alice")).await.unwrap();
    let mut alice = Client::open(&w.home("alice")).await.unwrap();
    alice.sync().await.unwrap();
    assert!(alice.engine().pending_commits().unwrap().is_empty());
    assert_eq!(
        alice.engine().conversation(&g).unwrap().unwrap().state,
        haven_client::ConversationState::Removed
    );
    alice.sync().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_membership_changes_both_land() {
    let w = World::new().await;
    let mut alice = w.register("alice").await;
    let mut bob = w.register("bob").await;
    let mut carol = w.register("carol").await;
    let mut dave = w.register("dave").await;
    alice.create_group("busy", &[u("bob")]).await.unwrap();
    bob.sync().await.unwrap();
    // Both add someone at once; the client retries the loser after processing the winner.
    let (carol_name, dave_name) = (u("carol"), u("dave"));
    let (ra, rb) = tokio::join!(
        alice.add_member("busy", &carol_name),
        bob.add_member("busy", &dave_name)
    );
    ra.unwrap();
    rb.unwrap();
    for c in [&mut alice, &mut bob, &mut carol, &mut dave] {
        c.sync().await.unwrap();
    }
    let g = alice.resolve("#busy").unwrap();
    assert_eq!(
        member_names(&alice, &g),
        vec!["alice", "bob", "carol", "dave"]
    );
    dave.send_text(&Target::Group("busy".into()), "dave here")
        .await
        .unwrap();
    assert_eq!(
        texts(&carol.sync().await.unwrap()),
        vec![("#busy".into(), "dave".into(), "dave here".into())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altered_commitment_is_dropped_and_redelivery_shows_nothing_twice() {
    let w = World::new().await;
    let mut alice = w.register("alice").await;
    let mut bob = w.register("bob").await;
    support::connect(&mut alice, &mut bob).await;
    alice
        .send_text(&Target::User(u("bob")), "genuine")
        .await
        .unwrap();
    bob.sync().await.unwrap();
    alice
        .send_text(&Target::User(u("bob")), "tampered in transit")
        .await
        .unwrap();
    alice
        .send_text(&Target::User(u("bob")), "after the tampered one")
        .await
        .unwrap();

    // Take the entries off the wire ourselves and flip a bit of the delivered commitment.
    let entries = bob.api().fetch(0, 100).await.unwrap();
    assert_eq!(entries.len(), 2);
    let mut tampered = entries[0].clone();
    tampered.frank.as_mut().unwrap().commitment[0] ^= 1;
    let p = bob.engine_mut().process_entry(&tampered).unwrap();
    assert!(matches!(p, Processed::Dropped { .. }), "{p:?}");
    // Process the second one but "crash" before acknowledging it.
    let p2 = bob.engine_mut().process_entry(&entries[1]).unwrap();
    assert!(matches!(p2, Processed::Message(_)));
    // On the next sync both are redelivered: the dropped one stays dropped, the stored one is not
    // shown twice, and both are acknowledged.
    let ev = bob.sync().await.unwrap();
    assert!(texts(&ev).is_empty(), "{ev:?}");
    assert_eq!(
        history_texts(&bob, "alice"),
        vec!["genuine", "after the tampered one"]
    );
    assert!(bob.api().fetch(0, 100).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linked_device_joins_the_users_conversations() {
    let w = World::new().await;
    let mut alice = w.register("alice").await;
    let mut bob = w.register("bob").await;
    alice
        .send_text(&Target::User(u("bob")), "before the new device")
        .await
        .unwrap();
    bob.sync().await.unwrap();
    let code = alice.link_code().await.unwrap().code;
    let mut alice2 = Client::link(&w.home("alice2"), &w.url, &code, "phone")
        .await
        .unwrap();
    assert_eq!(alice2.user().as_str(), "alice");
    // The code is single use.
    assert!(Client::link(&w.home("alice3"), &w.url, &code, "x")
        .await
        .is_err());
    // Alice's first device adds the new one to her conversations when it syncs.
    alice.sync().await.unwrap();
    let ev = alice2.sync().await.unwrap();
    assert!(
        ev.iter().any(|e| matches!(e, Event::Joined { .. })),
        "{ev:?}"
    );
    bob.sync().await.unwrap();
    bob.send_text(&Target::User(u("alice")), "to both your devices")
        .await
        .unwrap();
    assert_eq!(
        texts(&alice.sync().await.unwrap()),
        vec![("bob".into(), "bob".into(), "to both your devices".into())]
    );
    assert_eq!(
        texts(&alice2.sync().await.unwrap()),
        vec![("bob".into(), "bob".into(), "to both your devices".into())]
    );
    // Adding a user to a group adds all of their devices.
    let mut carol = w.register("carol").await;
    carol
        .create_group("trio", &[u("alice"), u("bob")])
        .await
        .unwrap();
    let g = carol.resolve("#trio").unwrap();
    let alice_devices = carol
        .engine()
        .members(&g)
        .unwrap()
        .into_iter()
        .filter(|(u, _)| u.as_str() == "alice")
        .count();
    assert_eq!(alice_devices, 2);
    alice2.sync().await.unwrap();
    carol
        .send_text(&Target::Group("trio".into()), "hello trio")
        .await
        .unwrap();
    assert_eq!(
        texts(&alice2.sync().await.unwrap()),
        vec![("#trio".into(), "carol".into(), "hello trio".into())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_over_websocket_delivers_live() {
    let w = World::new().await;
    let mut alice = w.register("alice").await;
    let mut bob = w.register("bob").await;
    support::connect(&mut alice, &mut bob).await;
    alice
        .send_text(&Target::User(u("bob")), "first")
        .await
        .unwrap();
    bob.sync().await.unwrap();
    let waiter = tokio::spawn(async move {
        let ev = bob.sync_wait(Duration::from_secs(20)).await.unwrap();
        texts(&ev)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    alice
        .send_text(&Target::User(u("bob")), "live")
        .await
        .unwrap();
    assert_eq!(
        waiter.await.unwrap(),
        vec![("alice".into(), "alice".into(), "live".into())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_change_nothing() {
    let w = World::new().await;
    let mut alice = w.register("alice").await;
    // Unknown user: refused before anything is created.
    let e = alice
        .send_text(&Target::User(u("nobody")), "x")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("unknown user"), "{e}");
    assert!(alice.conversations().unwrap().is_empty());
    // Not a member / unknown group.
    assert!(alice
        .send_text(&Target::Group("nope".into()), "x")
        .await
        .is_err());
    assert!(alice.add_member("nope", &u("alice")).await.is_err());
    // Duplicate registration of a name.
    assert!(Client::register(
        &w.home("alice-again"),
        &w.url,
        &u("alice"),
        "x",
        ADULT_BIRTH_DATE
    )
    .await
    .is_err());
    // Server unreachable.
    let e = Client::register(
        &w.home("offline"),
        "http://127.0.0.1:9",
        &u("zed"),
        "x",
        ADULT_BIRTH_DATE,
    )
    .await
    .err()
    .unwrap();
    assert!(e.to_string().contains("unreachable"), "{e}");
    // A real member sending malformed MLS bytes gets a 400 and the server keeps serving.
    let mut bob = w.register("bob").await;
    support::connect(&mut alice, &mut bob).await;
    alice
        .send_text(&Target::User(u("bob")), "ok")
        .await
        .unwrap();
    let g = alice.resolve("bob").unwrap();
    let e = alice
        .api()
        .send(&g, vec![0, 1, 0, 2, 0xff])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BadRequest));
    alice
        .send_text(&Target::User(u("bob")), "still fine")
        .await
        .unwrap();
    assert_eq!(texts(&bob.sync().await.unwrap()).len(), 2);
    drop(w.server);
}

// ------------------------------------------------ review 2026-12: names, direct chats, consent

/// Finding 2: a member renames an older shared group to the name of the victim's real group,
/// with the stock engine and API calls an attacker's client would make. The victim's client
/// stores the rename disambiguated and says so; `send '#family'` still reaches the real family.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_to_the_victims_group_name_no_longer_redirects_sends() {
    let w = World::new().await;
    let mut mallory = w.register("mallory").await;
    let mut dave = w.register("dave").await;
    let mut carol = w.register("carol").await;
    mallory.create_group("book", &[u("dave")]).await.unwrap();
    dave.sync().await.unwrap();
    dave.create_group("family", &[u("carol")]).await.unwrap();
    carol.sync().await.unwrap();

    // The attack: a GroupName for the book group, naming dave's real group.
    let book = mallory.resolve("#book").unwrap();
    let out = mallory
        .engine_mut()
        .encrypt(&book, Body::GroupName("family".into()))
        .unwrap();
    mallory.api().send(&book, out.mls.clone()).await.unwrap();
    let ev = dave.sync().await.unwrap();
    let renamed: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            Event::Renamed {
                conversation_id,
                by,
                requested,
                stored,
                ..
            } => Some((
                conversation_id.clone(),
                by.clone(),
                requested.clone(),
                stored.clone(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        renamed,
        vec![(
            book.clone(),
            u("mallory"),
            "family".into(),
            Some("family-2".into())
        )]
    );
    let family = dave.resolve("#family").unwrap();
    assert_ne!(family, book);
    assert_eq!(member_names(&dave, &family), vec!["carol", "dave"]);
    assert_eq!(dave.resolve("#family-2").unwrap(), book);

    let secret = marker("the spare key is under the mat");
    dave.send_text(&Target::Group("family".into()), &secret)
        .await
        .unwrap();
    assert_eq!(
        texts(&carol.sync().await.unwrap()),
        vec![("#family".into(), "dave".into(), secret.clone())]
    );
    assert!(texts(&mallory.sync().await.unwrap()).is_empty());

    // The id form reaches the renamed group, whatever it is called.
    let short = format!("id:{}", &book.to_hex()[..8]);
    let hello = marker("to the book group");
    dave.send_text(&Target::parse(&short).unwrap(), &hello)
        .await
        .unwrap();
    assert_eq!(
        texts(&mallory.sync().await.unwrap()),
        vec![("#book".into(), "dave".into(), hello)]
    );
    // The user's own create of a taken name is still refused.
    let e = dave.create_group("family", &[]).await.unwrap_err();
    assert!(
        e.to_string().contains("already have a group named #family"),
        "{e}"
    );
}

/// Finding 10: mallory reuses the id of bob's file message for her own attachment in an older
/// conversation she shares with dave. `get-file ID` refuses the ambiguity, listing both, and the
/// scoped forms pick the right file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attachment_with_a_reused_message_id_is_refused_until_scoped() {
    let w = World::new().await;
    let mut mallory = w.register("mallory").await;
    let mut bob = w.register("bob").await;
    let mut dave = w.register("dave").await;
    mallory.create_group("family", &[u("dave")]).await.unwrap();
    dave.sync().await.unwrap();
    bob.create_group("photos", &[u("dave"), u("mallory")])
        .await
        .unwrap();
    dave.sync().await.unwrap();
    mallory.sync().await.unwrap();
    let photo = w.dir.path().join("photo.jpg");
    let real: Vec<u8> = (0..4000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&photo, &real).unwrap();
    let id = bob
        .send_file(&Target::Group("photos".into()), &photo)
        .await
        .unwrap()
        .id;
    dave.sync().await.unwrap();
    mallory.sync().await.unwrap();

    // The attack: the same id on mallory's own file, in #family.
    let evil = b"#!/bin/sh\necho MALLORY PAYLOAD\n".to_vec();
    let (ct, key, sha256) = haven_client::attachment::seal(&evil).unwrap();
    let blob = mallory.api().put_blob(ct).await.unwrap();
    let fam = mallory.resolve("#family").unwrap();
    let out = mallory
        .engine_mut()
        .encrypt_with_id(
            &fam,
            id.clone(),
            Body::Attachment(AttachmentRef {
                blob_id: blob.blob_id,
                key,
                sha256,
                size: evil.len() as u64,
                name: "photo.jpg".into(),
            }),
        )
        .unwrap();
    mallory.api().send(&fam, out.mls.clone()).await.unwrap();
    dave.sync().await.unwrap();

    let got = w.dir.path().join("got.jpg");
    match dave
        .get_file(id.as_str(), &MessageScope::default(), &got)
        .await
    {
        Err(ClientError::AmbiguousMessage { candidates, .. }) => {
            let mut from: Vec<String> = candidates.iter().map(|c| c.from.to_string()).collect();
            from.sort();
            assert_eq!(from, vec!["bob", "mallory"]);
        }
        other => panic!("expected an ambiguity, got {other:?}"),
    }
    assert!(!got.exists(), "nothing is written for an ambiguous id");
    let by_sender = MessageScope {
        from: Some(u("bob")),
        ..MessageScope::default()
    };
    dave.get_file(id.as_str(), &by_sender, &got).await.unwrap();
    assert_eq!(std::fs::read(&got).unwrap(), real);
    std::fs::remove_file(&got).unwrap();
    let in_photos = MessageScope {
        conversation: Some(dave.resolve("#photos").unwrap()),
        ..MessageScope::default()
    };
    dave.get_file(id.as_str(), &in_photos, &got).await.unwrap();
    assert_eq!(std::fs::read(&got).unwrap(), real);
    // Asked for by name, mallory's is what the user gets.
    let from_mallory = MessageScope {
        from: Some(u("mallory")),
        ..MessageScope::default()
    };
    dave.get_file(id.as_str(), &from_mallory, &got)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&got).unwrap(), evil);
}

/// Finding 1 end to end: mallory builds a two-member group in which her own leaf claims bob's
/// real device, and adds dave. The server refuses a leaf whose key is not the registered one,
/// dave's client refuses a Welcome whose adder is not its sender, and even past both, a Welcome
/// not sent by the other member is filed as a group, never as the direct chat with bob
/// (`engine::book`'s tests show that layer alone). Whichever layer stops it, dave's `send bob`
/// reaches the real bob and nothing reaches mallory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_direct_chat_never_becomes_the_chat_with_the_real_user() {
    let w = World::new().await;
    let mallory = w.register("mallory").await;
    let mut dave = w.register("dave").await;
    let mut bob = w.register("bob").await;
    let mut fake = Engine::create(
        &w.home("fakebob"),
        Identity {
            user: u("bob"),
            device_id: bob.device_id().clone(),
            server_url: w.url.clone(),
            auth_secret: AuthSecret::random(),
        },
    )
    .unwrap();
    let g = fake
        .create_conversation(ConversationKind::direct(u("dave")))
        .unwrap();
    let info = fake.group_info(&g).unwrap();
    if mallory.api().create_group(&g, info, None).await.is_ok() {
        let claimed = mallory
            .api()
            .claim_key_packages(&u("dave"), &g)
            .await
            .unwrap();
        let oc = fake.add_members(&g, &[claimed]).unwrap();
        let req = CommitRequest {
            commit: oc.commit.clone(),
            welcome: oc.welcome.clone(),
        };
        if mallory.api().commit(&g, &req).await.is_ok() {
            fake.merge_pending_commit(&g).unwrap();
        }
    }
    let ev = dave.sync().await.unwrap();
    assert!(
        !ev.iter()
            .any(|e| matches!(e, Event::Joined { request: true, .. })),
        "{ev:?}"
    );
    if let Some(c) = dave.engine().conversation(&g).unwrap() {
        assert_eq!(c.peer(), None, "{c:?}");
    }
    assert_eq!(dave.engine().find_direct(&u("bob")).unwrap(), None);
    assert_eq!(dave.engine().pending_direct(&u("bob")).unwrap(), None);

    let secret = marker("bob, the door code is 4711");
    let sent = dave
        .send_text(&Target::User(u("bob")), &secret)
        .await
        .unwrap();
    assert_ne!(sent.group, g);
    assert_eq!(
        texts(&bob.sync().await.unwrap()),
        vec![("dave".into(), "dave".into(), secret)]
    );
    // Nothing of dave's went to the forged group.
    let queued = mallory.api().fetch(0, 100).await.unwrap();
    assert!(
        !queued
            .iter()
            .any(|e| e.kind == EntryKind::Application && e.group_id.as_ref() == Some(&g)),
        "{queued:?}"
    );
    // The real bob's chat is the one both sides use from now on.
    let reply = marker("got it");
    bob.send_text(&Target::User(u("dave")), &reply)
        .await
        .unwrap();
    assert_eq!(
        texts(&dave.sync().await.unwrap()),
        vec![("bob".into(), "bob".into(), reply)]
    );
    assert_eq!(dave.resolve("bob").unwrap(), sent.group);
}

/// "Silent re-add after leaving": a member who left, or was removed, and is added back gets an
/// invitation. The Welcome is applied (so it can be accepted) but nothing is sent there until
/// the user accepts; what arrives meanwhile is stored and marked; leaving declines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_adding_someone_who_left_needs_their_consent() {
    let w = World::new().await;
    let mut alice = w.register("alice").await;
    let mut bob = w.register("bob").await;
    let team = Target::Group("team".into());
    alice.create_group("team", &[u("bob")]).await.unwrap();
    bob.sync().await.unwrap();
    bob.leave_group("team").await.unwrap();
    alice.sync().await.unwrap();
    bob.sync().await.unwrap();
    let g = alice.resolve("#team").unwrap();
    assert_eq!(member_names(&alice, &g), vec!["alice"]);

    alice.add_member("team", &u("bob")).await.unwrap();
    let ev = bob.sync().await.unwrap();
    assert!(
        ev.iter().any(
            |e| matches!(e, Event::Invited { conversation_id, by: Some(by), .. }
            if *conversation_id == g && by.as_str() == "alice")
        ),
        "{ev:?}"
    );
    let state = |c: &Client| c.engine().conversation(&g).unwrap().unwrap().state;
    assert_eq!(state(&bob), ConversationState::Invited);
    let hello = marker("welcome back?");
    alice.send_text(&team, &hello).await.unwrap();
    assert_eq!(
        texts(&bob.sync().await.unwrap()),
        vec![("#team".into(), "alice".into(), hello.clone())]
    );
    assert_eq!(history_texts(&bob, "#team"), vec![hello]);
    let e = bob.send_text(&team, "x").await.unwrap_err();
    assert!(e.to_string().contains("invitation"), "{e}");
    assert!(texts(&alice.sync().await.unwrap()).is_empty());

    assert_eq!(bob.accept("#team").unwrap(), (g.clone(), true));
    assert_eq!(state(&bob), ConversationState::Active);
    let back = marker("I'm back");
    bob.send_text(&team, &back).await.unwrap();
    assert_eq!(
        texts(&alice.sync().await.unwrap()),
        vec![("#team".into(), "bob".into(), back)]
    );

    // Removed and re-added: an invitation again, and leaving it declines it.
    alice.remove_member("team", &u("bob")).await.unwrap();
    bob.sync().await.unwrap();
    assert_eq!(state(&bob), ConversationState::Removed);
    alice.add_member("team", &u("bob")).await.unwrap();
    bob.sync().await.unwrap();
    assert_eq!(state(&bob), ConversationState::Invited);
    bob.leave(&format!("id:{}", &g.to_hex()[..10]))
        .await
        .unwrap();
    assert_eq!(state(&bob), ConversationState::Left);
    alice.sync().await.unwrap();
    assert_eq!(member_names(&alice, &g), vec!["alice"]);
}
