//! The storage conformance suite: every case is written once, generic over [`Store`], and
//! instantiated as a `#[tokio::test]` per backend by `conformance_suite!` at the bottom.
//!
//! - `store::conformance::sqlite_backend::*` always runs, each test on its own temporary file.
//! - `store::conformance::postgres_backend::*` runs when `HAVEN_TEST_POSTGRES_URL` names a
//!   PostgreSQL database (e.g. `postgres://postgres@127.0.0.1:5432/haven_ci`). Each test works
//!   in a fresh schema `haven_t_<random>` (set as the pool's `search_path`), dropped at the end,
//!   so tests run in parallel and the suite can run again and again on one database. Without the
//!   variable each of these tests writes a `SKIPPED` line to stderr (past the test harness's
//!   capture) and returns.

use std::collections::BTreeSet;
use std::future::Future;
use std::io::Write as _;
use std::panic::AssertUnwindSafe;
use std::str::FromStr;
use std::sync::Arc;

use futures_util::FutureExt as _;
use haven_proto::api::EntryKind;
use haven_proto::{DeviceId, GroupId, UserName};
use sha2::Digest as _;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::AssertSqlSafe;

use super::postgres::PgStore;
use super::sqlite::SqliteStore;
use super::*;

pub(crate) const NOW: Millis = 1_700_000_000_000;
pub(crate) const TTL: Millis = 30 * 24 * 3600 * 1000;

pub(crate) const LIMITS: Limits = Limits {
    max_group_members: 100,
    max_key_packages: 10,
    max_queue_depth: 1000,
    max_queue_bytes: 1 << 30,
    max_account_queue_bytes: 1 << 30,
    share_device_depth: 1000,
    share_device_bytes: 1 << 30,
    share_account_depth: 1000,
    share_account_bytes: 1 << 30,
    max_devices: 100,
};

pub(crate) fn dev(n: u8) -> DeviceId {
    DeviceId::from_bytes([n; 16])
}

pub(crate) fn user(name: &str) -> UserName {
    UserName::new(name).unwrap()
}

pub(crate) fn gid(n: u8) -> GroupId {
    GroupId::from_bytes(&[n; 16]).unwrap()
}

pub(crate) fn new_device(id: &DeviceId, created_at: Millis) -> NewDevice {
    NewDevice {
        device_id: id.clone(),
        name: format!("device {id}"),
        auth_key: vec![7; 32],
        mls_key: vec![9; 32],
        created_at,
    }
}

/// A stored key package whose reference is its SHA-256 (the store treats both as opaque).
fn kp(bytes: &[u8]) -> NewKeyPackage {
    NewKeyPackage {
        bytes: bytes.to_vec(),
        kp_ref: sha2::Sha256::digest(bytes).to_vec(),
    }
}

fn kps(list: &[&[u8]]) -> Vec<NewKeyPackage> {
    list.iter().map(|b| kp(b)).collect()
}

/// Group state bytes (opaque to the store).
const STATE0: &[u8] = b"public state at epoch 0";

/// A claim by `claimer` for `group`, live for a minute.
fn claim_by(claimer: &DeviceId, group: &GroupId) -> KeyPackageClaim {
    KeyPackageClaim {
        claimer: claimer.clone(),
        group: group.clone(),
        expires_at: NOW + 60_000,
        one_time: true,
    }
}

pub(crate) fn message(
    kind: EntryKind,
    group: Option<&GroupId>,
    sender: Option<&DeviceId>,
    payload: &[u8],
) -> NewMessage {
    NewMessage {
        kind,
        group_id: group.cloned(),
        sender: sender.cloned(),
        payload: payload.to_vec(),
        frank: None,
        received_at: NOW,
        expires_at: NOW + TTL,
    }
}

fn app(group: &GroupId, sender: &DeviceId, payload: &[u8]) -> NewMessage {
    let mut m = message(EntryKind::Application, Some(group), Some(sender), payload);
    m.frank = Some(StoredFrank {
        commitment: vec![0xc0; 32],
        server_tag: vec![0x5e; 32],
    });
    m
}

pub(crate) fn commit(
    group: &GroupId,
    epoch: u64,
    sender: &DeviceId,
    added: &[&DeviceId],
    removed: &[&DeviceId],
) -> CommitApply {
    let payload = format!("commit {epoch} by {sender}");
    // Every call makes a distinct commit, as every MLS commit (fresh signature and path
    // secrets) hashes differently; resubmission tests reuse the returned value.
    static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let serial = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let commit_sha256 = sha2::Sha256::digest(format!("{payload} #{serial}")).into();
    CommitApply {
        group_id: group.clone(),
        epoch,
        sender: sender.clone(),
        commit_sha256,
        added: added.iter().map(|d| (*d).clone()).collect(),
        removed: removed.iter().map(|d| (*d).clone()).collect(),
        claimed: Vec::new(),
        public_state: format!("public state after {payload} #{serial}").into_bytes(),
        commit: message(
            EntryKind::Commit,
            Some(group),
            Some(sender),
            payload.as_bytes(),
        ),
        welcome: (!added.is_empty()).then(|| {
            message(
                EntryKind::Welcome,
                Some(group),
                Some(sender),
                format!("welcome {epoch} by {sender}").as_bytes(),
            )
        }),
    }
}

async fn queue<S: Store>(s: &S, device: &DeviceId) -> Vec<QueuedMessage> {
    s.fetch_queue(device, 0, 10_000, NOW).await.unwrap()
}

async fn payloads<S: Store>(s: &S, device: &DeviceId) -> Vec<(EntryKind, Vec<u8>)> {
    queue(s, device)
        .await
        .into_iter()
        .map(|m| (m.kind, m.payload))
        .collect()
}

/// alice (a1 = dev 1), bob (b1 = dev 2), carol (c1 = dev 3), dave (d1 = dev 4).
pub(crate) async fn people<S: Store>(s: &S) {
    for (i, name) in ["alice", "bob", "carol", "dave"].iter().enumerate() {
        let n = u8::try_from(i).unwrap() + 1;
        s.create_user(&user(name), &new_device(&dev(n), NOW + Millis::from(n)))
            .await
            .unwrap();
    }
}

/// A group `gid(1)` created by a1 with `others` added at epoch 0 (so at epoch 1), queues
/// drained.
pub(crate) async fn group_with<S: Store>(s: &S, others: &[&DeviceId]) -> GroupId {
    let g = gid(1);
    s.create_group(&g, &dev(1), NOW, STATE0).await.unwrap();
    if !others.is_empty() {
        s.apply_commit(&commit(&g, 0, &dev(1), others, &[]), &LIMITS)
            .await
            .unwrap();
    }
    for n in 1..=4 {
        let ids: Vec<i64> = queue(s, &dev(n)).await.iter().map(|m| m.id).collect();
        s.ack(&dev(n), &ids).await.unwrap();
    }
    g
}

/// Everything a failed write could have changed: the group and every device's queue.
async fn snapshot<S: Store>(s: &S, g: &GroupId) -> (Option<GroupRecord>, Vec<Vec<QueuedMessage>>) {
    let mut queues = Vec::new();
    for n in 1..=9 {
        queues.push(queue(s, &dev(n)).await);
    }
    (s.group(g).await.unwrap(), queues)
}

// --- accounts and devices ---

async fn create_user_and_lookup<S: Store>(s: Arc<S>) {
    let alice = user("alice");
    s.create_user(&alice, &new_device(&dev(1), NOW))
        .await
        .unwrap();
    let record = s.device(&dev(1)).await.unwrap().unwrap();
    assert_eq!(
        record,
        DeviceRecord {
            device_id: dev(1),
            user: alice.clone(),
            name: format!("device {}", dev(1)),
            auth_key: vec![7; 32],
            mls_key: Some(vec![9; 32]),
            created_at: NOW
        }
    );
    assert_eq!(s.user_devices(&alice).await.unwrap(), Some(vec![record]));
    assert_eq!(s.user_devices(&user("nobody")).await.unwrap(), None);
    assert_eq!(s.device(&dev(99)).await.unwrap(), None);
}

async fn duplicate_user_or_device_writes_nothing<S: Store>(s: Arc<S>) {
    s.create_user(&user("alice"), &new_device(&dev(1), NOW))
        .await
        .unwrap();
    let e = s
        .create_user(&user("alice"), &new_device(&dev(2), NOW))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::AlreadyExists("user")), "{e:?}");
    assert_eq!(s.device(&dev(2)).await.unwrap(), None);
    // A new user whose device id is taken: the user is not created either.
    let e = s
        .create_user(&user("bob"), &new_device(&dev(1), NOW))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::AlreadyExists("device")), "{e:?}");
    assert_eq!(s.user_devices(&user("bob")).await.unwrap(), None);
    assert_eq!(
        s.device(&dev(1)).await.unwrap().unwrap().user,
        user("alice")
    );
}

async fn create_user_race_one_winner<S: Store>(s: Arc<S>) {
    let mut tasks = Vec::new();
    for n in 1..=8u8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.create_user(&user("alice"), &new_device(&dev(n), NOW))
                .await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => ok += 1,
            Err(StoreError::AlreadyExists("user")) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(
        s.user_devices(&user("alice")).await.unwrap().unwrap().len(),
        1
    );
}

// --- login ---

async fn challenge_single_use_and_expiry<S: Store>(s: Arc<S>) {
    people(&*s).await;
    s.put_challenge(b"nonce-1", &dev(1), NOW + 10)
        .await
        .unwrap();
    // Another device cannot take it, and trying does not consume it.
    assert!(!s.take_challenge(b"nonce-1", &dev(2), NOW).await.unwrap());
    assert!(s
        .take_challenge(b"nonce-1", &dev(1), NOW + 9)
        .await
        .unwrap());
    assert!(!s.take_challenge(b"nonce-1", &dev(1), NOW).await.unwrap());
    // Expired at its expiry time.
    s.put_challenge(b"nonce-2", &dev(1), NOW + 10)
        .await
        .unwrap();
    assert!(!s
        .take_challenge(b"nonce-2", &dev(1), NOW + 10)
        .await
        .unwrap());
    assert!(!s
        .take_challenge(b"never-issued", &dev(1), NOW)
        .await
        .unwrap());
    let e = s
        .put_challenge(b"nonce-3", &dev(99), NOW + 10)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NotFound("device")), "{e:?}");
    s.put_challenge(b"nonce-4", &dev(1), NOW + 10)
        .await
        .unwrap();
    let e = s
        .put_challenge(b"nonce-4", &dev(1), NOW + 10)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::AlreadyExists("challenge")), "{e:?}");
}

async fn challenge_race_single_use<S: Store>(s: Arc<S>) {
    people(&*s).await;
    s.put_challenge(b"nonce", &dev(1), NOW + 10).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.take_challenge(b"nonce", &dev(1), NOW).await.unwrap()
        }));
    }
    let mut taken = 0;
    for t in tasks {
        taken += usize::from(t.await.unwrap());
    }
    assert_eq!(taken, 1);
}

