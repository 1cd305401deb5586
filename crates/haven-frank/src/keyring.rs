//! Server tags with key ids, and the server's keyring (several keys, one current).
//!
//! A server tag must name the key that made it, so the key can rotate and tags made under an
//! old key still verify. Version 2 of the tag encoding does that:
//!
//! ```text
//! v2 tag  = 0x02 ‖ u32be(key_id) ‖ T                                       (37 bytes)
//! T       = HMAC-SHA256(k[key_id], "haven/frank/v2/server" ‖ u32be(key_id) ‖ lp(C)
//!                                  ‖ lp(sender device) ‖ lp(group id) ‖ u64be(received_at_ms))
//! v1 tag  = T1 (32 bytes, no version byte and no key id; see the crate docs)
//! ```
//!
//! The key id is inside the MAC input as well as in front of it, so a tag cannot be moved from
//! one key id to another. The two encodings are told apart by length (32 against 37 bytes): a
//! v1 tag is verified with the keyring's *legacy* key (the single key of deployments before
//! key ids, moved into the keyring with its own id), a v2 tag with the key its id names.
//! Servers only make v2 tags now; v1 tags stay verifiable because they are stored (in the
//! server's message table and in every client's history).
//!
//! The keyring is persisted by the server as a text file ([`Keyring::encode_file`],
//! [`Keyring::decode_file`]); this crate only encodes and decodes it and does no I/O:
//!
//! ```text
//! haven-frank-keys v1
//! <key id> <created_at_ms> <flags> <64 hex digits of the key>
//! …
//! ```
//!
//! `flags` is `-` or a comma-separated subset of `current` (exactly one key) and `legacy` (at
//! most one key; the key of v1 tags). Lines starting with `#` and empty lines are ignored.
//! Vectors for the v2 tag are in `vectors/frank-v2.json` (generator: `examples/gen_vectors.rs`,
//! independent check: `vectors/crosscheck.py`).

use std::collections::BTreeMap;

use subtle::ConstantTimeEq;

use crate::{hmac, lp, server_tag, Binding, FrankError, ServerKey, ServerTag, LEN};

/// Label for version-2 server tags.
pub const SERVER_LABEL_V2: &[u8] = b"haven/frank/v2/server";
/// First byte of a version-2 tag.
pub const TAG_V2: u8 = 0x02;
/// Length of a version-2 tag.
pub const TAG_V2_LEN: usize = 1 + 4 + LEN;
/// First line of a keyring file.
pub const FILE_HEADER: &str = "haven-frank-keys v1";

/// The id of one franking key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(u32);

impl KeyId {
    /// Wraps a key id.
    pub fn new(id: u32) -> Self {
        KeyId(id)
    }

    /// The number.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A server tag as carried on the wire and stored, decoded from untrusted bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodedTag {
    /// A version-1 tag (no key id): verified with the legacy key.
    V1(ServerTag),
    /// A version-2 tag.
    V2 {
        /// The key that made it.
        key_id: KeyId,
        /// The MAC.
        mac: ServerTag,
    },
}

impl EncodedTag {
    /// Decodes a tag: 32 bytes are a v1 tag, 37 bytes starting `0x02` a v2 tag; anything else
    /// is refused with [`FrankError::Length`].
    pub fn decode(b: &[u8]) -> Result<Self, FrankError> {
        if b.len() == LEN {
            return Ok(EncodedTag::V1(ServerTag::from_slice(b)?));
        }
        match b.split_first() {
            Some((&TAG_V2, rest)) if rest.len() == 4 + LEN => {
                let (id, mac) = rest.split_at(4);
                let id: [u8; 4] = id.try_into().map_err(|_| FrankError::Length)?;
                Ok(EncodedTag::V2 {
                    key_id: KeyId(u32::from_be_bytes(id)),
                    mac: ServerTag::from_slice(mac)?,
                })
            }
            _ => Err(FrankError::Length),
        }
    }

    /// The bytes.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            EncodedTag::V1(t) => t.as_bytes().to_vec(),
            EncodedTag::V2 { key_id, mac } => {
                let mut v = Vec::with_capacity(TAG_V2_LEN);
                v.push(TAG_V2);
                v.extend_from_slice(&key_id.0.to_be_bytes());
                v.extend_from_slice(mac.as_bytes());
                v
            }
        }
    }
}

