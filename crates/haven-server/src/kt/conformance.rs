//! Conformance cases for [`KtStore`] and the directory over it, run against both backends with
//! the storage suite's harness (`store::conformance`): akd's own storage test cases through
//! [`AkdDb`], the queue, roots and lease rules, and a directory that publishes, survives being
//! reopened and proves what it holds.

use std::sync::Arc;
use std::time::Duration;

use haven_kt::directory::{verify_audit, verify_history, verify_lookup, SignedRoot};

use super::akd_db::AkdDb;
use super::keys::KtKeyPair;
use super::store::KtStore;
use super::Kt;
use crate::device_lists::StoredDeviceList;
use crate::store::conformance::{
    conformance_suite, dev, on_postgres, people, sqlite_store, user, NOW,
};
use crate::store::Store;

async fn akd_storage_cases<S: Store>(s: Arc<S>) {
    let kt: Arc<dyn KtStore> = s;
    akd::storage::tests::run_test_cases_for_storage_impl(AkdDb::new(kt)).await;
}

fn list(name: &str, version: u64, bytes: &[u8]) -> StoredDeviceList {
    StoredDeviceList {
        user: user(name),
        version,
        list: bytes.to_vec(),
        signer: dev(1),
        created_at: NOW + i64::try_from(version).unwrap(),
    }
}

async fn uploads_are_queued_newest_only<S: Store>(s: Arc<S>) {
    people(&*s).await;
    assert!(s.kt_pending(10).await.unwrap().is_empty());
    s.put_device_list(&list("alice", 1, b"a1")).await.unwrap();
    s.put_device_list(&list("bob", 1, b"b1")).await.unwrap();
    s.put_device_list(&list("alice", 2, b"a2")).await.unwrap();
    let q: Vec<_> = s
        .kt_pending(10)
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.user.as_str().to_string(), p.list_version, p.value))
        .collect();
    assert_eq!(
        q,
        vec![
            ("bob".to_string(), 1, b"b1".to_vec()),
            ("alice".to_string(), 2, b"a2".to_vec())
        ]
    );
    // Publishing alice's version 1 (an older batch) leaves version 2 queued.
    s.kt_published(vec![(user("alice"), 1), (user("bob"), 1)])
        .await
        .unwrap();
    let q = s.kt_pending(10).await.unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!((q[0].user.as_str(), q[0].list_version), ("alice", 2));
    // A refused upload queues nothing.
    assert!(s.put_device_list(&list("alice", 5, b"a5")).await.is_err());
    assert_eq!(s.kt_pending(10).await.unwrap().len(), 1);
}

async fn roots_are_written_once<S: Store>(s: Arc<S>) {
    let a = SignedRoot {
        epoch: 3,
        root: [1; 32],
        signature: [2; 64],
    };
    let b = SignedRoot { root: [9; 32], ..a };
    assert_eq!(s.kt_put_root(&a, NOW).await.unwrap(), a);
    // Another root for epoch 3 does not replace the first; the caller sees the stored one.
    assert_eq!(s.kt_put_root(&b, NOW).await.unwrap(), a);
    let c = SignedRoot { epoch: 4, ..b };
    s.kt_put_root(&c, NOW).await.unwrap();
    assert_eq!(s.kt_roots(3, 4).await.unwrap(), vec![a, c]);
    assert_eq!(s.kt_roots(4, u64::MAX).await.unwrap(), vec![c]);
    assert!(s.kt_roots(5, 9).await.unwrap().is_empty());
}

async fn one_publisher_at_a_time<S: Store>(s: Arc<S>) {
    assert!(s.kt_take_lease("node-a", NOW, 1000).await.unwrap());
    assert!(!s.kt_take_lease("node-b", NOW + 10, 1000).await.unwrap());
    // The holder renews.
    assert!(s.kt_take_lease("node-a", NOW + 500, 1000).await.unwrap());
    assert!(!s.kt_take_lease("node-b", NOW + 1499, 1000).await.unwrap());
    // After expiry another node takes over, and the old holder is refused.
    assert!(s.kt_take_lease("node-b", NOW + 1500, 1000).await.unwrap());
    assert!(!s.kt_take_lease("node-a", NOW + 1600, 1000).await.unwrap());
}