async fn sessions_expire<S: Store>(s: Arc<S>) {
    people(&*s).await;
    s.put_session(b"token-hash", &dev(1), NOW + 10)
        .await
        .unwrap();
    assert_eq!(
        s.session_device(b"token-hash", NOW).await.unwrap(),
        Some(dev(1))
    );
    assert_eq!(
        s.session_device(b"token-hash", NOW + 9).await.unwrap(),
        Some(dev(1))
    );
    assert_eq!(
        s.session_device(b"token-hash", NOW + 10).await.unwrap(),
        None
    );
    assert_eq!(s.session_device(b"other", NOW).await.unwrap(), None);
    // The same lookup with the device's user, for every request's authentication.
    assert_eq!(
        s.session_account(b"token-hash", NOW + 9).await.unwrap(),
        Some((dev(1), user("alice")))
    );
    assert_eq!(
        s.session_account(b"token-hash", NOW + 10).await.unwrap(),
        None
    );
    assert_eq!(s.session_account(b"other", NOW).await.unwrap(), None);
    let e = s.put_session(b"x", &dev(99), NOW + 10).await.unwrap_err();
    assert!(matches!(e, StoreError::NotFound("device")), "{e:?}");
    let e = s
        .put_session(b"token-hash", &dev(2), NOW + 10)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::AlreadyExists("session")), "{e:?}");
    // Purged, it is gone even for a clock that is behind.
    s.purge_expired(NOW + 10).await.unwrap();
    assert_eq!(s.session_device(b"token-hash", NOW).await.unwrap(), None);
}

// --- sessions and device removal ---

async fn sessions_revoke_one_or_all<S: Store>(s: Arc<S>) {
    people(&*s).await;
    let alice = user("alice");
    s.put_link_code(b"code", &alice, NOW + 60).await.unwrap();
    let ev = message(EntryKind::DeviceLinked, None, None, b"linked");
    s.link_device(b"code", NOW, &new_device(&dev(5), NOW), &ev, &LIMITS)
        .await
        .unwrap();
    for (hash, d) in [(b"t1", 1), (b"t2", 1), (b"t5", 5), (b"tb", 2)] {
        s.put_session(hash, &dev(d), NOW + 100).await.unwrap();
    }
    assert!(s.revoke_session(b"t1").await.unwrap());
    assert!(!s.revoke_session(b"t1").await.unwrap());
    assert_eq!(s.session_device(b"t1", NOW).await.unwrap(), None);
    assert_eq!(s.session_device(b"t2", NOW).await.unwrap(), Some(dev(1)));
    // Every session of every device of alice; bob's stays.
    assert_eq!(s.revoke_user_sessions(&alice).await.unwrap(), 2);
    assert_eq!(s.session_device(b"t2", NOW).await.unwrap(), None);
    assert_eq!(s.session_device(b"t5", NOW).await.unwrap(), None);
    assert_eq!(s.session_account(b"t5", NOW).await.unwrap(), None);
    assert_eq!(s.session_device(b"tb", NOW).await.unwrap(), Some(dev(2)));
    assert_eq!(s.revoke_user_sessions(&user("nobody")).await.unwrap(), 0);
}

async fn revoke_device_cuts_it_off<S: Store>(s: Arc<S>) {
    people(&*s).await;
    let alice = user("alice");
    let removed = |d: &DeviceId| {
        message(
            EntryKind::DeviceRemoved,
            None,
            None,
            format!("removed {d}").as_bytes(),
        )
    };
    // Alice's only device cannot go; nothing changes.
    assert!(matches!(
        s.revoke_device(&dev(1), NOW, &removed(&dev(1)), &LIMITS)
            .await,
        Err(StoreError::LastDevice)
    ));
    assert!(s.device(&dev(1)).await.unwrap().is_some());
    s.put_link_code(b"code", &alice, NOW + 60).await.unwrap();
    let ev = message(EntryKind::DeviceLinked, None, None, b"linked");
    s.link_device(b"code", NOW, &new_device(&dev(5), NOW), &ev, &LIMITS)
        .await
        .unwrap();
    let ids: Vec<i64> = queue(&*s, &dev(1)).await.iter().map(|m| m.id).collect();
    s.ack(&dev(1), &ids).await.unwrap();
    // dev(5) is in a group with bob, holds a session, key packages, a claim and queued entries.
    let g = gid(1);
    s.create_group(&g, &dev(2), NOW, STATE0).await.unwrap();
    s.add_key_packages(&dev(5), &kps(&[b"kp5"]), Some(&kp(b"lr5")), &LIMITS)
        .await
        .unwrap();
    s.claim_key_packages(&alice, &claim_by(&dev(2), &g))
        .await
        .unwrap();
    s.apply_commit(&commit(&g, 0, &dev(2), &[&dev(5)], &[]), &LIMITS)
        .await
        .unwrap();
    s.enqueue_group(&g, &dev(2), &app(&g, &dev(2), b"to 5"), &LIMITS)
        .await
        .unwrap();
    s.put_session(b"t5", &dev(5), NOW + 100).await.unwrap();
    s.put_challenge(b"n5", &dev(5), NOW + 100).await.unwrap();
    s.put_link_code(b"code-2", &alice, NOW + 60).await.unwrap();
    assert!(!queue(&*s, &dev(5)).await.is_empty());

    let groups = s
        .revoke_device(&dev(5), NOW + 1, &removed(&dev(5)), &LIMITS)
        .await
        .unwrap();
    assert_eq!(groups, vec![g.clone()]);
    // Gone for every reader and writer.
    assert_eq!(s.device(&dev(5)).await.unwrap(), None);
    let live: Vec<DeviceId> = s
        .user_devices(&alice)
        .await
        .unwrap()
        .unwrap()
        .into_iter()
        .map(|d| d.device_id)
        .collect();
    assert_eq!(live, vec![dev(1)]);
    assert_eq!(s.session_device(b"t5", NOW).await.unwrap(), None);
    assert_eq!(s.session_account(b"t5", NOW).await.unwrap(), None);
    assert!(!s.take_challenge(b"n5", &dev(5), NOW).await.unwrap());
    assert!(matches!(
        s.put_session(b"t5b", &dev(5), NOW + 100).await,
        Err(StoreError::NotFound("device"))
    ));
    assert!(matches!(
        s.put_challenge(b"n5b", &dev(5), NOW + 100).await,
        Err(StoreError::NotFound("device"))
    ));
    assert_eq!(s.key_package_count(&dev(5)).await.unwrap(), (0, false));
    assert!(queue(&*s, &dev(5)).await.is_empty());
    assert_eq!(s.group(&g).await.unwrap().unwrap().members, vec![dev(2)]);
    // Its user's outstanding link codes are void.
    assert!(matches!(
        s.link_device(b"code-2", NOW, &new_device(&dev(6), NOW), &ev, &LIMITS)
            .await,
        Err(StoreError::NotFound("link code"))
    ));
    // The user's other device is told; nobody else is.
    assert_eq!(
        payloads(&*s, &dev(1)).await,
        vec![(
            EntryKind::DeviceRemoved,
            format!("removed {}", dev(5)).into_bytes()
        )]
    );
    assert!(payloads(&*s, &dev(3)).await.is_empty());
    // Removing it again, or removing alice's last device now, is refused.
    assert!(matches!(
        s.revoke_device(&dev(5), NOW, &removed(&dev(5)), &LIMITS)
            .await,
        Err(StoreError::NotFound("device"))
    ));
    assert!(matches!(
        s.revoke_device(&dev(1), NOW, &removed(&dev(1)), &LIMITS)
            .await,
        Err(StoreError::LastDevice)
    ));
}

async fn server_secret_get_and_delete<S: Store>(s: Arc<S>) {
    assert_eq!(s.get_server_secret("k").await.unwrap(), None);
    s.server_secret("k", &[4; 32]).await.unwrap();
    assert_eq!(s.get_server_secret("k").await.unwrap(), Some(vec![4; 32]));
    assert!(s.delete_server_secret("k").await.unwrap());
    assert!(!s.delete_server_secret("k").await.unwrap());
    assert_eq!(s.get_server_secret("k").await.unwrap(), None);
    // A deleted name can be set afresh.
    assert_eq!(s.server_secret("k", &[5; 32]).await.unwrap(), vec![5; 32]);
}

// --- device linking ---

async fn link_device_notifies_other_devices_only<S: Store>(s: Arc<S>) {
    people(&*s).await;
    let alice = user("alice");
    let event = |d: &DeviceId| {
        message(
            EntryKind::DeviceLinked,
            None,
            Some(d),
            format!("linked {d}").as_bytes(),
        )
    };
    s.put_link_code(b"code-1", &alice, NOW + 60).await.unwrap();
    let linked = s
        .link_device(
            b"code-1",
            NOW,
            &new_device(&dev(5), NOW + 100),
            &event(&dev(5)),
            &LIMITS,
        )
        .await
        .unwrap();
    assert_eq!(linked, alice);
    assert_eq!(s.device(&dev(5)).await.unwrap().unwrap().user, alice);
    let a1 = queue(&*s, &dev(1)).await;
    assert_eq!(a1.len(), 1);
    assert_eq!(a1[0].kind, EntryKind::DeviceLinked);
    assert_eq!(a1[0].sender, Some((alice.clone(), dev(5))));
    assert_eq!(a1[0].payload, format!("linked {}", dev(5)).into_bytes());
    assert!(queue(&*s, &dev(5)).await.is_empty());
    for n in 2..=4 {
        assert!(
            queue(&*s, &dev(n)).await.is_empty(),
            "device {n} of another user got the event"
        );
    }
    // A third device: both earlier devices hear of it; it sorts first by creation time.
    s.put_link_code(b"code-2", &alice, NOW + 60).await.unwrap();
    s.link_device(
        b"code-2",
        NOW,
        &new_device(&dev(6), NOW - 5),
        &event(&dev(6)),
        &LIMITS,
    )
    .await
    .unwrap();
    assert_eq!(payloads(&*s, &dev(1)).await.len(), 2);
    assert_eq!(
        payloads(&*s, &dev(5)).await,
        vec![(
            EntryKind::DeviceLinked,
            format!("linked {}", dev(6)).into_bytes()
        )]
    );
    assert!(queue(&*s, &dev(6)).await.is_empty());
    let devices: Vec<DeviceId> = s
        .user_devices(&alice)
        .await
        .unwrap()
        .unwrap()
        .into_iter()
        .map(|d| d.device_id)
        .collect();
    assert_eq!(devices, vec![dev(6), dev(1), dev(5)]);
}

