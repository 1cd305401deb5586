//! Verified device lists and key-transparency alarms, as this profile keeps them (issue 11;
//! the design is in `haven_kt`).
//!
//! - `haven_device_lists`: for each user this profile has checked, the newest signed device
//!   list it verified — the whole chain from version 1 checked by the account's rules
//!   (`haven_kt::device_list::verify_chain`), and later the key directory's proof. The engine
//!   encrypts only to devices in these lists ([`check`]): a key package, a Welcome's tree or a
//!   commit's adds naming any other device is refused.
//! - `haven_kt_alarms`: what this device found wrong and shows until the user acknowledges it
//!   (`haven keys`, `haven keys ack ID`, and every `haven sync`): a device the server offered or a
//!   member committed that is not in its user's verified list, a device linked to our account
//!   that no device of ours signed in, a link that did not prove the link secret, a broken
//!   list chain, a directory that contradicts itself. An alarm about a device also *marks* the
//!   conversation it was found in: nothing is sent there until the alarm is acknowledged.
//!   Alarms are kept once per (kind, user, device, conversation) while open.

use haven_kt::SignedDeviceList;
use haven_proto::{DeviceId, GroupId, UserName};
use rusqlite::{params, Connection, OptionalExtension};

use crate::error::EngineError;

pub(crate) fn migrate(conn: &Connection) -> Result<(), EngineError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS haven_device_lists (
             user_name    TEXT PRIMARY KEY NOT NULL,
             version      INTEGER NOT NULL,
             list         BLOB NOT NULL,
             verified_at  INTEGER NOT NULL,
             kt_epoch     INTEGER,
             kt_root      BLOB
         ) STRICT;
         CREATE TABLE IF NOT EXISTS haven_kt_alarms (
             id           INTEGER PRIMARY KEY AUTOINCREMENT,
             raised_at    INTEGER NOT NULL,
             kind         TEXT NOT NULL,
             user_name    TEXT NOT NULL,
             device_id    TEXT,
             group_id     BLOB,
             detail       TEXT NOT NULL,
             acked_at     INTEGER,
             resolved_at  INTEGER
         ) STRICT;
         CREATE INDEX IF NOT EXISTS haven_kt_alarms_open
             ON haven_kt_alarms (kind, user_name, device_id) WHERE acked_at IS NULL AND resolved_at IS NULL;",
    )?;
    Ok(())
}

/// What a device is, as far as this profile's verified lists say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceCheck {
    /// In the user's verified list with exactly this key.
    Listed,
    /// The user has a verified list, and this device (with this key) is not in it.
    NotListed,
    /// This profile has no verified list for the user.
    NoList,
}

/// Checks `user`'s `device` with MLS key `key` against the verified list.
pub fn check(
    db: &Connection,
    user: &UserName,
    device: &DeviceId,
    key: &[u8],
) -> Result<DeviceCheck, EngineError> {
    Ok(match verified_list(db, user)? {
        None => DeviceCheck::NoList,
        Some(l) if l.list.contains(device, key) => DeviceCheck::Listed,
        Some(_) => DeviceCheck::NotListed,
    })
}

/// The newest verified list of `user`, if any.
pub fn verified_list(
    db: &Connection,
    user: &UserName,
) -> Result<Option<SignedDeviceList>, EngineError> {
    let bytes: Option<Vec<u8>> = db
        .prepare_cached("SELECT list FROM haven_device_lists WHERE user_name = ?1")?
        .query_row([user.as_str()], |r| r.get(0))
        .optional()?;
    bytes
        .map(|b| {
            SignedDeviceList::decode(&b).map_err(|_| EngineError::Corrupt("verified device list"))
        })
        .transpose()
}

