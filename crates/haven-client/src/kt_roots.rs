//! Split-view detection: the key-directory roots this profile verified, and the roots its
//! contacts say they verified (issue 11, build step 4).
//!
//! A server that wants to show one user a directory with a ghost device in it, and everyone
//! else the honest one, has to keep two trees: the same epoch gets two different roots, or
//! roots that no append-only proof links. Both are visible as soon as two users compare. So
//! every message carries, inside its end-to-end encrypted content, the newest root its sender
//! verified (`haven_content::Content::kt`, the 104-byte signed root), and every recipient
//! compares it with its own view:
//!
//! - `haven_kt_roots`: every root this profile verified as part of its own chain (the pinned
//!   one, every root an append-only proof it checked passed through, every newer root it
//!   accepted). Same epoch ⇒ must be the same root.
//! - `haven_kt_heard`: each distinct signed root received from a contact, with who sent it and
//!   where. A root whose signature does not verify with the pinned key is not the server's
//!   statement and is ignored (a member can write anything into its own messages; it cannot
//!   sign for the server). A signed root for an epoch this profile holds a different root for
//!   is *equivocation*: two statements signed by the same key, which the alarm carries as
//!   transferable evidence (`split-view`). A signed root for an epoch this profile has not
//!   verified waits here until the next sync asks the server for the append-only proof that
//!   links it to this profile's chain (older → ours, or ours → newer, which also moves this
//!   profile forward): a server that forked cannot produce it, and the check raises the same
//!   alarm naming the contact and the epoch. A server that answers the check with an error
//!   (an epoch it signed but now says it does not have) is asked again on the next syncs; the
//!   [`MAX_REFUSALS`]th refusal is itself the alarm. A check that fails on the network is not
//!   a refusal.
//!
//! What this does not catch: a server that partitions users into groups that never message
//! each other; a server that shows one victim a fork and also drops every message that would
//! carry a root across the partition (the victim then sees its messages go unanswered). Public
//! auditors (`haven kt audit`) comparing the roots they see with users' close the first gap.

use haven_kt::directory::{KtKeys, SignedRoot, SIGNED_ROOT_LEN};
use haven_proto::{GroupId, UserName};
use rusqlite::{params, Connection, OptionalExtension};

use crate::devices::{self, AlarmKind, NewAlarm};
use crate::error::EngineError;

const _: () = assert!(SIGNED_ROOT_LEN == haven_content::content::KT_ROOT_LEN);

/// Heard roots checked per sync at most (each may cost an audit request).
pub(crate) const CHECKS_PER_SYNC: usize = 8;
/// How many syncs in a row the server may answer a heard root's check with an error before
/// the refusal itself is the alarm: a directory must be able to prove every root it signed.
pub(crate) const MAX_REFUSALS: i64 = 3;

pub(crate) fn migrate(conn: &Connection) -> Result<(), EngineError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS haven_kt_roots (
             epoch        INTEGER PRIMARY KEY NOT NULL,
             signed       BLOB NOT NULL
         ) STRICT;
         CREATE TABLE IF NOT EXISTS haven_kt_heard (
             signed       BLOB PRIMARY KEY NOT NULL,
             epoch        INTEGER NOT NULL,
             user_name    TEXT NOT NULL,
             group_id     BLOB NOT NULL,
             heard_at     INTEGER NOT NULL,
             refusals     INTEGER NOT NULL DEFAULT 0,
             checked_at   INTEGER
         ) STRICT;
         CREATE INDEX IF NOT EXISTS haven_kt_heard_pending
             ON haven_kt_heard (heard_at) WHERE checked_at IS NULL;",
    )?;
    Ok(())
}

fn epoch_i64(epoch: u64) -> Result<i64, EngineError> {
    i64::try_from(epoch).map_err(|_| EngineError::Corrupt("key-directory epoch out of range"))
}

/// Records a root this profile verified as part of its own chain. A different root already
/// recorded for the epoch is kept (the caller compared before).
pub(crate) fn record_verified(db: &Connection, root: &SignedRoot) -> Result<(), EngineError> {
    db.prepare_cached(
        "INSERT INTO haven_kt_roots (epoch, signed) VALUES (?1, ?2) ON CONFLICT (epoch) DO NOTHING",
    )?
    .execute(params![epoch_i64(root.epoch)?, root.encode().as_slice()])?;
    Ok(())
}

/// The root this profile verified for `epoch`, if any.
pub(crate) fn verified(db: &Connection, epoch: u64) -> Result<Option<SignedRoot>, EngineError> {
    let b: Option<Vec<u8>> = db
        .prepare_cached("SELECT signed FROM haven_kt_roots WHERE epoch = ?1")?
        .query_row([epoch_i64(epoch)?], |r| r.get(0))
        .optional()?;
    b.map(|b| SignedRoot::decode(&b).map_err(|_| EngineError::Corrupt("stored directory root")))
        .transpose()
}