async fn link_code_single_use_expiry_and_atomic<S: Store>(s: Arc<S>) {
    people(&*s).await;
    let alice = user("alice");
    let event = message(EntryKind::DeviceLinked, None, None, b"linked");
    let e = s
        .put_link_code(b"code", &user("nobody"), NOW + 60)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NotFound("user")), "{e:?}");
    s.put_link_code(b"code", &alice, NOW + 60).await.unwrap();
    // Failure (the device id is taken) writes nothing: the code survives, no event is queued.
    let e = s
        .link_device(b"code", NOW, &new_device(&dev(2), NOW), &event, &LIMITS)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::AlreadyExists("device")), "{e:?}");
    assert!(queue(&*s, &dev(1)).await.is_empty());
    assert_eq!(s.user_devices(&alice).await.unwrap().unwrap().len(), 1);
    s.link_device(b"code", NOW, &new_device(&dev(5), NOW), &event, &LIMITS)
        .await
        .unwrap();
    // Single use.
    let e = s
        .link_device(b"code", NOW, &new_device(&dev(6), NOW), &event, &LIMITS)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NotFound("link code")), "{e:?}");
    assert_eq!(s.device(&dev(6)).await.unwrap(), None);
    // Unknown and expired codes.
    let e = s
        .link_device(b"unknown", NOW, &new_device(&dev(6), NOW), &event, &LIMITS)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NotFound("link code")), "{e:?}");
    s.put_link_code(b"old", &alice, NOW + 60).await.unwrap();
    let e = s
        .link_device(b"old", NOW + 60, &new_device(&dev(6), NOW), &event, &LIMITS)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NotFound("link code")), "{e:?}");
    assert_eq!(s.device(&dev(6)).await.unwrap(), None);
    assert_eq!(queue(&*s, &dev(1)).await.len(), 1);
}

// --- key packages ---

async fn key_package_limits<S: Store>(s: Arc<S>) {
    people(&*s).await;
    let limits = Limits {
        max_key_packages: 3,
        ..LIMITS
    };
    assert_eq!(s.key_package_count(&dev(1)).await.unwrap(), (0, false));
    assert_eq!(
        s.add_key_packages(&dev(1), &kps(&[b"p1", b"p2"]), None, &limits)
            .await
            .unwrap(),
        2
    );
    assert_eq!(s.key_package_count(&dev(1)).await.unwrap(), (2, false));
    // Over the limit: nothing written, not even the last-resort package.
    let e = s
        .add_key_packages(&dev(1), &kps(&[b"p3", b"p4"]), Some(&kp(b"lr")), &limits)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::Limit {
                what: "key packages",
                max: 3
            }
        ),
        "{e:?}"
    );
    assert_eq!(s.key_package_count(&dev(1)).await.unwrap(), (2, false));
    assert_eq!(
        s.add_key_packages(&dev(1), &kps(&[b"p3"]), Some(&kp(b"lr")), &limits)
            .await
            .unwrap(),
        3
    );
    assert_eq!(s.key_package_count(&dev(1)).await.unwrap(), (3, true));
    // Replacing only the last-resort package is always allowed.
    assert_eq!(
        s.add_key_packages(&dev(1), &[], Some(&kp(b"lr2")), &limits)
            .await
            .unwrap(),
        3
    );
    let e = s
        .add_key_packages(&dev(99), &kps(&[b"p"]), None, &limits)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NotFound("device")), "{e:?}");
    // Other devices are counted separately.
    assert_eq!(s.key_package_count(&dev(2)).await.unwrap(), (0, false));
}

async fn claim_key_packages_order_and_last_resort<S: Store>(s: Arc<S>) {
    people(&*s).await;
    let alice = user("alice");
    let event = message(EntryKind::DeviceLinked, None, None, b"linked");
    s.put_link_code(b"code-5", &alice, NOW + 60).await.unwrap();
    s.link_device(
        b"code-5",
        NOW,
        &new_device(&dev(5), NOW + 100),
        &event,
        &LIMITS,
    )
    .await
    .unwrap();
    s.put_link_code(b"code-6", &alice, NOW + 60).await.unwrap();
    s.link_device(
        b"code-6",
        NOW,
        &new_device(&dev(6), NOW + 200),
        &event,
        &LIMITS,
    )
    .await
    .unwrap();
    s.create_group(&gid(1), &dev(2), NOW, STATE0).await.unwrap();
    // a1: two one-time packages and a last-resort one; dev 5: nothing; dev 6: last resort only.
    s.add_key_packages(
        &dev(1),
        &kps(&[b"a1-p1", b"a1-p2"]),
        Some(&kp(b"a1-lr")),
        &LIMITS,
    )
    .await
    .unwrap();
    s.add_key_packages(&dev(6), &[], Some(&kp(b"d6-lr")), &LIMITS)
        .await
        .unwrap();
    s.add_key_packages(&dev(2), &kps(&[b"bob"]), None, &LIMITS)
        .await
        .unwrap();
    let claim = |expect_a1: &'static [u8]| {
        let s = s.clone();
        let alice = alice.clone();
        async move {
            let got = s
                .claim_key_packages(&alice, &claim_by(&dev(2), &gid(1)))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                got,
                vec![(dev(1), expect_a1.to_vec()), (dev(6), b"d6-lr".to_vec())]
            );
        }
    };
    claim(b"a1-p1").await;
    claim(b"a1-p2").await;
    claim(b"a1-lr").await;
    claim(b"a1-lr").await;
    assert_eq!(s.key_package_count(&dev(1)).await.unwrap(), (0, true));
    assert_eq!(s.key_package_count(&dev(2)).await.unwrap(), (1, false));
    assert_eq!(
        s.claim_key_packages(&user("carol"), &claim_by(&dev(2), &gid(1)))
            .await
            .unwrap(),
        Some(vec![])
    );
    assert_eq!(
        s.claim_key_packages(&user("nobody"), &claim_by(&dev(2), &gid(1)))
            .await
            .unwrap(),
        None
    );
}

async fn claim_key_packages_race_distinct<S: Store>(s: Arc<S>) {
    people(&*s).await;
    let packages: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; 8]).collect();
    let stored: Vec<NewKeyPackage> = packages.iter().map(|p| kp(p)).collect();
    s.create_group(&gid(1), &dev(1), NOW, STATE0).await.unwrap();
    s.add_key_packages(&dev(2), &stored, Some(&kp(b"lr")), &LIMITS)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.claim_key_packages(&user("bob"), &claim_by(&dev(1), &gid(1)))
                .await
                .unwrap()
                .unwrap()
        }));
    }
    let mut got = BTreeSet::new();
    for t in tasks {
        let claimed = t.await.unwrap();
        assert_eq!(claimed.len(), 1);
        assert!(
            got.insert(claimed[0].1.clone()),
            "a one-time package was handed out twice"
        );
    }
    assert_eq!(got, packages.into_iter().collect());
    assert_eq!(s.key_package_count(&dev(2)).await.unwrap(), (0, true));
}

// --- groups ---

async fn create_group_and_duplicate<S: Store>(s: Arc<S>) {
    people(&*s).await;
    let g = gid(1);
    s.create_group(&g, &dev(1), NOW, STATE0).await.unwrap();
    assert_eq!(
        s.group(&g).await.unwrap(),
        Some(GroupRecord {
            group_id: g.clone(),
            epoch: 0,
            members: vec![dev(1)]
        })
    );
    let e = s.create_group(&g, &dev(2), NOW, STATE0).await.unwrap_err();
    assert!(matches!(e, StoreError::AlreadyExists("group")), "{e:?}");
    assert_eq!(s.group(&g).await.unwrap().unwrap().members, vec![dev(1)]);
    let e = s
        .create_group(&gid(2), &dev(99), NOW, STATE0)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NotFound("device")), "{e:?}");
    assert_eq!(s.group(&gid(2)).await.unwrap(), None);
    // Group ids are compared as bytes, at every length.
    let long = GroupId::from_bytes(&[1; 64]).unwrap();
    s.create_group(&long, &dev(1), NOW, STATE0).await.unwrap();
    assert_eq!(s.group(&long).await.unwrap().unwrap().epoch, 0);
}

async fn apply_commit_routes_commit_and_welcome<S: Store>(s: Arc<S>) {
    people(&*s).await;
    let g = gid(1);
    s.create_group(&g, &dev(1), NOW, STATE0).await.unwrap();
    // a1 adds b1 and c1: the commit goes to nobody (a1 was alone), the Welcome to b1 and c1.
    let c = commit(&g, 0, &dev(1), &[&dev(2), &dev(3)], &[]);
    let after = s.apply_commit(&c, &LIMITS).await.unwrap();
    assert_eq!(
        after,
        GroupRecord {
            group_id: g.clone(),
            epoch: 1,
            members: vec![dev(1), dev(2), dev(3)]
        }
    );
    assert_eq!(s.group(&g).await.unwrap(), Some(after));
    assert!(queue(&*s, &dev(1)).await.is_empty());
    for n in [2, 3] {
        let q = queue(&*s, &dev(n)).await;
        assert_eq!(q.len(), 1);
        assert_eq!(q[0].kind, EntryKind::Welcome);
        assert_eq!(q[0].group_id, Some(g.clone()));
        assert_eq!(q[0].sender, Some((user("alice"), dev(1))));
        assert_eq!(q[0].payload, c.welcome.as_ref().unwrap().payload);
        assert_eq!(q[0].frank, None);
    }
    // b1 removes c1 and adds d1: the commit goes to a1 and to the removed c1 (not to b1), the
    // Welcome to d1 only.
    let c = commit(&g, 1, &dev(2), &[&dev(4)], &[&dev(3)]);
    let after = s.apply_commit(&c, &LIMITS).await.unwrap();
    assert_eq!(after.epoch, 2);
    assert_eq!(after.members, vec![dev(1), dev(2), dev(4)]);
    assert_eq!(
        payloads(&*s, &dev(1)).await,
        vec![(EntryKind::Commit, c.commit.payload.clone())]
    );
    assert_eq!(payloads(&*s, &dev(2)).await.len(), 1);
    assert_eq!(
        payloads(&*s, &dev(3)).await.last().unwrap(),
        &(EntryKind::Commit, c.commit.payload.clone())
    );
    assert_eq!(
        payloads(&*s, &dev(4)).await,
        vec![(EntryKind::Welcome, c.welcome.clone().unwrap().payload)]
    );
    // A commit without changes, from d1: to a1 and b1; c1 is no longer routed to.
    let c = commit(&g, 2, &dev(4), &[], &[]);
    assert_eq!(s.apply_commit(&c, &LIMITS).await.unwrap().epoch, 3);
    assert_eq!(payloads(&*s, &dev(1)).await.len(), 2);
    assert_eq!(payloads(&*s, &dev(2)).await.len(), 2);
    assert_eq!(payloads(&*s, &dev(3)).await.len(), 2);
    assert_eq!(payloads(&*s, &dev(4)).await.len(), 1);
    // c1 can no longer send to the group.
    let e = s
        .enqueue_group(&g, &dev(3), &app(&g, &dev(3), b"hi"), &LIMITS)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NotMember), "{e:?}");
}

