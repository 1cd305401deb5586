//! Reporting, appeals and the moderator's and admin's calls (`haven_proto::moderation` has the
//! endpoint table).
//!
//! A report discloses what this device stored when it accepted the message: the content bytes,
//! the franking salt, the commitment, and the server's tag with what it binds (sender device,
//! conversation, receive time). The server checks all of it again ([`EvidenceBundle`]), so the
//! client only picks what to disclose: the reported message (never one of ours) and up to
//! [`MAX_CONTEXT`] earlier messages of the same conversation that carry a server tag — ours
//! included, since the send reply carries the tag (profiles from before that have untagged
//! outgoing rows, which are left out).
//!
//! An account that is suspended cannot log in, so [`Client::appeal`] falls back to a device
//! proof ([`m::PROOF_APPEAL`], subject: the case id) when the login is refused for that reason.

use haven_proto::api::{self, ErrorCode};
use haven_proto::moderation::{
    self as m, EvidenceBundle, FrankedMessage, ReportFiled, ReportReason, EVIDENCE_VERSION,
    MAX_CONTEXT, MAX_NOTE,
};
use haven_proto::UserName;

use super::{usage, Client, ClientError, MessageScope};
use crate::content::MessageId;
use crate::store::FrankedRow;

/// Checks a case or action id's shape before it goes into a URL (the server checks it too).
fn check_id(what: &str, id: &str) -> Result<(), ClientError> {
    if id.len() == 24 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(usage(format!("{id:?} is not a {what} id (24 hex digits)")))
    }
}

fn check_note(what: &str, note: Option<&str>, required: bool) -> Result<(), ClientError> {
    match note {
        None | Some("") if required => Err(usage(format!("{what} is empty"))),
        Some(n) if n.len() > MAX_NOTE => {
            Err(usage(format!("{what} is longer than {MAX_NOTE} bytes")))
        }
        _ => Ok(()),
    }
}

/// The note to send: an empty one is no note.
fn note_of(note: Option<&str>) -> Option<String> {
    note.filter(|n| !n.is_empty()).map(str::to_owned)
}

fn franked(row: FrankedRow, server_tag: Vec<u8>) -> FrankedMessage {
    FrankedMessage {
        group_id: row.group,
        sender: api::Sender {
            user: row.from,
            device_id: row.from_device,
        },
        received_at: row.received_at,
        content: row.frank.content,
        salt: row.frank.salt,
        commitment: row.frank.commitment,
        server_tag,
    }
}

impl Client {
    /// The evidence bundle reporting the stored message `message_id` (looked up within `scope`
    /// as [`Client::get_file`] does; an id several messages have is refused, listing them),
    /// with up to `context` earlier messages of its conversation, oldest first (only those with
    /// a server tag). Refuses our own message, a message without a server tag and more than
    /// [`MAX_CONTEXT`] context messages. Sends nothing.
    pub fn report_bundle(
        &self,
        message_id: &str,
        scope: &MessageScope,
        context: usize,
    ) -> Result<EvidenceBundle, ClientError> {
        if context > MAX_CONTEXT {
            return Err(usage(format!(
                "a report carries at most {MAX_CONTEXT} context messages, not {context}"
            )));
        }
        let id = MessageId::new(message_id).map_err(|e| usage(format!("bad message id: {e}")))?;
        let msg = self.find_message(&id, scope)?;
        if &msg.from == self.user() {
            return Err(usage(format!(
                "message {id} is your own; you can report messages you received"
            )));
        }
        // `context` <= MAX_CONTEXT (10), so it fits.
        let n = u32::try_from(context).unwrap_or(0);
        let (row, before) = self
            .engine
            .report_material(&msg.group, &msg.from, &id, n)?
            .ok_or_else(|| usage(format!("no message {id}")))?;
        let Some(tag) = row.frank.server_tag.clone() else {
            return Err(usage(format!(
                "message {id} has no server tag, so the server could not verify it; it cannot be reported"
            )));
        };
        let context = before
            .into_iter()
            .filter_map(|r| {
                let t = r.frank.server_tag.clone()?;
                Some(franked(r, t))
            })
            .collect();
        Ok(EvidenceBundle {
            v: EVIDENCE_VERSION,
            reported: franked(row, tag),
            context,
        })
    }

    /// Files a report with `bundle` as evidence (from [`Client::report_bundle`], or a file).
    /// The server verifies every message and refuses the whole report if one fails.
    pub async fn report(
        &mut self,
        bundle: EvidenceBundle,
        reason: ReportReason,
        note: Option<&str>,
    ) -> Result<ReportFiled, ClientError> {
        check_note("the note", note, false)?;
        if bundle.context.len() > MAX_CONTEXT {
            return Err(usage(format!(
                "a report carries at most {MAX_CONTEXT} context messages, not {}",
                bundle.context.len()
            )));
        }
        Ok(self
            .api
            .report(&m::ReportRequest {
                reason,
                note: note_of(note),
                evidence: bundle,
            })
            .await?)
    }