/// What became of a root heard in a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// Not signed by the pinned key (or this profile pinned none): not the server's statement.
    Ignored,
    /// This profile verified the same root for that epoch.
    Agrees,
    /// Already heard; nothing new.
    Known,
    /// Kept for the next sync's append-only check.
    Pending,
    /// This profile holds a different signed root for the same epoch: equivocation (the
    /// `split-view` alarm with this id was raised).
    SplitView(i64),
}

/// Compares a root heard from `from` in `group` with this profile's view (module docs).
pub(crate) fn hear(
    db: &Connection,
    pins: Option<&KtKeys>,
    signed: &[u8],
    from: &UserName,
    group: &GroupId,
    now: u64,
) -> Result<Heard, EngineError> {
    let Some(pins) = pins else {
        return Ok(Heard::Ignored);
    };
    let Ok(root) = SignedRoot::decode(signed) else {
        return Ok(Heard::Ignored);
    };
    if root.verify(pins).is_err() {
        return Ok(Heard::Ignored);
    }
    if let Some(ours) = verified(db, root.epoch)? {
        if ours.root == root.root {
            return Ok(Heard::Agrees);
        }
        let id = devices::raise(
            db,
            &NewAlarm {
                kind: AlarmKind::SplitView,
                user: from,
                device: None,
                group: Some(group),
                detail: split_view_detail(from, &ours, &root),
            },
            now,
        )?;
        return Ok(Heard::SplitView(id));
    }
    let n = db
        .prepare_cached(
            "INSERT INTO haven_kt_heard (signed, epoch, user_name, group_id, heard_at)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (signed) DO NOTHING",
        )?
        .execute(params![
            signed,
            epoch_i64(root.epoch)?,
            from.as_str(),
            group.as_bytes(),
            i64::try_from(now).unwrap_or(i64::MAX)
        ])?;
    Ok(if n == 0 { Heard::Known } else { Heard::Pending })
}

/// The alarm text for two signed roots of one epoch: both statements in full, so the user can
/// hand the evidence to anyone (each verifies with the directory's published root key).
pub(crate) fn split_view_detail(from: &UserName, ours: &SignedRoot, theirs: &SignedRoot) -> String {
    format!(
        "the key directory showed {from} a different directory than this device: it signed two \
         roots for epoch {} (this device's {}, {from}'s {}); evidence, both signed by the \
         directory's key: {} and {}",
        ours.epoch,
        short(&ours.root),
        short(&theirs.root),
        hex::encode(ours.encode()),
        hex::encode(theirs.encode())
    )
}

fn short(root: &[u8; 32]) -> String {
    hex::encode(root.get(..8).unwrap_or_default())
}

/// A heard root waiting for its append-only check.
#[derive(Debug, Clone)]
pub(crate) struct PendingRoot {
    pub root: SignedRoot,
    pub from: UserName,
    pub group: GroupId,
}

/// Heard roots not yet checked, oldest first.
pub(crate) fn pending(db: &Connection, limit: usize) -> Result<Vec<PendingRoot>, EngineError> {
    let rows = db
        .prepare_cached(
            "SELECT signed, user_name, group_id FROM haven_kt_heard WHERE checked_at IS NULL
             ORDER BY heard_at, epoch LIMIT ?1",
        )?
        .query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Vec<u8>>(2)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(|(s, u, g)| {
            Ok(PendingRoot {
                root: SignedRoot::decode(&s)
                    .map_err(|_| EngineError::Corrupt("stored heard root"))?,
                from: UserName::new(&u).map_err(|_| EngineError::Corrupt("stored heard root"))?,
                group: GroupId::from_bytes(&g)
                    .map_err(|_| EngineError::Corrupt("stored heard root"))?,
            })
        })
        .collect()
}