/// The committer resubmitting the commit an earlier epoch accepted gets the current state and
/// changes nothing; the same bytes from another device, or another commit for that epoch, are
/// still a conflict.
async fn apply_commit_resubmission_is_recognised<S: Store>(s: Arc<S>) {
    people(&*s).await;
    let g = gid(1);
    s.create_group(&g, &dev(1), NOW, STATE0).await.unwrap();
    let first = commit(&g, 0, &dev(1), &[&dev(2)], &[]);
    assert_eq!(s.apply_commit(&first, &LIMITS).await.unwrap().epoch, 1);
    let second = commit(&g, 1, &dev(2), &[&dev(3)], &[]);
    assert_eq!(s.apply_commit(&second, &LIMITS).await.unwrap().epoch, 2);
    let before = snapshot(&*s, &g).await;
    for c in [&first, &second] {
        let again = s.apply_commit(c, &LIMITS).await.unwrap();
        assert_eq!(again.epoch, 2);
        assert_eq!(again.members, vec![dev(1), dev(2), dev(3)]);
    }
    assert_eq!(snapshot(&*s, &g).await, before);
    let mut other_sender = first.clone();
    other_sender.sender = dev(2);
    let mut other_commit = first.clone();
    other_commit.commit_sha256[0] ^= 1;
    for c in [&other_sender, &other_commit] {
        let e = s.apply_commit(c, &LIMITS).await.unwrap_err();
        assert!(
            matches!(e, StoreError::EpochConflict { current: 2 }),
            "{e:?}"
        );
    }
    assert_eq!(snapshot(&*s, &g).await, before);
    // The record lives as long as the commit's time-to-live; after the purge a resubmission is
    // an ordinary stale commit.
    s.purge_expired(NOW + TTL - 1).await.unwrap();
    assert_eq!(s.apply_commit(&second, &LIMITS).await.unwrap().epoch, 2);
    s.purge_expired(NOW + TTL).await.unwrap();
    let e = s.apply_commit(&second, &LIMITS).await.unwrap_err();
    assert!(
        matches!(e, StoreError::EpochConflict { current: 2 }),
        "{e:?}"
    );
}

async fn apply_commit_rejections_write_nothing<S: Store>(s: Arc<S>) {
    people(&*s).await;
    let g = group_with(&*s, &[&dev(2)]).await; // epoch 1, members a1, b1
    let before = snapshot(&*s, &g).await;
    let expect = |r: StoreResult<GroupRecord>, what: &str, ok: fn(&StoreError) -> bool| match r {
        Err(e) if ok(&e) => {}
        other => panic!("{what}: unexpected {other:?}"),
    };
    expect(
        s.apply_commit(&commit(&g, 0, &dev(1), &[&dev(3)], &[]), &LIMITS)
            .await,
        "stale",
        |e| matches!(e, StoreError::EpochConflict { current: 1 }),
    );
    expect(
        s.apply_commit(&commit(&g, 5, &dev(1), &[&dev(3)], &[]), &LIMITS)
            .await,
        "future",
        |e| matches!(e, StoreError::EpochConflict { current: 1 }),
    );
    expect(
        s.apply_commit(&commit(&g, 1, &dev(3), &[&dev(4)], &[]), &LIMITS)
            .await,
        "non-member",
        |e| matches!(e, StoreError::NotMember),
    );
    expect(
        s.apply_commit(&commit(&g, 1, &dev(1), &[&dev(2)], &[]), &LIMITS)
            .await,
        "add member",
        |e| matches!(e, StoreError::InvalidMembership(_)),
    );
    expect(
        s.apply_commit(&commit(&g, 1, &dev(1), &[&dev(3), &dev(3)], &[]), &LIMITS)
            .await,
        "add twice",
        |e| matches!(e, StoreError::InvalidMembership(_)),
    );
    expect(
        s.apply_commit(&commit(&g, 1, &dev(1), &[], &[&dev(3)]), &LIMITS)
            .await,
        "remove non-member",
        |e| matches!(e, StoreError::InvalidMembership(_)),
    );
    expect(
        s.apply_commit(&commit(&g, 1, &dev(1), &[], &[&dev(2), &dev(2)]), &LIMITS)
            .await,
        "remove twice",
        |e| matches!(e, StoreError::InvalidMembership(_)),
    );
    expect(
        s.apply_commit(&commit(&g, 1, &dev(1), &[], &[&dev(1)]), &LIMITS)
            .await,
        "remove self",
        |e| matches!(e, StoreError::InvalidMembership(_)),
    );
    expect(
        s.apply_commit(&commit(&g, 1, &dev(1), &[&dev(3), &dev(99)], &[]), &LIMITS)
            .await,
        "unknown",
        |e| matches!(e, StoreError::NotFound("device")),
    );
    let two = Limits {
        max_group_members: 2,
        ..LIMITS
    };
    expect(
        s.apply_commit(&commit(&g, 1, &dev(1), &[&dev(3)], &[]), &two)
            .await,
        "members",
        |e| {
            matches!(
                e,
                StoreError::Limit {
                    what: "group members",
                    max: 2
                }
            )
        },
    );
    let mut unknown = commit(&g, 1, &dev(1), &[], &[]);
    unknown.group_id = gid(9);
    expect(
        s.apply_commit(&unknown, &LIMITS).await,
        "unknown group",
        |e| matches!(e, StoreError::NotFound("group")),
    );
    assert_eq!(snapshot(&*s, &g).await, before);
    // A full queue refuses the commit: b1 holds one entry (a1's message).
    s.enqueue_group(&g, &dev(1), &app(&g, &dev(1), b"fill"), &LIMITS)
        .await
        .unwrap();
    let before_full = snapshot(&*s, &g).await;
    let one = Limits {
        max_queue_depth: 1,
        ..LIMITS
    };
    expect(
        s.apply_commit(&commit(&g, 1, &dev(1), &[&dev(3)], &[]), &one)
            .await,
        "depth",
        |e| {
            matches!(
                e,
                StoreError::Limit {
                    what: "queue depth",
                    max: 1
                }
            )
        },
    );
    assert_eq!(snapshot(&*s, &g).await, before_full);
    // The Welcome's recipient counts too.
    s.enqueue_group(&g, &dev(2), &app(&g, &dev(2), b"x"), &LIMITS)
        .await
        .unwrap(); // a1 now 1 deep
    let ids: Vec<i64> = queue(&*s, &dev(2)).await.iter().map(|m| m.id).collect();
    s.ack(&dev(2), &ids).await.unwrap();
    let ids: Vec<i64> = queue(&*s, &dev(1)).await.iter().map(|m| m.id).collect();
    s.ack(&dev(1), &ids).await.unwrap();
    s.create_group(&gid(2), &dev(3), NOW, STATE0).await.unwrap();
    let g2 = gid(2);
    s.apply_commit(&commit(&g2, 0, &dev(3), &[&dev(4)], &[]), &LIMITS)
        .await
        .unwrap(); // d1: 1 welcome
    expect(
        s.apply_commit(&commit(&g, 1, &dev(1), &[&dev(4)], &[]), &one)
            .await,
        "welcome depth",
        |e| {
            matches!(
                e,
                StoreError::Limit {
                    what: "queue depth",
                    max: 1
                }
            )
        },
    );
    assert_eq!(s.group(&g).await.unwrap(), before.0);
    assert_eq!(payloads(&*s, &dev(4)).await.len(), 1);
    assert!(queue(&*s, &dev(2)).await.is_empty());
    // The group is still usable at epoch 1.
    assert_eq!(
        s.apply_commit(&commit(&g, 1, &dev(1), &[&dev(3)], &[]), &LIMITS)
            .await
            .unwrap()
            .epoch,
        2
    );
}

async fn apply_commit_race_one_winner_per_epoch<S: Store>(s: Arc<S>) {
    people(&*s).await;
    // Eight candidate devices to add, one per racer (dev 11..=18, users u11..u18).
    for n in 11..=18u8 {
        s.create_user(&user(&format!("u{n}")), &new_device(&dev(n), NOW))
            .await
            .unwrap();
    }
    let g = group_with(&*s, &[&dev(2), &dev(3)]).await; // epoch 1: a1, b1, c1
    for round in 0..2u64 {
        let epoch = 1 + round;
        let before = s.group(&g).await.unwrap().unwrap();
        let senders = [dev(1), dev(2), dev(3)];
        let mut tasks = Vec::new();
        for i in 0..8u8 {
            let s = s.clone();
            let sender = senders[usize::from(i) % 3].clone();
            let added = dev(11 + i);
            let c = if round == 0 {
                commit(&g, epoch, &sender, &[&added], &[])
            } else {
                commit(&g, epoch, &sender, &[], &[])
            };
            tasks.push(tokio::spawn(async move {
                (c.clone(), s.apply_commit(&c, &LIMITS).await)
            }));
        }
        let mut winners = Vec::new();
        for t in tasks {
            let (c, r) = t.await.unwrap();
            match r {
                Ok(rec) => winners.push((c, rec)),
                Err(StoreError::EpochConflict { current }) => assert_eq!(current, epoch + 1),
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "exactly one commit per epoch");
        let (c, rec) = winners.pop().unwrap();
        assert_eq!(rec.epoch, epoch + 1);
        assert_eq!(s.group(&g).await.unwrap().unwrap(), rec);
        // Every old member but the winner got exactly the winning commit of this epoch.
        for m in &before.members {
            let commits: Vec<Vec<u8>> = queue(&*s, m)
                .await
                .into_iter()
                .filter(|q| {
                    q.kind == EntryKind::Commit
                        && q.payload.starts_with(format!("commit {epoch} ").as_bytes())
                })
                .map(|q| q.payload)
                .collect();
            if *m == c.sender {
                assert!(commits.is_empty());
            } else {
                assert_eq!(commits, vec![c.commit.payload.clone()]);
            }
        }
        if round == 0 {
            // Only the winner's added device was welcomed.
            for n in 11..=18u8 {
                let welcomed = !queue(&*s, &dev(n)).await.is_empty();
                assert_eq!(welcomed, c.added == vec![dev(n)], "device {n}");
            }
            assert_eq!(rec.members.len(), 4);
        }
    }
}

async fn leave_group_removes_and_notifies<S: Store>(s: Arc<S>) {
    people(&*s).await;
    let g = group_with(&*s, &[&dev(2), &dev(3)]).await;
    let proposal = message(EntryKind::Proposal, Some(&g), Some(&dev(2)), b"remove me");
    // A full queue refuses the leave and keeps b1 a member.
    s.enqueue_group(&g, &dev(1), &app(&g, &dev(1), b"fill"), &LIMITS)
        .await
        .unwrap();
    let one = Limits {
        max_queue_depth: 1,
        ..LIMITS
    };
    let e = s
        .leave_group(&g, &dev(2), 1, &proposal, b"state with leave", &one)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::Limit {
                what: "queue depth",
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        s.group(&g).await.unwrap().unwrap().members,
        vec![dev(1), dev(2), dev(3)]
    );
    assert!(payloads(&*s, &dev(1)).await.is_empty());

    assert_eq!(
        s.leave_group(&g, &dev(2), 1, &proposal, b"state with leave", &LIMITS)
            .await
            .unwrap(),
        2
    );
    let rec = s.group(&g).await.unwrap().unwrap();
    assert_eq!(rec.epoch, 1);
    assert_eq!(rec.members, vec![dev(1), dev(3)]);
    assert_eq!(
        payloads(&*s, &dev(1)).await,
        vec![(EntryKind::Proposal, b"remove me".to_vec())]
    );
    assert_eq!(
        payloads(&*s, &dev(3)).await.last().unwrap(),
        &(EntryKind::Proposal, b"remove me".to_vec())
    );
    assert!(!payloads(&*s, &dev(2))
        .await
        .iter()
        .any(|(k, _)| *k == EntryKind::Proposal));
    let e = s
        .leave_group(&g, &dev(2), 1, &proposal, b"state with leave", &LIMITS)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NotMember), "{e:?}");
    let e = s
        .enqueue_group(&g, &dev(2), &app(&g, &dev(2), b"hi"), &LIMITS)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NotMember), "{e:?}");
    let e = s
        .leave_group(&gid(9), &dev(1), 1, &proposal, b"state", &LIMITS)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NotFound("group")), "{e:?}");
    // The last member can leave.
    assert_eq!(
        s.leave_group(&g, &dev(3), 1, &proposal, b"state with leave", &LIMITS)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.leave_group(&g, &dev(1), 1, &proposal, b"state with leave", &LIMITS)
            .await
            .unwrap(),
        0
    );
    assert!(s.group(&g).await.unwrap().unwrap().members.is_empty());
}

