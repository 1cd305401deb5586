//! Conformance cases for [`ContactStore`], run against both backends with the storage suite's
//! harness (`store::conformance`: a temporary SQLite file each; a scratch PostgreSQL schema
//! each when `HAVEN_TEST_POSTGRES_URL` is set).

use std::sync::Arc;

use haven_proto::api::EntryKind;
use haven_proto::contacts::{AgeBand, AgeSource, MessageSetting, RequestKind};

use super::store::{ContactRequested, NewContactEvent, RiskStateRow, StoredAge};
use crate::moderation::store::AuditLine;
use crate::store::conformance::{
    conformance_suite, dev, gid, group_with, message, new_device, on_postgres, people,
    sqlite_store, user, LIMITS, NOW,
};
use crate::store::{Store, StoreError};

fn event(actor: &str, target: &str, approach: &'static str, at: i64) -> NewContactEvent {
    NewContactEvent {
        actor: user(actor),
        target: user(target),
        at,
        approach,
        target_band: AgeBand::Teen13To15,
        connected: false,
        decision: "request".into(),
    }
}

async fn outcomes<S: Store>(s: &S, actor: &str) -> Vec<(String, String)> {
    s.contact_events(&user(actor), 0)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.target.to_string(), e.outcome))
        .collect()
}

