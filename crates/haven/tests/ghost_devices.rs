//! No ghost devices (issue 11): a real server on loopback, clients of the library, and the
//! server's own database tampered with as an operator (or whoever holds the database) could.
//! Whatever the server does alone, no device comes to read an account's messages: clients
//! encrypt only to devices in the account's signed device list, and what they cannot verify
//! they refuse and show as an alarm.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;
use support::{connect, ADULT_BIRTH_DATE};

use std::path::PathBuf;

use haven_client::devices::AlarmKind;
use haven_client::{Client, ClientError, Event, Target};
use haven_kt::device_list::DeviceList;
use haven_proto::UserName;
use haven_server::{RunningServer, ServerConfig};
use sha2::Digest;

fn u(s: &str) -> UserName {
    UserName::new(s).unwrap()
}

struct World {
    dir: tempfile::TempDir,
    _server: RunningServer,
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
            _server: server,
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
            "laptop",
            ADULT_BIRTH_DATE,
        )
        .await
        .unwrap()
    }

    /// The server's database, as its operator can write it.
    fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.dir.path().join("server").join("haven.db")).unwrap()
    }

    /// The server, on its own, makes a link code for `user` (it knows no link secret).
    fn server_minted_code(&self, user: &str) -> String {
        let code = "GHST-DEVC-2345";
        self.db()
            .execute(
                "INSERT INTO link_codes (code_hash, user_name, expires_at) VALUES (?1, ?2, ?3)",
                rusqlite::params![
                    sha2::Sha256::digest(code.as_bytes()).to_vec(),
                    user,
                    i64::MAX / 2
                ],
            )
            .unwrap();
        // Whatever secret the server makes up, it is not one a device of the user drew.
        format!("{code}-AAAAA-BBBBB-CCCCC-DDDDD")
    }
}

impl World {
    /// The directory's root-signing key, as the operator holding `DATA/kt-keys` has it.
    fn kt_root_key(&self) -> ed25519_dalek::SigningKey {
        let keys = std::fs::read_to_string(self.dir.path().join("server").join("kt-keys")).unwrap();
        let seed = keys
            .lines()
            .find_map(|l| l.strip_prefix("root "))
            .map(|h| <[u8; 32]>::try_from(hex_decode(h).as_slice()).unwrap())
            .unwrap();
        ed25519_dalek::SigningKey::from_bytes(&seed)
    }

    /// The server links a ghost device to alice's account with a code of its own, and makes
    /// version 2 of her list with the ghost in it — signed by the ghost, since no device of
    /// alice's would sign it. Returns the ghost, alice's real version 1 and the forgery.
    async fn ghost_with_forged_list(
        &self,
        alice: &mut Client,
    ) -> (
        Client,
        haven_kt::SignedDeviceList,
        haven_kt::SignedDeviceList,
    ) {
        let code = self.server_minted_code("alice");
        let ghost = Client::link(&self.home("ghost"), &self.url, &code, "ghost")
            .await
            .unwrap();
        let v1 = alice.device_list(&u("alice")).await.unwrap();
        let forged = DeviceList::successor(
            &v1,
            vec![
                alice.engine().listed_self().unwrap(),
                ghost.engine().listed_self().unwrap(),
            ],
        )
        .unwrap();
        let forged = ghost.engine().sign_device_list(forged).unwrap();
        (ghost, v1, forged)
    }
}

fn joined(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::Joined { .. }))
        .count()
}