/// A commit may add a device only with a key package its committer claimed for this group,
/// unexpired; the claim is consumed, and a refused commit consumes nothing.
async fn key_package_claims_gate_adds<S: Store>(s: Arc<S>) {
    people(&*s).await;
    let g = group_with(&*s, &[]).await;
    s.create_group(&gid(2), &dev(3), NOW, STATE0).await.unwrap();
    s.add_key_packages(&dev(2), &kps(&[b"b1", b"b2"]), Some(&kp(b"b-lr")), &LIMITS)
        .await
        .unwrap();
    let with_claim = |kp_ref: Vec<u8>| {
        let mut c = commit(&g, 0, &dev(1), &[&dev(2)], &[]);
        c.claimed = vec![kp_ref];
        c
    };
    let refused =
        |e: StoreError| matches!(e, StoreError::InvalidMembership(w) if w.contains("claim"));
    // Never claimed.
    let before = snapshot(&*s, &g).await;
    let e = s
        .apply_commit(&with_claim(kp(b"b1").kp_ref), &LIMITS)
        .await
        .unwrap_err();
    assert!(refused(e));
    assert_eq!(snapshot(&*s, &g).await, before);
    // Claimed by c1 for its own group, or by a1 for another group: still not ours here.
    s.claim_key_packages(&user("bob"), &claim_by(&dev(3), &g))
        .await
        .unwrap();
    s.claim_key_packages(&user("bob"), &claim_by(&dev(1), &gid(2)))
        .await
        .unwrap();
    let e = s
        .apply_commit(&with_claim(kp(b"b1").kp_ref), &LIMITS)
        .await
        .unwrap_err();
    assert!(refused(e));
    // Expired.
    let expired = KeyPackageClaim {
        expires_at: NOW,
        ..claim_by(&dev(1), &g)
    };
    let got = s
        .claim_key_packages(&user("bob"), &expired)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        got,
        vec![(dev(2), b"b-lr".to_vec())],
        "one-time packages are gone"
    );
    let e = s
        .apply_commit(&with_claim(kp(b"b-lr").kp_ref), &LIMITS)
        .await
        .unwrap_err();
    assert!(refused(e));
    assert_eq!(snapshot(&*s, &g).await, before);
    // Renewed by a live claim: accepted, and the claim is consumed.
    s.claim_key_packages(&user("bob"), &claim_by(&dev(1), &g))
        .await
        .unwrap();
    let ok = with_claim(kp(b"b-lr").kp_ref);
    let after = s.apply_commit(&ok, &LIMITS).await.unwrap();
    assert_eq!(after.members, vec![dev(1), dev(2)]);
    s.apply_commit(&commit(&g, 1, &dev(1), &[], &[&dev(2)]), &LIMITS)
        .await
        .unwrap();
    let mut again = commit(&g, 2, &dev(1), &[&dev(2)], &[]);
    again.claimed = vec![kp(b"b-lr").kp_ref];
    let e = s.apply_commit(&again, &LIMITS).await.unwrap_err();
    assert!(refused(e), "a claim adds once");
    // Purge drops expired claims (a fresh claim at NOW + 60 s is gone after it).
    s.claim_key_packages(&user("bob"), &claim_by(&dev(1), &g))
        .await
        .unwrap();
    s.purge_expired(NOW + 120_000).await.unwrap();
    let e = s.apply_commit(&again, &LIMITS).await.unwrap_err();
    assert!(matches!(e, StoreError::InvalidMembership(_)), "{e:?}");
}

/// The public state is stored with the group, replaced by each accepted commit and leave, and
/// left alone by refused ones.
async fn public_state_moves_with_the_epoch<S: Store>(s: Arc<S>) {
    people(&*s).await;
    let g = gid(1);
    assert_eq!(s.group_view(&g).await.unwrap(), None);
    s.create_group(&g, &dev(1), NOW, STATE0).await.unwrap();
    let (rec, state) = s.group_view(&g).await.unwrap().unwrap();
    assert_eq!((rec.epoch, state.as_deref()), (0, Some(STATE0)));
    let c = commit(&g, 0, &dev(1), &[&dev(2), &dev(3)], &[]);
    s.apply_commit(&c, &LIMITS).await.unwrap();
    let (rec, state) = s.group_view(&g).await.unwrap().unwrap();
    assert_eq!((rec.epoch, state), (1, Some(c.public_state.clone())));
    // A refused commit (stale epoch) leaves the state.
    let stale = commit(&g, 0, &dev(1), &[], &[&dev(2)]);
    assert!(s.apply_commit(&stale, &LIMITS).await.is_err());
    assert_eq!(
        s.group_view(&g).await.unwrap().unwrap().1,
        Some(c.public_state.clone())
    );
    // A leave must be for the current epoch; it replaces the state.
    let proposal = message(EntryKind::Proposal, Some(&g), Some(&dev(2)), b"remove me");
    let e = s
        .leave_group(&g, &dev(2), 0, &proposal, b"old epoch", &LIMITS)
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::EpochConflict { current: 1 }),
        "{e:?}"
    );
    assert_eq!(s.group(&g).await.unwrap().unwrap().members.len(), 3);
    s.leave_group(&g, &dev(2), 1, &proposal, b"with leave", &LIMITS)
        .await
        .unwrap();
    assert_eq!(
        s.group_view(&g).await.unwrap().unwrap().1.as_deref(),
        Some(&b"with leave"[..])
    );
    // The accepted commit is on record for its committer only.
    assert!(s
        .accepted_commit(&g, 0, &c.commit_sha256, &dev(1))
        .await
        .unwrap());
    assert!(!s
        .accepted_commit(&g, 0, &c.commit_sha256, &dev(3))
        .await
        .unwrap());
    assert!(!s
        .accepted_commit(&g, 1, &c.commit_sha256, &dev(1))
        .await
        .unwrap());
    assert!(!s
        .accepted_commit(&g, 0, &stale.commit_sha256, &dev(1))
        .await
        .unwrap());
}

/// A non-member's commit is refused as such whatever epoch it names, so it learns nothing
/// about the group's epoch.
async fn non_member_commit_reveals_no_epoch<S: Store>(s: Arc<S>) {
    people(&*s).await;
    let g = group_with(&*s, &[&dev(2)]).await;
    for epoch in 0..4 {
        let e = s
            .apply_commit(&commit(&g, epoch, &dev(4), &[], &[]), &LIMITS)
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::NotMember), "epoch {epoch}: {e:?}");
    }
}

// --- delivery ---

async fn enqueue_group_to_members_but_sender<S: Store>(s: Arc<S>) {
    people(&*s).await;
    let g = group_with(&*s, &[&dev(2), &dev(3)]).await;
    let m = app(&g, &dev(1), b"hello");
    assert_eq!(s.enqueue_group(&g, &dev(1), &m, &LIMITS).await.unwrap(), 2);
    assert!(queue(&*s, &dev(1)).await.is_empty());
    assert!(queue(&*s, &dev(4)).await.is_empty());
    for n in [2, 3] {
        let q = queue(&*s, &dev(n)).await;
        assert_eq!(q.len(), 1);
        let e = &q[0];
        assert_eq!(e.kind, EntryKind::Application);
        assert_eq!(e.group_id, Some(g.clone()));
        assert_eq!(e.sender, Some((user("alice"), dev(1))));
        assert_eq!(e.payload, b"hello".to_vec());
        assert_eq!(e.frank, m.frank);
        assert_eq!(e.received_at, NOW);
    }
    let e = s
        .enqueue_group(&g, &dev(4), &app(&g, &dev(4), b"intruder"), &LIMITS)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NotMember), "{e:?}");
    let e = s
        .enqueue_group(&gid(9), &dev(1), &app(&gid(9), &dev(1), b"x"), &LIMITS)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NotFound("group")), "{e:?}");
    for n in 1..=4 {
        assert!(queue(&*s, &dev(n))
            .await
            .iter()
            .all(|q| q.payload == b"hello"));
    }
    // A group of one: nobody to send to.
    s.create_group(&gid(2), &dev(4), NOW, STATE0).await.unwrap();
    assert_eq!(
        s.enqueue_group(&gid(2), &dev(4), &app(&gid(2), &dev(4), b"x"), &LIMITS)
            .await
            .unwrap(),
        0
    );
}

async fn enqueue_application_checks_epoch_and_names_recipients<S: Store>(s: Arc<S>) {
    people(&*s).await;
    let g = group_with(&*s, &[&dev(3), &dev(2)]).await;
    let epoch = s.group(&g).await.unwrap().unwrap().epoch;
    // A message for an epoch the group has not reached is refused and queued to nobody.
    let e = s
        .enqueue_application(&g, &dev(1), epoch + 1, &app(&g, &dev(1), b"ahead"), &LIMITS)
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::FutureEpoch { current } if current == epoch),
        "{e:?}"
    );
    for n in 1..=4 {
        assert!(queue(&*s, &dev(n)).await.is_empty());
    }
    // The current epoch and an earlier one are accepted; the recipients come back sorted.
    for at in [epoch, 0] {
        let to = s
            .enqueue_application(&g, &dev(1), at, &app(&g, &dev(1), b"now"), &LIMITS)
            .await
            .unwrap();
        assert_eq!(to, vec![dev(2), dev(3)]);
    }
    for n in [2, 3] {
        assert_eq!(queue(&*s, &dev(n)).await.len(), 2);
    }
    let e = s
        .enqueue_application(&g, &dev(4), epoch, &app(&g, &dev(4), b"intruder"), &LIMITS)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NotMember), "{e:?}");
    let e = s
        .enqueue_application(&gid(9), &dev(1), 0, &app(&gid(9), &dev(1), b"x"), &LIMITS)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NotFound("group")), "{e:?}");
    let full = Limits {
        max_queue_depth: 2,
        ..LIMITS
    };
    let e = s
        .enqueue_application(&g, &dev(1), epoch, &app(&g, &dev(1), b"full"), &full)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Limit { .. }), "{e:?}");
    assert!(queue(&*s, &dev(4)).await.is_empty());
    for n in [2, 3] {
        assert_eq!(queue(&*s, &dev(n)).await.len(), 2);
    }
}

