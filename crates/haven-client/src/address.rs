//! How the user names a conversation, and how a name becomes exactly one conversation or a
//! refusal that lists the candidates.
//!
//! A conversation *is* its group id; names are display labels (`engine::book` keeps group names
//! unique among live conversations). The forms:
//! - `id:HEX` — a prefix of the group id, at least [`MIN_ID_DIGITS`] hex digits, which must
//!   match exactly one conversation (any state). `haven conversations` prints the short form.
//! - `#name` — a group by its local name: a live (active or invited) group if there is one, else
//!   one we left or were removed from; more than one match is refused with the candidates.
//! - `user` — the direct chat with that user that `send user` uses: the oldest active one the
//!   user opened or accepted, else the newest active one `user` opened and we have not accepted
//!   yet, else one we are invited back into or have ended; more than one of those is refused.
//!
//! Nothing here ever settles a tie by age among equal names (review findings 1 and 2).

use std::collections::HashMap;

use haven_proto::{GroupId, UserName};

use crate::store::{Conversation, ConversationKind, ConversationState};

/// The prefix of the id form.
pub const ID_FORM: &str = "id:";
/// Fewest hex digits an `id:` prefix may have.
pub const MIN_ID_DIGITS: usize = 6;
/// Hex digits of the short id shown (more where two conversations share that many).
pub const SHORT_ID_DIGITS: usize = 8;

/// A group-id prefix: [`MIN_ID_DIGITS`] to 32 lower-case hex digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdPrefix(String);

impl IdPrefix {
    /// Parses the digits after `id:` (case-insensitive).
    pub fn parse(digits: &str) -> Result<IdPrefix, String> {
        let d = digits.to_ascii_lowercase();
        if (MIN_ID_DIGITS..=32).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(IdPrefix(d))
        } else {
            Err(format!(
                "{ID_FORM}{digits} is not a conversation id: use {MIN_ID_DIGITS} to 32 hex digits as `haven conversations` shows them"
            ))
        }
    }

    /// The digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `g` starts with these digits.
    pub fn matches(&self, g: &GroupId) -> bool {
        g.to_hex().starts_with(&self.0)
    }
}

impl std::fmt::Display for IdPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{ID_FORM}{}", self.0)
    }
}

/// The outcome of a lookup.
#[derive(Debug)]
pub(crate) enum Found<'a> {
    One(&'a Conversation),
    Nothing,
    Many(Vec<&'a Conversation>),
}

fn one_of(v: Vec<&Conversation>) -> Found<'_> {
    match v.len() {
        0 => Found::Nothing,
        1 => v.into_iter().next().map_or(Found::Nothing, Found::One),
        _ => Found::Many(v),
    }
}

/// The conversation whose id starts with `p`; several are refused.
pub(crate) fn by_id<'a>(all: &'a [Conversation], p: &IdPrefix) -> Found<'a> {
    one_of(all.iter().filter(|c| p.matches(&c.group_id)).collect())
}

/// The group whose local name is `name`: among live ones if any (only them if `live_only`),
/// else among the ended ones.
pub(crate) fn by_group_name<'a>(all: &'a [Conversation], name: &str, live_only: bool) -> Found<'a> {
    let named: Vec<&Conversation> = all
        .iter()
        .filter(|c| c.group_name() == Some(name))
        .collect();
    let live: Vec<&Conversation> = named
        .iter()
        .copied()
        .filter(|c| c.state.is_live())
        .collect();
    if live_only || !live.is_empty() {
        one_of(live)
    } else {
        one_of(named)
    }
}

/// The direct chat with `peer` as the module docs order them.
pub(crate) fn direct_with<'a>(all: &'a [Conversation], peer: &UserName) -> Found<'a> {
    let with: Vec<&Conversation> = all.iter().filter(|c| c.peer() == Some(peer)).collect();
    let active = |c: &&Conversation| c.state == ConversationState::Active;
    if let Some(c) = with
        .iter()
        .copied()
        .filter(active)
        .find(|c| !c.is_request())
    {
        return Found::One(c);
    }
    if let Some(c) = with
        .iter()
        .copied()
        .filter(active)
        .rev()
        .find(|c| c.is_request() && c.added_by.as_ref() == Some(peer))
    {
        return Found::One(c);
    }
    let live: Vec<&Conversation> = with.iter().copied().filter(|c| c.state.is_live()).collect();
    if live.is_empty() {
        one_of(with)
    } else {
        one_of(live)
    }
}