fn texts(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message { message, .. } => match &message.body {
                haven_client::Body::Text(t) => Some(t.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn open_kinds(c: &Client) -> Vec<AlarmKind> {
    c.alarms(false)
        .unwrap()
        .into_iter()
        .map(|a| a.kind)
        .collect()
}

/// The server links a device of its own to alice's account with a code it wrote itself. It
/// is not in alice's signed list, so alice's devices add it nowhere and bob's client never
/// encrypts to it; alice sees an alarm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_the_server_links_on_its_own_reads_nothing() {
    let w = World::new().await;
    let mut alice = w.register("alice").await;
    let mut bob = w.register("bob").await;
    connect(&mut alice, &mut bob).await;
    bob.send_text(&Target::User(u("alice")), "before")
        .await
        .unwrap();
    alice.sync().await.unwrap();

    let code = w.server_minted_code("alice");
    let mut ghost = Client::link(&w.home("ghost"), &w.url, &code, "ghost")
        .await
        .unwrap();
    assert_eq!(ghost.user().as_str(), "alice");
    let ghost_id = ghost.device_id().clone();

    // alice's laptop did not mint the code: it signs nothing and shows the link.
    alice.sync().await.unwrap();
    assert_eq!(open_kinds(&alice), vec![AlarmKind::UnsignedDevice]);
    let alarm = &alice.alarms(false).unwrap()[0];
    assert_eq!(alarm.device.as_ref(), Some(&ghost_id));
    assert_eq!(
        alice.device_list(&u("alice")).await.unwrap().list.version,
        1
    );

    // bob writes in the chat and starts a group with alice: neither reaches the ghost.
    bob.send_text(&Target::User(u("alice")), "after")
        .await
        .unwrap();
    bob.create_group("plans", &[u("alice")]).await.unwrap();
    bob.send_text(&Target::Group("plans".into()), "secret plan")
        .await
        .unwrap();
    let g = bob.resolve("#plans").unwrap();
    assert!(bob
        .engine()
        .members(&g)
        .unwrap()
        .iter()
        .all(|(_, d)| d != &ghost_id));
    let seen = ghost.sync().await.unwrap();
    assert_eq!(joined(&seen), 0, "{seen:?}");
    assert!(texts(&seen).is_empty(), "{seen:?}");
    assert!(ghost.engine().conversations().unwrap().is_empty());
    let got = alice.sync().await.unwrap();
    assert_eq!(texts(&got), vec!["after", "secret plan"]);
    // The alarm stays until alice acknowledges it.
    assert_eq!(open_kinds(&alice), vec![AlarmKind::UnsignedDevice]);
    alice.ack_alarm(alarm.id).unwrap();
    assert!(open_kinds(&alice).is_empty());
}

/// The server hides alice's signed lists (deletes them) and offers the ghost's key packages
/// with hers. bob, who verified alice's list before, leaves the ghost out and shows an alarm;
/// dave, who never saw a list of alice's, refuses to encrypt to her at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_hides_the_list_cannot_slip_a_ghost_in() {
    let w = World::new().await;
    let mut alice = w.register("alice").await;
    let mut bob = w.register("bob").await;
    let mut dave = w.register("dave").await;
    connect(&mut alice, &mut bob).await;
    connect(&mut alice, &mut dave).await;
    bob.send_text(&Target::User(u("alice")), "hi")
        .await
        .unwrap();
    let code = w.server_minted_code("alice");
    let ghost = Client::link(&w.home("ghost"), &w.url, &code, "ghost")
        .await
        .unwrap();
    let ghost_id = ghost.device_id().clone();
    let n = w
        .db()
        .execute("DELETE FROM device_lists WHERE user_name = 'alice'", [])
        .unwrap();
    assert_eq!(n, 1);

    bob.create_group("plans", &[u("alice")]).await.unwrap();
    let g = bob.resolve("#plans").unwrap();
    let members = bob.engine().members(&g).unwrap();
    assert_eq!(members.len(), 2, "{members:?}");
    assert!(members.iter().all(|(_, d)| d != &ghost_id));
    let alarms = bob.alarms(false).unwrap();
    assert_eq!(alarms.len(), 1, "{alarms:?}");
    assert_eq!(alarms[0].kind, AlarmKind::UnlistedDevice);
    assert_eq!(alarms[0].device.as_ref(), Some(&ghost_id));

    let err = dave
        .send_text(&Target::User(u("alice")), "hello")
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Untrusted(_)), "{err:?}");
    assert!(err.to_string().contains("no signed device list"), "{err}");
    assert!(dave.engine().conversations().unwrap().is_empty());
}