async fn enqueue_group_depth_limit_writes_nothing<S: Store>(s: Arc<S>) {
    people(&*s).await;
    let g = group_with(&*s, &[&dev(2), &dev(3)]).await;
    let two = Limits {
        max_queue_depth: 2,
        ..LIMITS
    };
    // c1 sends twice: a1 and b1 are full, c1 is empty.
    for i in 0..2u8 {
        s.enqueue_group(&g, &dev(3), &app(&g, &dev(3), &[i]), &two)
            .await
            .unwrap();
    }
    let e = s
        .enqueue_group(&g, &dev(3), &app(&g, &dev(3), b"over"), &two)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::Limit {
                what: "queue depth",
                max: 2
            }
        ),
        "{e:?}"
    );
    // a1 -> b1 (full) and c1 (empty): refused for everyone.
    let e = s
        .enqueue_group(&g, &dev(1), &app(&g, &dev(1), b"over"), &two)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::Limit {
                what: "queue depth",
                max: 2
            }
        ),
        "{e:?}"
    );
    assert!(queue(&*s, &dev(3)).await.is_empty());
    assert_eq!(queue(&*s, &dev(2)).await.len(), 2);
    // Acknowledging makes room again.
    let first = queue(&*s, &dev(2)).await[0].id;
    assert_eq!(s.ack(&dev(2), &[first]).await.unwrap(), 1);
    assert_eq!(
        s.enqueue_group(&g, &dev(1), &app(&g, &dev(1), b"fits"), &two)
            .await
            .unwrap(),
        2
    );
    assert_eq!(queue(&*s, &dev(2)).await.len(), 2);
    assert_eq!(queue(&*s, &dev(3)).await.len(), 1);
}

async fn enqueue_depth_race<S: Store>(s: Arc<S>) {
    people(&*s).await;
    let g = group_with(&*s, &[&dev(2)]).await;
    let five = Limits {
        max_queue_depth: 5,
        ..LIMITS
    };
    let mut tasks = Vec::new();
    for i in 0..12u8 {
        let s = s.clone();
        let g = g.clone();
        tasks.push(tokio::spawn(async move {
            s.enqueue_group(&g, &dev(1), &app(&g, &dev(1), &[i]), &five)
                .await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(1) => ok += 1,
            Err(StoreError::Limit {
                what: "queue depth",
                max: 5,
            }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(ok, 5);
    assert_eq!(queue(&*s, &dev(2)).await.len(), 5);
}

async fn fetch_queue_order_after_limit_expiry<S: Store>(s: Arc<S>) {
    people(&*s).await;
    let g = group_with(&*s, &[&dev(2)]).await;
    for i in 0..5u8 {
        let mut m = app(&g, &dev(1), &[i]);
        if i == 3 {
            m.expires_at = NOW + 5;
        }
        s.enqueue_group(&g, &dev(1), &m, &LIMITS).await.unwrap();
    }
    let all = queue(&*s, &dev(2)).await;
    assert_eq!(
        all.iter().map(|m| m.payload[0]).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
    let page = s.fetch_queue(&dev(2), all[1].id, 2, NOW).await.unwrap();
    assert_eq!(page, all[2..4].to_vec());
    assert!(s
        .fetch_queue(&dev(2), all[4].id, 10, NOW)
        .await
        .unwrap()
        .is_empty());
    assert!(s.fetch_queue(&dev(2), 0, 0, NOW).await.unwrap().is_empty());
    // At its expiry time an entry is no longer delivered.
    let later = s.fetch_queue(&dev(2), 0, 10, NOW + 5).await.unwrap();
    assert_eq!(
        later.iter().map(|m| m.payload[0]).collect::<Vec<_>>(),
        vec![0, 1, 2, 4]
    );
    let later = s.fetch_queue(&dev(2), all[2].id, 1, NOW + 5).await.unwrap();
    assert_eq!(
        later.iter().map(|m| m.payload[0]).collect::<Vec<_>>(),
        vec![4]
    );
    assert!(s
        .fetch_queue(&dev(99), 0, 10, NOW)
        .await
        .unwrap()
        .is_empty());
}

async fn ack_own_rows_only_and_idempotent<S: Store>(s: Arc<S>) {
    people(&*s).await;
    let g = group_with(&*s, &[&dev(2), &dev(3)]).await;
    s.enqueue_group(&g, &dev(1), &app(&g, &dev(1), b"m"), &LIMITS)
        .await
        .unwrap();
    let b = queue(&*s, &dev(2)).await[0].id;
    let c = queue(&*s, &dev(3)).await[0].id;
    assert_ne!(b, c);
    // b1 acknowledges its id and c1's: only its own is removed.
    assert_eq!(s.ack(&dev(2), &[b, c, 123_456_789]).await.unwrap(), 1);
    assert!(queue(&*s, &dev(2)).await.is_empty());
    assert_eq!(
        payloads(&*s, &dev(3)).await,
        vec![(EntryKind::Application, b"m".to_vec())]
    );
    assert_eq!(s.ack(&dev(2), &[b]).await.unwrap(), 0);
    assert_eq!(s.ack(&dev(2), &[]).await.unwrap(), 0);
    assert_eq!(s.ack(&dev(3), &[c, c]).await.unwrap(), 1);
    assert_eq!(s.ack(&dev(3), &[c]).await.unwrap(), 0);
    assert!(queue(&*s, &dev(3)).await.is_empty());
    // Queue ids are never reused, even once every entry is gone.
    s.enqueue_group(&g, &dev(1), &app(&g, &dev(1), b"n"), &LIMITS)
        .await
        .unwrap();
    assert!(queue(&*s, &dev(2)).await[0].id > c.max(b));
    assert!(queue(&*s, &dev(3)).await[0].id > c.max(b));
}

async fn purge_expired_drops_everything_expired<S: Store>(s: Arc<S>) {
    people(&*s).await;
    let g = group_with(&*s, &[&dev(2)]).await;
    let mut short = app(&g, &dev(1), b"short");
    short.expires_at = NOW + 10;
    s.enqueue_group(&g, &dev(1), &short, &LIMITS).await.unwrap();
    s.enqueue_group(&g, &dev(1), &app(&g, &dev(1), b"long"), &LIMITS)
        .await
        .unwrap();
    s.put_session(b"s-short", &dev(1), NOW + 10).await.unwrap();
    s.put_session(b"s-long", &dev(1), NOW + TTL).await.unwrap();
    s.put_challenge(b"c-short", &dev(1), NOW + 10)
        .await
        .unwrap();
    s.put_challenge(b"c-long", &dev(1), NOW + TTL)
        .await
        .unwrap();
    s.put_link_code(b"l-short", &user("alice"), NOW + 10)
        .await
        .unwrap();
    s.put_link_code(b"l-long", &user("alice"), NOW + TTL)
        .await
        .unwrap();

    assert_eq!(s.purge_expired(NOW + 9).await.unwrap(), 0);
    assert_eq!(s.purge_expired(NOW + 10).await.unwrap(), 1);
    assert_eq!(s.purge_expired(NOW + 10).await.unwrap(), 0);
    // Gone, not just hidden: a clock that is behind does not bring them back.
    assert_eq!(
        payloads(&*s, &dev(2)).await,
        vec![(EntryKind::Application, b"long".to_vec())]
    );
    assert_eq!(s.session_device(b"s-short", NOW).await.unwrap(), None);
    assert_eq!(
        s.session_device(b"s-long", NOW).await.unwrap(),
        Some(dev(1))
    );
    assert!(!s.take_challenge(b"c-short", &dev(1), NOW).await.unwrap());
    assert!(s.take_challenge(b"c-long", &dev(1), NOW).await.unwrap());
    let event = message(EntryKind::DeviceLinked, None, None, b"linked");
    let e = s
        .link_device(b"l-short", NOW, &new_device(&dev(5), NOW), &event, &LIMITS)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NotFound("link code")), "{e:?}");
    s.link_device(b"l-long", NOW, &new_device(&dev(5), NOW), &event, &LIMITS)
        .await
        .unwrap();
    // The depth counter follows: b1 holds one entry, so with a limit of 2 one more fits.
    let two = Limits {
        max_queue_depth: 2,
        ..LIMITS
    };
    s.enqueue_group(&g, &dev(1), &app(&g, &dev(1), b"fits"), &two)
        .await
        .unwrap();
    let e = s
        .enqueue_group(&g, &dev(1), &app(&g, &dev(1), b"over"), &two)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Limit { .. }), "{e:?}");
}

// --- quotas and rate limits ---

const RULE3: RateRule = RateRule {
    burst: 3.0,
    refill_per_sec: 1.0,
};

async fn take_token_burst_refill_and_clock<S: Store>(s: Arc<S>) {
    for _ in 0..3 {
        assert!(s.take_token("ip/1", RULE3, NOW).await.unwrap());
    }
    assert!(!s.take_token("ip/1", RULE3, NOW).await.unwrap());
    // Another key has its own bucket.
    assert!(s.take_token("ip/2", RULE3, NOW).await.unwrap());
    // A refused take spends nothing: 1 s later exactly one token is back.
    assert!(!s.take_token("ip/1", RULE3, NOW + 999).await.unwrap());
    assert!(s.take_token("ip/1", RULE3, NOW + 1000).await.unwrap());
    assert!(!s.take_token("ip/1", RULE3, NOW + 1000).await.unwrap());
    // A clock that runs behind refills nothing, and does not move the bucket back.
    assert!(!s.take_token("ip/1", RULE3, NOW - 60_000).await.unwrap());
    assert!(!s.take_token("ip/1", RULE3, NOW + 1500).await.unwrap());
    assert!(s.take_token("ip/1", RULE3, NOW + 2000).await.unwrap());
    // Refill stops at the burst.
    let later = NOW + 3_600_000;
    for _ in 0..3 {
        assert!(s.take_token("ip/1", RULE3, later).await.unwrap());
    }
    assert!(!s.take_token("ip/1", RULE3, later).await.unwrap());
    // A bucket with no burst never gives a token.
    let none = RateRule {
        burst: 0.0,
        refill_per_sec: 1.0,
    };
    assert!(!s.take_token("ip/3", none, NOW).await.unwrap());
    // Purging drops only buckets that are full again: ip/1 (empty at `later`) survives a purge
    // just after, and is still empty.
    s.purge_expired(later + 10).await.unwrap();
    assert!(!s.take_token("ip/1", RULE3, later + 10).await.unwrap());
    s.purge_expired(later + 10_000).await.unwrap();
    for _ in 0..3 {
        assert!(s.take_token("ip/1", RULE3, later + 10_000).await.unwrap());
    }
    assert!(!s.take_token("ip/1", RULE3, later + 10_000).await.unwrap());
}

async fn take_token_race_spends_each_token_once<S: Store>(s: Arc<S>) {
    let rule = RateRule {
        burst: 5.0,
        refill_per_sec: 0.0,
    };
    let mut tasks = Vec::new();
    for _ in 0..24 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.take_token("write/mallory", rule, NOW).await.unwrap()
        }));
    }
    let mut taken = 0;
    for t in tasks {
        if t.await.unwrap() {
            taken += 1;
        }
    }
    assert_eq!(taken, 5);
}