/// The one live conversation matching `pred`; several are refused.
pub(crate) fn one_live(all: &[Conversation], pred: impl Fn(&Conversation) -> bool) -> Found<'_> {
    one_of(
        all.iter()
            .filter(|c| c.state.is_live() && pred(c))
            .collect(),
    )
}

/// What waits for the user's consent: invitations, and direct chats not accepted yet.
pub(crate) fn awaiting_consent(c: &Conversation) -> bool {
    c.state == ConversationState::Invited
        || (c.state == ConversationState::Active && c.is_request())
}

/// The shortest prefix of each id (at least [`SHORT_ID_DIGITS`] digits) that no other
/// conversation in `all` shares. Group ids are chosen by whoever creates the group, so two may
/// share a long prefix on purpose; the short form grows until it is unique.
pub fn short_ids(all: &[Conversation]) -> HashMap<GroupId, String> {
    let hexes: Vec<String> = all.iter().map(|c| c.group_id.to_hex()).collect();
    let mut out = HashMap::new();
    for (c, h) in all.iter().zip(&hexes) {
        let shared = hexes
            .iter()
            .filter(|o| *o != h)
            .map(|o| o.bytes().zip(h.bytes()).take_while(|(a, b)| a == b).count())
            .max()
            .unwrap_or(0);
        let n = shared.saturating_add(1).clamp(SHORT_ID_DIGITS, h.len());
        out.insert(c.group_id.clone(), h.get(..n).unwrap_or(h).to_owned());
    }
    out
}

/// The display label of a conversation: the peer's name for a direct chat, `#name` for a
/// named group, `id:SHORT` for a group not named yet. A label is not an address: several
/// conversations may share one.
pub fn label_of(c: &Conversation) -> String {
    match &c.kind {
        ConversationKind::Direct { peer, .. } => peer.to_string(),
        ConversationKind::Group { name, .. } if !name.is_empty() => format!("#{name}"),
        ConversationKind::Group { .. } => format!(
            "{ID_FORM}{}",
            c.group_id.to_hex().get(..SHORT_ID_DIGITS).unwrap_or("?")
        ),
    }
}

/// One of several conversations a name matched, as listed in the refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The conversation.
    pub group_id: GroupId,
    /// Its short id (`id:` form without the prefix).
    pub short_id: String,
    /// Its label.
    pub label: String,
    /// Its state.
    pub state: ConversationState,
    /// A direct chat not accepted yet.
    pub request: bool,
    /// Member users, sorted (`None`: the group state could not be read).
    pub members: Option<Vec<UserName>>,
}

impl std::fmt::Display for Candidate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{ID_FORM}{} ({}, {}",
            self.short_id,
            self.label,
            self.state.as_str()
        )?;
        if self.request {
            f.write_str(", not accepted")?;
        }
        match &self.members {
            Some(m) => {
                let names: Vec<&str> = m.iter().map(UserName::as_str).collect();
                write!(f, ", members {})", names.join(" "))
            }
            None => f.write_str(", members unknown)"),
        }
    }
}

