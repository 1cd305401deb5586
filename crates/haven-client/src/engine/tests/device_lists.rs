//! Device-list enforcement in the engine: with it on, every key package, Welcome and commit is
//! checked against the verified lists the client stored ([`crate::devices`]).

use super::*;
use haven_kt::device_list::DeviceList;

/// Version 1 of `devs[0]`'s user's list with all of `devs`, signed by `devs[0]`.
fn list_of(devs: &[&Dev]) -> SignedDeviceList {
    let listed: Vec<ListedDevice> = devs.iter().map(|d| d.e.listed_self().unwrap()).collect();
    let list = DeviceList::new(devs[0].user(), 1, [0; 32], listed).unwrap();
    devs[0].e.sign_device_list(list).unwrap()
}

/// `d` enforces, with these lists verified and checked in this session.
fn enforcing(d: &mut Dev, lists: &[SignedDeviceList]) {
    d.e.enforce_device_lists();
    for l in lists {
        d.e.store_verified_list(l, None).unwrap();
    }
}

fn key_package_problem(e: EngineError) -> KeyPackageProblem {
    match e {
        EngineError::KeyPackage { problem, .. } => problem,
        other => panic!("expected a key-package refusal, got {other:?}"),
    }
}

#[test]
fn only_listed_devices_key_packages_are_used() {
    let mut a = Dev::new("alice");
    let (mut b1, mut b2) = (Dev::new("bob"), Dev::new("bob"));
    let g =
        a.e.create_conversation(ConversationKind::direct(b1.user()))
            .unwrap();
    a.e.enforce_device_lists();
    // No list for bob, not checked in this session: the client is asked to check it.
    let both = ClaimedKeyPackages {
        user: b1.user(),
        key_packages: vec![b1.claimed_one(), b2.claimed_one()],
    };
    assert!(matches!(
        a.e.add_members(&g, std::slice::from_ref(&both)),
        Err(EngineError::DeviceListNeeded(u)) if u == b1.user()
    ));
    // Checked, and bob has no list: nothing of bob's is used.
    a.e.mark_device_list_checked(&b1.user());
    let p = key_package_problem(
        a.e.add_members(&g, std::slice::from_ref(&both))
            .unwrap_err(),
    );
    assert_eq!(p, KeyPackageProblem::NotListed);
    // bob's list has the laptop only: the phone's package is refused, nothing is staged.
    a.e.store_verified_list(&list_of(&[&b1]), None).unwrap();
    let p = key_package_problem(
        a.e.add_members(&g, std::slice::from_ref(&both))
            .unwrap_err(),
    );
    assert_eq!(p, KeyPackageProblem::NotListed);
    assert!(a.e.pending_commits().unwrap().is_empty());
    let oc = a.e.add_members(&g, &[b1.claim()]).unwrap();
    assert_eq!(oc.added, vec![b1.device()]);
    // A listed device id with another key (the server swapped the key) is refused too.
    a.e.clear_pending_commit(&g).unwrap();
    let mut impostor = Dev::with_device("bob", b1.device());
    let p = key_package_problem(a.e.add_members(&g, &[impostor.claim()]).unwrap_err());
    assert!(
        matches!(
            p,
            KeyPackageProblem::NotListed | KeyPackageProblem::WrongKey
        ),
        "{p:?}"
    );
}

#[test]
fn a_commit_adding_an_unlisted_device_is_refused_and_marks_the_conversation() {
    let mut s = Server::new();
    let mut a = Dev::new("alice");
    let mut c = Dev::new("carol");
    let (mut b1, mut b2) = (Dev::new("bob"), Dev::new("bob"));
    let alice_list = list_of(&[&a]);
    let carol_list = list_of(&[&c]);
    enforcing(&mut c, &[alice_list, carol_list, list_of(&[&b1])]);
    let g = setup(&mut s, &mut a, ConversationKind::group("g"), &mut [&mut c]);
    let epoch = c.e.epoch(&g).unwrap();
    // alice (not enforcing: a compromised or colluding member) adds bob's listed laptop and a
    // device of bob's that no device of bob's signed in.
    let claim = ClaimedKeyPackages {
        user: b1.user(),
        key_packages: vec![b1.claimed_one(), b2.claimed_one()],
    };
    let oc = a.e.add_members(&g, &[claim]).unwrap();
    let (commit, _) = s.accept(&mut a, &oc);
    assert_eq!(
        deliver(&mut c, &commit),
        Processed::Dropped {
            reason: DropReason::UnlistedDevice
        }
    );
    // Nothing of it was applied, and the conversation is marked until carol has looked.
    assert_eq!(c.e.epoch(&g).unwrap(), epoch);
    assert_eq!(c.e.members(&g).unwrap().len(), 2);
    let alarms = c.e.alarms(false).unwrap();
    assert_eq!(alarms.len(), 1, "{alarms:?}");
    let alarm = &alarms[0];
    assert_eq!(alarm.kind, devices::AlarmKind::UnlistedDevice);
    assert_eq!(alarm.user, b1.user());
    assert_eq!(alarm.device.as_ref(), Some(&b2.device()));
    assert_eq!(alarm.group.as_ref(), Some(&g));
    assert!(alarm.detail.contains("alice"), "{}", alarm.detail);
    assert_eq!(c.e.marking(&g).unwrap().map(|m| m.id), Some(alarm.id));
    // Redelivered: the same outcome, still one alarm.
    let mut again = commit.clone();
    s.next_id += 1;
    again.id = s.next_id;
    assert!(matches!(
        deliver(&mut c, &again),
        Processed::Dropped {
            reason: DropReason::UnlistedDevice
        }
    ));
    assert_eq!(c.e.alarms(false).unwrap().len(), 1);
    // Acknowledged: no longer open, no longer marking; still in the full history.
    assert!(c.e.ack_alarm(alarm.id).unwrap());
    assert!(!c.e.ack_alarm(alarm.id).unwrap());
    assert!(c.e.alarms(false).unwrap().is_empty());
    assert_eq!(c.e.marking(&g).unwrap(), None);
    let all = c.e.alarms(true).unwrap();
    assert_eq!(all.len(), 1);
    assert!(!all[0].is_open());
}