/// Everything the queue accounting could have changed, for "nothing was written" checks.
async fn queues<S: Store>(s: &S) -> Vec<usize> {
    let mut out = Vec::new();
    for n in 1..=6 {
        out.push(queue(s, &dev(n)).await.len());
    }
    out
}

async fn queue_shares_bound_each_sender<S: Store>(s: Arc<S>) {
    people(&*s).await;
    // a1 (owner), b1 and c1 in one group.
    let g = group_with(&*s, &[&dev(2), &dev(3)]).await;
    let share = Limits {
        share_device_depth: 2,
        ..LIMITS
    };
    for i in 0..2u8 {
        s.enqueue_group(&g, &dev(1), &app(&g, &dev(1), &[i]), &share)
            .await
            .unwrap();
    }
    let before = queues(&*s).await;
    let e = s
        .enqueue_group(&g, &dev(1), &app(&g, &dev(1), b"over"), &share)
        .await
        .unwrap_err();
    match e {
        StoreError::QueueShare {
            recipient,
            what,
            max: 2,
        } => {
            assert!(recipient == dev(2) || recipient == dev(3), "{recipient}");
            assert!(
                what.contains("device") && what.contains("entries"),
                "{what}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        queues(&*s).await,
        before,
        "a refused fan-out writes nothing"
    );
    // Another sender still reaches the same queues.
    s.enqueue_group(&g, &dev(3), &app(&g, &dev(3), b"carol"), &share)
        .await
        .unwrap();
    // A commit is not held back by the committer's share (only by the totals).
    let epoch = s.group(&g).await.unwrap().unwrap().epoch;
    s.apply_commit(&commit(&g, epoch, &dev(1), &[], &[]), &share)
        .await
        .unwrap();
    // b1 catches up; a1 is still over its share of c1's queue, so the fan-out is refused and
    // names c1.
    let ids: Vec<i64> = queue(&*s, &dev(2)).await.iter().map(|m| m.id).collect();
    s.ack(&dev(2), &ids).await.unwrap();
    let e = s
        .enqueue_group(&g, &dev(1), &app(&g, &dev(1), b"over"), &share)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, StoreError::QueueShare { recipient, .. } if *recipient == dev(3)),
        "{e:?}"
    );
    // c1 acknowledges a1's two messages (the commit stays): a1 has room again everywhere.
    let two: Vec<i64> = queue(&*s, &dev(3)).await[..2]
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(s.ack(&dev(3), &two).await.unwrap(), 2);
    s.enqueue_group(&g, &dev(1), &app(&g, &dev(1), b"fits"), &share)
        .await
        .unwrap();

    // The sending account's share, and byte shares.
    let account = Limits {
        share_account_depth: 1,
        ..LIMITS
    };
    let e = s
        .enqueue_group(&g, &dev(2), &app(&g, &dev(2), b"bob 1"), &account)
        .await
        .unwrap();
    assert_eq!(e, 2);
    let e = s
        .enqueue_group(&g, &dev(2), &app(&g, &dev(2), b"bob 2"), &account)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, StoreError::QueueShare { what, max: 1, .. } if what.contains("account")),
        "{e:?}"
    );
    let bytes = Limits {
        share_device_bytes: 8,
        ..LIMITS
    };
    let e = s
        .enqueue_group(&g, &dev(2), &app(&g, &dev(2), b"12345"), &bytes)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, StoreError::QueueShare { what, max: 8, .. } if what.contains("bytes")),
        "{e:?}"
    );
}

/// The people, bob with a second device (dev 5), and a group of a1, b1 (dev 2), c1 (dev 3) and
/// dev 5 with every queue drained.
async fn bob_with_two_devices_in_a_group<S: Store>(s: &S) -> GroupId {
    people(s).await;
    let event = message(EntryKind::DeviceLinked, None, None, b"linked");
    s.put_link_code(b"bob-5", &user("bob"), NOW + 60)
        .await
        .unwrap();
    s.link_device(b"bob-5", NOW, &new_device(&dev(5), NOW), &event, &LIMITS)
        .await
        .unwrap();
    let g = group_with(s, &[&dev(2), &dev(3), &dev(5)]).await;
    let ids: Vec<i64> = queue(s, &dev(5)).await.iter().map(|m| m.id).collect();
    s.ack(&dev(5), &ids).await.unwrap();
    g
}

async fn queue_byte_quotas_per_device_and_account<S: Store>(s: Arc<S>) {
    let g = bob_with_two_devices_in_a_group(&*s).await;
    let device = Limits {
        max_queue_bytes: 10,
        ..LIMITS
    };
    s.enqueue_group(&g, &dev(1), &app(&g, &dev(1), b"six..."), &device)
        .await
        .unwrap();
    let before = queues(&*s).await;
    let e = s
        .enqueue_group(&g, &dev(3), &app(&g, &dev(3), b"six..."), &device)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::Limit {
                what: "queue bytes",
                max: 10
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        queues(&*s).await,
        before,
        "a refused fan-out writes nothing"
    );
    // bob's two devices hold 12 bytes together: one more message to both makes 24 > 18.
    let account = Limits {
        max_account_queue_bytes: 18,
        ..LIMITS
    };
    let e = s
        .enqueue_group(&g, &dev(3), &app(&g, &dev(3), b"six..."), &account)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::Limit {
                what: "account queue bytes",
                max: 18
            }
        ),
        "{e:?}"
    );
    assert_eq!(queues(&*s).await, before);
    // b1 acknowledges: bob's account holds 6, and one more message to both devices fits (18).
    let ids: Vec<i64> = queue(&*s, &dev(2)).await.iter().map(|m| m.id).collect();
    s.ack(&dev(2), &ids).await.unwrap();
    s.enqueue_group(&g, &dev(3), &app(&g, &dev(3), b"six..."), &account)
        .await
        .unwrap();
    // Purge releases the counters too: everything expires, and the tight quotas fit again.
    s.purge_expired(NOW + TTL + 1).await.unwrap();
    assert_eq!(queues(&*s).await, vec![0; 6]);
    let tight = Limits {
        max_queue_bytes: 6,
        max_account_queue_bytes: 12,
        share_device_depth: 1,
        share_account_depth: 1,
        ..LIMITS
    };
    let mut m = app(&g, &dev(1), b"six...");
    m.expires_at = NOW + TTL + 2 * TTL;
    s.enqueue_group(&g, &dev(1), &m, &tight).await.unwrap();
}

async fn revoking_a_device_releases_its_queue_accounting<S: Store>(s: Arc<S>) {
    let g = bob_with_two_devices_in_a_group(&*s).await;
    // Six bytes wait on each of bob's devices: his account holds 12.
    s.enqueue_group(&g, &dev(3), &app(&g, &dev(3), b"six..."), &LIMITS)
        .await
        .unwrap();
    let removed = message(EntryKind::DeviceRemoved, None, None, b"removed 5");
    s.revoke_device(&dev(5), NOW, &removed, &LIMITS)
        .await
        .unwrap();
    // b1 takes everything it has (the message and the removal notice): bob's account now holds
    // nothing, so six bytes fit under an account quota of six. Had the revocation left dev 5's
    // six bytes counted, this would be refused.
    let ids: Vec<i64> = queue(&*s, &dev(2)).await.iter().map(|m| m.id).collect();
    assert_eq!(ids.len(), 2, "the message and the removal notice");
    s.ack(&dev(2), &ids).await.unwrap();
    // (a1, the other recipient, takes its copy too, so alice's account is empty as well.)
    let ids: Vec<i64> = queue(&*s, &dev(1)).await.iter().map(|m| m.id).collect();
    s.ack(&dev(1), &ids).await.unwrap();
    let six = Limits {
        max_account_queue_bytes: 6,
        ..LIMITS
    };
    s.enqueue_group(&g, &dev(3), &app(&g, &dev(3), b"six..."), &six)
        .await
        .unwrap();
}

async fn link_device_respects_the_device_cap<S: Store>(s: Arc<S>) {
    people(&*s).await;
    let alice = user("alice");
    let event = message(EntryKind::DeviceLinked, None, None, b"linked");
    let two = Limits {
        max_devices: 2,
        ..LIMITS
    };
    s.put_link_code(b"c5", &alice, NOW + 60).await.unwrap();
    s.link_device(b"c5", NOW, &new_device(&dev(5), NOW), &event, &two)
        .await
        .unwrap();
    s.put_link_code(b"c6", &alice, NOW + 60).await.unwrap();
    let e = s
        .link_device(b"c6", NOW, &new_device(&dev(6), NOW), &event, &two)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::Limit {
                what: "devices per account",
                max: 2
            }
        ),
        "{e:?}"
    );
    assert_eq!(s.device(&dev(6)).await.unwrap(), None);
    assert_eq!(s.user_devices(&alice).await.unwrap().unwrap().len(), 2);
    // Nothing was consumed: the code still works under a higher cap.
    s.link_device(b"c6", NOW, &new_device(&dev(6), NOW), &event, &LIMITS)
        .await
        .unwrap();
}

async fn claim_without_one_time_hands_out_last_resort<S: Store>(s: Arc<S>) {
    people(&*s).await;
    s.create_group(&gid(1), &dev(1), NOW, STATE0).await.unwrap();
    s.add_key_packages(&dev(2), &kps(&[b"b-p1"]), Some(&kp(b"b-lr")), &LIMITS)
        .await
        .unwrap();
    s.add_key_packages(&dev(3), &kps(&[b"c-p1"]), None, &LIMITS)
        .await
        .unwrap();
    let limited = KeyPackageClaim {
        one_time: false,
        ..claim_by(&dev(1), &gid(1))
    };
    for _ in 0..2 {
        assert_eq!(
            s.claim_key_packages(&user("bob"), &limited).await.unwrap(),
            Some(vec![(dev(2), b"b-lr".to_vec())])
        );
    }
    assert_eq!(s.key_package_count(&dev(2)).await.unwrap(), (1, true));
    // No last-resort package: nothing is handed out, and the one-time package stays.
    assert_eq!(
        s.claim_key_packages(&user("carol"), &limited)
            .await
            .unwrap(),
        Some(vec![])
    );
    assert_eq!(s.key_package_count(&dev(3)).await.unwrap(), (1, false));
    // The one-time package is still there for an unlimited claim.
    assert_eq!(
        s.claim_key_packages(&user("bob"), &claim_by(&dev(1), &gid(1)))
            .await
            .unwrap(),
        Some(vec![(dev(2), b"b-p1".to_vec())])
    );
}

