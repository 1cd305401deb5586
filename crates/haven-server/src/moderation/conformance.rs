//! Conformance cases for [`ModerationStore`], run against both backends with the storage
//! suite's harness (`store::conformance`: a temporary SQLite file each; a scratch PostgreSQL
//! schema each when `HAVEN_TEST_POSTGRES_URL` is set).

use std::sync::Arc;

use haven_proto::api::EntryKind;
use haven_proto::moderation::{AppealOutcome, CaseSource, CaseState, ModAction, ReportReason};

use super::store::{
    verify_audit_chain, AccountEvent, AuditLine, ModerationStore, NewAction, NewCase, Role,
};
use crate::store::conformance::{
    commit, conformance_suite, dev, gid, group_with, message, on_postgres, people, sqlite_store,
    user, LIMITS, NOW,
};
use crate::store::{Millis, Store, StoreError};

fn line(action: &str, case: Option<&str>) -> AuditLine {
    AuditLine {
        actor: "mod1".into(),
        action: action.into(),
        case: case.map(str::to_owned),
        detail: format!("detail of {action}"),
        at: NOW,
    }
}

fn case(id: &str, reason: ReportReason, priority: u8, at: Millis) -> NewCase {
    NewCase {
        id: id.into(),
        source: CaseSource::MessageReport,
        reason,
        priority,
        reporter: Some(user("bob")),
        reporter_is_minor: false,
        reported_user: user("alice"),
        group_id: Some(gid(1)),
        dedupe_key: Some(format!("key-{id}").into_bytes()),
        note_sealed: Some(b"sealed note".to_vec()),
        evidence: vec![
            ("m00".into(), format!("sealed m0 of {id}").into_bytes()),
            ("f0".into(), format!("sealed f0 of {id}").into_bytes()),
        ],
        created_at: at,
    }
}

fn action(
    id: &str,
    case: &str,
    a: ModAction,
    until: Option<Millis>,
    state: Option<CaseState>,
) -> NewAction {
    NewAction {
        id: id.into(),
        case: case.into(),
        action: a,
        reason: format!("because {}", a.as_str()),
        moderator: user("carol"),
        now: NOW,
        until,
        case_state: state,
        purge_after: None,
        notices: vec![(
            user("alice"),
            message(EntryKind::Notice, None, None, b"{\"notice\":1}"),
        )],
        audit: line("case.action", Some(case)),
    }
}

async fn audit_len<S: Store>(s: &S) -> usize {
    s.audit(0, 10_000).await.unwrap().len()
}

async fn roles_grant_revoke_and_audit<S: Store>(s: Arc<S>) {
    people(&*s).await;
    let carol = user("carol");
    assert!(s
        .grant_role(&carol, Role::Moderator, NOW, &line("role.grant", None))
        .await
        .unwrap());
    assert!(!s
        .grant_role(&carol, Role::Moderator, NOW, &line("role.grant", None))
        .await
        .unwrap());
    assert!(s
        .grant_role(&carol, Role::Admin, NOW, &line("role.grant", None))
        .await
        .unwrap());
    assert_eq!(
        s.roles(&carol).await.unwrap(),
        vec![Role::Admin, Role::Moderator]
    );
    assert!(s.roles(&user("bob")).await.unwrap().is_empty());
    assert!(s
        .revoke_role(&carol, Role::Admin, &line("role.revoke", None))
        .await
        .unwrap());
    assert!(!s
        .revoke_role(&carol, Role::Admin, &line("role.revoke", None))
        .await
        .unwrap());
    assert_eq!(s.roles(&carol).await.unwrap(), vec![Role::Moderator]);
    let err = s
        .grant_role(
            &user("nobody"),
            Role::Moderator,
            NOW,
            &line("role.grant", None),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound("user")), "{err:?}");
    // Only the changes that happened are in the log.
    let log = s.audit(0, 100).await.unwrap();
    assert_eq!(log.len(), 3);
    assert_eq!(verify_audit_chain(&log), Ok(()));
}