async fn accounts_keep_band_not_birth_date<S: Store>(s: Arc<S>) {
    people(&*s).await;
    // Existing accounts (create_user) are adults with a self-declared age, setting `requests`.
    let p = s.profile(&user("alice")).await.unwrap().unwrap();
    assert_eq!(p.age, StoredAge::legacy_adult());
    assert_eq!(p.setting, MessageSetting::Requests);
    let teen = StoredAge {
        band: AgeBand::Teen13To15,
        changes_on: Some("2028-03-01".into()),
        source: AgeSource::SelfDeclared,
    };
    s.create_account(&user("erin"), &new_device(&dev(9), NOW), &teen)
        .await
        .unwrap();
    assert_eq!(s.profile(&user("erin")).await.unwrap().unwrap().age, teen);
    // The name is taken: nothing changes, the device is not created.
    assert!(matches!(
        s.create_account(
            &user("erin"),
            &new_device(&dev(10), NOW),
            &StoredAge::legacy_adult()
        )
        .await,
        Err(StoreError::AlreadyExists("user"))
    ));
    assert!(s.device(&dev(10)).await.unwrap().is_none());
    let corrected = StoredAge {
        band: AgeBand::Adult,
        changes_on: None,
        source: AgeSource::Verified,
    };
    let before = s.audit(0, 100).await.unwrap().len();
    s.set_age(
        &user("erin"),
        &corrected,
        &AuditLine {
            actor: "admin-cli".into(),
            action: "age.set".into(),
            case: None,
            detail: "erin: adult, verified".into(),
            at: NOW,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        s.profile(&user("erin")).await.unwrap().unwrap().age,
        corrected
    );
    assert_eq!(s.audit(0, 100).await.unwrap().len(), before + 1);
    assert!(matches!(
        s.set_age(
            &user("nobody"),
            &corrected,
            &AuditLine {
                actor: "admin-cli".into(),
                action: "age.set".into(),
                case: None,
                detail: String::new(),
                at: NOW,
            }
        )
        .await,
        Err(StoreError::NotFound("user"))
    ));
    assert_eq!(s.audit(0, 100).await.unwrap().len(), before + 1);
    s.set_message_setting(&user("alice"), MessageSetting::ContactsOnly)
        .await
        .unwrap();
    assert_eq!(
        s.profile(&user("alice")).await.unwrap().unwrap().setting,
        MessageSetting::ContactsOnly
    );
    assert!(s.profile(&user("nobody")).await.unwrap().is_none());
}

async fn requests_connect_and_crossing_requests_connect<S: Store>(s: Arc<S>) {
    people(&*s).await;
    let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
    let e = event("alice", "bob", "contact_request", NOW);
    assert_eq!(
        s.request_contact(&alice, &bob, &e).await.unwrap(),
        ContactRequested::Created
    );
    assert_eq!(
        s.request_contact(&alice, &bob, &e).await.unwrap(),
        ContactRequested::AlreadyPending
    );
    let r = s.relation(&bob, &alice).await.unwrap();
    assert!(r.incoming_pending && !r.outgoing_pending && !r.connected);
    let l = s.contact_list(&bob).await.unwrap();
    assert_eq!(l.incoming.len(), 1);
    assert_eq!(l.incoming[0].user, alice);
    // Bob asking back connects them; both requests' events are accepted.
    assert_eq!(
        s.request_contact(
            &bob,
            &alice,
            &event("bob", "alice", "contact_request", NOW + 1)
        )
        .await
        .unwrap(),
        ContactRequested::Connected
    );
    assert!(s.relation(&alice, &bob).await.unwrap().connected);
    assert!(s.relation(&bob, &alice).await.unwrap().connected);
    assert_eq!(
        outcomes(&*s, "alice").await,
        [("bob".into(), "accepted".into())]
    );
    assert_eq!(
        outcomes(&*s, "bob").await,
        [("alice".into(), "accepted".into())]
    );
    assert_eq!(
        s.contact_list(&alice).await.unwrap().contacts,
        std::slice::from_ref(&bob)
    );
    assert_eq!(
        s.request_contact(&alice, &bob, &e).await.unwrap(),
        ContactRequested::AlreadyConnected
    );
    // Declining: no connection, the event is declined.
    s.request_contact(
        &carol,
        &alice,
        &event("carol", "alice", "contact_request", NOW),
    )
    .await
    .unwrap();
    assert!(s.answer_contact(&alice, &carol, false, NOW).await.unwrap());
    assert!(!s.answer_contact(&alice, &carol, true, NOW).await.unwrap());
    assert!(!s.relation(&alice, &carol).await.unwrap().connected);
    assert_eq!(
        outcomes(&*s, "carol").await,
        [("alice".into(), "declined".into())]
    );
    // Remove.
    assert_eq!(s.remove_contact(&bob, &alice).await.unwrap(), 1);
    assert!(!s.relation(&alice, &bob).await.unwrap().connected);
    assert_eq!(s.remove_contact(&bob, &alice).await.unwrap(), 0);
    assert!(matches!(
        s.request_contact(&alice, &user("nobody"), &e).await,
        Err(StoreError::NotFound("user"))
    ));
}

async fn concurrent_crossing_requests_connect_once<S: Store>(s: Arc<S>) {
    people(&*s).await;
    let (a, b) = (s.clone(), s.clone());
    let x = tokio::spawn(async move {
        a.request_contact(
            &user("alice"),
            &user("bob"),
            &event("alice", "bob", "contact_request", NOW),
        )
        .await
        .unwrap()
    });
    let y = tokio::spawn(async move {
        b.request_contact(
            &user("bob"),
            &user("alice"),
            &event("bob", "alice", "contact_request", NOW),
        )
        .await
        .unwrap()
    });
    let mut got = [x.await.unwrap(), y.await.unwrap()];
    got.sort_by_key(|r| *r as u8);
    assert_eq!(
        got,
        [ContactRequested::Created, ContactRequested::Connected]
    );
    let r = s.relation(&user("alice"), &user("bob")).await.unwrap();
    assert!(r.connected && !r.incoming_pending && !r.outgoing_pending);
}

async fn blocks_cut_connections_and_mark_events<S: Store>(s: Arc<S>) {
    people(&*s).await;
    let (alice, bob) = (user("alice"), user("bob"));
    s.request_contact(&bob, &alice, &event("bob", "alice", "contact_request", NOW))
        .await
        .unwrap();
    s.record_contact_events(&[event("bob", "alice", "first_message", NOW + 1)])
        .await
        .unwrap();
    assert!(s.set_block(&alice, &bob, true, NOW + 2, 0).await.unwrap());
    assert!(!s.set_block(&alice, &bob, true, NOW + 2, 0).await.unwrap());
    let r = s.relation(&bob, &alice).await.unwrap();
    assert!(r.target_blocked_actor && !r.actor_blocked_target && !r.outgoing_pending);
    assert_eq!(
        outcomes(&*s, "bob").await,
        [
            ("alice".into(), "blocked".into()),
            ("alice".into(), "blocked".into())
        ]
    );
    assert_eq!(s.received(&bob, 0).await.unwrap(), (1, 0));
    assert_eq!(s.received(&bob, NOW + 2).await.unwrap(), (0, 0));
    assert_eq!(
        s.contact_list(&alice).await.unwrap().blocked,
        std::slice::from_ref(&bob)
    );
    assert!(s.set_block(&alice, &bob, false, NOW + 3, 0).await.unwrap());
    assert!(!s.relation(&bob, &alice).await.unwrap().target_blocked_actor);
    assert!(s.set_restrict(&alice, &bob, true, NOW).await.unwrap());
    assert!(
        s.relation(&bob, &alice)
            .await
            .unwrap()
            .target_restricted_actor
    );
    assert_eq!(
        s.contact_list(&alice).await.unwrap().restricted,
        std::slice::from_ref(&bob)
    );
    assert!(s.set_restrict(&alice, &bob, false, NOW).await.unwrap());
    assert!(
        !s.relation(&bob, &alice)
            .await
            .unwrap()
            .target_restricted_actor
    );
    assert!(matches!(
        s.set_block(&alice, &user("nobody"), true, NOW, 0).await,
        Err(StoreError::NotFound("user"))
    ));
    // A report marks pending and accepted approaches; a block's mark stays.
    s.record_contact_events(&[event("bob", "alice", "group_add", NOW + 4)])
        .await
        .unwrap();
    s.mark_reported(&bob, &alice, 0).await.unwrap();
    let o: Vec<String> = outcomes(&*s, "bob")
        .await
        .into_iter()
        .map(|(_, o)| o)
        .collect();
    assert_eq!(o, ["blocked", "blocked", "reported"]);
}

async fn direct_groups_and_message_requests<S: Store>(s: Arc<S>) {
    people(&*s).await;
    let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
    // gid(5) with alice's device only, at epoch 0: it can be marked direct for alice and bob.
    s.create_group(&gid(5), &dev(1), NOW, b"state")
        .await
        .unwrap();
    assert!(!s.mark_direct(&gid(5), &bob, &carol).await.unwrap());
    assert!(s.mark_direct(&gid(5), &alice, &bob).await.unwrap());
    assert!(!s.mark_direct(&gid(5), &alice, &bob).await.unwrap());
    assert_eq!(
        s.direct_pair(&gid(5)).await.unwrap(),
        Some((alice.clone(), bob.clone()))
    );
    assert!(s.direct_pair(&gid(2)).await.unwrap().is_none());
    // A group with members already cannot be marked.
    let g = {
        let s2 = s.clone();
        s2.create_group(&gid(3), &dev(1), NOW, b"state")
            .await
            .unwrap();
        s2.apply_commit(
            &crate::store::conformance::commit(&gid(3), 0, &dev(1), &[&dev(2)], &[]),
            &LIMITS,
        )
        .await
        .unwrap();
        gid(3)
    };
    assert!(!s.mark_direct(&g, &alice, &bob).await.unwrap());
    assert_eq!(
        s.group_users(&g).await.unwrap(),
        [alice.clone(), bob.clone()]
    );

    s.open_message_requests(&g, &alice, &[(bob.clone(), RequestKind::Direct)], NOW)
        .await
        .unwrap();
    s.open_message_requests(&g, &alice, &[(bob.clone(), RequestKind::Direct)], NOW + 5)
        .await
        .unwrap();
    let reqs = s.message_requests(&bob).await.unwrap();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].0.requester, alice);
    assert_eq!(reqs[0].0.created_at, NOW);
    assert_eq!(reqs[0].1, [alice.clone(), bob.clone()]);
    // One message while pending, given back on a failed send.
    assert!(s
        .unaccepted_request(&g, &alice, &bob)
        .await
        .unwrap()
        .is_some());
    assert!(s.take_request_message(&g, &alice, &bob).await.unwrap());
    assert!(!s.take_request_message(&g, &alice, &bob).await.unwrap());
    s.return_request_message(&g, &alice, &bob).await.unwrap();
    assert!(s.take_request_message(&g, &alice, &bob).await.unwrap());
    assert!(!s.take_request_message(&g, &bob, &alice).await.unwrap());
    // Declined: still unaccepted, no message.
    s.record_contact_events(&[event("alice", "bob", "first_message", NOW)])
        .await
        .unwrap();
    assert_eq!(
        s.answer_message_requests(&bob, &alice, false, NOW)
            .await
            .unwrap(),
        std::slice::from_ref(&g)
    );
    assert!(s.message_requests(&bob).await.unwrap().is_empty());
    assert!(s.declined_direct(&alice, &bob, NOW - 1).await.unwrap());
    assert!(!s.declined_direct(&alice, &bob, NOW).await.unwrap());
    assert!(!s.declined_direct(&bob, &alice, NOW - 1).await.unwrap());
    assert!(s
        .unaccepted_request(&g, &alice, &bob)
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        outcomes(&*s, "alice").await,
        [("bob".into(), "declined".into())]
    );
    assert!(s
        .answer_message_requests(&bob, &alice, true, NOW)
        .await
        .unwrap()
        .is_empty());
    // Accepted: no longer a request.
    let g2 = group_with(&*s, &[&dev(3)]).await;
    s.open_message_requests(&g2, &alice, &[(carol.clone(), RequestKind::Group)], NOW)
        .await
        .unwrap();
    assert_eq!(
        s.answer_message_requests(&carol, &alice, true, NOW)
            .await
            .unwrap(),
        std::slice::from_ref(&g2)
    );
    assert!(s
        .unaccepted_request(&g2, &alice, &carol)
        .await
        .unwrap()
        .is_none());
}

