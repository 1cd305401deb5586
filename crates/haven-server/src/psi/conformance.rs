//! Conformance cases for [`PsiStore`], run against both backends with the storage suite's
//! harness (`store::conformance`: a temporary SQLite file each; a scratch PostgreSQL schema
//! each when `HAVEN_TEST_POSTGRES_URL` is set).

use std::sync::Arc;

use super::store::{AcceptedEntry, BankUse, EntryKind, NewBank, NewEntry, NewRelease, StoredShare};
use crate::moderation::AuditLine;
use crate::store::conformance::{
    conformance_suite, dev, on_postgres, people, sqlite_store, user, NOW,
};
use crate::store::{Store, StoreError};

fn line(action: &str) -> AuditLine {
    AuditLine {
        actor: "admin".into(),
        action: action.into(),
        case: None,
        detail: format!("detail of {action}"),
        at: NOW,
    }
}

fn bank(name: &str, min_sources: u32) -> NewBank {
    NewBank {
        name: name.into(),
        description: format!("the {name} list"),
        min_sources,
        created_at: NOW,
    }
}

fn entry(kind: EntryKind, byte: u8) -> NewEntry {
    NewEntry {
        kind,
        hash: vec![byte; kind.hash_len()],
    }
}

fn accepted(bank: &str, e: &NewEntry) -> AcceptedEntry {
    AcceptedEntry {
        bank: bank.into(),
        kind: e.kind,
        hash: e.hash.clone(),
    }
}

async fn audit_len<S: Store>(s: &S) -> usize {
    s.audit(0, 1000).await.unwrap().len()
}

async fn banks_are_created_once_and_switched_per_use<S: Store>(s: Arc<S>) {
    s.create_bank(&bank("ncmec", 1), &line("bank create"))
        .await
        .unwrap();
    let before = audit_len(&*s).await;
    // A taken name writes nothing, not even an audit line.
    assert!(matches!(
        s.create_bank(&bank("ncmec", 2), &line("bank create")).await,
        Err(StoreError::AlreadyExists("bank"))
    ));
    assert_eq!(audit_len(&*s).await, before);
    let banks = s.banks().await.unwrap();
    assert_eq!(banks.len(), 1);
    let b = &banks[0];
    assert_eq!((b.name.as_str(), b.min_sources), ("ncmec", 1));
    assert!(
        !b.for_vouchers && !b.for_surfaces,
        "a new bank is used for nothing"
    );
    assert_eq!((b.entries, b.accepted, b.removed), (0, 0, 0));

    // Switching: true when it changed, false when it already was so; unknown bank refused.
    assert!(s
        .set_bank_use("ncmec", BankUse::Vouchers, true, &line("enable"))
        .await
        .unwrap());
    assert!(!s
        .set_bank_use("ncmec", BankUse::Vouchers, true, &line("enable"))
        .await
        .unwrap());
    assert_eq!(audit_len(&*s).await, before + 1);
    assert!(matches!(
        s.set_bank_use("nope", BankUse::Vouchers, true, &line("enable"))
            .await,
        Err(StoreError::NotFound("bank"))
    ));
    let b = &s.banks().await.unwrap()[0];
    assert!(b.for_vouchers && !b.for_surfaces);
    assert!(s
        .set_bank_use("ncmec", BankUse::Surfaces, true, &line("enable"))
        .await
        .unwrap());
    assert!(s
        .set_bank_use("ncmec", BankUse::Vouchers, false, &line("disable"))
        .await
        .unwrap());
    let b = &s.banks().await.unwrap()[0];
    assert!(!b.for_vouchers && b.for_surfaces);
}