async fn cases_dedupe_and_queue_order<S: Store>(s: Arc<S>) {
    people(&*s).await;
    let audit = line("report.file", None);
    assert_eq!(
        s.file_case(&case("c3", ReportReason::Spam, 5, NOW), &audit)
            .await
            .unwrap(),
        ("c3".to_owned(), true)
    );
    s.file_case(
        &case("c1", ReportReason::ChildSexualExploitation, 0, NOW + 2),
        &audit,
    )
    .await
    .unwrap();
    s.file_case(&case("c2", ReportReason::Grooming, 0, NOW + 1), &audit)
        .await
        .unwrap();
    // The same dedupe key again: the first case, nothing written.
    let mut again = case("c9", ReportReason::Spam, 5, NOW + 9);
    again.dedupe_key = Some(b"key-c3".to_vec());
    assert_eq!(
        s.file_case(&again, &audit).await.unwrap(),
        ("c3".to_owned(), false)
    );
    assert!(s.case("c9").await.unwrap().is_none());
    assert_eq!(audit_len(&*s).await, 3);
    // Unknown accounts are refused and write nothing.
    let mut bad = case("c8", ReportReason::Spam, 5, NOW);
    bad.reported_user = user("nobody");
    assert!(matches!(
        s.file_case(&bad, &audit).await,
        Err(StoreError::NotFound("user"))
    ));
    assert!(s.evidence("c8").await.unwrap().is_empty());

    let (rows, open) = s.queue(10).await.unwrap();
    assert_eq!(open, 3);
    let ids: Vec<_> = rows.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["c2", "c1", "c3"], "priority, then age");
    let (rows, open) = s.queue(1).await.unwrap();
    assert_eq!((rows.len(), open), (1, 3));
    let c = s.case("c1").await.unwrap().unwrap();
    assert_eq!(c.state, CaseState::Open);
    assert_eq!(c.reason, ReportReason::ChildSexualExploitation);
    assert_eq!(c.reporter, Some(user("bob")));
    assert_eq!(c.group_id, Some(gid(1)));
    assert_eq!(c.note_sealed.as_deref(), Some(&b"sealed note"[..]));
    let ev = s.evidence("c1").await.unwrap();
    assert_eq!(
        ev.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
        ["f0", "m00"]
    );
    assert_eq!(
        s.evidence_item("c1", "f0").await.unwrap().unwrap(),
        b"sealed f0 of c1"
    );
    assert!(s.evidence_item("c1", "f1").await.unwrap().is_none());
    let about = s.cases_about(&user("alice"), 10).await.unwrap();
    assert_eq!(
        about.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["c1", "c2", "c3"]
    );
    assert!(s.cases_about(&user("bob"), 10).await.unwrap().is_empty());
}

