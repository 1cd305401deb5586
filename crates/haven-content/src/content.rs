//! Message content and its envelope: what Haven puts inside an MLS application message.
//!
//! ```text
//! content   = JSON {"v":1, "id":<32 hex>, "sent_at":<ms>, "body":{"type":…, "value":…},
//!                   "kt":<208 hex>?}
//! C         = haven_frank::commit(salt, content)        (carried as MLS authenticated_data)
//! plaintext = "HVE1" ‖ salt (32 bytes) ‖ content        (the MLS application payload)
//! ```
//!
//! The content bytes are kept exactly as received, because a report must disclose the very bytes
//! the commitment opens. The envelope is versioned by its magic; the content by `v`.
//!
//! `kt` (optional) is the newest key-directory root the sender verified, as its 104-byte
//! signed encoding (`haven_kt::directory::SignedRoot`: epoch ‖ root ‖ Ed25519 signature). It is
//! how members compare the directory they were shown (split-view detection, issue 11): this
//! crate only carries the bytes and checks their length; the client checks the signature and
//! compares.

use haven_frank::FrankSalt;
use haven_proto::BlobId;
use rand::RngCore;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::attachment::AttachmentKey;

/// Magic prefix of the version-1 envelope.
pub const ENVELOPE_MAGIC: &[u8; 4] = b"HVE1";
/// Content version this library writes and accepts.
pub const CONTENT_VERSION: u8 = 1;
/// Largest serialised content accepted, in bytes.
pub const MAX_CONTENT: usize = 64 * 1024;
/// Largest text body, in bytes.
pub const MAX_TEXT: usize = 32 * 1024;
/// Largest group or file name, in bytes.
pub const MAX_NAME: usize = 255;
/// Length of a signed key-directory root (`haven_kt::directory::SIGNED_ROOT_LEN`).
pub const KT_ROOT_LEN: usize = 104;

/// Why content bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentError {
    /// Not a version-1 envelope, or too short.
    #[error("malformed message envelope")]
    Envelope,
    /// Not valid content JSON, unknown version, or a field out of bounds.
    #[error("malformed message content: {0}")]
    Content(&'static str),
    /// The content is too large.
    #[error("message content is too large")]
    TooLarge,
}

/// A message id: 16 random bytes as 32 lower-case hex digits, chosen by the sender.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct MessageId(String);

impl MessageId {
    /// A fresh random id.
    pub fn random() -> Self {
        let mut b = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut b);
        MessageId(hex::encode(b))
    }

    /// Checks and wraps an id.
    pub fn new(s: &str) -> Result<Self, ContentError> {
        if s.len() == 32
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(MessageId(s.to_owned()))
        } else {
            Err(ContentError::Content(
                "message id must be 32 lower-case hex digits",
            ))
        }
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for MessageId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}
impl<'de> Deserialize<'de> for MessageId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        MessageId::new(&s).map_err(serde::de::Error::custom)
    }
}

mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&s, &mut out)
            .map_err(|_| serde::de::Error::custom("expected 64 hex digits"))?;
        Ok(out)
    }
}

/// The sender's newest verified key-directory root, as its signed encoding (opaque here).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct KtRootRef(Vec<u8>);

impl KtRootRef {
    /// Wraps a signed root's encoding; refuses any other length.
    pub fn new(bytes: &[u8]) -> Result<Self, ContentError> {
        if bytes.len() == KT_ROOT_LEN {
            Ok(KtRootRef(bytes.to_vec()))
        } else {
            Err(ContentError::Content(
                "a key-directory root must be 104 bytes",
            ))
        }
    }

    /// The signed root's encoding.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl Serialize for KtRootRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(&self.0))
    }
}
impl<'de> Deserialize<'de> for KtRootRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let b = hex::decode(&s).map_err(|_| serde::de::Error::custom("expected hex digits"))?;
        KtRootRef::new(&b).map_err(serde::de::Error::custom)
    }
}

/// A reference to an encrypted attachment (see [`crate::attachment`]).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachmentRef {
    /// The blob holding the ciphertext (SHA-256 of the ciphertext).
    pub blob_id: BlobId,
    /// The file's key (redacted in `Debug`).
    pub key: AttachmentKey,
    /// SHA-256 of the plaintext, checked on open; committed by the franking commitment.
    #[serde(with = "hex32")]
    pub sha256: [u8; 32],
    /// Plaintext size in bytes.
    pub size: u64,
    /// File name, for display.
    pub name: String,
}

/// What a message says.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum Body {
    /// Text.
    Text(String),
    /// An encrypted file.
    Attachment(AttachmentRef),
    /// Control message: the group's name. Not shown in history; renames the conversation.
    GroupName(String),
}

impl Body {
    fn check(&self) -> Result<(), ContentError> {
        match self {
            Body::Text(t) if t.len() > MAX_TEXT => Err(ContentError::Content("text too long")),
            Body::Attachment(a) if a.name.len() > MAX_NAME => {
                Err(ContentError::Content("file name too long"))
            }
            Body::GroupName(n) if n.is_empty() || n.len() > MAX_NAME => {
                Err(ContentError::Content("group name must be 1 to 255 bytes"))
            }
            _ => Ok(()),
        }
    }
}