/// Counts one more refusal of a heard root's check; returns how many there were.
pub(crate) fn refused(db: &Connection, root: &SignedRoot) -> Result<i64, EngineError> {
    Ok(db
        .prepare_cached(
            "UPDATE haven_kt_heard SET refusals = refusals + 1 WHERE signed = ?1
             RETURNING refusals",
        )?
        .query_row([root.encode().as_slice()], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

/// Marks a heard root checked (linked to this profile's chain, or alarmed).
pub(crate) fn mark_checked(
    db: &Connection,
    root: &SignedRoot,
    now: u64,
) -> Result<(), EngineError> {
    db.prepare_cached("UPDATE haven_kt_heard SET checked_at = ?2 WHERE signed = ?1")?
        .execute(params![
            root.encode().as_slice(),
            i64::try_from(now).unwrap_or(i64::MAX)
        ])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use ed25519_dalek::SigningKey;

    struct Setup {
        db: Connection,
        key: SigningKey,
        pins: KtKeys,
        alice: UserName,
        group: GroupId,
    }

    fn setup() -> Setup {
        let db = Connection::open_in_memory().unwrap();
        devices::migrate(&db).unwrap();
        migrate(&db).unwrap();
        let key = SigningKey::from_bytes(&[9; 32]);
        let pins = KtKeys {
            root_key: key.verifying_key().to_bytes(),
            vrf_key: [0; 32],
        };
        Setup {
            db,
            key,
            pins,
            alice: UserName::new("alice").unwrap(),
            group: GroupId::from_bytes(&[3; 16]).unwrap(),
        }
    }

    fn alarms(db: &Connection) -> Vec<devices::Alarm> {
        devices::alarms(db, true).unwrap()
    }

    #[test]
    fn the_same_root_agrees_and_another_for_the_epoch_is_equivocation() {
        let s = setup();
        let ours = SignedRoot::sign(&s.key, 4, [1; 32]);
        record_verified(&s.db, &ours).unwrap();
        let hear_ = |r: &SignedRoot| {
            hear(&s.db, Some(&s.pins), &r.encode(), &s.alice, &s.group, 10).unwrap()
        };
        assert_eq!(hear_(&ours), Heard::Agrees);
        assert!(alarms(&s.db).is_empty());
        let theirs = SignedRoot::sign(&s.key, 4, [2; 32]);
        let Heard::SplitView(id) = hear_(&theirs) else {
            panic!("no split view")
        };
        let a = alarms(&s.db);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].id, id);
        assert_eq!(a[0].kind, AlarmKind::SplitView);
        assert_eq!(a[0].user, s.alice);
        assert_eq!(a[0].group.as_ref(), Some(&s.group));
        // The evidence: both signed statements, in full.
        assert!(a[0].detail.contains(&hex::encode(ours.encode())));
        assert!(a[0].detail.contains(&hex::encode(theirs.encode())));
        assert!(a[0].detail.contains("epoch 4"));
        // Heard again: the same open alarm, not a second one.
        assert_eq!(hear_(&theirs), Heard::SplitView(id));
        assert_eq!(alarms(&s.db).len(), 1);
        // Nothing waits for a check.
        assert!(pending(&s.db, 10).unwrap().is_empty());
    }

    #[test]
    fn a_root_the_directory_did_not_sign_is_not_its_statement() {
        let s = setup();
        record_verified(&s.db, &SignedRoot::sign(&s.key, 4, [1; 32])).unwrap();
        let other = SigningKey::from_bytes(&[8; 32]);
        let forged = SignedRoot::sign(&other, 4, [2; 32]);
        let mut bad_sig = SignedRoot::sign(&s.key, 4, [2; 32]).encode();
        bad_sig[50] ^= 1;
        for bytes in [
            forged.encode().to_vec(),
            bad_sig.to_vec(),
            vec![0; 10],
            vec![0; SIGNED_ROOT_LEN],
        ] {
            let h = hear(&s.db, Some(&s.pins), &bytes, &s.alice, &s.group, 10).unwrap();
            assert_eq!(h, Heard::Ignored);
        }
        // Without pins nothing is anyone's statement.
        let ok = SignedRoot::sign(&s.key, 4, [2; 32]).encode();
        assert_eq!(
            hear(&s.db, None, &ok, &s.alice, &s.group, 10).unwrap(),
            Heard::Ignored
        );
        assert!(alarms(&s.db).is_empty());
        assert!(pending(&s.db, 10).unwrap().is_empty());
    }

    #[test]
    fn an_unverified_epoch_waits_once_until_checked() {
        let s = setup();
        record_verified(&s.db, &SignedRoot::sign(&s.key, 4, [1; 32])).unwrap();
        let newer = SignedRoot::sign(&s.key, 7, [7; 32]);
        let older = SignedRoot::sign(&s.key, 2, [2; 32]);
        let h = |r: &SignedRoot, t| {
            hear(&s.db, Some(&s.pins), &r.encode(), &s.alice, &s.group, t).unwrap()
        };
        assert_eq!(h(&newer, 10), Heard::Pending);
        assert_eq!(h(&older, 11), Heard::Pending);
        assert_eq!(h(&newer, 12), Heard::Known);
        let p = pending(&s.db, 10).unwrap();
        assert_eq!(
            p.iter().map(|p| p.root).collect::<Vec<_>>(),
            vec![newer, older]
        );
        assert_eq!(p[0].from, s.alice);
        assert_eq!(pending(&s.db, 1).unwrap().len(), 1);
        mark_checked(&s.db, &newer, 20).unwrap();
        assert_eq!(
            pending(&s.db, 10)
                .unwrap()
                .iter()
                .map(|p| p.root)
                .collect::<Vec<_>>(),
            vec![older]
        );
        // Checked and recorded as verified: later messages agree without a request.
        record_verified(&s.db, &newer).unwrap();
        assert_eq!(h(&newer, 30), Heard::Agrees);
        // A recorded root is never replaced.
        record_verified(&s.db, &SignedRoot::sign(&s.key, 7, [8; 32])).unwrap();
        assert_eq!(verified(&s.db, 7).unwrap(), Some(newer));
        assert!(alarms(&s.db).is_empty());
    }
}