async fn actions_take_effect_and_notify<S: Store>(s: Arc<S>) {
    people(&*s).await;
    let alice = user("alice");
    s.file_case(
        &case("c1", ReportReason::Harassment, 3, NOW),
        &line("report.file", None),
    )
    .await
    .unwrap();
    s.put_session(b"alice-session", &dev(1), NOW + 1_000_000)
        .await
        .unwrap();
    s.put_session(b"bob-session", &dev(2), NOW + 1_000_000)
        .await
        .unwrap();
    // Restrict: the account's restriction, the case actioned, the notice queued.
    let r = s
        .take_action(
            &action(
                "a1",
                "c1",
                ModAction::Restrict,
                Some(NOW + 100),
                Some(CaseState::Actioned),
            ),
            &LIMITS,
        )
        .await
        .unwrap();
    assert_eq!(
        (r.action, r.user.clone(), r.until),
        (ModAction::Restrict, alice.clone(), Some(NOW + 100))
    );
    let a = s.account(&alice).await.unwrap().unwrap();
    assert_eq!(
        (a.restricted_until, a.suspended_until),
        (Some(NOW + 100), None)
    );
    assert_eq!(
        s.case("c1").await.unwrap().unwrap().state,
        CaseState::Actioned
    );
    let q = s.fetch_queue(&dev(1), 0, 10, NOW).await.unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].kind, EntryKind::Notice);
    assert_eq!(q[0].sender, None);
    assert!(s
        .session_device(b"alice-session", NOW)
        .await
        .unwrap()
        .is_some());
    // Suspend: sessions of every device go; other accounts keep theirs.
    s.take_action(
        &action("a2", "c1", ModAction::Suspend, Some(NOW + 500), None),
        &LIMITS,
    )
    .await
    .unwrap();
    assert_eq!(
        s.account(&alice).await.unwrap().unwrap().suspended_until,
        Some(NOW + 500)
    );
    assert!(s
        .session_device(b"alice-session", NOW)
        .await
        .unwrap()
        .is_none());
    assert!(s
        .session_device(b"bob-session", NOW)
        .await
        .unwrap()
        .is_some());
    // Ban: the longest suspension wins.
    s.take_action(
        &action("a3", "c1", ModAction::Ban, Some(Millis::MAX), None),
        &LIMITS,
    )
    .await
    .unwrap();
    assert_eq!(
        s.account(&alice).await.unwrap().unwrap().suspended_until,
        Some(Millis::MAX)
    );
    // Preserve: the case and the account are held.
    s.take_action(
        &action("a4", "c1", ModAction::Preserve, Some(NOW + 9_000), None),
        &LIMITS,
    )
    .await
    .unwrap();
    assert_eq!(
        s.case("c1").await.unwrap().unwrap().held_until,
        Some(NOW + 9_000)
    );
    assert_eq!(
        s.account(&alice).await.unwrap().unwrap().hold_until,
        Some(NOW + 9_000)
    );
    assert_eq!(s.case_actions("c1").await.unwrap().len(), 4);
    assert_eq!(s.user_actions(&alice, 2).await.unwrap().len(), 2);
    // An unknown case: refused, nothing written.
    let before = audit_len(&*s).await;
    let q_before = s.fetch_queue(&dev(1), 0, 100, NOW).await.unwrap().len();
    let err = s
        .take_action(
            &action(
                "a5",
                "nope",
                ModAction::Warn,
                None,
                Some(CaseState::Actioned),
            ),
            &LIMITS,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound("case")), "{err:?}");
    assert!(s.action("a5").await.unwrap().is_none());
    assert_eq!(audit_len(&*s).await, before);
    assert_eq!(
        s.fetch_queue(&dev(1), 0, 100, NOW).await.unwrap().len(),
        q_before
    );
}