/// One message's content.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Content {
    /// Format version, [`CONTENT_VERSION`].
    pub v: u8,
    /// Sender-chosen message id.
    pub id: MessageId,
    /// Sender's clock, milliseconds since the Unix epoch (not trusted; the server's receive time
    /// is what franking binds).
    pub sent_at: u64,
    /// The body.
    pub body: Body,
    /// The newest key-directory root the sender verified (absent before it pinned one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kt: Option<KtRootRef>,
}

impl Content {
    /// New content with a fresh id.
    pub fn new(body: Body, sent_at: u64) -> Self {
        Content {
            v: CONTENT_VERSION,
            id: MessageId::random(),
            sent_at,
            body,
            kt: None,
        }
    }

    /// Serialises and checks bounds.
    pub fn encode(&self) -> Result<Vec<u8>, ContentError> {
        self.body.check()?;
        let b = serde_json::to_vec(self).map_err(|_| ContentError::Content("unserialisable"))?;
        if b.len() > MAX_CONTENT {
            return Err(ContentError::TooLarge);
        }
        Ok(b)
    }

    /// Parses and checks received content bytes.
    pub fn decode(b: &[u8]) -> Result<Self, ContentError> {
        if b.len() > MAX_CONTENT {
            return Err(ContentError::TooLarge);
        }
        let c: Content =
            serde_json::from_slice(b).map_err(|_| ContentError::Content("not content JSON"))?;
        if c.v != CONTENT_VERSION {
            return Err(ContentError::Content("unknown content version"));
        }
        c.body.check()?;
        Ok(c)
    }
}

/// Builds the MLS application payload: magic ‖ salt ‖ content.
pub fn seal_envelope(salt: &FrankSalt, content: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(ENVELOPE_MAGIC.len() + haven_frank::LEN + content.len());
    v.extend_from_slice(ENVELOPE_MAGIC);
    v.extend_from_slice(salt.as_bytes());
    v.extend_from_slice(content);
    v
}

/// Splits an MLS application payload into salt and content bytes.
pub fn open_envelope(b: &[u8]) -> Result<(FrankSalt, &[u8]), ContentError> {
    let rest = b
        .strip_prefix(ENVELOPE_MAGIC.as_slice())
        .ok_or(ContentError::Envelope)?;
    if rest.len() < haven_frank::LEN {
        return Err(ContentError::Envelope);
    }
    let (salt, content) = rest.split_at(haven_frank::LEN);
    let salt = FrankSalt::from_slice(salt).map_err(|_| ContentError::Envelope)?;
    if content.len() > MAX_CONTENT {
        return Err(ContentError::TooLarge);
    }
    Ok((salt, content))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn envelope_and_content_round_trip(text in ".{0,200}", t in any::<u64>()) {
            let c = Content::new(Body::Text(text), t);
            let bytes = c.encode().unwrap();
            let salt = FrankSalt::random();
            let env = seal_envelope(&salt, &bytes);
            let (s2, c2) = open_envelope(&env).unwrap();
            prop_assert_eq!(s2.as_bytes(), salt.as_bytes());
            prop_assert_eq!(c2, &bytes[..]);
            prop_assert_eq!(Content::decode(c2).unwrap(), c);
        }
    }

    #[test]
    fn rejects_bad_envelopes_and_content() {
        assert!(open_envelope(b"").is_err());
        assert!(open_envelope(b"HVE1short").is_err());
        assert!(open_envelope(&[b"HVE2".as_slice(), &[0; 40]].concat()).is_err());
        assert!(Content::decode(b"{}").is_err());
        let mut c = Content::new(Body::GroupName("x".into()), 1);
        c.v = 2;
        let b = serde_json::to_vec(&c).unwrap();
        assert!(Content::decode(&b).is_err());
        assert!(Content::new(Body::Text("a".repeat(MAX_TEXT + 1)), 0)
            .encode()
            .is_err());
        let att = Body::Attachment(AttachmentRef {
            blob_id: BlobId::from_digest([1; 32]),
            key: AttachmentKey::random(),
            sha256: [2; 32],
            size: 3,
            name: "f.png".into(),
        });
        let c = Content::new(att, 5);
        assert_eq!(Content::decode(&c.encode().unwrap()).unwrap(), c);
        assert!(format!("{c:?}").contains("<redacted>"));
    }

    #[test]
    fn carries_a_directory_root_of_exactly_its_length() {
        let mut c = Content::new(Body::Text("hi".into()), 1);
        let plain = c.encode().unwrap();
        assert!(!String::from_utf8_lossy(&plain).contains("\"kt\""));
        c.kt = Some(KtRootRef::new(&[7; KT_ROOT_LEN]).unwrap());
        let b = c.encode().unwrap();
        assert_eq!(Content::decode(&b).unwrap(), c);
        assert!(KtRootRef::new(&[7; KT_ROOT_LEN - 1]).is_err());
        for bad in ["\"07\"", "\"zz\"", "7"] {
            let s = String::from_utf8(plain.clone()).unwrap();
            let s = format!("{},\"kt\":{bad}}}", s.strip_suffix('}').unwrap());
            assert!(Content::decode(s.as_bytes()).is_err(), "{s}");
        }
        let s = String::from_utf8(plain).unwrap();
        let ok = format!(
            "{},\"kt\":\"{}\"}}",
            s.strip_suffix('}').unwrap(),
            "07".repeat(KT_ROOT_LEN)
        );
        assert_eq!(Content::decode(ok.as_bytes()).unwrap().kt, c.kt);
    }
}