/// The key-directory root a stored list was last checked against: `(epoch, root hash)`.
pub fn verified_at_root(
    db: &Connection,
    user: &UserName,
) -> Result<Option<(u64, Vec<u8>)>, EngineError> {
    let row: Option<(Option<i64>, Option<Vec<u8>>)> = db
        .prepare_cached("SELECT kt_epoch, kt_root FROM haven_device_lists WHERE user_name = ?1")?
        .query_row([user.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(match row {
        Some((Some(e), Some(r))) => Some((u64::try_from(e).unwrap_or(0), r)),
        _ => None,
    })
}

/// Stores `list` as `user`'s newest verified list (the caller verified it), with the
/// directory root it was checked against, if any. A list older than the stored one is refused
/// ([`EngineError::Corrupt`] is not right for that: it is the caller's bug, so `Internal`).
pub fn store_verified(
    db: &Connection,
    list: &SignedDeviceList,
    root: Option<(u64, &[u8])>,
    now: u64,
) -> Result<(), EngineError> {
    if let Some(old) = verified_list(db, &list.list.user)? {
        if old.list.version > list.list.version {
            return Err(EngineError::Internal(
                "a verified device list may not go back",
            ));
        }
    }
    db.prepare_cached(
        "INSERT INTO haven_device_lists (user_name, version, list, verified_at, kt_epoch, kt_root)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (user_name) DO UPDATE SET version = excluded.version, list = excluded.list,
             verified_at = excluded.verified_at,
             kt_epoch = COALESCE(excluded.kt_epoch, kt_epoch),
             kt_root = COALESCE(excluded.kt_root, kt_root)",
    )?
    .execute(params![
        list.list.user.as_str(),
        i64::try_from(list.list.version).unwrap_or(i64::MAX),
        list.encode(),
        i64::try_from(now).unwrap_or(i64::MAX),
        root.map(|(e, _)| i64::try_from(e).unwrap_or(i64::MAX)),
        root.map(|(_, r)| r.to_vec()),
    ])?;
    // Devices now listed resolve the open alarms that said they were not signed in.
    for d in list.list.devices() {
        db.prepare_cached(
            "UPDATE haven_kt_alarms SET resolved_at = ?1
             WHERE kind = 'unsigned-device' AND user_name = ?2 AND device_id = ?3
               AND acked_at IS NULL AND resolved_at IS NULL",
        )?
        .execute(params![
            i64::try_from(now).unwrap_or(i64::MAX),
            list.list.user.as_str(),
            d.device_id.as_str()
        ])?;
    }
    Ok(())
}

/// Kinds of alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlarmKind {
    /// The server offered, or a member committed, a device that is not in its user's verified
    /// list. Marks the conversation.
    UnlistedDevice,
    /// A device was linked to our account and no device of ours signed it into the list.
    /// Resolved by itself if a device of ours signs it in later (another device's link).
    UnsignedDevice,
    /// A device used our link code without proving the code's secret: it was not signed in.
    BadLinkProof,
    /// A user's list chain breaks the rules (a version signed by a device outside the one
    /// before it, a fork).
    BrokenChain,
    /// Our own account's directory history holds a device no device of ours signed in.
    UnknownOwnDevice,
    /// The key directory showed a root that contradicts one seen elsewhere, or failed a proof.
    Directory,
    /// Two clients were shown different directory roots for the same epoch.
    SplitView,
}

impl AlarmKind {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmKind::UnlistedDevice => "unlisted-device",
            AlarmKind::UnsignedDevice => "unsigned-device",
            AlarmKind::BadLinkProof => "bad-link-proof",
            AlarmKind::BrokenChain => "broken-chain",
            AlarmKind::UnknownOwnDevice => "unknown-own-device",
            AlarmKind::Directory => "directory",
            AlarmKind::SplitView => "split-view",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            AlarmKind::UnlistedDevice,
            AlarmKind::UnsignedDevice,
            AlarmKind::BadLinkProof,
            AlarmKind::BrokenChain,
            AlarmKind::UnknownOwnDevice,
            AlarmKind::Directory,
            AlarmKind::SplitView,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// An alarm as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alarm {
    /// Its id (for `haven keys ack`).
    pub id: i64,
    /// When it was raised (ms).
    pub raised_at: u64,
    /// What kind.
    pub kind: AlarmKind,
    /// The user it is about.
    pub user: UserName,
    /// The device it is about, if one.
    pub device: Option<DeviceId>,
    /// The conversation it was found in (and marks), if one.
    pub group: Option<GroupId>,
    /// What happened, for people.
    pub detail: String,
    /// When the user acknowledged it.
    pub acked_at: Option<u64>,
    /// When it resolved itself (an unsigned device signed in later).
    pub resolved_at: Option<u64>,
}

impl Alarm {
    /// Whether it still shows (neither acknowledged nor resolved).
    pub fn is_open(&self) -> bool {
        self.acked_at.is_none() && self.resolved_at.is_none()
    }
}

/// A new alarm.
#[derive(Debug, Clone)]
pub struct NewAlarm<'a> {
    /// What kind.
    pub kind: AlarmKind,
    /// About whom.
    pub user: &'a UserName,
    /// About which device.
    pub device: Option<&'a DeviceId>,
    /// Found in which conversation.
    pub group: Option<&'a GroupId>,
    /// What happened.
    pub detail: String,
}