async fn appeals_once_and_reversal_lifts<S: Store>(s: Arc<S>) {
    people(&*s).await;
    let alice = user("alice");
    s.file_case(
        &case("c1", ReportReason::Harassment, 3, NOW),
        &line("report.file", None),
    )
    .await
    .unwrap();
    s.take_action(
        &action(
            "a1",
            "c1",
            ModAction::Suspend,
            Some(NOW + 500),
            Some(CaseState::Actioned),
        ),
        &LIMITS,
    )
    .await
    .unwrap();
    // Nobody else can appeal alice's action; there is none for bob.
    let err = s
        .file_appeal(
            "c1",
            &user("bob"),
            "me too",
            NOW,
            &line("appeal.file", Some("c1")),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    let row = s
        .file_appeal(
            "c1",
            &alice,
            "I did not",
            NOW + 1,
            &line("appeal.file", Some("c1")),
        )
        .await
        .unwrap();
    assert_eq!(row.appeal, Some(("I did not".to_owned(), NOW + 1)));
    let err = s
        .file_appeal(
            "c1",
            &alice,
            "again",
            NOW + 2,
            &line("appeal.file", Some("c1")),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists(_)), "{err:?}");
    assert_eq!(s.appeals(10).await.unwrap().len(), 1);
    let notice = message(EntryKind::Notice, None, None, b"{}");
    let decided = s
        .decide_appeal(
            "a1",
            &user("dave"),
            AppealOutcome::Reversed,
            "fair",
            NOW + 3,
            &notice,
            &line("appeal.decide", Some("c1")),
            &LIMITS,
        )
        .await
        .unwrap();
    assert_eq!(decided.lifted_at, Some(NOW + 3));
    assert_eq!(
        decided.decision.as_ref().map(|d| d.1),
        Some(AppealOutcome::Reversed)
    );
    assert_eq!(
        s.account(&alice).await.unwrap().unwrap().suspended_until,
        None
    );
    assert!(s.appeals(10).await.unwrap().is_empty());
    let err = s
        .decide_appeal(
            "a1",
            &user("dave"),
            AppealOutcome::Upheld,
            "no",
            NOW + 4,
            &notice,
            &line("appeal.decide", Some("c1")),
            &LIMITS,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound("appeal")), "{err:?}");
    // A lifted action cannot be appealed again (there is nothing to appeal).
    let err = s
        .file_appeal("c1", &alice, "x", NOW + 5, &line("appeal.file", Some("c1")))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

async fn audit_chain_under_concurrency<S: Store>(s: Arc<S>) {
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.append_audit(&line(&format!("x.{i}"), None)).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let log = s.audit(0, 100).await.unwrap();
    assert_eq!(
        log.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>()
    );
    assert_eq!(verify_audit_chain(&log), Ok(()));
    // Paging continues the chain.
    assert_eq!(s.audit(15, 100).await.unwrap().len(), 5);
    // A changed entry breaks the chain at that entry.
    let mut tampered = log.clone();
    tampered[7].line.detail = "edited".into();
    assert_eq!(verify_audit_chain(&tampered), Err(8));
}

async fn membership_history_answers_was_member<S: Store>(s: Arc<S>) {
    people(&*s).await;
    let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
    // The history uses the database's clock.
    let t0 = crate::service::now_ms();
    let g = group_with(&*s, &[&dev(2)]).await;
    let t1 = crate::service::now_ms();
    assert!(s.was_member(&g, &alice, t1, 0).await.unwrap());
    assert!(s.was_member(&g, &bob, t1, 0).await.unwrap());
    assert!(!s.was_member(&g, &carol, t1, 0).await.unwrap());
    assert!(
        !s.was_member(&g, &bob, t0 - 60_000, 5_000).await.unwrap(),
        "before it joined"
    );
    // Bob is removed; he was a member before, not long after.
    s.apply_commit(&commit(&g, 1, &dev(1), &[], &[&dev(2)]), &LIMITS)
        .await
        .unwrap();
    let t2 = crate::service::now_ms();
    assert!(s.was_member(&g, &bob, t1, 0).await.unwrap());
    assert!(!s.was_member(&g, &bob, t2 + 60_000, 5_000).await.unwrap());
    assert!(s.was_member(&g, &alice, t2 + 60_000, 0).await.unwrap());
    assert_eq!(s.device_owner(&dev(2)).await.unwrap(), Some(bob));
    assert_eq!(s.device_owner(&dev(99)).await.unwrap(), None);
}