/// Computes a version-2 tag under `key`, which has id `key_id`.
pub fn server_tag_v2(key: &ServerKey, key_id: KeyId, b: &Binding<'_>) -> EncodedTag {
    let c = b.commitment.as_bytes();
    let sender = b.sender_device.as_bytes();
    let mac = hmac(
        key.as_bytes(),
        &[
            SERVER_LABEL_V2,
            &key_id.0.to_be_bytes(),
            &lp(c.len()),
            c,
            &lp(sender.len()),
            sender,
            &lp(b.group_id.len()),
            b.group_id,
            &b.received_at_ms.to_be_bytes(),
        ],
    );
    EncodedTag::V2 {
        key_id,
        mac: ServerTag(mac),
    }
}

/// One key of a keyring.
#[derive(Clone, Debug)]
pub struct KeyEntry {
    /// The key.
    pub key: ServerKey,
    /// When it was made (milliseconds since the Unix epoch; informational).
    pub created_at_ms: u64,
}

/// Why a keyring (file) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    /// The file does not parse; says where.
    #[error("franking key file, line {line}: {what}")]
    Syntax {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// Two keys have one id.
    #[error("franking key id {0} appears twice")]
    DuplicateId(KeyId),
    /// No key is marked current, or several are.
    #[error("exactly one franking key must be marked current")]
    Current,
    /// Several keys are marked legacy.
    #[error("at most one franking key may be marked legacy")]
    Legacy,
    /// No such key id.
    #[error("no franking key with id {0}")]
    Unknown(KeyId),
    /// Key ids are exhausted.
    #[error("franking key ids are exhausted")]
    Exhausted,
}

/// The server's franking keys: every key that ever made tags, one of them current (it makes
/// new tags), at most one legacy (it verifies v1 tags).
#[derive(Clone, Debug)]
pub struct Keyring {
    keys: BTreeMap<KeyId, KeyEntry>,
    current: KeyId,
    legacy: Option<KeyId>,
}

impl Keyring {
    /// A keyring of one key, current; `legacy` also makes it the key of v1 tags.
    pub fn new(id: KeyId, entry: KeyEntry, legacy: bool) -> Self {
        let mut keys = BTreeMap::new();
        keys.insert(id, entry);
        Keyring {
            keys,
            current: id,
            legacy: legacy.then_some(id),
        }
    }

    /// Adds a fresh random key with the next free id and makes it current; returns its id.
    /// Older keys stay, so their tags still verify.
    pub fn rotate(&mut self, created_at_ms: u64) -> Result<KeyId, KeyringError> {
        let next = self
            .keys
            .keys()
            .next_back()
            .map_or(Some(1), |k| k.0.checked_add(1))
            .ok_or(KeyringError::Exhausted)?;
        let id = KeyId(next);
        self.keys.insert(
            id,
            KeyEntry {
                key: ServerKey::random(),
                created_at_ms,
            },
        );
        self.current = id;
        Ok(id)
    }

    /// The current key's id.
    pub fn current_id(&self) -> KeyId {
        self.current
    }

    /// The legacy key's id (the key of v1 tags), if any.
    pub fn legacy_id(&self) -> Option<KeyId> {
        self.legacy
    }

    /// A key by id.
    pub fn get(&self, id: KeyId) -> Option<&KeyEntry> {
        self.keys.get(&id)
    }

    /// Every key, by id.
    pub fn entries(&self) -> impl Iterator<Item = (KeyId, &KeyEntry)> {
        self.keys.iter().map(|(k, e)| (*k, e))
    }

    /// Tags a binding with the current key (a v2 tag).
    pub fn tag(&self, b: &Binding<'_>) -> EncodedTag {
        match self.keys.get(&self.current) {
            Some(e) => server_tag_v2(&e.key, self.current, b),
            // `current` is always a key of the map: every constructor and `decode_file` check it.
            None => EncodedTag::V1(ServerTag([0; LEN])),
        }
    }