async fn time_line_risk_notices_and_policy<S: Store>(s: Arc<S>) {
    people(&*s).await;
    let (alice, bob) = (user("alice"), user("bob"));
    s.record_contact_events(&[
        event("alice", "bob", "first_message", NOW),
        event("alice", "carol", "group_add", NOW + 10),
    ])
    .await
    .unwrap();
    let ev = s.contact_events(&alice, NOW).await.unwrap();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].target, user("carol"));
    assert_eq!(ev[0].approach, "group_add");
    assert_eq!(ev[0].target_band, AgeBand::Teen13To15);
    assert_eq!(s.contact_events(&alice, 0).await.unwrap().len(), 2);

    assert!(s.risk_state(&alice).await.unwrap().is_none());
    let st = RiskStateRow {
        score: 42.5,
        level: "elevated".into(),
        computed_at: NOW,
    };
    s.put_risk_state(&alice, &st).await.unwrap();
    assert_eq!(s.risk_state(&alice).await.unwrap(), Some(st));
    let st2 = RiskStateRow {
        score: 1.0,
        level: "normal".into(),
        computed_at: NOW + 1,
    };
    s.put_risk_state(&alice, &st2).await.unwrap();
    assert_eq!(s.risk_state(&alice).await.unwrap(), Some(st2));

    // A safety notice is queued once per window.
    let mut n = message(EntryKind::Notice, None, None, b"{\"kind\":\"safety\"}");
    n.received_at = NOW;
    assert!(s
        .safety_notice(&bob, &alice, &n, 1000, &LIMITS)
        .await
        .unwrap());
    assert!(!s
        .safety_notice(&bob, &alice, &n, 1000, &LIMITS)
        .await
        .unwrap());
    assert_eq!(s.fetch_queue(&dev(2), 0, 10, NOW).await.unwrap().len(), 1);
    n.received_at = NOW + 1000;
    assert!(s
        .safety_notice(&bob, &alice, &n, 1000, &LIMITS)
        .await
        .unwrap());
    assert_eq!(s.fetch_queue(&dev(2), 0, 10, NOW).await.unwrap().len(), 2);

    // The purge takes what is older than its cut-off only.
    assert_eq!(s.purge_contacts(NOW + 5).await.unwrap(), 1);
    assert_eq!(s.contact_events(&alice, 0).await.unwrap().len(), 1);
    assert!(!s
        .safety_notice(&bob, &alice, &n, 1000, &LIMITS)
        .await
        .unwrap());
    assert_eq!(s.purge_contacts(NOW + 1001).await.unwrap(), 2);
    assert!(s
        .safety_notice(&bob, &alice, &n, 1000, &LIMITS)
        .await
        .unwrap());

    assert!(s.policy().await.unwrap().is_none());
    s.write_policy(1, "{\"a\":1}", NOW).await.unwrap();
    s.write_policy(2, "{\"a\":2}", NOW).await.unwrap();
    assert_eq!(s.policy().await.unwrap(), Some((2, "{\"a\":2}".into())));
}

conformance_suite!(
    accounts_keep_band_not_birth_date,
    requests_connect_and_crossing_requests_connect,
    concurrent_crossing_requests_connect_once,
    blocks_cut_connections_and_mark_events,
    direct_groups_and_message_requests,
    time_line_risk_notices_and_policy,
);