async fn purge_keeps_held_and_open_evidence<S: Store>(s: Arc<S>) {
    people(&*s).await;
    let audit = line("report.file", None);
    for id in ["c1", "c2", "c3"] {
        s.file_case(&case(id, ReportReason::Spam, 5, NOW), &audit)
            .await
            .unwrap();
    }
    let dismiss = |id: &str, c: &str| {
        let mut a = action(id, c, ModAction::Dismiss, None, Some(CaseState::Dismissed));
        a.purge_after = Some(NOW + 10);
        a.notices.clear();
        a
    };
    s.take_action(&dismiss("a1", "c1"), &LIMITS).await.unwrap();
    s.take_action(&dismiss("a2", "c2"), &LIMITS).await.unwrap();
    let (open, n) = s.queue(10).await.unwrap();
    assert_eq!(
        (open.len(), n),
        (1, 1),
        "closing counts once; only c3 is open"
    );
    s.take_action(
        &action("a3", "c2", ModAction::Preserve, Some(NOW + 1_000), None),
        &LIMITS,
    )
    .await
    .unwrap();
    for (u, at) in [("alice", NOW - 100), ("bob", NOW - 100), ("bob", NOW + 50)] {
        let device = if u == "alice" { dev(1) } else { dev(2) };
        s.record_event(
            &user(u),
            &AccountEvent {
                device,
                event: "login",
                ip: "192.0.2.1".into(),
                at,
            },
        )
        .await
        .unwrap();
    }
    // Before retention ends nothing goes.
    assert_eq!(
        s.purge_moderation(NOW + 9, NOW - 200).await.unwrap().cases,
        0
    );
    let p = s.purge_moderation(NOW + 10, NOW).await.unwrap();
    assert_eq!(p.cases, 1);
    // alice is held (a3's preserve): her old event stays; bob's old one goes.
    assert_eq!(p.events, 1);
    assert!(s.evidence("c1").await.unwrap().is_empty());
    let c1 = s.case("c1").await.unwrap().unwrap();
    assert!(c1.evidence_purged && c1.note_sealed.is_none());
    assert_eq!(s.evidence("c2").await.unwrap().len(), 2, "held");
    assert_eq!(s.evidence("c3").await.unwrap().len(), 2, "open");
    assert_eq!(s.events(&user("alice"), 10).await.unwrap().len(), 1);
    assert_eq!(s.events(&user("bob"), 10).await.unwrap().len(), 1);
    // Once the hold ends, the dismissed case's evidence goes too.
    assert_eq!(s.purge_moderation(NOW + 1_000, NOW).await.unwrap().cases, 1);
    assert!(s.evidence("c2").await.unwrap().is_empty());
}

conformance_suite!(
    roles_grant_revoke_and_audit,
    cases_dedupe_and_queue_order,
    actions_take_effect_and_notify,
    appeals_once_and_reversal_lifts,
    audit_chain_under_concurrency,
    membership_history_answers_was_member,
    purge_keeps_held_and_open_evidence,
);

// --- the audit log refuses edits at the database (backend-specific) ---

#[tokio::test]
async fn sqlite_audit_log_refuses_update_and_delete() {
    let (s, _dir) = sqlite_store().await;
    s.append_audit(&line("x", None)).await.unwrap();
    for sql in [
        "UPDATE mod_audit SET detail = 'edited'",
        "DELETE FROM mod_audit",
    ] {
        let r = s
            .write(move |c| crate::store::sqlite::exec(c, sql, []))
            .await;
        let e = r.unwrap_err().to_string();
        assert!(e.contains("append-only"), "{sql}: {e}");
    }
    assert_eq!(s.audit(0, 10).await.unwrap()[0].line.detail, "detail of x");
}

#[tokio::test]
async fn postgres_audit_log_refuses_update_delete_and_truncate() {
    on_postgres(
        "audit_append_only",
        |s: Arc<crate::store::postgres::PgStore>| async move {
            s.append_audit(&line("x", None)).await.unwrap();
            for sql in [
                "UPDATE mod_audit SET detail = 'edited'",
                "DELETE FROM mod_audit",
                "TRUNCATE mod_audit",
            ] {
                let e = sqlx::query(sql)
                    .execute(&s.pool)
                    .await
                    .unwrap_err()
                    .to_string();
                assert!(e.contains("append-only"), "{sql}: {e}");
            }
            assert_eq!(s.audit(0, 10).await.unwrap()[0].line.detail, "detail of x");
        },
    )
    .await;
}