    /// Verifies tag bytes (v1 with the legacy key, v2 with the key named) in constant time.
    /// Every failure — unknown version, unknown key, no legacy key, wrong MAC — is the same
    /// [`FrankError::Mismatch`] (or `Length` for bytes that are no tag at all).
    pub fn verify(&self, b: &Binding<'_>, tag: &[u8]) -> Result<(), FrankError> {
        let (want, got) = match EncodedTag::decode(tag)? {
            EncodedTag::V1(t) => {
                let key = self
                    .legacy
                    .and_then(|id| self.keys.get(&id))
                    .ok_or(FrankError::Mismatch)?;
                (server_tag(&key.key, b), t)
            }
            EncodedTag::V2 { key_id, mac } => {
                let key = self.keys.get(&key_id).ok_or(FrankError::Mismatch)?;
                match server_tag_v2(&key.key, key_id, b) {
                    EncodedTag::V2 { mac: want, .. } => (want, mac),
                    EncodedTag::V1(_) => return Err(FrankError::Mismatch),
                }
            }
        };
        if bool::from(want.as_bytes().ct_eq(got.as_bytes())) {
            Ok(())
        } else {
            Err(FrankError::Mismatch)
        }
    }

    /// The keyring as file text (see the module docs). Holds the keys in clear: whoever writes
    /// it must make the file readable by the server alone.
    pub fn encode_file(&self) -> String {
        let mut s = format!(
            "{FILE_HEADER}\n# id created_at_ms flags key — secret: anyone who reads this can forge franking reports\n"
        );
        for (id, e) in &self.keys {
            let mut flags = Vec::new();
            if *id == self.current {
                flags.push("current");
            }
            if Some(*id) == self.legacy {
                flags.push("legacy");
            }
            let flags = if flags.is_empty() {
                "-".to_owned()
            } else {
                flags.join(",")
            };
            s.push_str(&format!(
                "{id} {} {flags} {}\n",
                e.created_at_ms,
                hex_encode(e.key.as_bytes())
            ));
        }
        s
    }

    /// Reads a keyring file (see the module docs).
    pub fn decode_file(text: &str) -> Result<Self, KeyringError> {
        let mut lines = text.lines().enumerate();
        match lines.next() {
            Some((_, l)) if l.trim() == FILE_HEADER => {}
            _ => {
                return Err(KeyringError::Syntax {
                    line: 1,
                    what: "the first line must be \"haven-frank-keys v1\"",
                })
            }
        }
        let mut keys = BTreeMap::new();
        let (mut current, mut legacy) = (Vec::new(), Vec::new());
        for (i, line) in lines {
            let line_no = i + 1;
            let syntax = |what| KeyringError::Syntax {
                line: line_no,
                what,
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_ascii_whitespace().collect();
            let [id, created, flags, key] = fields.as_slice() else {
                return Err(syntax("expected: id created_at_ms flags key"));
            };
            let id = KeyId(id.parse().map_err(|_| syntax("bad key id"))?);
            let created_at_ms = created.parse().map_err(|_| syntax("bad created_at_ms"))?;
            for flag in flags.split(',') {
                match flag {
                    "-" => {}
                    "current" => current.push(id),
                    "legacy" => legacy.push(id),
                    _ => return Err(syntax("unknown flag (want current, legacy or -)")),
                }
            }
            let key = hex_decode(key)
                .and_then(|b| ServerKey::from_slice(&b).ok())
                .ok_or_else(|| syntax("the key must be 64 hex digits"))?;
            if keys.insert(id, KeyEntry { key, created_at_ms }).is_some() {
                return Err(KeyringError::DuplicateId(id));
            }
        }
        let [current] = current.as_slice() else {
            return Err(KeyringError::Current);
        };
        if legacy.len() > 1 {
            return Err(KeyringError::Legacy);
        }
        for id in legacy.iter().chain([current]) {
            if !keys.contains_key(id) {
                return Err(KeyringError::Unknown(*id));
            }
        }
        Ok(Keyring {
            keys,
            current: *current,
            legacy: legacy.first().copied(),
        })
    }
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::Commitment;
    use proptest::prelude::*;

    fn binding(c: &Commitment, t: u64) -> Binding<'_> {
        Binding {
            commitment: c,
            sender_device: "dev",
            group_id: b"group-0123456789",
            received_at_ms: t,
        }
    }