    /// Reports an account, with no message evidence.
    pub async fn report_user(
        &mut self,
        user: &UserName,
        reason: ReportReason,
        note: Option<&str>,
    ) -> Result<ReportFiled, ClientError> {
        check_note("the note", note, false)?;
        if user == self.user() {
            return Err(usage("you cannot report your own account"));
        }
        Ok(self
            .api
            .report_user(&m::UserReportRequest {
                user: user.clone(),
                reason,
                note: note_of(note),
            })
            .await?)
    }

    /// Appeals this account's latest appealable action on `case` (once per action). With a
    /// session if this device can log in; when the login is refused because the account is
    /// suspended, with a proof by this device's key instead. Works on a client from
    /// [`Client::open_without_login`].
    pub async fn appeal(&mut self, case: &str, text: &str) -> Result<(), ClientError> {
        check_id("case", case)?;
        check_note("the appeal", Some(text), true)?;
        let mut req = m::AppealRequest {
            case: case.to_owned(),
            text: text.to_owned(),
            device_id: None,
            proof: None,
        };
        if self.api.has_token() {
            match self.api.appeal(&req).await {
                Ok(_) => return Ok(()),
                // Revoked (a suspension revokes every session): log in again, or prove.
                Err(e) if e.code() == Some(ErrorCode::Unauthorized) => {
                    self.engine.clear_session_token()?;
                    self.api.set_token(None);
                }
                Err(e) => return Err(e.into()),
            }
        }
        match self.login().await {
            Ok(()) => {
                self.api.appeal(&req).await?;
                Ok(())
            }
            Err(ClientError::Suspended(_)) => {
                req.proof = Some(self.device_proof(m::PROOF_APPEAL, case.as_bytes()).await?);
                req.device_id = Some(self.device_id().clone());
                self.api.appeal(&req).await?;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// The open cases, most urgent first (moderators).
    pub async fn mod_queue(&mut self, limit: u32) -> Result<m::CaseQueue, ClientError> {
        Ok(self.api.mod_queue(limit).await?)
    }

    /// A case with its verified evidence and the reported account's metadata (moderators).
    pub async fn mod_case(&mut self, case: &str) -> Result<m::CaseDetail, ClientError> {
        check_id("case", case)?;
        Ok(self.api.mod_case(case).await?)
    }

    /// An evidence file's bytes (moderators).
    pub async fn mod_evidence_file(
        &mut self,
        case: &str,
        file: &str,
    ) -> Result<Vec<u8>, ClientError> {
        check_id("case", case)?;
        if file.is_empty()
            || file.len() > 128
            || !file
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(usage(format!("{file:?} is not an evidence file id")));
        }
        Ok(self.api.mod_evidence_file(case, file).await?)
    }

    /// Takes an action on a case (moderators).
    pub async fn mod_action(
        &mut self,
        case: &str,
        req: &m::ActionRequest,
    ) -> Result<m::ActionRecord, ClientError> {
        check_id("case", case)?;
        check_note("the statement of reasons", Some(&req.reason), true)?;
        if req.action == m::ModAction::Escalate {
            return Err(usage("escalate with `haven mod escalate`"));
        }
        Ok(self.api.mod_action(case, req).await?)
    }

    /// Escalates a case to the clearing house: the server builds the report documents; nothing
    /// is sent anywhere (moderators).
    pub async fn mod_escalate(
        &mut self,
        case: &str,
        req: &m::EscalateRequest,
    ) -> Result<m::Escalation, ClientError> {
        check_id("case", case)?;
        check_note("the statement", Some(&req.reason), true)?;
        Ok(self.api.mod_escalate(case, req).await?)
    }

    /// Open appeals, oldest first (moderators; those of one's own actions are left out).
    pub async fn mod_appeals(&mut self) -> Result<m::AppealQueue, ClientError> {
        Ok(self.api.mod_appeals().await?)
    }

    /// Decides the appeal of action `action` (a moderator other than the one who acted).
    pub async fn mod_decide_appeal(
        &mut self,
        action: &str,
        req: &m::AppealDecision,
    ) -> Result<m::ActionRecord, ClientError> {
        check_id("action", action)?;
        check_note("the statement of reasons", Some(&req.reason), true)?;
        Ok(self.api.mod_decide_appeal(action, req).await?)
    }

    /// A page of the audit log (admins).
    pub async fn admin_audit(
        &mut self,
        after: i64,
        limit: u32,
    ) -> Result<m::AuditLog, ClientError> {
        Ok(self.api.admin_audit(after, limit).await?)
    }
}
