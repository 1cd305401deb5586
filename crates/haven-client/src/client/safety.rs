//! Contacts, message requests, blocks, restricts and message settings (`haven_proto::contacts`
//! has the endpoint table), and the view of them a sync applies to what it shows.
//!
//! The server enforces the rules (who may reach whom, one message before a request is accepted,
//! blocks); the client only shows their effect: a message in a conversation with a pending
//! request, or from an account the user restricted, is shown as a request (text only, no
//! attachment fetched), and one from an account the user blocked is not shown at all. A server
//! without these endpoints (404) is treated as having no contacts and no requests.
//!
//! Accepting a message request is the server-side half of the client's own notion of accepting
//! a direct chat (`Engine::accept`): [`Client::accept_request`] does both, and
//! [`Client::accept_conversation`] (what `haven accept` runs) answers a pending request of the
//! conversation it accepts.

use std::collections::HashSet;

use haven_proto::contacts::{
    ContactList, Me, MessageRequest, MessageRequests, MessageSetting, RequestKind, RiskReport,
};
use haven_proto::{GroupId, UserName};

use super::{usage, Client, ClientError};
use crate::error::EngineError;

/// Checks the shape of a date of birth (`YYYY-MM-DD`, a real calendar day; `haven-safety`'s
/// parser, the one the server uses) before anything is sent; the server decides what it means.
pub(crate) fn check_birth_date(date: &str) -> Result<(), ClientError> {
    haven_safety::age::parse_date(date)
        .map(|_| ())
        .map_err(|e| {
            usage(format!(
                "{date:?} is not a date of birth as YYYY-MM-DD (e.g. 1990-01-31): {e}"
            ))
        })
}

/// The user's contacts, blocks, restricts and pending message requests as the server has them,
/// fetched once per sync to decide how each message is shown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SafetyView {
    /// Pending message requests to this user, oldest first.
    pub requests: Vec<MessageRequest>,
    /// Connections, contact requests, blocks and restricts.
    pub contacts: ContactList,
    blocked: HashSet<UserName>,
    restricted: HashSet<UserName>,
    request_groups: HashSet<GroupId>,
}

impl SafetyView {
    /// A view of these lists.
    pub fn new(requests: Vec<MessageRequest>, contacts: ContactList) -> SafetyView {
        SafetyView {
            blocked: contacts.blocked.iter().cloned().collect(),
            restricted: contacts.restricted.iter().cloned().collect(),
            request_groups: requests.iter().map(|r| r.group_id.clone()).collect(),
            requests,
            contacts,
        }
    }

    /// Whether the user blocked `user`: their messages are not shown.
    pub fn is_blocked(&self, user: &UserName) -> bool {
        self.blocked.contains(user)
    }

    /// Whether the user restricted `user`: their messages are shown as requests.
    pub fn is_restricted(&self, user: &UserName) -> bool {
        self.restricted.contains(user)
    }

    /// The pending request for a conversation, if any.
    pub fn request_for(&self, group: &GroupId) -> Option<&MessageRequest> {
        self.requests.iter().find(|r| &r.group_id == group)
    }

    /// Whether a message from `from` in `group` is shown as a request: text only, its
    /// attachment neither fetched nor shown.
    pub fn is_request_message(&self, group: &GroupId, from: &UserName) -> bool {
        self.request_groups.contains(group) || self.is_restricted(from)
    }
}

/// What answering a user's message requests did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestAnswer {
    /// The requests answered (as listed before the answer).
    pub requests: Vec<MessageRequest>,
    /// Conversations accepted here too (a direct chat marked accepted, an invitation joined).
    pub accepted: Vec<GroupId>,
    /// Groups left because their request was declined.
    pub left: Vec<GroupId>,
}

impl Client {
    /// The contact lists and pending requests (empty from a server without them).
    pub async fn safety_view(&mut self) -> Result<SafetyView, ClientError> {
        let requests = self.api.message_requests().await?.unwrap_or_default();
        let contacts = self.api.contacts().await?.unwrap_or_default();
        Ok(SafetyView::new(requests.requests, contacts))
    }

    fn not_self(&self, user: &UserName, what: &str) -> Result<(), ClientError> {
        if user == self.user() {
            return Err(usage(format!("you cannot {what} yourself")));
        }
        Ok(())
    }

    /// Asks `user` to connect.
    pub async fn contact_request(&mut self, user: &UserName) -> Result<(), ClientError> {
        self.not_self(user, "send a contact request to")?;
        Ok(self.api.contact_request(user).await?)
    }

    /// Accepts (`true`) or declines `user`'s contact request.
    pub async fn contact_answer(
        &mut self,
        user: &UserName,
        accept: bool,
    ) -> Result<(), ClientError> {
        Ok(self.api.contact_answer(user, accept).await?)
    }

    /// Removes the connection with `user`, or withdraws a request to them.
    pub async fn contact_remove(&mut self, user: &UserName) -> Result<(), ClientError> {
        Ok(self.api.contact_remove(user).await?)
    }

    /// Connections, pending contact requests, blocks and restricts.
    pub async fn contacts(&mut self) -> Result<ContactList, ClientError> {
        self.api
            .contacts()
            .await?
            .ok_or_else(|| usage("this server does not support contacts"))
    }

    /// Pending message requests (empty from a server without them).
    pub async fn message_requests(&mut self) -> Result<MessageRequests, ClientError> {
        Ok(self.api.message_requests().await?.unwrap_or_default())
    }

    /// Blocks (`true`) or unblocks `user`.
    pub async fn set_blocked(&mut self, user: &UserName, on: bool) -> Result<(), ClientError> {
        self.not_self(user, "block")?;
        Ok(self.api.set_blocked(user, on).await?)
    }