    proptest! {
        #[test]
        fn tag_encode_decode(id in any::<u32>(), mac in any::<[u8; 32]>()) {
            let t = EncodedTag::V2 { key_id: KeyId(id), mac: ServerTag(mac) };
            prop_assert_eq!(EncodedTag::decode(&t.encode()).unwrap(), t);
            let t1 = EncodedTag::V1(ServerTag(mac));
            prop_assert_eq!(EncodedTag::decode(&t1.encode()).unwrap(), t1);
        }

        #[test]
        fn keyring_verifies_and_flips(t in any::<u64>(), bit in 0usize..(TAG_V2_LEN * 8)) {
            let mut ring = Keyring::new(KeyId(1), KeyEntry { key: ServerKey::random(), created_at_ms: 0 }, true);
            let c = Commitment([7; LEN]);
            let b = binding(&c, t);
            let old = ring.tag(&b).encode();
            let legacy = server_tag(&ring.get(KeyId(1)).unwrap().key, &b);
            ring.rotate(1).unwrap();
            let new = ring.tag(&b).encode();
            prop_assert_ne!(&old, &new);
            // Old v2 tags, legacy v1 tags and new tags all verify after rotation.
            prop_assert!(ring.verify(&b, &old).is_ok());
            prop_assert!(ring.verify(&b, legacy.as_bytes()).is_ok());
            prop_assert!(ring.verify(&b, &new).is_ok());
            let mut flipped = new.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(ring.verify(&b, &flipped).is_err());
            prop_assert!(ring.verify(&binding(&c, t.wrapping_add(1)), &new).is_err());
            // Decoding the file gives the same keyring.
            let again = Keyring::decode_file(&ring.encode_file()).unwrap();
            prop_assert!(again.verify(&b, &old).is_ok());
            prop_assert!(again.verify(&b, legacy.as_bytes()).is_ok());
            prop_assert_eq!(again.tag(&b), ring.tag(&b));
        }
    }

    #[test]
    fn key_id_is_bound_inside_the_mac() {
        let key = ServerKey::random();
        let mut ring = Keyring::new(
            KeyId(1),
            KeyEntry {
                key: key.clone(),
                created_at_ms: 0,
            },
            false,
        );
        // Same key under a second id: moving a tag to the other id must not verify.
        ring.keys.insert(
            KeyId(2),
            KeyEntry {
                key,
                created_at_ms: 0,
            },
        );
        let c = Commitment([1; LEN]);
        let b = binding(&c, 5);
        let mut t = ring.tag(&b).encode();
        t[4] = 2;
        assert_eq!(ring.verify(&b, &t), Err(FrankError::Mismatch));
        // Without a legacy key, v1 tags verify with nothing.
        let v1 = server_tag(&ring.get(KeyId(1)).unwrap().key, &b);
        assert_eq!(ring.verify(&b, v1.as_bytes()), Err(FrankError::Mismatch));
    }

    #[test]
    fn bad_tags_and_files_are_refused() {
        assert_eq!(EncodedTag::decode(&[]), Err(FrankError::Length));
        assert_eq!(EncodedTag::decode(&[3; 37]), Err(FrankError::Length));
        assert_eq!(EncodedTag::decode(&[2; 36]), Err(FrankError::Length));
        let k = "00".repeat(32);
        for (text, err) in [
            (
                "",
                KeyringError::Syntax {
                    line: 1,
                    what: "the first line must be \"haven-frank-keys v1\"",
                },
            ),
            ("haven-frank-keys v1\n", KeyringError::Current),
            (
                &*format!("haven-frank-keys v1\n1 0 - {k}\n"),
                KeyringError::Current,
            ),
            (
                &*format!("haven-frank-keys v1\n1 0 current {k}\n1 0 - {k}\n"),
                KeyringError::DuplicateId(KeyId(1)),
            ),
            (
                &*format!("haven-frank-keys v1\n1 0 current,legacy {k}\n2 0 legacy {k}\n"),
                KeyringError::Legacy,
            ),
            (
                &*format!("haven-frank-keys v1\n1 0 current {k}0\n"),
                KeyringError::Syntax {
                    line: 2,
                    what: "the key must be 64 hex digits",
                },
            ),
            (
                &*format!("haven-frank-keys v1\n1 0 now {k}\n"),
                KeyringError::Syntax {
                    line: 2,
                    what: "unknown flag (want current, legacy or -)",
                },
            ),
        ] {
            assert_eq!(Keyring::decode_file(text).unwrap_err(), err, "{text}");
        }
    }
}
