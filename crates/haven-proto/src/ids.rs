//! Identifiers. Each is a newtype with a private field and a checked constructor, so a value of
//! the type is always well formed; serde goes through the same check.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string or byte string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind}: {reason}")]
pub struct IdError {
    /// Which identifier.
    pub kind: &'static str,
    /// What is wrong with it.
    pub reason: &'static str,
}

fn id_err(kind: &'static str, reason: &'static str) -> IdError {
    IdError { kind, reason }
}

macro_rules! string_id_serde {
    ($t:ident) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $t::new(&s).map_err(serde::de::Error::custom)
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl std::str::FromStr for $t {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                $t::new(s)
            }
        }
    };
}

/// A user name: 1–32 characters of `a-z 0-9 _ . -`, starting with a letter. Lower case only, so
/// names cannot be confused by case.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct UserName(String);

impl UserName {
    /// Maximum length in bytes.
    pub const MAX_LEN: usize = 32;

    /// Checks and wraps a user name.
    pub fn new(s: &str) -> Result<Self, IdError> {
        const K: &str = "user name";
        if s.is_empty() || s.len() > Self::MAX_LEN {
            return Err(id_err(K, "must be 1 to 32 characters"));
        }
        if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(id_err(K, "must start with a lower-case letter"));
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-'))
        {
            return Err(id_err(K, "may contain only a-z, 0-9, '_', '.' and '-'"));
        }
        Ok(UserName(s.to_owned()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
string_id_serde!(UserName);

/// A device identifier: 32 lower-case hex digits (128 random bits, chosen by the server).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct DeviceId(String);

impl DeviceId {
    /// Checks and wraps a device id.
    pub fn new(s: &str) -> Result<Self, IdError> {
        if s.len() != 32
            || !s
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(id_err("device id", "must be 32 lower-case hex digits"));
        }
        Ok(DeviceId(s.to_owned()))
    }

    /// Builds a device id from 16 random bytes.
    pub fn from_bytes(b: [u8; 16]) -> Self {
        DeviceId(hex::encode(b))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
string_id_serde!(DeviceId);

/// An MLS group id as Haven uses them: 16 to 64 bytes, carried as lower-case hex.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct GroupId(Vec<u8>);

impl GroupId {
    /// Minimum length in bytes.
    pub const MIN_LEN: usize = 16;
    /// Maximum length in bytes.
    pub const MAX_LEN: usize = 64;

    /// Checks and wraps raw group id bytes.
    pub fn from_bytes(b: &[u8]) -> Result<Self, IdError> {
        if b.len() < Self::MIN_LEN || b.len() > Self::MAX_LEN {
            return Err(id_err("group id", "must be 16 to 64 bytes"));
        }
        Ok(GroupId(b.to_vec()))
    }

    /// Parses the hex form.
    pub fn new(s: &str) -> Result<Self, IdError> {
        if s.len() > 2 * Self::MAX_LEN {
            return Err(id_err("group id", "must be 16 to 64 bytes"));
        }
        let b = hex::decode(s).map_err(|_| id_err("group id", "must be hex"))?;
        if s.bytes().any(|c| c.is_ascii_uppercase()) {
            return Err(id_err("group id", "must be lower-case hex"));
        }
        Self::from_bytes(&b)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The hex form.
    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }
}

impl Serialize for GroupId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}
impl<'de> Deserialize<'de> for GroupId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        GroupId::new(&s).map_err(serde::de::Error::custom)
    }
}
impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}
impl std::str::FromStr for GroupId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        GroupId::new(s)
    }
}

/// A blob id: the SHA-256 of the blob's (encrypted) bytes, 64 lower-case hex digits.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct BlobId(String);

impl BlobId {
    /// Checks and wraps a blob id.
    pub fn new(s: &str) -> Result<Self, IdError> {
        if s.len() != 64
            || !s
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(id_err("blob id", "must be 64 lower-case hex digits"));
        }
        Ok(BlobId(s.to_owned()))
    }

    /// The blob id of a SHA-256 digest.
    pub fn from_digest(d: [u8; 32]) -> Self {
        BlobId(hex::encode(d))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
string_id_serde!(BlobId);

/// The identity an MLS leaf carries in its basic credential: `"<user>/<device id>"`. The server
/// and every client check that the leaf's signature key is the one registered for that device.
pub fn mls_identity(user: &UserName, device: &DeviceId) -> Vec<u8> {
    format!("{user}/{device}").into_bytes()
}

/// Reads [`mls_identity`] back; `None` unless it is exactly a valid user name, `/` and a valid
/// device id.
pub fn parse_mls_identity(bytes: &[u8]) -> Option<(UserName, DeviceId)> {
    let s = std::str::from_utf8(bytes).ok()?;
    let (u, d) = s.split_once('/')?;
    Some((UserName::new(u).ok()?, DeviceId::new(d).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mls_identities_round_trip_and_reject_junk() {
        let u = UserName::new("alice").unwrap();
        let d = DeviceId::from_bytes([9; 16]);
        assert_eq!(
            parse_mls_identity(&mls_identity(&u, &d)),
            Some((u, d.clone()))
        );
        let bad = [
            b"alice".to_vec(),
            format!("Alice/{d}").into_bytes(),
            format!("alice/{d}/x").into_bytes(),
            format!("alice/{d}x").into_bytes(),
            vec![0xff, b'/', b'a'],
        ];
        for b in bad {
            assert_eq!(parse_mls_identity(&b), None, "{b:?} accepted");
        }
    }

    #[test]
    fn user_names() {
        assert!(UserName::new("alice").is_ok());
        assert!(UserName::new("bob_2.x-y").is_ok());
        for bad in ["", "Alice", "1abc", "a b", "a/b", &"a".repeat(33), "é"] {
            assert!(UserName::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn ids_round_trip_through_json() {
        let d = DeviceId::from_bytes([7; 16]);
        let j = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<DeviceId>(&j).unwrap(), d);
        assert!(serde_json::from_str::<DeviceId>("\"xyz\"").is_err());
        let g = GroupId::from_bytes(&[1; 16]).unwrap();
        let j = serde_json::to_string(&g).unwrap();
        assert_eq!(serde_json::from_str::<GroupId>(&j).unwrap(), g);
        assert!(GroupId::from_bytes(&[1; 15]).is_err());
        assert!(GroupId::new("ABABABABABABABABABABABABABABABAB").is_err());
        assert!(serde_json::from_str::<UserName>("\"Mallory\"").is_err());
    }
}