async fn directory_publishes_reopens_and_proves<S: Store>(s: Arc<S>) {
    people(&*s).await;
    let keys = KtKeyPair::generate();
    let pins = keys.public;
    let store: Arc<dyn KtStore> = s.clone();
    let kt = Kt::open(
        store.clone(),
        keys.clone(),
        Duration::from_secs(3600),
        "node-1",
    )
    .await
    .unwrap();
    let r0 = kt.current_root().await.unwrap();
    assert_eq!(r0.epoch, 0);
    // Nothing queued: no new epoch.
    assert_eq!(kt.publish_pending().await.unwrap(), r0);

    s.put_device_list(&list("alice", 1, b"a1")).await.unwrap();
    s.put_device_list(&list("bob", 1, b"b1")).await.unwrap();
    let r1 = kt.publish_pending().await.unwrap();
    assert_eq!(r1.epoch, 1);
    assert!(s.kt_pending(10).await.unwrap().is_empty());
    let (root, proof) = kt.lookup(&user("alice")).await.unwrap();
    assert_eq!(root, r1);
    let v = verify_lookup(&pins, &root, "alice", &proof).unwrap();
    assert_eq!((v.epoch, v.version, v.value), (1, 1, b"a1".to_vec()));
    // A user with no list is not in the directory.
    assert!(matches!(
        kt.lookup(&user("carol")).await,
        Err(crate::service::ServiceError::NotFound(_))
    ));
    drop(kt);

    // Reopened (a restart): the same epoch and root, and it goes on from there.
    let kt = Kt::open(store.clone(), keys, Duration::from_secs(3600), "node-1")
        .await
        .unwrap();
    assert_eq!(kt.current_root().await.unwrap(), r1);
    s.put_device_list(&list("alice", 2, b"a2")).await.unwrap();
    let r2 = kt.publish_pending().await.unwrap();
    assert_eq!(r2.epoch, 2);
    let (root, proof) = kt.history(&user("alice")).await.unwrap();
    let h = verify_history(&pins, &root, "alice", &proof).unwrap();
    let values: Vec<_> = h.iter().map(|v| (v.epoch, v.value.clone())).collect();
    assert_eq!(values, vec![(2, b"a2".to_vec()), (1, b"a1".to_vec())]);
    let (roots, proof) = kt.audit(0, 2).await.unwrap();
    assert_eq!(roots, vec![r0, r1, r2]);
    verify_audit(&pins, &roots, &proof).await.unwrap();
    assert!(kt.audit(2, 3).await.is_err());
    assert!(kt.audit(2, 2).await.is_err());

    // A publisher that dies after akd's commit, before it clears the queue: the next publish
    // finds the directory already holding the queued value and makes no second epoch for it.
    s.put_device_list(&list("bob", 2, b"b2")).await.unwrap();
    let r3 = kt.publish_crashing_before_clearing().await.unwrap();
    assert_eq!(r3.epoch, 3);
    assert_eq!(s.kt_pending(10).await.unwrap().len(), 1);
    let kt = Kt::open(
        store,
        kt.key_pair().clone(),
        Duration::from_secs(3600),
        "node-1",
    )
    .await
    .unwrap();
    assert_eq!(kt.publish_pending().await.unwrap(), r3);
    assert!(s.kt_pending(10).await.unwrap().is_empty());
    let (root, proof) = kt.history(&user("bob")).await.unwrap();
    assert_eq!(
        verify_history(&pins, &root, "bob", &proof).unwrap().len(),
        2
    );
}

conformance_suite!(
    akd_storage_cases,
    uploads_are_queued_newest_only,
    roots_are_written_once,
    one_publisher_at_a_time,
    directory_publishes_reopens_and_proves,
);