/// The server (or a ghost device it made) writes a version 2 of alice's list that lists the
/// ghost, signed by the ghost. No device of version 1 signed it: bob refuses it, keeps
/// version 1, and shows a broken-chain alarm; nothing is encrypted to alice until it is fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_not_signed_by_a_listed_device_is_refused() {
    let w = World::new().await;
    let mut alice = w.register("alice").await;
    let mut bob = w.register("bob").await;
    connect(&mut alice, &mut bob).await;
    bob.send_text(&Target::User(u("alice")), "hi")
        .await
        .unwrap();
    let (ghost, v1, forged) = w.ghost_with_forged_list(&mut alice).await;
    // The server's own upload check refuses it; its operator writes it in directly.
    w.db()
        .execute(
            "INSERT INTO device_lists (user_name, version, list, signer, created_at)
             VALUES ('alice', 2, ?1, ?2, 0)",
            rusqlite::params![forged.encode(), ghost.device_id().as_str()],
        )
        .unwrap();
    let err = bob.create_group("plans", &[u("alice")]).await.unwrap_err();
    assert!(matches!(err, ClientError::Untrusted(_)), "{err:?}");
    assert!(bob.resolve("#plans").is_err());
    assert_eq!(open_kinds(&bob), vec![AlarmKind::BrokenChain]);
    assert_eq!(
        bob.engine().verified_list(&u("alice")).unwrap().unwrap(),
        v1
    );
}

/// The server saw the server part of alice's code and links a device with it before alice's
/// new phone does, with a made-up secret. alice's laptop checks the proof, signs nothing, and
/// shows why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_without_the_secret_is_not_signed_in() {
    let w = World::new().await;
    let mut alice = w.register("alice").await;
    let code = alice.link_code().await.unwrap().code;
    let server_part: String = code.split('-').take(3).collect::<Vec<_>>().join("-");
    let stolen = format!("{server_part}-AAAAA-BBBBB-CCCCC-DDDDD");
    assert_ne!(stolen, code);
    let mut thief = Client::link(&w.home("thief"), &w.url, &stolen, "thief")
        .await
        .unwrap();
    alice.sync().await.unwrap();
    assert_eq!(open_kinds(&alice), vec![AlarmKind::BadLinkProof]);
    assert_eq!(
        alice.device_list(&u("alice")).await.unwrap().list.version,
        1
    );
    let mut bob = w.register("bob").await;
    connect(&mut alice, &mut bob).await;
    bob.send_text(&Target::User(u("alice")), "hi")
        .await
        .unwrap();
    assert!(texts(&thief.sync().await.unwrap()).is_empty());
    assert_eq!(texts(&alice.sync().await.unwrap()), vec!["hi"]);
}

/// Linking and removing devices the way users do raises no alarm anywhere, and each change is
/// one signed version: 1 (laptop), 2 (laptop, phone), 3 (laptop).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linking_and_removing_as_users_do_raises_no_alarm() {
    let w = World::new().await;
    let mut alice = w.register("alice").await;
    let mut bob = w.register("bob").await;
    connect(&mut alice, &mut bob).await;
    bob.send_text(&Target::User(u("alice")), "one")
        .await
        .unwrap();
    alice.sync().await.unwrap();
    let code = alice.link_code().await.unwrap().code;
    let mut phone = Client::link(&w.home("phone"), &w.url, &code, "phone")
        .await
        .unwrap();
    alice.sync().await.unwrap();
    assert_eq!(joined(&phone.sync().await.unwrap()), 1);
    let v2 = bob.device_list(&u("alice")).await.unwrap();
    assert_eq!(v2.list.version, 2);
    assert!(v2.list.key_of(phone.device_id()).is_some());
    assert_eq!(&v2.signer, alice.device_id());
    bob.sync().await.unwrap();
    bob.send_text(&Target::User(u("alice")), "two")
        .await
        .unwrap();
    assert_eq!(texts(&phone.sync().await.unwrap()), vec!["two"]);

    let phone_id = phone.device_id().clone();
    alice.remove_device(phone_id.as_str()).await.unwrap();
    let v3 = bob.device_list(&u("alice")).await.unwrap();
    assert_eq!(v3.list.version, 3);
    assert!(v3.list.key_of(&phone_id).is_none());
    bob.sync().await.unwrap();
    bob.send_text(&Target::User(u("alice")), "three")
        .await
        .unwrap();
    assert_eq!(texts(&alice.sync().await.unwrap()), vec!["three"]);
    for c in [&alice, &bob, &phone] {
        assert!(c.alarms(true).unwrap().is_empty(), "{:?}", c.alarms(true));
    }
}