#[test]
fn a_commit_adding_listed_devices_is_applied() {
    let mut s = Server::new();
    let mut a = Dev::new("alice");
    let mut c = Dev::new("carol");
    let (mut b1, mut b2) = (Dev::new("bob"), Dev::new("bob"));
    let lists = [list_of(&[&a]), list_of(&[&c]), list_of(&[&b1, &b2])];
    enforcing(&mut c, &lists);
    let g = setup(&mut s, &mut a, ConversationKind::group("g"), &mut [&mut c]);
    let claim = ClaimedKeyPackages {
        user: b1.user(),
        key_packages: vec![b1.claimed_one(), b2.claimed_one()],
    };
    let oc = a.e.add_members(&g, &[claim]).unwrap();
    let (commit, _) = s.accept(&mut a, &oc);
    assert!(matches!(deliver(&mut c, &commit), Processed::Commit(_)));
    assert_eq!(c.e.members(&g).unwrap().len(), 4);
    assert!(c.e.alarms(true).unwrap().is_empty());
}

#[test]
fn a_welcome_naming_an_unlisted_device_is_refused() {
    let mut s = Server::new();
    let mut a = Dev::new("alice");
    let mut c = Dev::new("carol");
    let ghost = Dev::new("alice");
    // carol knows alice's list: alice's one device. The Welcome's tree also has a second
    // "alice" device (a ghost the creator added).
    let lists = [list_of(&[&a]), list_of(&[&c])];
    enforcing(&mut c, &lists);
    let mut ghost = ghost;
    let g =
        a.e.create_conversation(ConversationKind::group("g"))
            .unwrap();
    let oc = a.e.add_members(&g, &[c.claim(), ghost.claim()]).unwrap();
    let (_, w) = s.accept(&mut a, &oc);
    assert_eq!(
        deliver(&mut c, &w.unwrap()),
        Processed::Dropped {
            reason: DropReason::UnlistedDevice
        }
    );
    assert_eq!(c.e.conversation(&g).unwrap(), None);
    let alarms = c.e.alarms(false).unwrap();
    assert_eq!(alarms.len(), 1);
    assert_eq!(alarms[0].device.as_ref(), Some(&ghost.device()));
    assert_eq!(alarms[0].group, None);
}

#[test]
fn a_new_list_resolves_the_unsigned_device_alarm_for_the_device_it_lists() {
    let mut a = Dev::new("alice");
    let a2 = Dev::new("alice");
    let me = a.user();
    let device = a2.device();
    let v1 = list_of(&[&a]);
    a.e.store_verified_list(&v1, None).unwrap();
    a.e.raise_alarm(&devices::NewAlarm {
        kind: devices::AlarmKind::UnsignedDevice,
        user: &me,
        device: Some(&device),
        group: None,
        detail: "not signed in".into(),
    })
    .unwrap();
    assert_eq!(a.e.alarms(false).unwrap().len(), 1);
    let v2 = DeviceList::successor(
        &v1,
        vec![a.e.listed_self().unwrap(), a2.e.listed_self().unwrap()],
    )
    .unwrap();
    let v2 = a.e.sign_device_list(v2).unwrap();
    v1.verify_successor(&v2).unwrap();
    a.e.store_verified_list(&v2, None).unwrap();
    assert!(a.e.alarms(false).unwrap().is_empty());
    assert!(a.e.alarms(true).unwrap()[0].resolved_at.is_some());
    // A list never goes back.
    assert!(a.e.store_verified_list(&v1, None).is_err());
    assert_eq!(a.e.verified_list(&me).unwrap().unwrap().list.version, 2);
}