async fn entries_follow_sources_policy_uses_and_removals<S: Store>(s: Arc<S>) {
    s.create_bank(&bank("two", 2), &line("bank create"))
        .await
        .unwrap();
    s.create_bank(&bank("one", 1), &line("bank create"))
        .await
        .unwrap();
    for b in ["two", "one"] {
        s.set_bank_use(b, BankUse::Vouchers, true, &line("enable"))
            .await
            .unwrap();
    }
    let (p, m, h) = (
        entry(EntryKind::Pdq, 1),
        entry(EntryKind::Md5, 2),
        entry(EntryKind::Sha256, 3),
    );
    assert!(matches!(
        s.add_bank_entries(
            "nope",
            "src-a",
            std::slice::from_ref(&p),
            NOW,
            &line("import")
        )
        .await,
        Err(StoreError::NotFound("bank"))
    ));
    assert_eq!(
        s.add_bank_entries(
            "two",
            "src-a",
            &[p.clone(), m.clone(), h.clone()],
            NOW,
            &line("import")
        )
        .await
        .unwrap(),
        3
    );
    // The same source again adds nothing; one source is not enough for "two".
    assert_eq!(
        s.add_bank_entries(
            "two",
            "src-a",
            std::slice::from_ref(&p),
            NOW,
            &line("import")
        )
        .await
        .unwrap(),
        0
    );
    assert!(s
        .accepted_entries(BankUse::Vouchers)
        .await
        .unwrap()
        .is_empty());
    // A second, independent source makes p and m count.
    assert_eq!(
        s.add_bank_entries(
            "two",
            "src-b",
            &[p.clone(), m.clone()],
            NOW,
            &line("import")
        )
        .await
        .unwrap(),
        2
    );
    // "one" needs one source; it holds h too (the same hash in two banks is two entries).
    s.add_bank_entries(
        "one",
        "src-c",
        std::slice::from_ref(&h),
        NOW,
        &line("import"),
    )
    .await
    .unwrap();
    // Sorted by bank, then the kind's stable name ("md5" < "pdq" < "sha256"), then hash.
    let want = vec![
        accepted("one", &h),
        accepted("two", &m),
        accepted("two", &p),
    ];
    let got = s.accepted_entries(BankUse::Vouchers).await.unwrap();
    assert_eq!(got, want);
    // Nothing is enabled for surfaces.
    assert!(s
        .accepted_entries(BankUse::Surfaces)
        .await
        .unwrap()
        .is_empty());

    // Removal: recorded once; an entry the bank does not hold is not "removed".
    let before = audit_len(&*s).await;
    assert!(s
        .remove_bank_entry("two", &p, "false positive", NOW, &line("remove"))
        .await
        .unwrap());
    assert!(!s
        .remove_bank_entry("two", &p, "again", NOW, &line("remove"))
        .await
        .unwrap());
    assert!(!s
        .remove_bank_entry(
            "two",
            &entry(EntryKind::Pdq, 9),
            "never held",
            NOW,
            &line("remove")
        )
        .await
        .unwrap());
    assert!(matches!(
        s.remove_bank_entry("nope", &p, "x", NOW, &line("remove"))
            .await,
        Err(StoreError::NotFound("bank"))
    ));
    assert_eq!(audit_len(&*s).await, before + 1);
    // A removed entry stays removed when a source adds it again.
    s.add_bank_entries(
        "two",
        "src-d",
        std::slice::from_ref(&p),
        NOW,
        &line("import"),
    )
    .await
    .unwrap();
    let got = s.accepted_entries(BankUse::Vouchers).await.unwrap();
    assert_eq!(got, vec![accepted("one", &h), accepted("two", &m)]);

    let banks = s.banks().await.unwrap();
    let two = banks.iter().find(|b| b.name == "two").unwrap();
    assert_eq!((two.entries, two.accepted, two.removed), (3, 1, 1));
    let one = banks.iter().find(|b| b.name == "one").unwrap();
    assert_eq!((one.entries, one.accepted, one.removed), (1, 1, 0));

    // Disabling a bank takes its entries out of that use only.
    s.set_bank_use("one", BankUse::Vouchers, false, &line("disable"))
        .await
        .unwrap();
    s.set_bank_use("one", BankUse::Surfaces, true, &line("enable"))
        .await
        .unwrap();
    assert_eq!(
        s.accepted_entries(BankUse::Vouchers).await.unwrap(),
        vec![accepted("two", &m)]
    );
    assert_eq!(
        s.accepted_entries(BankUse::Surfaces).await.unwrap(),
        vec![accepted("one", &h)]
    );
}

fn release(n: u8) -> NewRelease {
    NewRelease {
        release: u64::from(n),
        db_id: [n; 16],
        root: [n.wrapping_add(100); 32],
        signed: format!("signed {n}").into_bytes(),
        db: vec![n; 1000 + usize::from(n)],
        server_key: format!("sealed key {n}").into_bytes(),
        entries: u64::from(n) * 10,
        match_keys: u64::from(n) * 30,
        banks: format!("bank{n}"),
        created_at: NOW + i64::from(n),
    }
}

