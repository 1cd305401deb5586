//! Conversation bookkeeping: what kind a joined conversation is, its local name, and consent.
//!
//! Rules (security review 2026-12, findings 1, 2 and "silent re-add"):
//! - **Names are local labels.** A conversation is identified by its group id. A group's local
//!   name is unique among this profile's *live* conversations (active or invited): a received
//!   `GroupName` whose name another live conversation has is stored disambiguated (`family-2`),
//!   and the outcome says what was asked and what was stored. The user's own `create` of a taken
//!   name is refused. Conversations we left or were removed from keep their names; a live one
//!   takes precedence over them when a name is resolved.
//! - Received names are display text from a peer: characters a name may not hold (whitespace,
//!   control characters, `#`) become `_` and the name is cut to [`MAX_GROUP_NAME`] characters.
//! - **A direct chat is one the user opened or accepted.** A Welcome into a two-user group whose
//!   adder (the server-authenticated sender of the Welcome entry) is the other user is filed as a
//!   direct chat with that user, *not accepted*; sending in it accepts it. A Welcome from one of
//!   our own user's other devices (adding this device to the account's conversations) files the
//!   direct chat as accepted: the account already had it. Any other Welcome is a group, never a
//!   direct chat. A `GroupName` turns a not-yet-accepted direct chat into a group (the creator
//!   named its two-user group); it never renames an accepted direct chat, unless it comes from
//!   our own user (another of our devices, which adds this one to a two-user *group* and then
//!   announces its name).
//! - **Consent.** A Welcome to a group we left or were removed from is applied to the MLS state,
//!   but the conversation becomes [`ConversationState::Invited`]: nothing is sent there until the
//!   user accepts, and leaving declines.

use std::collections::BTreeSet;

use haven_proto::{GroupId, UserName};
use rusqlite::Connection;

use crate::error::EngineError;
use crate::store::{self, Conversation, ConversationKind, ConversationState};

/// Longest group name, in characters.
pub const MAX_GROUP_NAME: usize = 64;

/// Whether a group name is one a user may choose: 1 to [`MAX_GROUP_NAME`] characters, no
/// whitespace, control characters or `#`.
pub fn valid_group_name(name: &str) -> bool {
    let n = name.chars().count();
    (1..=MAX_GROUP_NAME).contains(&n) && name.chars().all(allowed)
}

fn allowed(c: char) -> bool {
    !(c.is_whitespace() || c.is_control() || c == '#')
}

/// A received name made displayable (see the module docs); `None` if nothing is left.
pub(crate) fn sanitize(name: &str) -> Option<String> {
    let s: String = name
        .chars()
        .map(|c| if allowed(c) { c } else { '_' })
        .take(MAX_GROUP_NAME)
        .collect();
    (!s.is_empty()).then_some(s)
}

/// Whether a live conversation other than `except` has the local group name `name`.
fn taken(all: &[Conversation], except: &GroupId, name: &str) -> bool {
    all.iter()
        .any(|c| c.group_id != *except && c.state.is_live() && c.group_name() == Some(name))
}

/// The local name for `group` when `requested` is wanted: `requested` if no other live
/// conversation has it; else the current name if it is already a disambiguation of `requested`
/// (so a repeated announcement changes nothing); else the first free `requested-N`.
fn local_name(
    all: &[Conversation],
    group: &GroupId,
    requested: &str,
    current: Option<&str>,
) -> Result<String, EngineError> {
    if !taken(all, group, requested) {
        return Ok(requested.to_owned());
    }
    if let Some(cur) = current {
        let suffix_of_requested = cur
            .strip_prefix(requested)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if suffix_of_requested && !taken(all, group, cur) {
            return Ok(cur.to_owned());
        }
    }
    // At most all.len() names are taken, so one of the first all.len() + 1 suffixes is free.
    for n in 2..all.len().saturating_add(3) {
        let suffix = format!("-{n}");
        let keep = MAX_GROUP_NAME.saturating_sub(suffix.len());
        let base: String = requested.chars().take(keep).collect();
        let candidate = format!("{base}{suffix}");
        if !taken(all, group, &candidate) {
            return Ok(candidate);
        }
    }
    Err(EngineError::Internal("no free disambiguated name"))
}

/// Refuses a group name the user chose if it is invalid or another live conversation has it.
pub(crate) fn check_new_name(db: &Connection, name: &str) -> Result<(), EngineError> {
    if !valid_group_name(name) {
        return Err(EngineError::Limit(
            "a group name is 1 to 64 characters, without spaces or '#'",
        ));
    }
    let all = store::conversation_list(db)?;
    if all
        .iter()
        .any(|c| c.state.is_live() && c.group_name() == Some(name))
    {
        return Err(EngineError::NameTaken(name.to_owned()));
    }
    Ok(())
}