/// Waits until the directory's newest epoch is past `epoch` (the publisher runs every second).
async fn epoch_after(url: &str, epoch: u64) -> u64 {
    for _ in 0..100 {
        let e: haven_proto::api::KtEpoch = reqwest::get(format!("{url}/v1/kt/epoch"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let root = haven_kt::directory::SignedRoot::decode(&e.signed_root).unwrap();
        if root.epoch > epoch {
            return root.epoch;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the directory did not publish");
}

fn newest_epoch(w: &World) -> u64 {
    w.db()
        .query_row("SELECT MAX(epoch) FROM kt_roots", [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap() as u64
}

/// The server publishes in the directory a device list for alice with a device of its own
/// (it cannot sign it as alice's devices would, so it signs with the ghost). alice's own
/// laptop finds it in her account's history on its next sync and raises the monitor alarm
/// naming the device; bob, who sees the directory disagree with alice's signed chain, refuses
/// to encrypt to her at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_the_server_publishes_is_seen_by_its_owner() {
    let w = World::new().await;
    let mut alice = w.register("alice").await;
    let mut bob = w.register("bob").await;
    let (ghost, v1, forged) = w.ghost_with_forged_list(&mut alice).await;
    let before = newest_epoch(&w);
    // Straight into the directory's queue, not into the chain of lists.
    w.db()
        .execute(
            "INSERT INTO kt_pending (user_name, list_version, value, queued_at)
             VALUES ('alice', 2, ?1, 0)",
            rusqlite::params![forged.encode()],
        )
        .unwrap();
    epoch_after(&w.url, before).await;

    alice.sync().await.unwrap();
    let alarms = alice.alarms(false).unwrap();
    let monitor: Vec<_> = alarms
        .iter()
        .filter(|a| a.kind == AlarmKind::UnknownOwnDevice)
        .collect();
    assert_eq!(monitor.len(), 1, "{alarms:?}");
    assert_eq!(monitor[0].device.as_ref(), Some(ghost.device_id()));
    // The alarm stays until acknowledged, however often alice syncs, and is raised once.
    alice.sync().await.unwrap();
    assert_eq!(alice.alarms(false).unwrap().len(), alarms.len());
    assert!(open_kinds(&alice).contains(&AlarmKind::UnknownOwnDevice));

    let err = bob.create_group("plans", &[u("alice")]).await.unwrap_err();
    assert!(matches!(err, ClientError::Untrusted(_)), "{err:?}");
    assert!(bob.resolve("#plans").is_err());
    assert_eq!(open_kinds(&bob), vec![AlarmKind::Directory]);
    let listed = bob.engine().verified_list(&u("alice")).unwrap();
    assert!(listed.is_none_or(|l| l == v1));
}

/// Every list a client relies on is the one the directory holds, checked at a root the client
/// verified; the directory's chain audits clean; an operator who alters a stored epoch's root
/// (re-signing it with the directory key, which the operator holds) is caught by
/// `haven kt audit`, which names the epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_directory_audits_clean_and_a_tampered_epoch_is_named() {
    let w = World::new().await;
    let mut alice = w.register("alice").await;
    let mut bob = w.register("bob").await;
    let _carol = w.register("carol").await;
    connect(&mut alice, &mut bob).await;
    bob.send_text(&Target::User(u("alice")), "hi")
        .await
        .unwrap();
    let (epoch, root) = bob
        .engine()
        .verified_list_root(&u("alice"))
        .unwrap()
        .unwrap();
    assert!(epoch >= 1);
    assert_eq!(root.len(), 32);
    let newest = newest_epoch(&w);
    assert!(newest >= 3, "three registrations, three lists: {newest}");

    let report = haven_client::kt_audit::audit(&w.url, 0, None, |_| {})
        .await
        .unwrap();
    let epochs: Vec<u64> = report.epochs.iter().map(|e| e.epoch).collect();
    assert_eq!(epochs, (0..=newest).collect::<Vec<_>>());

    // Re-sign another root for epoch 1 with the directory's own key.
    let sk = w.kt_root_key();
    let forged = haven_kt::directory::SignedRoot::sign(&sk, 1, [0x5a; 32]);
    w.db()
        .execute(
            "UPDATE kt_roots SET root = ?1, signature = ?2 WHERE epoch = 1",
            rusqlite::params![forged.root.to_vec(), forged.signature.to_vec()],
        )
        .unwrap();
    match haven_client::kt_audit::audit(&w.url, 0, None, |_| {}).await {
        Err(haven_client::kt_audit::AuditError::Epoch { epoch: 1, .. }) => {}
        other => panic!("{other:?}"),
    }
    // The same root without a valid signature is named too.
    w.db()
        .execute(
            "UPDATE kt_roots SET signature = zeroblob(64) WHERE epoch = 1",
            [],
        )
        .unwrap();
    match haven_client::kt_audit::audit(&w.url, 0, None, |_| {}).await {
        Err(haven_client::kt_audit::AuditError::Epoch { epoch: 1, detail }) => {
            assert!(detail.contains("not signed"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
}

fn hex_decode(h: &str) -> Vec<u8> {
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
        .collect()
}

/// Split-view detection (issue 11, step 4). A server that shows alice one directory and bob
/// another must sign two roots: both travel inside the members' encrypted messages, and the
/// recipient compares. alice's profile is given the roots a forking server would have shown
/// her (signed with the directory's real key; building a second akd tree would only make the
/// fork's own proofs verify, which alice's client checks and this test does not need); bob's
/// client, which talks to the honest tree, catches each kind of fork from her messages alone:
/// the same epoch with another root (two signed statements: the alarm carries both), an epoch
/// before bob's first that no append-only proof links to his, and an epoch the directory
/// signed but will not prove. Honest messages carry roots that agree and raise nothing, and a
/// newer honest root heard from a contact moves the recipient forward.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_shown_differently_to_two_users_is_caught_in_their_messages() {
    use haven_kt::directory::SignedRoot;
    let w = World::new().await;
    let mut alice = w.register("alice").await;
    let mut bob = w.register("bob").await;
    connect(&mut alice, &mut bob).await;
    let to_bob = Target::User(u("bob"));
    let to_alice = Target::User(u("alice"));

    // Honest: roots travel and agree.
    alice.send_text(&to_bob, "honest").await.unwrap();
    assert_eq!(texts(&bob.sync().await.unwrap()), vec!["honest"]);
    bob.send_text(&to_alice, "honest too").await.unwrap();
    assert_eq!(texts(&alice.sync().await.unwrap()), vec!["honest too"]);
    for c in [&alice, &bob] {
        assert!(c.alarms(true).unwrap().is_empty(), "{:?}", c.alarms(true));
    }

    // A newer honest root heard from alice moves bob forward, without an alarm.
    let before = newest_epoch(&w);
    let _carol = w.register("carol").await;
    let newest = epoch_after(&w.url, before).await;
    alice.sync().await.unwrap();
    let alices = alice.engine().kt_root().unwrap().unwrap();
    assert_eq!(alices.epoch, newest);
    // bob has not asked the directory since (only his own history, at sync).
    assert!(bob.engine().kt_verified_root(newest).unwrap().is_none());
    alice.send_text(&to_bob, "carol joined").await.unwrap();
    assert_eq!(texts(&bob.sync().await.unwrap()), vec!["carol joined"]);
    assert_eq!(bob.engine().kt_verified_root(newest).unwrap(), Some(alices));
    assert!(
        bob.alarms(true).unwrap().is_empty(),
        "{:?}",
        bob.alarms(true)
    );

    let sk = w.kt_root_key();
    let direct = bob.resolve("alice").unwrap();
    let split_views = |c: &Client| -> Vec<haven_client::devices::Alarm> {
        c.alarms(false)
            .unwrap()
            .into_iter()
            .filter(|a| a.kind == AlarmKind::SplitView)
            .collect()
    };

    // 1. The same epoch, another root: equivocation, with both statements as evidence.
    let forked = SignedRoot::sign(&sk, newest, [0x5a; 32]);
    alice.engine_mut().set_kt_root(&forked).unwrap();
    alice.send_text(&to_bob, "forked").await.unwrap();
    // The message itself is delivered: the alarm is about the directory, not alice.
    assert_eq!(texts(&bob.sync().await.unwrap()), vec!["forked"]);
    let found = split_views(&bob);
    assert_eq!(found.len(), 1, "{:?}", bob.alarms(true));
    assert_eq!(found[0].user, u("alice"));
    assert_eq!(found[0].group.as_ref(), Some(&direct));
    assert!(found[0].detail.contains(&hex::encode(forked.encode())));
    assert!(found[0].detail.contains(&hex::encode(
        bob.engine()
            .kt_verified_root(newest)
            .unwrap()
            .unwrap()
            .encode()
    )));
    // The conversation is marked: bob sends nothing there until he has looked.
    let err = bob
        .send_text(&to_alice, "are you there?")
        .await
        .unwrap_err();
    assert!(format!("{err}").contains("alarm"), "{err}");
    bob.ack_alarm(found[0].id).unwrap();
    // And the other way: alice's profile holds the fork's root for the epoch as verified (as
    // the forked tree's proofs would have left it); bob's next message, carrying the honest
    // root, shows her the split view, naming bob and marking their chat.
    rusqlite::Connection::open(w.home("alice").join(haven_client::engine::DB_FILE))
        .unwrap()
        .execute(
            "UPDATE haven_kt_roots SET signed = ?1 WHERE epoch = ?2",
            rusqlite::params![forked.encode().to_vec(), newest as i64],
        )
        .unwrap();
    bob.send_text(&to_alice, "are you there?").await.unwrap();
    assert_eq!(texts(&alice.sync().await.unwrap()), vec!["are you there?"]);
    let hers: Vec<_> = split_views(&alice)
        .into_iter()
        .filter(|a| a.user == u("bob"))
        .collect();
    assert_eq!(hers.len(), 1, "{:?}", alice.alarms(true));
    assert_eq!(hers[0].group.as_ref(), Some(&alice.resolve("bob").unwrap()));
    assert!(hers[0].detail.contains(&hex::encode(forked.encode())));
    for a in alice.alarms(false).unwrap() {
        alice.ack_alarm(a.id).unwrap();
    }

    // 2. An epoch before bob's first root, with another root: no append-only proof links it
    // to bob's chain.
    let first = (0..=newest)
        .find(|e| bob.engine().kt_verified_root(*e).unwrap().is_some())
        .unwrap();
    assert!(first >= 1, "bob pinned after alice registered");
    let forked_old = SignedRoot::sign(&sk, first - 1, [0x6b; 32]);
    alice.engine_mut().set_kt_root(&forked_old).unwrap();
    alice.send_text(&to_bob, "older fork").await.unwrap();
    assert_eq!(texts(&bob.sync().await.unwrap()), vec!["older fork"]);
    let found = split_views(&bob);
    assert_eq!(found.len(), 1, "{:?}", bob.alarms(true));
    assert!(
        found[0].detail.contains("split view"),
        "{}",
        found[0].detail
    );
    assert_eq!(found[0].group.as_ref(), Some(&direct));
    bob.ack_alarm(found[0].id).unwrap();

    // 3. An epoch the directory signed for alice but will not prove to bob (past the newest
    // it admits): asked on each sync, the third refusal is the alarm.
    let ahead = SignedRoot::sign(&sk, newest + 40, [0x7c; 32]);
    alice.engine_mut().set_kt_root(&ahead).unwrap();
    alice.send_text(&to_bob, "far ahead").await.unwrap();
    assert_eq!(texts(&bob.sync().await.unwrap()), vec!["far ahead"]);
    assert!(split_views(&bob).is_empty());
    bob.sync().await.unwrap();
    assert!(split_views(&bob).is_empty());
    bob.sync().await.unwrap();
    let found = split_views(&bob);
    assert_eq!(found.len(), 1, "{:?}", bob.alarms(true));
    assert!(
        found[0].detail.contains("will not link"),
        "{}",
        found[0].detail
    );
    assert!(found[0].detail.contains(&hex::encode(ahead.encode())));
    // bob's own view never moved to any of alice's forks.
    let bobs = bob.engine().kt_root().unwrap().unwrap();
    assert_eq!(
        bob.engine().kt_verified_root(bobs.epoch).unwrap(),
        Some(bobs)
    );
    assert!(bobs.epoch <= newest_epoch(&w));
    // A root not signed by the directory (alice's own invention) is not the directory's
    // statement: nothing is raised about it.
    bob.ack_alarm(found[0].id).unwrap();
    let other = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
    alice
        .engine_mut()
        .set_kt_root(&SignedRoot::sign(&other, newest, [0x11; 32]))
        .unwrap();
    alice.send_text(&to_bob, "unsigned").await.unwrap();
    assert_eq!(texts(&bob.sync().await.unwrap()), vec!["unsigned"]);
    bob.sync().await.unwrap();
    assert!(split_views(&bob).is_empty(), "{:?}", bob.alarms(false));
}