async fn releases_are_numbered_and_found_by_id<S: Store>(s: Arc<S>) {
    assert!(s.releases(2).await.unwrap().is_empty());
    assert_eq!(
        s.put_release(&release(1), &line("release")).await.unwrap(),
        1
    );
    assert_eq!(
        s.put_release(&release(2), &line("release")).await.unwrap(),
        2
    );
    assert_eq!(
        s.put_release(&release(3), &line("release")).await.unwrap(),
        3
    );
    // A release numbered before another was stored (a race between two builds) is refused,
    // and so is one that skips a number: the signed header's number is the stored one.
    for stale in [2, 5] {
        let mut r = release(4);
        r.release = stale;
        assert!(matches!(
            s.put_release(&r, &line("release")).await,
            Err(StoreError::AlreadyExists("release"))
        ));
    }
    assert_eq!(
        s.release_key(&[4; 16]).await.unwrap(),
        None,
        "nothing written"
    );
    let recent = s.releases(2).await.unwrap();
    assert_eq!(
        recent.iter().map(|r| r.release).collect::<Vec<_>>(),
        vec![3, 2],
        "newest first"
    );
    let r = &recent[0];
    assert_eq!(r.db_id, [3; 16]);
    assert_eq!(r.root, [103; 32]);
    assert_eq!(r.signed, b"signed 3");
    assert_eq!((r.entries, r.match_keys, r.db_bytes), (30, 90, 1003));
    assert_eq!(r.banks, "bank3");
    assert_eq!(r.created_at, NOW + 3);
    assert_eq!(s.release_db(2).await.unwrap(), Some(vec![2; 1002]));
    assert_eq!(s.release_db(9).await.unwrap(), None);
    assert_eq!(s.release_db(u64::MAX).await.unwrap(), None);
    assert_eq!(
        s.release_key(&[1; 16]).await.unwrap(),
        Some((1, b"sealed key 1".to_vec()))
    );
    assert_eq!(s.release_key(&[7; 16]).await.unwrap(), None);
}

fn share(user_name: &str, device: u8, x: u8, at: i64) -> StoredShare {
    StoredShare {
        user: user(user_name),
        device: dev(device),
        x: [x; 32],
        share: vec![x; 80],
        blob_id: format!("blob-{x}"),
        release: 1,
        created_at: NOW + at,
        case_id: None,
    }
}

async fn shares_count_once_per_image_and_are_marked<S: Store>(s: Arc<S>) {
    people(&*s).await;
    assert!(matches!(
        s.put_share(&share("zed", 1, 1, 0)).await,
        Err(StoreError::NotFound("user"))
    ));
    assert!(s.put_share(&share("alice", 1, 2, 5)).await.unwrap());
    assert!(s.put_share(&share("alice", 1, 1, 9)).await.unwrap());
    // The same image (x) again from the same device: not kept twice, the first stays.
    let mut again = share("alice", 1, 2, 20);
    again.blob_id = "another-blob".into();
    assert!(!s.put_share(&again).await.unwrap());
    // Another device's shares are its own.
    assert!(s.put_share(&share("bob", 2, 2, 0)).await.unwrap());

    let mine = s.device_shares(&user("alice"), &dev(1), 10).await.unwrap();
    assert_eq!(mine, vec![share("alice", 1, 2, 5), share("alice", 1, 1, 9)]);
    assert_eq!(
        s.device_shares(&user("alice"), &dev(1), 1)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(s
        .device_shares(&user("alice"), &dev(2), 10)
        .await
        .unwrap()
        .is_empty());

    s.mark_revealed(&user("alice"), &dev(1), &[[2; 32]], "case-1")
        .await
        .unwrap();
    // A share revealed once keeps its first case.
    s.mark_revealed(&user("alice"), &dev(1), &[[2; 32], [1; 32]], "case-2")
        .await
        .unwrap();
    let mine = s.device_shares(&user("alice"), &dev(1), 10).await.unwrap();
    assert_eq!(
        mine.iter()
            .map(|m| m.case_id.as_deref())
            .collect::<Vec<_>>(),
        vec![Some("case-1"), Some("case-2")]
    );
    let bobs = s.device_shares(&user("bob"), &dev(2), 10).await.unwrap();
    assert_eq!(
        bobs[0].case_id, None,
        "another account's share is untouched"
    );
}

conformance_suite!(
    banks_are_created_once_and_switched_per_use,
    entries_follow_sources_policy_uses_and_removals,
    releases_are_numbered_and_found_by_id,
    shares_count_once_per_image_and_are_marked,
);