/// What a received `GroupName` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rename {
    /// The local group name before (`None`: it was a direct chat).
    pub previous: Option<String>,
    /// The name stored, `None` if the rename was refused (an accepted direct chat, or a name
    /// with nothing displayable in it).
    pub stored: Option<String>,
}

/// Applies a `GroupName` received from member user `by` (see the module docs); `me` is our
/// user.
pub(crate) fn received_rename(
    db: &Connection,
    me: &UserName,
    by: &UserName,
    group: &GroupId,
    requested: &str,
) -> Result<Option<Rename>, EngineError> {
    let all = store::conversation_list(db)?;
    let Some(mut conv) = all.iter().find(|c| c.group_id == *group).cloned() else {
        return Ok(None);
    };
    let previous = conv.group_name().map(str::to_owned);
    let clean = match (&conv.kind, sanitize(requested)) {
        (ConversationKind::Direct { accepted: true, .. }, _) if by != me => {
            return Ok(Some(Rename {
                previous,
                stored: None,
            }))
        }
        (_, None) => {
            return Ok(Some(Rename {
                previous,
                stored: None,
            }))
        }
        (_, Some(clean)) => clean,
    };
    let name = local_name(&all, group, &clean, previous.as_deref())?;
    conv.kind = ConversationKind::Group {
        name: name.clone(),
        announced: clean,
    };
    store::conversation_put(db, &conv)?;
    Ok(Some(Rename {
        previous,
        stored: Some(name),
    }))
}

/// Records a `GroupName` we sent: it is what the group is called, re-announced to members we
/// add. Our local name stays (we chose it), unless the group had none yet.
pub(crate) fn own_rename(db: &Connection, group: &GroupId, name: &str) -> Result<(), EngineError> {
    let all = store::conversation_list(db)?;
    let Some(mut conv) = all.iter().find(|c| c.group_id == *group).cloned() else {
        return Ok(());
    };
    if let ConversationKind::Group { name: local, .. } = &conv.kind {
        let local = if local.is_empty() {
            local_name(&all, group, name, None)?
        } else {
            local.clone()
        };
        conv.kind = ConversationKind::Group {
            name: local,
            announced: name.to_owned(),
        };
        store::conversation_put(db, &conv)?;
    }
    Ok(())
}

/// Files a conversation joined by a Welcome (its MLS state already applied): the kind from the
/// members and the adder, the state from whether we were in it before (see the module docs).
/// `users` are the member users of the group; `adder` the server-authenticated sender of the
/// Welcome entry.
pub(crate) fn joined(
    db: &Connection,
    me: &UserName,
    group_id: GroupId,
    existing: Option<Conversation>,
    users: &BTreeSet<UserName>,
    adder: Option<&UserName>,
    now: u64,
) -> Result<Conversation, EngineError> {
    let others: Vec<&UserName> = users.iter().filter(|u| *u != me).collect();
    let direct = match (others.as_slice(), adder) {
        ([peer], Some(a)) if users.contains(me) && *peer == a => Some(((*peer).clone(), false)),
        ([peer], Some(a)) if users.contains(me) && a == me => Some(((*peer).clone(), true)),
        _ => None,
    };
    let fresh = match &direct {
        Some((peer, accepted)) => ConversationKind::Direct {
            peer: peer.clone(),
            accepted: *accepted,
        },
        None => ConversationKind::Group {
            name: String::new(),
            announced: String::new(),
        },
    };
    let (kind, state, created_at) = match existing {
        None => (fresh, ConversationState::Active, now),
        Some(old) => {
            let kind = match (old.kind, &direct) {
                (ConversationKind::Direct { peer, accepted }, Some((p, _))) if peer == *p => {
                    ConversationKind::Direct { peer, accepted }
                }
                (ConversationKind::Group { name, announced }, _) => {
                    // Live again: its old name may meanwhile belong to another conversation.
                    let all = store::conversation_list(db)?;
                    let wanted = if announced.is_empty() {
                        name.clone()
                    } else {
                        announced.clone()
                    };
                    let name = if wanted.is_empty() {
                        wanted
                    } else {
                        local_name(&all, &group_id, &wanted, Some(&name))?
                    };
                    ConversationKind::Group { name, announced }
                }
                _ => fresh,
            };
            (kind, ConversationState::Invited, old.created_at)
        }
    };
    let conv = Conversation {
        group_id,
        kind,
        state,
        created_at,
        added_by: adder.cloned(),
    };
    store::conversation_put(db, &conv)?;
    Ok(conv)
}

