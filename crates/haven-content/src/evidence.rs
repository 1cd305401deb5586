//! The evidence bundle of a report, and the checks on it that need no server secret.
//!
//! A recipient keeps, for every message it accepted, the content bytes, the franking salt, the
//! commitment and the server's envelope (tag, sender, conversation, receive time). A report
//! discloses those for the reported message and up to [`MAX_CONTEXT`] earlier messages of the
//! same conversation ([`EvidenceBundle`], MIMI's "Report abuse" with franked context; see
//! `haven-frank` for the scheme). Verification is split by what it needs:
//!
//! 1. [`open_bundle`] (here, pure): the version, the bounds, each commitment opened by its
//!    salt and content (`haven_frank::open`), each content a valid Haven content, the context
//!    all in the reported message's conversation, received no later than it, no message twice.
//! 2. The server: its tag over (commitment, sender device, conversation, time) with its
//!    franking keyring; the sender device belongs to the named account; the reporter's account
//!    was a member of the conversation when each message was received; attachments fetched and
//!    checked against the hashes the content commits to.
//!
//! Errors name the message ("the reported message", "context message 3") and the check, never
//! which byte differed.

use haven_frank::{Commitment, FrankSalt};
use haven_proto::moderation::{EvidenceBundle, FrankedMessage, EVIDENCE_VERSION, MAX_CONTEXT};

use crate::content::Content;

/// Why a bundle was refused before the server's own checks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    /// Unknown bundle version.
    #[error("unknown evidence bundle version {0} (this server reads version 1)")]
    Version(u8),
    /// More context than allowed.
    #[error("a report carries at most {MAX_CONTEXT} context messages, not {0}")]
    TooMuchContext(usize),
    /// A field has the wrong length or the content is not Haven content.
    #[error("{which}: {why}")]
    Malformed {
        /// Which message.
        which: String,
        /// What is wrong.
        why: &'static str,
    },
    /// The salt and content do not open the commitment.
    #[error("{which}: the content does not open its franking commitment (altered text, or another message's salt)")]
    Opening {
        /// Which message.
        which: String,
    },
    /// A context message is from another conversation.
    #[error("{which} is from another conversation than the reported message")]
    OtherConversation {
        /// Which message.
        which: String,
    },
    /// A context message was received after the reported one.
    #[error("{which} was received after the reported message; context must precede it")]
    NotPreceding {
        /// Which message.
        which: String,
    },
    /// The same message appears twice.
    #[error("{which} appears twice in the bundle")]
    Duplicate {
        /// Which message.
        which: String,
    },
}

/// A message whose commitment opened: its parsed content alongside the disclosed bytes.
#[derive(Debug, Clone)]
pub struct OpenedMessage {
    /// "the reported message" or "context message N" (1-based), for errors.
    pub which: String,
    /// What was disclosed.
    pub franked: FrankedMessage,
    /// The opened commitment.
    pub commitment: Commitment,
    /// The parsed content.
    pub content: Content,
}

/// A bundle whose openings all checked. Only [`open_bundle`] makes one.
#[derive(Debug, Clone)]
pub struct OpenedBundle {
    /// The reported message.
    pub reported: OpenedMessage,
    /// The context, in the order given.
    pub context: Vec<OpenedMessage>,
}

impl OpenedBundle {
    /// The reported message then the context.
    pub fn messages(&self) -> impl Iterator<Item = &OpenedMessage> {
        std::iter::once(&self.reported).chain(self.context.iter())
    }
}

fn open_one(which: String, m: FrankedMessage) -> Result<OpenedMessage, EvidenceError> {
    let malformed = |why| EvidenceError::Malformed {
        which: which.clone(),
        why,
    };
    let commitment = Commitment::from_slice(&m.commitment)
        .map_err(|_| malformed("commitment must be 32 bytes"))?;
    let salt = FrankSalt::from_slice(&m.salt).map_err(|_| malformed("salt must be 32 bytes"))?;
    if m.server_tag.is_empty() || m.server_tag.len() > 64 {
        return Err(malformed("server tag has the wrong length"));
    }
    haven_frank::open(&commitment, &salt, &m.content).map_err(|_| EvidenceError::Opening {
        which: which.clone(),
    })?;
    let content =
        Content::decode(&m.content).map_err(|_| malformed("content is not a Haven message"))?;
    Ok(OpenedMessage {
        which,
        franked: m,
        commitment,
        content,
    })
}

