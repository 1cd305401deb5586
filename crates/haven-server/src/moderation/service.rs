//! The moderation services (see the module docs of [`crate::moderation`] for the data flow).

use haven_content::attachment;
use haven_content::evidence::{open_bundle, OpenedMessage};
use haven_content::{Body, Content};
use haven_frank::Binding;
use haven_proto::api::{self, EntryKind};
use haven_proto::moderation::{
    self as m, ActionRecord, AppealDecision, AppealOutcome, AppealRecord, AttachmentEvidence,
    CaseDetail, CaseQueue, CaseSource, CaseState, CaseSummary, EvidenceFile, EvidenceMessage,
    ModAction, Notice, NoticeKind, ReportFiled, ReportReason, MAX_NOTE,
};
use haven_proto::{BlobId, DeviceId, UserName};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::store::{AccountEvent, ActionRow, AuditLine, CaseRow, NewAction, NewCase, Role};
use super::vault::EvidenceKey;
use super::{EVENT_RETENTION_MS, PRESERVE_MS};
use crate::service::{now_ms, random_hex, Authed, Service, ServiceError, ServiceResult};
use crate::store::{Millis, NewMessage, StoreError};

const DAY_MS: Millis = 24 * 3600 * 1000;
/// Most evidence files one report may make the server fetch and decrypt.
const MAX_FILES: usize = 4;
/// Longest restriction or suspension, in days.
const MAX_DAYS: u32 = 3650;
/// Most cases one queue page lists.
const MAX_QUEUE_PAGE: u32 = 500;

/// Review order: 0 first.
pub fn priority(reason: ReportReason, reporter_is_minor: bool) -> u8 {
    let base = match reason {
        ReportReason::ChildSexualExploitation => 0,
        ReportReason::Grooming | ReportReason::Sextortion => 1,
        ReportReason::Violence => 2,
        ReportReason::Harassment => 3,
        ReportReason::Other => 4,
        ReportReason::Spam => 5,
    };
    if reporter_is_minor {
        base.min(1)
    } else {
        base
    }
}

fn check_text(what: &'static str, t: &str, required: bool) -> ServiceResult<()> {
    if required && t.trim().is_empty() {
        return Err(ServiceError::BadRequest(format!(
            "{what} must not be empty"
        )));
    }
    if t.len() > MAX_NOTE {
        return Err(ServiceError::BadRequest(format!(
            "{what} is longer than {MAX_NOTE} bytes"
        )));
    }
    Ok(())
}

fn check_case_id(id: &str) -> ServiceResult<()> {
    if id.len() == 24 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(ServiceError::BadRequest(
            "a case or action id is 24 hex digits".into(),
        ))
    }
}

fn ms(t: Millis) -> u64 {
    u64::try_from(t).unwrap_or(0)
}

fn summary(c: &CaseRow) -> CaseSummary {
    CaseSummary {
        case: c.id.clone(),
        source: c.source,
        reason: c.reason,
        priority: c.priority,
        state: c.state,
        reported_user: c.reported_user.clone(),
        reporter: c.reporter.clone(),
        reporter_is_minor: c.reporter_is_minor,
        created_at: ms(c.created_at),
        held_until: c.held_until.map(ms),
    }
}

fn record(a: &ActionRow) -> ActionRecord {
    ActionRecord {
        id: a.id.clone(),
        case: a.case.clone(),
        user: a.user.clone(),
        action: a.action,
        reason: a.reason.clone(),
        moderator: a.moderator.clone(),
        created_at: ms(a.created_at),
        until: a.until.map(ms),
        appeal: a.appeal.as_ref().map(|(text, at)| AppealRecord {
            text: text.clone(),
            filed_at: ms(*at),
            decided_by: a.decision.as_ref().map(|d| d.0.clone()),
            outcome: a.decision.as_ref().map(|d| d.1),
            decision_reason: a.decision.as_ref().map(|d| d.2.clone()),
            decided_at: a.decision.as_ref().map(|d| ms(d.3)),
        }),
    }
}

/// A message whose checks all passed, ready to be sealed.
struct Verified {
    message: EvidenceMessage,
    file: Option<(String, Vec<u8>)>,
}

impl Service {
    fn evidence_key(&self) -> ServiceResult<&EvidenceKey> {
        self.evidence_key
            .as_ref()
            .ok_or_else(|| ServiceError::Internal("no evidence key configured".into()))
    }