/// Raises an alarm unless the same one (kind, user, device, conversation) is open; returns its
/// id either way.
pub fn raise(db: &Connection, a: &NewAlarm<'_>, now: u64) -> Result<i64, EngineError> {
    let existing: Option<i64> = db
        .prepare_cached(
            "SELECT id FROM haven_kt_alarms
             WHERE kind = ?1 AND user_name = ?2 AND device_id IS ?3 AND group_id IS ?4
               AND acked_at IS NULL AND resolved_at IS NULL",
        )?
        .query_row(
            params![
                a.kind.as_str(),
                a.user.as_str(),
                a.device.map(|d| d.as_str()),
                a.group.map(|g| g.as_bytes())
            ],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(id) = existing {
        return Ok(id);
    }
    db.prepare_cached(
        "INSERT INTO haven_kt_alarms (raised_at, kind, user_name, device_id, group_id, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        i64::try_from(now).unwrap_or(i64::MAX),
        a.kind.as_str(),
        a.user.as_str(),
        a.device.map(|d| d.as_str()),
        a.group.map(|g| g.as_bytes()),
        a.detail
    ])?;
    Ok(db.last_insert_rowid())
}

type AlarmRow = (
    i64,
    i64,
    String,
    String,
    Option<String>,
    Option<Vec<u8>>,
    String,
    Option<i64>,
    Option<i64>,
);

fn alarm_from(r: AlarmRow) -> Result<Alarm, EngineError> {
    let (id, raised_at, kind, user, device, group, detail, acked_at, resolved_at) = r;
    let bad = || EngineError::Corrupt("key-transparency alarm");
    Ok(Alarm {
        id,
        raised_at: u64::try_from(raised_at).unwrap_or(0),
        kind: AlarmKind::parse(&kind).ok_or_else(bad)?,
        user: UserName::new(&user).map_err(|_| bad())?,
        device: device
            .map(|d| DeviceId::new(&d).map_err(|_| bad()))
            .transpose()?,
        group: group
            .map(|g| GroupId::from_bytes(&g).map_err(|_| bad()))
            .transpose()?,
        detail,
        acked_at: acked_at.map(|t| u64::try_from(t).unwrap_or(0)),
        resolved_at: resolved_at.map(|t| u64::try_from(t).unwrap_or(0)),
    })
}

const ALARM_COLS: &str =
    "id, raised_at, kind, user_name, device_id, group_id, detail, acked_at, resolved_at";

fn alarm_query(
    db: &Connection,
    sql: &str,
    p: impl rusqlite::Params,
) -> Result<Vec<Alarm>, EngineError> {
    let mut stmt = db.prepare_cached(sql)?;
    let rows = stmt
        .query_map(p, |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
            ))
        })?
        .collect::<Result<Vec<AlarmRow>, _>>()?;
    rows.into_iter().map(alarm_from).collect()
}

/// Alarms, oldest first: the open ones, or all.
pub fn alarms(db: &Connection, all: bool) -> Result<Vec<Alarm>, EngineError> {
    let filter = if all {
        ""
    } else {
        "WHERE acked_at IS NULL AND resolved_at IS NULL"
    };
    alarm_query(
        db,
        &format!("SELECT {ALARM_COLS} FROM haven_kt_alarms {filter} ORDER BY id"),
        [],
    )
}

/// The open alarm that marks conversation `group`, if any.
pub fn marking(db: &Connection, group: &GroupId) -> Result<Option<Alarm>, EngineError> {
    Ok(alarm_query(
        db,
        &format!(
            "SELECT {ALARM_COLS} FROM haven_kt_alarms
             WHERE group_id = ?1 AND acked_at IS NULL AND resolved_at IS NULL ORDER BY id LIMIT 1"
        ),
        [group.as_bytes()],
    )?
    .pop())
}

/// Acknowledges an open alarm; `false` if there is no open alarm with this id.
pub fn ack(db: &Connection, id: i64, now: u64) -> Result<bool, EngineError> {
    Ok(db
        .prepare_cached(
            "UPDATE haven_kt_alarms SET acked_at = ?2
             WHERE id = ?1 AND acked_at IS NULL AND resolved_at IS NULL",
        )?
        .execute(params![id, i64::try_from(now).unwrap_or(i64::MAX)])?
        == 1)
}