/// Accepts an invitation (state invited → active) or a direct chat not yet accepted. Returns
/// whether anything changed; refuses a conversation we are no longer in.
pub(crate) fn accept(db: &Connection, group: &GroupId) -> Result<bool, EngineError> {
    let mut conv = store::conversation_get(db, group)?
        .ok_or_else(|| EngineError::UnknownConversation(group.clone()))?;
    let mut changed = false;
    match conv.state {
        ConversationState::Active => {}
        ConversationState::Invited => {
            conv.state = ConversationState::Active;
            changed = true;
        }
        ConversationState::Left | ConversationState::Removed => {
            return Err(EngineError::NotActive(group.clone()))
        }
    }
    if let ConversationKind::Direct { accepted, .. } = &mut conv.kind {
        if !*accepted {
            *accepted = true;
            changed = true;
        }
    }
    if changed {
        store::conversation_put(db, &conv)?;
    }
    Ok(changed)
}

/// A commit removed us: an active conversation (or an invitation, now withdrawn) ends as
/// removed; one we left stays left.
pub(crate) fn self_removed(db: &Connection, group: &GroupId) -> Result<(), EngineError> {
    if let Some(conv) = store::conversation_get(db, group)? {
        if conv.state.is_live() {
            store::conversation_set_state(db, group, ConversationState::Removed)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(n: u8, name: &str, state: ConversationState) -> Conversation {
        Conversation {
            group_id: GroupId::from_bytes(&[n; 16]).unwrap(),
            kind: ConversationKind::group(name),
            state,
            created_at: u64::from(n),
            added_by: None,
        }
    }

    #[test]
    fn names_are_disambiguated_against_live_conversations_only() {
        let me = GroupId::from_bytes(&[9; 16]).unwrap();
        let mut all = vec![
            conv(1, "family", ConversationState::Active),
            conv(2, "old", ConversationState::Left),
        ];
        assert_eq!(local_name(&all, &me, "book", None).unwrap(), "book");
        assert_eq!(local_name(&all, &me, "family", None).unwrap(), "family-2");
        // A conversation we left does not hold its name against live ones.
        assert_eq!(local_name(&all, &me, "old", None).unwrap(), "old");
        // A repeated announcement keeps the disambiguation it already has.
        assert_eq!(
            local_name(&all, &me, "family", Some("family-2")).unwrap(),
            "family-2"
        );
        all.push(conv(3, "family-2", ConversationState::Invited));
        all.push(conv(4, "family-3", ConversationState::Active));
        assert_eq!(local_name(&all, &me, "family", None).unwrap(), "family-4");
        // A conversation keeps its own name.
        assert_eq!(
            local_name(&all, &all[0].group_id.clone(), "family", None).unwrap(),
            "family"
        );
        // The suffix fits within the name limit.
        let long = "x".repeat(MAX_GROUP_NAME);
        all.push(conv(5, &long, ConversationState::Active));
        let got = local_name(&all, &me, &long, None).unwrap();
        assert_eq!(got.chars().count(), MAX_GROUP_NAME);
        assert!(got.ends_with("-2"), "{got}");
    }

    /// Finding 1, the client half: whatever the leaves claim, a two-user group is a direct chat
    /// only if the Welcome's authenticated sender is the other user (not accepted) or our own
    /// user (accepted); from anyone else it is a group.
    #[test]
    fn a_direct_chat_only_from_the_peers_or_our_own_welcome() {
        let db = Connection::open_in_memory().unwrap();
        store::migrate(&db).unwrap();
        let u = |s: &str| UserName::new(s).unwrap();
        let users: BTreeSet<UserName> = [u("dave"), u("bob")].into_iter().collect();
        let file = |n: u8, adder: &str| {
            joined(
                &db,
                &u("dave"),
                GroupId::from_bytes(&[n; 16]).unwrap(),
                None,
                &users,
                Some(&u(adder)),
                1,
            )
            .unwrap()
            .kind
        };
        assert_eq!(
            file(1, "mallory"),
            ConversationKind::Group {
                name: String::new(),
                announced: String::new()
            }
        );
        assert_eq!(
            file(2, "bob"),
            ConversationKind::Direct {
                peer: u("bob"),
                accepted: false
            }
        );
        assert_eq!(file(3, "dave"), ConversationKind::direct(u("bob")));
        let no_adder = joined(
            &db,
            &u("dave"),
            GroupId::from_bytes(&[4; 16]).unwrap(),
            None,
            &users,
            None,
            1,
        )
        .unwrap();
        assert!(no_adder.peer().is_none());
    }

    #[test]
    fn received_names_are_made_displayable() {
        assert_eq!(sanitize("fam ily\n#1\u{1b}[2J").unwrap(), "fam_ily__1_[2J");
        assert_eq!(sanitize(" ").unwrap(), "_");
        assert_eq!(sanitize(""), None);
        assert_eq!(
            sanitize(&"é".repeat(100)).unwrap().chars().count(),
            MAX_GROUP_NAME
        );
        assert!(valid_group_name("family"));
        assert!(!valid_group_name("my family"));
        assert!(!valid_group_name("#family"));
        assert!(!valid_group_name(""));
        assert!(!valid_group_name(&"x".repeat(MAX_GROUP_NAME + 1)));
    }
}