    pub(crate) fn notice(&self, n: &Notice, now: Millis) -> ServiceResult<NewMessage> {
        let payload =
            serde_json::to_vec(n).map_err(|e| ServiceError::Internal(format!("notice: {e}")))?;
        Ok(NewMessage {
            kind: EntryKind::Notice,
            group_id: None,
            sender: None,
            payload,
            frank: None,
            received_at: now,
            expires_at: self.expires_at(now),
        })
    }

    /// The notice that tells a reporter how their report was decided: the category only.
    pub(crate) fn outcome_notice(
        &self,
        case: &str,
        outcome: &str,
        now: Millis,
    ) -> ServiceResult<NewMessage> {
        self.notice(
            &Notice {
                kind: NoticeKind::ReportOutcome,
                case: case.to_owned(),
                action: None,
                action_id: None,
                reason: None,
                until: None,
                outcome: Some(outcome.to_owned()),
                about: None,
                text: None,
                at: ms(now),
            },
            now,
        )
    }

    async fn report_limit(&self, who: &Authed) -> ServiceResult<()> {
        let rule = crate::quota::RateRule::new(
            self.limits.report_burst,
            self.limits.report_refill_per_sec,
        );
        if self
            .take(crate::quota::Bucket::Report(&who.user), rule)
            .await?
        {
            Ok(())
        } else {
            Err(ServiceError::TooManyRequests(
                "too many reports from this account; try again later",
            ))
        }
    }

    /// Checks one opened message against the server's secrets and records: the tag, the
    /// sender device's account, the reporter's membership then. Fetches and checks its
    /// attachment, if any.
    async fn verify_message(
        &self,
        who: &Authed,
        seq: u32,
        m: &OpenedMessage,
        file_no: &mut usize,
    ) -> ServiceResult<Verified> {
        let f = &m.franked;
        let which = &m.which;
        let refuse = |why: &str| ServiceError::BadRequest(format!("{which}: {why}"));
        let received_at =
            i64::try_from(f.received_at).map_err(|_| refuse("receive time out of range"))?;
        self.frank_keys
            .verify(
                &Binding {
                    commitment: &m.commitment,
                    sender_device: f.sender.device_id.as_str(),
                    group_id: f.group_id.as_bytes(),
                    received_at_ms: f.received_at,
                },
                &f.server_tag,
            )
            .map_err(|_| {
                refuse("the server's franking tag does not verify: this server did not deliver this message from this sender, in this conversation, at this time")
            })?;
        match self.store.device_owner(&f.sender.device_id).await? {
            Some(u) if u == f.sender.user => {}
            _ => {
                return Err(refuse(
                    "the sender device does not belong to the named sender",
                ))
            }
        }
        if !self
            .store
            .was_member(
                &f.group_id,
                &who.user,
                received_at,
                i64::try_from(self.limits.membership_slack.as_millis()).unwrap_or(i64::MAX),
            )
            .await?
        {
            return Err(ServiceError::Forbidden(
                "the reporter was not a member of this conversation when a message of the report was received",
            ));
        }
        let Content {
            id, sent_at, body, ..
        } = &m.content;
        let mut message = EvidenceMessage {
            seq,
            role: if seq == 0 { "reported" } else { "context" }.into(),
            verified: true,
            sender: f.sender.clone(),
            received_at: f.received_at,
            sent_at: *sent_at,
            message_id: id.as_str().to_owned(),
            text: None,
            attachment: None,
            control: None,
        };
        let mut file = None;
        match body {
            Body::Text(t) => message.text = Some(t.clone()),
            Body::GroupName(n) => message.control = Some(format!("renamed the group to {n:?}")),
            Body::Attachment(a) => {
                if *file_no >= MAX_FILES {
                    return Err(ServiceError::Limit(format!(
                        "a report may carry at most {MAX_FILES} attachments"
                    )));
                }
                match self.fetch_blob(who, &a.blob_id).await? {
                    None => {
                        message.attachment = Some(AttachmentEvidence::Unavailable {
                            name: a.name.clone(),
                        })
                    }
                    Some(ct) => {
                        if BlobId::from_digest(attachment::sha256(&ct)) != a.blob_id {
                            return Err(refuse(
                                "the stored file's hash is not the one the message names",
                            ));
                        }
                        let key = a.key.clone();
                        let sha = a.sha256;
                        let pt =
                            crate::service::blocking(move || attachment::open(&ct, &key, &sha))
                                .await?
                                .map_err(|_| {
                                    refuse(
                                "the file does not decrypt to the content the message commits to",
                            )
                                })?;
                        let file_id = format!("f{}", *file_no);
                        *file_no += 1;
                        let (md5, pdq) = crate::service::blocking({
                            let pt = pt.clone();
                            move || file_hashes(&pt)
                        })
                        .await?;
                        message.attachment = Some(AttachmentEvidence::Kept(EvidenceFile {
                            file_id: file_id.clone(),
                            name: a.name.clone(),
                            size: pt.len() as u64,
                            sha256: hex::encode(a.sha256),
                            md5,
                            pdq_quality: pdq.as_ref().map(|p| p.1),
                            pdq: pdq.map(|p| p.0),
                        }));
                        file = Some((file_id, pt));
                    }
                }
            }
        }
        Ok(Verified { message, file })
    }