// --- server secrets ---

async fn server_secret_first_wins<S: Store>(s: Arc<S>) {
    assert_eq!(
        s.server_secret("frank", &[1; 32]).await.unwrap(),
        vec![1; 32]
    );
    assert_eq!(
        s.server_secret("frank", &[2; 32]).await.unwrap(),
        vec![1; 32]
    );
    assert_eq!(
        s.server_secret("other", &[3; 32]).await.unwrap(),
        vec![3; 32]
    );
    let mut tasks = Vec::new();
    for i in 0..8u8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.server_secret("race", &[i; 32]).await.unwrap()
        }));
    }
    let mut seen = BTreeSet::new();
    for t in tasks {
        seen.insert(t.await.unwrap());
    }
    assert_eq!(seen.len(), 1, "every caller sees the first secret");
    assert_eq!(
        s.server_secret("race", &[9; 32]).await.unwrap(),
        seen.into_iter().next().unwrap()
    );
}

// --- harnesses ---

pub(crate) async fn sqlite_store() -> (Arc<SqliteStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("haven.db"))
        .await
        .unwrap();
    (Arc::new(store), dir)
}

/// A PostgreSQL store in a schema of its own.
struct PgScratch {
    store: Arc<PgStore>,
    url: String,
    schema: String,
}

impl PgScratch {
    async fn new(test: &str) -> Option<PgScratch> {
        let Ok(url) = std::env::var("HAVEN_TEST_POSTGRES_URL") else {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED postgres_backend::{test}: HAVEN_TEST_POSTGRES_URL is not set"
            );
            return None;
        };
        let schema = format!("haven_t_{}", hex::encode(rand::random::<[u8; 8]>()));
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap();
        sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let options = PgConnectOptions::from_str(&url)
            .unwrap()
            .options([("search_path", schema.as_str())]);
        let store = PgStore::connect_with(options).await.unwrap();
        Some(PgScratch {
            store: Arc::new(store),
            url,
            schema,
        })
    }

    async fn drop_schema(self) {
        self.store.close().await;
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(&self.url)
            .await
            .unwrap();
        sqlx::query(AssertSqlSafe(format!(
            "DROP SCHEMA {} CASCADE",
            self.schema
        )))
        .execute(&admin)
        .await
        .unwrap();
        admin.close().await;
    }
}

/// Runs `case` on a fresh PostgreSQL schema (or reports the skip), dropping the schema even if
/// the case panics.
pub(crate) async fn on_postgres<F, Fut>(test: &str, case: F)
where
    F: FnOnce(Arc<PgStore>) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(db) = PgScratch::new(test).await else {
        return;
    };
    let result = AssertUnwindSafe(case(db.store.clone()))
        .catch_unwind()
        .await;
    db.drop_schema().await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

// --- blob records ---

fn bid(n: u8) -> haven_proto::BlobId {
    haven_proto::BlobId::from_digest([n; 32])
}

async fn blob_records_quota_and_renewal<S: Store>(s: Arc<S>) {
    people(&*s).await;
    let (alice, bob) = (user("alice"), user("bob"));
    s.record_blob(&alice, &bid(1), 60, NOW, NOW + TTL, 100)
        .await
        .unwrap();
    // Over the quota: refused, nothing written.
    let err = s
        .record_blob(&alice, &bid(2), 41, NOW, NOW + TTL, 100)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Limit { what, max: 100 } if what == crate::blobs::records::QUOTA),
        "{err:?}"
    );
    assert_eq!(s.blob_live(&bid(2), NOW).await.unwrap(), None);
    assert_eq!(s.blob_usage(&alice, NOW).await.unwrap(), 60);
    // Exactly at the quota is fine; the same blob again counts once and renews its expiry.
    s.record_blob(&alice, &bid(2), 40, NOW, NOW + TTL, 100)
        .await
        .unwrap();
    s.record_blob(&alice, &bid(1), 60, NOW + 5, NOW + 5 + TTL, 100)
        .await
        .unwrap();
    assert_eq!(s.blob_usage(&alice, NOW).await.unwrap(), 100);
    // Quotas are per account; the same bytes stored by bob count for bob.
    s.record_blob(&bob, &bid(1), 60, NOW, NOW + TTL, 100)
        .await
        .unwrap();
    assert_eq!(s.blob_usage(&bob, NOW).await.unwrap(), 60);
    assert_eq!(s.blob_live(&bid(1), NOW).await.unwrap(), Some(60));
    // Unknown owners are refused.
    let err = s
        .record_blob(&user("nobody"), &bid(3), 1, NOW, NOW + TTL, 100)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound("user")), "{err:?}");
    // Expired records do not count against the quota.
    assert_eq!(s.blob_usage(&alice, NOW + TTL).await.unwrap(), 60);
    assert_eq!(s.blob_usage(&alice, NOW + TTL + 5).await.unwrap(), 0);
}

async fn blob_records_expire_and_purge<S: Store>(s: Arc<S>) {
    people(&*s).await;
    let (alice, bob) = (user("alice"), user("bob"));
    s.record_blob(&alice, &bid(1), 10, NOW, NOW + 100, 1000)
        .await
        .unwrap();
    s.record_blob(&alice, &bid(2), 10, NOW, NOW + 100, 1000)
        .await
        .unwrap();
    s.record_blob(&bob, &bid(2), 10, NOW, NOW + 500, 1000)
        .await
        .unwrap();
    s.record_blob(&bob, &bid(3), 10, NOW, NOW + 500, 1000)
        .await
        .unwrap();
    assert!(s.purge_blobs(NOW + 99).await.unwrap().is_empty());
    assert_eq!(s.blob_live(&bid(1), NOW + 99).await.unwrap(), Some(10));
    // Dead from expires_at on.
    assert_eq!(s.blob_live(&bid(1), NOW + 100).await.unwrap(), None);
    // bid(2) is still named by bob's record: only bid(1) goes.
    assert_eq!(s.purge_blobs(NOW + 100).await.unwrap(), vec![bid(1)]);
    assert_eq!(s.blob_live(&bid(2), NOW + 100).await.unwrap(), Some(10));
    assert!(s.purge_blobs(NOW + 100).await.unwrap().is_empty());
    let mut gone = s.purge_blobs(NOW + 500).await.unwrap();
    gone.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    let mut want = vec![bid(2), bid(3)];
    want.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    assert_eq!(gone, want);
    assert_eq!(s.blob_usage(&bob, NOW).await.unwrap(), 0);
}

async fn blob_quota_race<S: Store>(s: Arc<S>) {
    people(&*s).await;
    let alice = user("alice");
    // Ten concurrent 30-byte blobs under a 100-byte quota: exactly three fit.
    let tasks: Vec<_> = (0..10u8)
        .map(|i| {
            let (s, alice) = (s.clone(), alice.clone());
            tokio::spawn(async move {
                s.record_blob(&alice, &bid(10 + i), 30, NOW, NOW + TTL, 100)
                    .await
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => ok += 1,
            Err(StoreError::Limit { .. }) => {}
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(ok, 3);
    assert_eq!(s.blob_usage(&alice, NOW).await.unwrap(), 90);
}

macro_rules! conformance_suite {
    ($($case:ident),* $(,)?) => {
        mod sqlite_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (store, _dir) = super::sqlite_store().await;
                    super::$case(store).await;
                }
            )*
        }
        mod postgres_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::on_postgres(stringify!($case), super::$case).await;
                }
            )*
        }
    };
}

pub(crate) use conformance_suite;

conformance_suite!(
    create_user_and_lookup,
    duplicate_user_or_device_writes_nothing,
    create_user_race_one_winner,
    challenge_single_use_and_expiry,
    challenge_race_single_use,
    sessions_expire,
    link_device_notifies_other_devices_only,
    link_code_single_use_expiry_and_atomic,
    key_package_limits,
    claim_key_packages_order_and_last_resort,
    claim_key_packages_race_distinct,
    create_group_and_duplicate,
    apply_commit_routes_commit_and_welcome,
    apply_commit_rejections_write_nothing,
    apply_commit_resubmission_is_recognised,
    apply_commit_race_one_winner_per_epoch,
    leave_group_removes_and_notifies,
    key_package_claims_gate_adds,
    public_state_moves_with_the_epoch,
    non_member_commit_reveals_no_epoch,
    enqueue_group_to_members_but_sender,
    enqueue_group_depth_limit_writes_nothing,
    enqueue_application_checks_epoch_and_names_recipients,
    enqueue_depth_race,
    fetch_queue_order_after_limit_expiry,
    ack_own_rows_only_and_idempotent,
    purge_expired_drops_everything_expired,
    take_token_burst_refill_and_clock,
    take_token_race_spends_each_token_once,
    queue_shares_bound_each_sender,
    queue_byte_quotas_per_device_and_account,
    link_device_respects_the_device_cap,
    claim_without_one_time_hands_out_last_resort,
    server_secret_first_wins,
    blob_records_quota_and_renewal,
    blob_records_expire_and_purge,
    blob_quota_race,
    server_secret_get_and_delete,
    sessions_revoke_one_or_all,
    revoke_device_cuts_it_off,
    revoking_a_device_releases_its_queue_accounting,
);

// --- backend-specific ---

#[tokio::test]
async fn open_store_parses_urls_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reopen.db");
    let url = format!("sqlite://{}", path.display());
    {
        let s = open_store(&url).await.unwrap();
        s.create_user(&user("alice"), &new_device(&dev(1), NOW))
            .await
            .unwrap();
    }
    // Reopening (migrations run again) keeps the data; a plain path names the same file.
    let s = open_store(path.to_str().unwrap()).await.unwrap();
    assert_eq!(
        s.device(&dev(1)).await.unwrap().unwrap().user,
        user("alice")
    );
    let m = open_store("sqlite::memory:").await.unwrap();
    assert_eq!(m.device(&dev(1)).await.unwrap(), None);
    m.create_user(&user("alice"), &new_device(&dev(1), NOW))
        .await
        .unwrap();
    assert!(matches!(open_store("").await, Err(StoreError::Backend(_))));
}

#[tokio::test]
async fn sqlite_in_memory_runs_a_case() {
    let s = Arc::new(SqliteStore::open_in_memory().await.unwrap());
    apply_commit_routes_commit_and_welcome(s.clone()).await;
    ack_own_rows_only_and_idempotent(Arc::new(SqliteStore::open_in_memory().await.unwrap())).await;
}
