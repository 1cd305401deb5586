//! Device keys this profile knows: for each device id, the user it belongs to and its MLS
//! signature key.
//!
//! A key is pinned the first time the profile learns it — from the server's directory when this
//! device adds someone (`GET /v1/users/{name}`, before it claims their key packages), or from
//! the first MLS leaf that names the device (a Welcome's tree, a commit's new members). From then
//! on a leaf or key package that names the device with another key, or under another user, is
//! refused. The server checks every leaf against the key each device registered; pinning makes a
//! later substitution visible on the client too, whoever made it. It does not make the first
//! sighting trustworthy: key transparency (a later capability) will check that against an
//! auditable directory.

use haven_proto::{DeviceId, UserName};
use rusqlite::{params, Connection, OptionalExtension};

use crate::error::EngineError;

/// The outcome of [`check_or_pin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyCheck {
    /// The device was known with exactly this user and key.
    Known,
    /// The device was unknown; it is pinned now.
    Pinned,
    /// The device is known with another key or user: refuse.
    Mismatch,
}

pub(crate) fn migrate(conn: &Connection) -> Result<(), EngineError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS haven_device_keys (
             device_id   TEXT PRIMARY KEY NOT NULL,
             user_name   TEXT NOT NULL,
             mls_key     BLOB NOT NULL,
             pinned_at   INTEGER NOT NULL
         ) STRICT;",
    )?;
    Ok(())
}

/// Checks `user`/`device` with `key` against the pinned key, pinning it if the device is new.
pub fn check_or_pin(
    conn: &Connection,
    user: &UserName,
    device: &DeviceId,
    key: &[u8],
) -> Result<KeyCheck, EngineError> {
    let known: Option<(String, Vec<u8>)> = conn
        .prepare_cached("SELECT user_name, mls_key FROM haven_device_keys WHERE device_id = ?1")?
        .query_row([device.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(match known {
        Some((u, k)) if u == user.as_str() && k == key => KeyCheck::Known,
        Some(_) => KeyCheck::Mismatch,
        None => {
            conn.prepare_cached(
                "INSERT INTO haven_device_keys (device_id, user_name, mls_key, pinned_at)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                device.as_str(),
                user.as_str(),
                key,
                i64::try_from(crate::engine::now_ms()).unwrap_or(i64::MAX)
            ])?;
            KeyCheck::Pinned
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_on_first_sight_and_refuses_another_key_or_user() {
        let c = Connection::open_in_memory().unwrap();
        migrate(&c).unwrap();
        let (alice, bob) = (
            UserName::new("alice").unwrap(),
            UserName::new("bob").unwrap(),
        );
        let d = DeviceId::from_bytes([1; 16]);
        assert_eq!(
            check_or_pin(&c, &alice, &d, b"k1").unwrap(),
            KeyCheck::Pinned
        );
        assert_eq!(
            check_or_pin(&c, &alice, &d, b"k1").unwrap(),
            KeyCheck::Known
        );
        assert_eq!(
            check_or_pin(&c, &alice, &d, b"k2").unwrap(),
            KeyCheck::Mismatch
        );
        assert_eq!(
            check_or_pin(&c, &bob, &d, b"k1").unwrap(),
            KeyCheck::Mismatch
        );
        // Nothing was overwritten by the refused checks.
        assert_eq!(
            check_or_pin(&c, &alice, &d, b"k1").unwrap(),
            KeyCheck::Known
        );
    }
}