/// Checks everything in `bundle` that needs no server secret (see the module docs).
pub fn open_bundle(bundle: EvidenceBundle) -> Result<OpenedBundle, EvidenceError> {
    if bundle.v != EVIDENCE_VERSION {
        return Err(EvidenceError::Version(bundle.v));
    }
    if bundle.context.len() > MAX_CONTEXT {
        return Err(EvidenceError::TooMuchContext(bundle.context.len()));
    }
    let reported = open_one("the reported message".into(), bundle.reported)?;
    let mut seen = vec![reported.franked.server_tag.clone()];
    let mut context = Vec::with_capacity(bundle.context.len());
    for (i, m) in bundle.context.into_iter().enumerate() {
        let which = format!("context message {}", i + 1);
        if m.group_id != reported.franked.group_id {
            return Err(EvidenceError::OtherConversation { which });
        }
        if m.received_at > reported.franked.received_at {
            return Err(EvidenceError::NotPreceding { which });
        }
        if seen.contains(&m.server_tag) {
            return Err(EvidenceError::Duplicate { which });
        }
        seen.push(m.server_tag.clone());
        context.push(open_one(which, m)?);
    }
    Ok(OpenedBundle { reported, context })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::content::Body;
    use haven_proto::api::Sender;
    use haven_proto::{DeviceId, GroupId, UserName};

    fn franked(text: &str, t: u64, group: &GroupId) -> FrankedMessage {
        let content = Content::new(Body::Text(text.into()), t).encode().unwrap();
        let salt = FrankSalt::random();
        let c = haven_frank::commit(&salt, &content);
        FrankedMessage {
            group_id: group.clone(),
            sender: Sender {
                user: UserName::new("mallory").unwrap(),
                device_id: DeviceId::from_bytes([7; 16]),
            },
            received_at: t,
            content,
            salt: salt.as_bytes().to_vec(),
            commitment: c.as_bytes().to_vec(),
            server_tag: {
                // Distinct per message, as the server's tags are.
                let mut t = vec![2u8; 5];
                t.extend_from_slice(haven_frank::commit(&salt, b"tag").as_bytes());
                t
            },
        }
    }

    #[test]
    fn opens_good_bundles_and_refuses_bad_ones() {
        let g = GroupId::from_bytes(&[1; 16]).unwrap();
        let g2 = GroupId::from_bytes(&[2; 16]).unwrap();
        let bundle = EvidenceBundle {
            v: 1,
            reported: franked("bad", 10, &g),
            context: vec![franked("a", 5, &g), franked("b", 9, &g)],
        };
        let ok = open_bundle(bundle.clone()).unwrap();
        assert_eq!(ok.messages().count(), 3);

        let mut b = bundle.clone();
        b.reported.content = Content::new(Body::Text("good".into()), 10)
            .encode()
            .unwrap();
        assert!(matches!(open_bundle(b), Err(EvidenceError::Opening { .. })));
        let mut b = bundle.clone();
        b.context[0].group_id = g2;
        assert!(matches!(
            open_bundle(b),
            Err(EvidenceError::OtherConversation { .. })
        ));
        let mut b = bundle.clone();
        b.context[1].received_at = 11;
        assert!(matches!(
            open_bundle(b),
            Err(EvidenceError::NotPreceding { .. })
        ));
        let mut b = bundle.clone();
        b.context[1] = b.context[0].clone();
        assert!(matches!(
            open_bundle(b),
            Err(EvidenceError::Duplicate { .. })
        ));
        let mut b = bundle.clone();
        b.v = 2;
        assert_eq!(open_bundle(b).unwrap_err(), EvidenceError::Version(2));
        let mut b = bundle.clone();
        b.context = (0..11).map(|i| franked("x", i, &g)).collect();
        assert_eq!(
            open_bundle(b).unwrap_err(),
            EvidenceError::TooMuchContext(11)
        );
        let mut b = bundle;
        b.reported.salt.pop();
        assert!(matches!(
            open_bundle(b),
            Err(EvidenceError::Malformed { .. })
        ));
    }
}
