//! Conformance cases for [`DeviceListStore`], run against both backends with the storage
//! suite's harness (`store::conformance`).

use std::sync::Arc;

use super::store::StoredDeviceList;
use crate::store::conformance::{
    conformance_suite, dev, on_postgres, people, sqlite_store, user, NOW,
};
use crate::store::{Store, StoreError};

fn list(name: &str, version: u64, bytes: &[u8]) -> StoredDeviceList {
    StoredDeviceList {
        user: user(name),
        version,
        list: bytes.to_vec(),
        signer: dev(1),
        created_at: NOW + i64::try_from(version % 1000).unwrap(),
    }
}

async fn versions_are_consecutive_from_one<S: Store>(s: Arc<S>) {
    people(&*s).await;
    assert_eq!(s.latest_device_list(&user("alice")).await.unwrap(), None);
    // Not 2 before 1, nor 0.
    for v in [0, 2] {
        assert!(matches!(
            s.put_device_list(&list("alice", v, b"x")).await,
            Err(StoreError::AlreadyExists("device list version"))
        ));
    }
    s.put_device_list(&list("alice", 1, b"v1")).await.unwrap();
    // The same version again (a racing device) is refused and changes nothing.
    assert!(matches!(
        s.put_device_list(&list("alice", 1, b"other v1")).await,
        Err(StoreError::AlreadyExists(_))
    ));
    s.put_device_list(&list("alice", 2, b"v2")).await.unwrap();
    s.put_device_list(&list("alice", 3, b"v3")).await.unwrap();
    assert_eq!(
        s.latest_device_list(&user("alice")).await.unwrap(),
        Some(list("alice", 3, b"v3"))
    );
    let after1: Vec<_> = s
        .device_lists_after(&user("alice"), 1, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|l| (l.version, l.list))
        .collect();
    assert_eq!(after1, vec![(2, b"v2".to_vec()), (3, b"v3".to_vec())]);
    assert_eq!(
        s.device_lists_after(&user("alice"), 0, 1).await.unwrap(),
        vec![list("alice", 1, b"v1")]
    );
    assert!(s
        .device_lists_after(&user("alice"), 3, 10)
        .await
        .unwrap()
        .is_empty());
    // Accounts are separate.
    assert_eq!(s.latest_device_list(&user("bob")).await.unwrap(), None);
    s.put_device_list(&list("bob", 1, b"b1")).await.unwrap();
    // An unknown account.
    assert!(matches!(
        s.put_device_list(&list("nobody", 1, b"n1")).await,
        Err(StoreError::NotFound("user"))
    ));
    // A version past i64::MAX can never be next.
    assert!(s
        .put_device_list(&list("alice", u64::MAX, b"x"))
        .await
        .is_err());
}

async fn racing_uploads_of_one_version_store_one<S: Store>(s: Arc<S>) {
    people(&*s).await;
    s.put_device_list(&list("alice", 1, b"v1")).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8u8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.put_device_list(&list("alice", 2, &[b'v', b'2', i])).await
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => won += 1,
            Err(StoreError::AlreadyExists(_)) => {}
            Err(e) => panic!("unexpected: {e}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(
        s.device_lists_after(&user("alice"), 1, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

conformance_suite!(
    versions_are_consecutive_from_one,
    racing_uploads_of_one_version_store_one,
);