/// Lists candidates for an error message.
pub(crate) fn list(candidates: &[Candidate]) -> String {
    candidates
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn gid(hex: &str) -> GroupId {
        GroupId::from_bytes(&hex::decode(hex).unwrap()).unwrap()
    }

    fn conv(hex: &str, kind: ConversationKind, state: ConversationState, at: u64) -> Conversation {
        Conversation {
            group_id: gid(hex),
            kind,
            state,
            created_at: at,
            added_by: None,
        }
    }

    fn u(s: &str) -> UserName {
        UserName::new(s).unwrap()
    }

    const A: &str = "aaaaaaaa000000000000000000000001";
    const B: &str = "aaaaaaaa000000000000000000000002";
    const C: &str = "cccccccc000000000000000000000003";

    #[test]
    fn id_prefixes_must_be_unique_and_long_enough() {
        let all = vec![
            conv(
                A,
                ConversationKind::group("x"),
                ConversationState::Active,
                1,
            ),
            conv(B, ConversationKind::group("y"), ConversationState::Left, 2),
            conv(
                C,
                ConversationKind::group("z"),
                ConversationState::Active,
                3,
            ),
        ];
        assert!(IdPrefix::parse("aaaaa").is_err());
        assert!(IdPrefix::parse("aaaaaz").is_err());
        assert!(IdPrefix::parse(&"a".repeat(33)).is_err());
        let p = IdPrefix::parse("AAAAAA").unwrap();
        assert!(matches!(by_id(&all, &p), Found::Many(v) if v.len() == 2));
        let p = IdPrefix::parse(&B[..31]).unwrap();
        assert!(matches!(by_id(&all, &p), Found::Many(v) if v.len() == 2));
        let p = IdPrefix::parse(B).unwrap();
        assert!(matches!(by_id(&all, &p), Found::One(c) if c.group_id == gid(B)));
        let p = IdPrefix::parse("cccccc").unwrap();
        assert!(matches!(by_id(&all, &p), Found::One(c) if c.group_id == gid(C)));
        let p = IdPrefix::parse("dddddd").unwrap();
        assert!(matches!(by_id(&all, &p), Found::Nothing));
        // Short ids grow past a shared prefix.
        let s = short_ids(&all);
        assert_eq!(s[&gid(A)], A);
        assert_eq!(s[&gid(B)], B);
        assert_eq!(s[&gid(C)], "cccccccc");
    }

    #[test]
    fn group_names_prefer_live_and_refuse_ties() {
        let mut all = vec![
            conv(
                A,
                ConversationKind::group("fam"),
                ConversationState::Left,
                1,
            ),
            conv(
                B,
                ConversationKind::group("fam"),
                ConversationState::Removed,
                2,
            ),
        ];
        assert!(matches!(by_group_name(&all, "fam", false), Found::Many(v) if v.len() == 2));
        assert!(matches!(by_group_name(&all, "fam", true), Found::Nothing));
        all.push(conv(
            C,
            ConversationKind::group("fam"),
            ConversationState::Invited,
            3,
        ));
        assert!(matches!(by_group_name(&all, "fam", false), Found::One(c) if c.group_id == gid(C)));
        // Two live ones (a profile from before names were unique): refused, not the oldest.
        all.push(conv(
            "dddddddd000000000000000000000004",
            ConversationKind::group("fam"),
            ConversationState::Active,
            4,
        ));
        assert!(matches!(by_group_name(&all, "fam", true), Found::Many(v) if v.len() == 2));
    }

    #[test]
    fn direct_chats_prefer_accepted_then_the_newest_request_from_the_peer() {
        let bob = u("bob");
        let request = |hex: &str, at: u64, by: &str| Conversation {
            added_by: Some(u(by)),
            ..conv(
                hex,
                ConversationKind::Direct {
                    peer: bob.clone(),
                    accepted: false,
                },
                ConversationState::Active,
                at,
            )
        };
        let mut all = vec![request(A, 1, "bob"), request(B, 2, "bob")];
        assert!(matches!(direct_with(&all, &bob), Found::One(c) if c.group_id == gid(B)));
        all.push(conv(
            C,
            ConversationKind::direct(bob.clone()),
            ConversationState::Active,
            3,
        ));
        assert!(matches!(direct_with(&all, &bob), Found::One(c) if c.group_id == gid(C)));
        let all = vec![
            conv(
                A,
                ConversationKind::direct(bob.clone()),
                ConversationState::Left,
                1,
            ),
            conv(
                B,
                ConversationKind::direct(bob.clone()),
                ConversationState::Left,
                2,
            ),
        ];
        assert!(matches!(direct_with(&all, &bob), Found::Many(v) if v.len() == 2));
    }
}