    /// Restricts (`true`) or unrestricts `user`: their messages arrive as requests.
    pub async fn set_restricted(&mut self, user: &UserName, on: bool) -> Result<(), ClientError> {
        self.not_self(user, "restrict")?;
        Ok(self.api.set_restricted(user, on).await?)
    }

    /// Who may start conversations with this user.
    pub async fn set_message_setting(&mut self, s: MessageSetting) -> Result<(), ClientError> {
        Ok(self.api.set_message_setting(s).await?)
    }

    /// This account as the server applies the rules to it.
    pub async fn me(&mut self) -> Result<Me, ClientError> {
        Ok(self.api.me().await?)
    }

    /// An account's metadata risk signals (moderators).
    pub async fn mod_signals(&mut self, user: &UserName) -> Result<RiskReport, ClientError> {
        Ok(self.api.mod_signals(user).await?)
    }

    /// `user`'s pending message requests to this user, with the queue processed first so the
    /// conversations they name are known here.
    async fn requests_from(&mut self, user: &UserName) -> Result<Vec<MessageRequest>, ClientError> {
        self.process_queue().await?;
        Ok(self
            .message_requests()
            .await?
            .requests
            .into_iter()
            .filter(|r| &r.from == user)
            .collect())
    }

    /// Accepts `user`'s message requests on the server, and here the conversations they name:
    /// a direct chat becomes accepted (as replying in it would make it), an invitation joined.
    pub async fn accept_request(&mut self, user: &UserName) -> Result<RequestAnswer, ClientError> {
        let requests = self.requests_from(user).await?;
        self.api.request_answer(user, true).await?;
        let mut accepted = Vec::new();
        for r in &requests {
            if self.accept_locally(&r.group_id)? {
                accepted.push(r.group_id.clone());
            }
        }
        // A direct chat the peer opened and the server no longer lists (answered from another
        // device, say) is accepted too: the user just said yes to this peer.
        if let Some(g) = self.engine.pending_direct(user)? {
            if self.accept_locally(&g)? {
                accepted.push(g);
            }
        }
        Ok(RequestAnswer {
            requests,
            accepted,
            left: Vec::new(),
        })
    }

    /// Accepts a conversation here if it is known and live; whether anything changed.
    fn accept_locally(&mut self, g: &GroupId) -> Result<bool, ClientError> {
        match self.engine.accept(g) {
            Ok(changed) => Ok(changed),
            Err(EngineError::UnknownConversation(_) | EngineError::NotActive(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Declines `user`'s message requests on the server; a group whose request is declined is
    /// left (this device's Remove proposal, as `haven leave` sends it).
    pub async fn decline_request(&mut self, user: &UserName) -> Result<RequestAnswer, ClientError> {
        let requests = self.requests_from(user).await?;
        self.api.request_answer(user, false).await?;
        let mut left = Vec::new();
        for r in &requests {
            if r.kind != RequestKind::Group {
                continue;
            }
            let live = self
                .engine
                .conversation(&r.group_id)?
                .is_some_and(|c| c.state.is_live());
            if live {
                self.leave_in(&r.group_id).await?;
                left.push(r.group_id.clone());
            }
        }
        Ok(RequestAnswer {
            requests,
            accepted: Vec::new(),
            left,
        })
    }

    /// [`Client::accept`], and, if the server holds a message request for that conversation,
    /// accepts it there too (`haven accept` and `haven requests accept` are one decision).
    pub async fn accept_conversation(
        &mut self,
        conversation: &str,
    ) -> Result<(GroupId, bool), ClientError> {
        let (g, mut changed) = self.accept(conversation)?;
        let pending = self
            .message_requests()
            .await?
            .requests
            .into_iter()
            .find(|r| r.group_id == g);
        if let Some(r) = pending {
            self.api.request_answer(&r.from, true).await?;
            changed = true;
        }
        Ok((g, changed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_view_marks_requests_and_restricted_senders_and_knows_blocks() {
        let u = |s: &str| UserName::new(s).unwrap();
        let g = |b: u8| GroupId::from_bytes(&[b; 16]).unwrap();
        let view = SafetyView::new(
            vec![MessageRequest {
                from: u("tess"),
                group_id: g(1),
                kind: RequestKind::Direct,
                created_at: 1,
                members: vec![u("tess")],
            }],
            ContactList {
                blocked: vec![u("ben")],
                restricted: vec![u("cal")],
                ..ContactList::default()
            },
        );
        assert!(view.is_request_message(&g(1), &u("tess")));
        assert!(
            view.is_request_message(&g(1), &u("adam")),
            "the conversation is a request"
        );
        assert!(
            view.is_request_message(&g(2), &u("cal")),
            "restricted anywhere"
        );
        assert!(!view.is_request_message(&g(2), &u("tess")));
        assert!(view.is_blocked(&u("ben")) && !view.is_blocked(&u("cal")));
        assert_eq!(
            view.request_for(&g(1)).map(|r| r.from.as_str()),
            Some("tess")
        );
        assert!(view.request_for(&g(2)).is_none());
        assert_eq!(
            SafetyView::default(),
            SafetyView::new(vec![], ContactList::default())
        );
    }

    #[test]
    fn birth_dates() {
        for ok in ["1990-01-01", "2012-05-01", "2000-02-29", "2024-12-31"] {
            assert!(check_birth_date(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1990",
            "1990-1-01",
            "1990-13-01",
            "1990-02-30",
            "1900-02-29",
            "19900101",
            "1990-01-01-",
            "abcd-01-01",
            "1990-00-10",
            "1990-01-00",
            "+990-01-01",
        ] {
            assert!(check_birth_date(bad).is_err(), "{bad}");
        }
    }
}