    /// The stored ciphertext of blob `id`, or `None` once it has expired (read through
    /// [`Service::get_blob`], so only blobs with a live record are read).
    pub(crate) async fn fetch_blob(
        &self,
        who: &Authed,
        id: &BlobId,
    ) -> ServiceResult<Option<Vec<u8>>> {
        let (size, mut reader) = match self.get_blob(who, id).await {
            Ok(found) => found,
            Err(ServiceError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        if size > self.limits.max_blob as u64 {
            return Err(ServiceError::Limit("stored file too large".into()));
        }
        let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        reader
            .read_to_end(&mut buf)
            .await
            .map_err(|e| ServiceError::Internal(format!("reading blob: {e}")))?;
        Ok(Some(buf))
    }

    /// Files a verified report of a message (see the module docs). Refused bundles write
    /// nothing; the same reporter reporting the same message again gets the same case.
    pub async fn file_report(
        &self,
        who: &Authed,
        req: m::ReportRequest,
    ) -> ServiceResult<ReportFiled> {
        self.report_limit(who).await?;
        if let Some(n) = &req.note {
            check_text("the note", n, false)?;
        }
        let key = self.evidence_key()?.clone();
        let opened =
            open_bundle(req.evidence).map_err(|e| ServiceError::BadRequest(e.to_string()))?;
        let reported = &opened.reported.franked;
        if reported.sender.user == who.user {
            return Err(ServiceError::BadRequest(
                "the reported message is your own".into(),
            ));
        }
        let mut verified = Vec::new();
        let mut files = 0usize;
        for (seq, msg) in opened.messages().enumerate() {
            let seq = u32::try_from(seq).unwrap_or(u32::MAX);
            verified.push(self.verify_message(who, seq, msg, &mut files).await?);
        }
        let dedupe = {
            let mut h = Sha256::new();
            h.update(b"haven/report-dedupe/v1\0");
            h.update(who.user.as_str().as_bytes());
            h.update([0]);
            h.update(&reported.server_tag);
            h.finalize().to_vec()
        };
        let id = random_hex::<12>();
        let mut items = Vec::new();
        for v in &verified {
            let json = serde_json::to_vec(&v.message)
                .map_err(|e| ServiceError::Internal(format!("evidence: {e}")))?;
            let item = format!("m{:02}", v.message.seq);
            items.push((item.clone(), key.seal(&id, &item, &json)));
            if let Some((file_id, bytes)) = &v.file {
                items.push((file_id.clone(), key.seal(&id, file_id, bytes)));
            }
        }
        let now = now_ms();
        let reporter_is_minor = false;
        let case = NewCase {
            id: id.clone(),
            source: CaseSource::MessageReport,
            reason: req.reason,
            priority: priority(req.reason, reporter_is_minor),
            reporter: Some(who.user.clone()),
            reporter_is_minor,
            reported_user: reported.sender.user.clone(),
            group_id: Some(reported.group_id.clone()),
            dedupe_key: Some(dedupe),
            note_sealed: req
                .note
                .as_ref()
                .map(|n| key.seal(&id, "note", n.as_bytes())),
            evidence: items,
            created_at: now,
        };
        let audit = AuditLine {
            actor: who.user.as_str().into(),
            action: "report.file".into(),
            case: Some(id.clone()),
            detail: format!(
                "reason {}; {} verified messages; {} files",
                req.reason.as_str(),
                verified.len(),
                files
            ),
            at: now,
        };
        let (case_id, new) = self.store.file_case(&case, &audit).await?;
        tracing::info!(case = %case_id, reason = req.reason.as_str(), "report filed");
        if new {
            self.note_report(&who.user, &case.reported_user).await;
        }
        Ok(ReportFiled {
            case: case_id,
            verified_messages: u32::try_from(verified.len()).unwrap_or(u32::MAX),
            files: u32::try_from(files).unwrap_or(u32::MAX),
        })
    }

    /// Files a report about an account, with no message evidence.
    pub async fn file_user_report(
        &self,
        who: &Authed,
        req: m::UserReportRequest,
    ) -> ServiceResult<ReportFiled> {
        self.report_limit(who).await?;
        if req.user == who.user {
            return Err(ServiceError::BadRequest(
                "you cannot report yourself".into(),
            ));
        }
        if let Some(n) = &req.note {
            check_text("the note", n, false)?;
        }
        let key = self.evidence_key()?.clone();
        let id = random_hex::<12>();
        let now = now_ms();
        let case = NewCase {
            id: id.clone(),
            source: CaseSource::AccountReport,
            reason: req.reason,
            priority: priority(req.reason, false),
            reporter: Some(who.user.clone()),
            reporter_is_minor: false,
            reported_user: req.user.clone(),
            group_id: None,
            dedupe_key: None,
            note_sealed: req
                .note
                .as_ref()
                .map(|n| key.seal(&id, "note", n.as_bytes())),
            evidence: Vec::new(),
            created_at: now,
        };
        let audit = AuditLine {
            actor: who.user.as_str().into(),
            action: "report.file".into(),
            case: Some(id.clone()),
            detail: format!("account report; reason {}", req.reason.as_str()),
            at: now,
        };
        let (case_id, _) = self.store.file_case(&case, &audit).await?;
        self.note_report(&who.user, &req.user).await;
        Ok(ReportFiled {
            case: case_id,
            verified_messages: 0,
            files: 0,
        })
    }

    /// `Forbidden` unless the caller holds `role`.
    pub(crate) async fn require_role(&self, who: &Authed, role: Role) -> ServiceResult<()> {
        if self.store.roles(&who.user).await?.contains(&role) {
            Ok(())
        } else {
            Err(ServiceError::Forbidden(match role {
                Role::Moderator => "this needs the moderator role",
                Role::Admin => "this needs the admin role",
            }))
        }
    }

    /// The case, for a moderator who is not part of it.
    pub(crate) async fn case_for(&self, who: &Authed, case: &str) -> ServiceResult<CaseRow> {
        self.require_role(who, Role::Moderator).await?;
        check_case_id(case)?;
        let c = self
            .store
            .case(case)
            .await?
            .ok_or(ServiceError::NotFound("case"))?;
        if c.reported_user == who.user || c.reporter.as_ref() == Some(&who.user) {
            return Err(ServiceError::Forbidden(
                "you cannot handle a case you reported or are reported in",
            ));
        }
        Ok(c)
    }

    fn audit_line(
        &self,
        who: &Authed,
        action: &str,
        case: Option<&str>,
        detail: String,
    ) -> AuditLine {
        AuditLine {
            actor: who.user.as_str().into(),
            action: action.into(),
            case: case.map(str::to_owned),
            detail,
            at: now_ms(),
        }
    }

    /// The open cases, most urgent first.
    pub async fn mod_queue(&self, who: &Authed, limit: u32) -> ServiceResult<CaseQueue> {
        self.require_role(who, Role::Moderator).await?;
        let (rows, open) = self.store.queue(limit.clamp(1, MAX_QUEUE_PAGE)).await?;
        self.store
            .append_audit(&self.audit_line(
                who,
                "queue.view",
                None,
                format!("{} cases listed", rows.len()),
            ))
            .await?;
        Ok(CaseQueue {
            cases: rows
                .iter()
                .filter(|c| c.reported_user != who.user && c.reporter.as_ref() != Some(&who.user))
                .map(summary)
                .collect(),
            open,
        })
    }

    /// Opens a case: its verified evidence, the reported account's metadata and history. The
    /// view is audited before anything is returned.
    pub async fn mod_case(&self, who: &Authed, case: &str) -> ServiceResult<CaseDetail> {
        let c = self.case_for(who, case).await?;
        self.store
            .append_audit(&self.audit_line(who, "case.view", Some(case), "opened the case".into()))
            .await?;
        self.case_detail(&c).await
    }

    pub(crate) async fn case_detail(&self, c: &CaseRow) -> ServiceResult<CaseDetail> {
        let key = self.evidence_key()?;
        let mut evidence = Vec::new();
        for (item, sealed) in self.store.evidence(&c.id).await? {
            if !item.starts_with('m') {
                continue;
            }
            let json = key
                .open(&c.id, &item, &sealed)
                .map_err(|e| ServiceError::Internal(format!("case {} item {item}: {e}", c.id)))?;
            let msg: EvidenceMessage = serde_json::from_slice(&json)
                .map_err(|e| ServiceError::Internal(format!("case {} item {item}: {e}", c.id)))?;
            evidence.push(msg);
        }
        evidence.sort_by_key(|e| e.seq);
        let note = match &c.note_sealed {
            Some(s) => Some(
                String::from_utf8_lossy(
                    &key.open(&c.id, "note", s)
                        .map_err(|e| ServiceError::Internal(format!("case {} note: {e}", c.id)))?,
                )
                .into_owned(),
            ),
            None => None,
        };
        let account = self.account_meta(&c.reported_user, Some(&c.id)).await?;
        let actions = self.store.case_actions(&c.id).await?;
        Ok(CaseDetail {
            summary: summary(c),
            note,
            group_id: c.group_id.clone(),
            evidence,
            evidence_purged: c.evidence_purged,
            account,
            actions: actions.iter().map(record).collect(),
        })
    }

    async fn account_meta(
        &self,
        user: &UserName,
        except: Option<&str>,
    ) -> ServiceResult<m::AccountMeta> {
        let a = self
            .store
            .account(user)
            .await?
            .ok_or(ServiceError::NotFound("user"))?;
        let now = now_ms();
        let cases = self.store.cases_about(user, 50).await?;
        let actions = self.store.user_actions(user, 50).await?;
        let banned = actions
            .iter()
            .any(|x| x.action == ModAction::Ban && x.lifted_at.is_none());
        Ok(m::AccountMeta {
            user: user.clone(),
            created_at: ms(a.created_at),
            devices: a
                .devices
                .iter()
                .map(|(id, name, at, rev)| m::DeviceMeta {
                    device_id: id.as_str().into(),
                    name: name.clone(),
                    created_at: ms(*at),
                    revoked_at: rev.map(ms),
                })
                .collect(),
            status: m::AccountStatus {
                suspended_until: a.suspended_until.filter(|t| *t > now).map(ms),
                restricted_until: a.restricted_until.filter(|t| *t > now).map(ms),
                banned,
            },
            cases: cases
                .iter()
                .filter(|c| Some(c.id.as_str()) != except)
                .map(summary)
                .collect(),
            actions: actions.iter().map(record).collect(),
        })
    }

    /// An evidence file's bytes, for a moderator (audited).
    pub async fn mod_evidence_file(
        &self,
        who: &Authed,
        case: &str,
        file: &str,
    ) -> ServiceResult<Vec<u8>> {
        let c = self.case_for(who, case).await?;
        if !(file.len() >= 2
            && file.len() <= 4
            && file.starts_with('f')
            && file[1..].bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(ServiceError::BadRequest(
                "an evidence file id is f0, f1, …".into(),
            ));
        }
        let sealed = self
            .store
            .evidence_item(&c.id, file)
            .await?
            .ok_or(ServiceError::NotFound("evidence file"))?;
        self.store
            .append_audit(&self.audit_line(
                who,
                "evidence.view",
                Some(case),
                format!("file {file}"),
            ))
            .await?;
        let pt = self
            .evidence_key()?
            .open(&c.id, file, &sealed)
            .map_err(|e| ServiceError::Internal(format!("case {} {file}: {e}", c.id)))?;
        Ok(pt.to_vec())
    }

    /// Takes an action on a case (not `escalate`: [`Service::mod_escalate`]).
    pub async fn mod_action(
        &self,
        who: &Authed,
        case: &str,
        req: m::ActionRequest,
    ) -> ServiceResult<ActionRecord> {
        let c = self.case_for(who, case).await?;
        check_text("the statement of reasons", &req.reason, true)?;
        let now = now_ms();
        let days = match (req.action, req.days) {
            (ModAction::Restrict, None) => {
                return Err(ServiceError::BadRequest("restrict needs --days N".into()))
            }
            (_, Some(0)) => return Err(ServiceError::BadRequest("days must be at least 1".into())),
            (_, Some(d)) if d > MAX_DAYS => {
                return Err(ServiceError::BadRequest(format!(
                    "days must be at most {MAX_DAYS}"
                )))
            }
            (ModAction::Restrict | ModAction::Suspend, d) => d,
            (_, Some(_)) => {
                return Err(ServiceError::BadRequest(format!(
                    "--days applies to restrict and suspend, not {}",
                    req.action.as_str()
                )))
            }
            (_, None) => None,
        };
        let until = match req.action {
            ModAction::Restrict | ModAction::Suspend => Some(match days {
                Some(d) => now.saturating_add(i64::from(d) * DAY_MS),
                None => Millis::MAX,
            }),
            ModAction::Ban => Some(Millis::MAX),
            ModAction::Preserve => Some(now.saturating_add(PRESERVE_MS)),
            ModAction::Dismiss | ModAction::Warn => None,
            ModAction::Escalate => {
                return Err(ServiceError::BadRequest(
                    "escalate goes through `haven mod escalate` (POST …/escalation)".into(),
                ))
            }
        };
        if c.state != CaseState::Open
            && req.action != ModAction::Preserve
            && !req.action.appealable()
        {
            return Err(ServiceError::Conflict(format!(
                "the case is already {}",
                c.state.as_str()
            )));
        }
        let case_state = match req.action {
            ModAction::Dismiss => Some(CaseState::Dismissed),
            ModAction::Preserve => None,
            _ if c.state == CaseState::Escalated => None,
            _ => Some(CaseState::Actioned),
        };
        let id = random_hex::<12>();
        let mut notices = Vec::new();
        if req.action.appealable() {
            notices.push((
                c.reported_user.clone(),
                self.notice(
                    &Notice {
                        kind: NoticeKind::Action,
                        case: c.id.clone(),
                        action: Some(req.action),
                        action_id: Some(id.clone()),
                        reason: Some(req.reason.clone()),
                        until: until.filter(|t| *t != Millis::MAX).map(ms),
                        outcome: None,
                        about: None,
                        text: None,
                        at: ms(now),
                    },
                    now,
                )?,
            ));
        }
        if let (Some(reporter), Some(state), CaseState::Open) = (&c.reporter, case_state, c.state) {
            let outcome = if state == CaseState::Dismissed {
                "no_violation"
            } else {
                "action_taken"
            };
            notices.push((reporter.clone(), self.outcome_notice(&c.id, outcome, now)?));
        }
        let action = NewAction {
            id,
            case: c.id.clone(),
            action: req.action,
            reason: req.reason.clone(),
            moderator: who.user.clone(),
            now,
            until,
            case_state,
            purge_after: (req.action == ModAction::Dismiss).then(|| {
                now.saturating_add(
                    i64::try_from(self.limits.evidence_retention.as_millis()).unwrap_or(i64::MAX),
                )
            }),
            notices,
            audit: self.audit_line(
                who,
                "case.action",
                Some(case),
                format!(
                    "{} against {}{}",
                    req.action.as_str(),
                    c.reported_user,
                    days.map(|d| format!(" for {d} days")).unwrap_or_default()
                ),
            ),
        };
        let row = self
            .store
            .take_action(&action, &self.store_limits())
            .await?;
        for (user, _) in &action.notices {
            self.wake_user(user).await;
        }
        tracing::info!(case = %c.id, action = req.action.as_str(), "moderation action");
        Ok(record(&row))
    }

    pub(crate) async fn wake_user(&self, user: &UserName) {
        if let Ok(Some(devices)) = self.store.user_devices(user).await {
            for d in devices {
                self.hub.wake(&d.device_id);
            }
        }
    }

    /// Files the caller's appeal of their latest appealable action on `case`. Without a
    /// session (a suspended account), the request carries a device proof instead.
    pub async fn appeal(
        &self,
        who: Option<&Authed>,
        req: m::AppealRequest,
    ) -> ServiceResult<api::Accepted> {
        check_case_id(&req.case)?;
        check_text("the appeal", &req.text, true)?;
        let user = match who {
            Some(w) => w.user.clone(),
            None => {
                let (Some(device), Some(proof)) = (&req.device_id, &req.proof) else {
                    return Err(ServiceError::Unauthorized(
                        "an appeal needs a session, or a device id and a device proof",
                    ));
                };
                self.check_device_proof(device, m::PROOF_APPEAL, req.case.as_bytes(), proof)
                    .await?;
                self.store
                    .device_owner(device)
                    .await?
                    .ok_or(ServiceError::Unauthorized("device no longer exists"))?
            }
        };
        let audit = AuditLine {
            actor: user.as_str().into(),
            action: "appeal.file".into(),
            case: Some(req.case.clone()),
            detail: "appeal filed".into(),
            at: now_ms(),
        };
        self.store
            .file_appeal(&req.case, &user, &req.text, now_ms(), &audit)
            .await
            .map_err(|e| match e {
                StoreError::NotFound(_) => {
                    ServiceError::NotFound("appealable action on this case for your account")
                }
                StoreError::AlreadyExists(_) => ServiceError::Conflict(
                    "this action was already appealed; each action can be appealed once".into(),
                ),
                e => e.into(),
            })?;
        Ok(api::Accepted { count: 1 })
    }

    /// Open appeals, oldest first (those of the caller's own actions left out: another
    /// moderator decides them).
    pub async fn mod_appeals(&self, who: &Authed) -> ServiceResult<m::AppealQueue> {
        self.require_role(who, Role::Moderator).await?;
        let rows = self.store.appeals(MAX_QUEUE_PAGE).await?;
        self.store
            .append_audit(&self.audit_line(
                who,
                "appeals.view",
                None,
                format!("{} appeals listed", rows.len()),
            ))
            .await?;
        Ok(m::AppealQueue {
            appeals: rows
                .iter()
                .filter(|a| a.moderator != who.user && a.user != who.user)
                .map(record)
                .collect(),
        })
    }

    /// Decides an appeal; the moderator who took the action cannot.
    pub async fn mod_decide_appeal(
        &self,
        who: &Authed,
        action: &str,
        req: AppealDecision,
    ) -> ServiceResult<ActionRecord> {
        self.require_role(who, Role::Moderator).await?;
        check_case_id(action)?;
        check_text("the statement of reasons", &req.reason, true)?;
        let a = self
            .store
            .action(action)
            .await?
            .ok_or(ServiceError::NotFound("action"))?;
        if a.moderator == who.user {
            return Err(ServiceError::Forbidden(
                "an appeal is decided by a moderator other than the one who took the action",
            ));
        }
        if a.user == who.user {
            return Err(ServiceError::Forbidden("you cannot decide your own appeal"));
        }
        let now = now_ms();
        let outcome = match req.outcome {
            AppealOutcome::Upheld => "upheld",
            AppealOutcome::Reversed => "reversed",
        };
        let notice = self.notice(
            &Notice {
                kind: NoticeKind::AppealDecision,
                case: a.case.clone(),
                action: Some(a.action),
                action_id: Some(a.id.clone()),
                reason: Some(req.reason.clone()),
                until: None,
                outcome: Some(outcome.into()),
                about: None,
                text: None,
                at: ms(now),
            },
            now,
        )?;
        let audit = self.audit_line(
            who,
            "appeal.decide",
            Some(&a.case),
            format!("appeal of {} {} {outcome}", a.action.as_str(), a.id),
        );
        let row = self
            .store
            .decide_appeal(
                action,
                &who.user,
                req.outcome,
                &req.reason,
                now,
                &notice,
                &audit,
                &self.store_limits(),
            )
            .await
            .map_err(|e| match e {
                StoreError::NotFound(_) => {
                    ServiceError::NotFound("undecided appeal of this action")
                }
                e => e.into(),
            })?;
        self.wake_user(&a.user).await;
        Ok(record(&row))
    }

    /// The audit log, for an admin.
    pub async fn admin_audit(
        &self,
        who: &Authed,
        after: i64,
        limit: u32,
    ) -> ServiceResult<m::AuditLog> {
        self.require_role(who, Role::Admin).await?;
        let rows = self.store.audit(after, limit.clamp(1, 1000)).await?;
        Ok(m::AuditLog {
            entries: rows.iter().map(audit_entry).collect(),
        })
    }

    /// Refuses a suspended or banned account (at login), saying until when, why and how to
    /// appeal.
    pub(crate) async fn suspension_gate(&self, user: &UserName) -> ServiceResult<()> {
        let now = now_ms();
        let Some((suspended_until, _)) = self.store.enforcement(user).await? else {
            return Ok(());
        };
        if suspended_until.is_none_or(|t| t <= now) {
            return Ok(());
        }
        let actions = self.store.user_actions(user, 50).await?;
        let why = actions.iter().find(|x| {
            matches!(x.action, ModAction::Suspend | ModAction::Ban)
                && x.lifted_at.is_none()
                && x.until.is_some_and(|t| t > now)
        });
        let until = match suspended_until {
            Some(Millis::MAX) | None => "further notice".to_owned(),
            Some(t) => format!("{t} (ms since the Unix epoch)"),
        };
        Err(ServiceError::Suspended(match why {
            Some(x) => format!(
                "this account is {} until {until} (case {}): {}. Appeal with `haven appeal {} TEXT`",
                if x.action == ModAction::Ban { "banned" } else { "suspended" },
                x.case,
                x.reason,
                x.case
            ),
            None => format!("this account is suspended until {until}"),
        }))
    }

    /// Refuses a restricted account starting conversations, adding members or sending contact
    /// requests.
    pub(crate) async fn restriction_gate(&self, user: &UserName) -> ServiceResult<()> {
        let now = now_ms();
        match self.store.enforcement(user).await? {
            Some((_, restricted)) if restricted.is_some_and(|t| t > now) => Err(ServiceError::Forbidden(
                "this account is restricted: it cannot start conversations, add members or send contact requests until the restriction ends",
            )),
            _ => Ok(()),
        }
    }

    /// Records a registration, login or link with the client's address (for the clearing
    /// house's ipCaptureEvent). A failure is logged, never refused: the event is evidence, not
    /// a gate.
    pub async fn record_account_event(
        &self,
        device: &DeviceId,
        event: &'static str,
        ip: std::net::IpAddr,
    ) {
        let Ok(Some(user)) = self.store.device_owner(device).await else {
            return;
        };
        let e = AccountEvent {
            device: device.clone(),
            event,
            ip: ip.to_canonical().to_string(),
            at: now_ms(),
        };
        if let Err(err) = self.store.record_event(&user, &e).await {
            tracing::warn!(error = %err, "could not record an account event");
        }
    }

    /// Deletes what moderation keeps past its retention (see [`crate::moderation`]).
    pub(crate) async fn purge_moderation(&self) -> ServiceResult<()> {
        let now = now_ms();
        let p = self
            .store
            .purge_moderation(now, now.saturating_sub(EVENT_RETENTION_MS))
            .await?;
        if p.cases > 0 {
            tracing::info!(
                cases = p.cases,
                "deleted the evidence of dismissed cases past retention"
            );
        }
        Ok(())
    }
}

/// The audit row as the API shows it.
pub fn audit_entry(r: &super::store::AuditRow) -> m::AuditEntry {
    m::AuditEntry {
        seq: r.seq,
        at: ms(r.line.at),
        actor: r.line.actor.clone(),
        action: r.line.action.clone(),
        case: r.line.case.clone(),
        detail: r.line.detail.clone(),
        hash: hex::encode(r.hash),
    }
}

/// MD5 (hex) and, for images, the PDQ hash (hex) and quality.
pub(crate) fn file_hashes(pt: &[u8]) -> (String, Option<(String, u8)>) {
    let md5 = haven_cybertip::client::md5_hex(pt);
    let pdq = haven_pdq::hash_bytes(pt, &haven_pdq::Limits::default())
        .ok()
        .map(|r| (r.hash.to_hex(), r.quality));
    (md5, pdq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_safety_and_minors_come_first() {
        use ReportReason::*;
        assert_eq!(priority(ChildSexualExploitation, false), 0);
        assert_eq!(priority(Grooming, false), 1);
        assert_eq!(priority(Sextortion, false), 1);
        assert_eq!(priority(Spam, false), 5);
        // A minor's report of anything is reviewed with the child-safety cases.
        assert_eq!(priority(Spam, true), 1);
        assert_eq!(priority(ChildSexualExploitation, true), 0);
        let mut order: Vec<_> = ReportReason::ALL
            .iter()
            .map(|r| (priority(*r, false), *r))
            .collect();
        order.sort();
        assert_eq!(order.first().map(|o| o.1), Some(ChildSexualExploitation));
        assert_eq!(order.last().map(|o| o.1), Some(Spam));
    }
}
