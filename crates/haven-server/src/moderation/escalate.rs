//! Escalation: a reviewed case becomes a report shaped as NCMEC's CyberTipline Reporting API
//! expects it (`haven-cybertip`; research notes §5.3). Nothing is sent: the moderator gets the
//! documents, and submission is a separate, explicit step with the operator's credentials.
//!
//! What goes in, all from what the server verified or retains:
//! - `incidentSummary`: the incident type (given, or derived from the case's reason), the
//!   reported message's server receive time (bound by the franking tag), annotations
//!   (`sextortion` for that reason);
//! - `internetDetails/chatImIncident`: the service, the conversation id and the verified
//!   transcript (reported message and context, each with sender and server time);
//! - `reporter`: the operator's reporting contact (`ServerLimits::report_contact`);
//! - `personOrUserReported`: the account name as `espIdentifier` and `screenName`, the
//!   registration / login / link addresses the server retains as `ipCaptureEvent`s and the
//!   account's device ids as `deviceId` entries;
//! - `victim`: the reporter, when the reporter is known to be a minor;
//! - `additionalInfo`: the moderator's statement and how the evidence was verified;
//! - per evidence file, file details: `fileViewedByEsp` true (escalation requires that the
//!   escalating moderator opened the case and viewed every file: a human looked at it, as
//!   *United States v. Wilson* (9th Cir. 2021) makes matter), MD5 and SHA-256 as
//!   `originalFileHash`, the PDQ hash and quality as `details` of type HASH. `reportId` is
//!   `pending` until submission assigns one; `fileId` is the case's file id until then.
//!
//! The reported account is not notified of an escalation.

use std::net::IpAddr;
use std::str::FromStr;

use haven_cybertip::report::{
    ChatImIncident, Detail, DetailType, DeviceIdEvent, Email, EventName, FileHash, FileInfo,
    FileRelevance, IncidentSummary, IncidentType, InternetDetails, IpCaptureEvent, Person,
    PersonOrUserReported, Report, ReportAnnotation, Reporter, Victim,
};
use haven_cybertip::{FileId, ReportId, Timestamp};
use haven_proto::moderation::{self as m, AttachmentEvidence, CaseState, ModAction, ReportReason};

use super::store::{AuditLine, NewAction};
use crate::service::{now_ms, random_hex, Authed, Service, ServiceError, ServiceResult};

/// The `reportId` written into file details before submission assigns the real one.
pub const PENDING_REPORT_ID: &str = "pending";

fn incident_for(reason: ReportReason) -> Option<IncidentType> {
    match reason {
        ReportReason::ChildSexualExploitation => Some(IncidentType::ChildPornography),
        ReportReason::Grooming | ReportReason::Sextortion => Some(IncidentType::OnlineEnticement),
        _ => None,
    }
}

fn ts(ms: u64) -> ServiceResult<Timestamp> {
    Timestamp::from_unix_millis(ms)
        .map_err(|e| ServiceError::Internal(format!("timestamp {ms}: {e}")))
}

impl Service {
    /// Escalates a reviewed case (see the module docs). The case moves to `escalated`.
    pub async fn mod_escalate(
        &self,
        who: &Authed,
        case: &str,
        req: m::EscalateRequest,
    ) -> ServiceResult<m::Escalation> {
        let c = self.case_for(who, case).await?;
        if req.reason.trim().is_empty() || req.reason.len() > m::MAX_NOTE {
            return Err(ServiceError::BadRequest(format!(
                "the statement must be 1 to {} bytes",
                m::MAX_NOTE
            )));
        }
        if c.state == CaseState::Escalated {
            return Err(ServiceError::Conflict(
                "the case was already escalated".into(),
            ));
        }
        if c.state == CaseState::Dismissed {
            return Err(ServiceError::Conflict(
                "the case was dismissed; a dismissed case is not escalated".into(),
            ));
        }
        let incident_type = match &req.incident_type {
            Some(t) => IncidentType::from_str(t).map_err(|e| ServiceError::BadRequest(e.to_string()))?,
            None => incident_for(c.reason).ok_or_else(|| {
                ServiceError::BadRequest(format!(
                    "a case reported as {} has no CyberTipline incident type; pass one (--incident-type)",
                    c.reason.as_str()
                ))
            })?,
        };
        let contact = self.limits.report_contact.clone().ok_or_else(|| {
            ServiceError::Conflict(
                "this server has no reporting contact configured (haven server --report-contact EMAIL)".into(),
            )
        })?;
        let detail = self.case_detail(&c).await?;
        let files: Vec<&m::EvidenceFile> = detail
            .evidence
            .iter()
            .filter_map(|e| match &e.attachment {
                Some(AttachmentEvidence::Kept(f)) => Some(f),
                _ => None,
            })
            .collect();
        // A human review first: this moderator opened the case and viewed every file.
        let views = self.store.views(&c.id, who.user.as_str()).await?;
        if !views.iter().any(|(a, _)| a == "case.view") {
            return Err(ServiceError::Conflict(
                "open the case (haven mod show) before escalating it".into(),
            ));
        }
        for f in &files {
            let seen = views
                .iter()
                .any(|(a, d)| a == "evidence.view" && d == &format!("file {}", f.file_id));
            if !seen {
                return Err(ServiceError::Conflict(format!(
                    "view evidence file {} (haven mod evidence) before escalating: the report says a person at the provider looked at it",
                    f.file_id
                )));
            }
        }

        let transcript = detail
            .evidence
            .iter()
            .map(|e| {
                let what = match (&e.text, &e.attachment, &e.control) {
                    (Some(t), _, _) => t.clone(),
                    (_, Some(AttachmentEvidence::Kept(f)), _) => format!(
                        "[file {} ({}), {} bytes, sha256 {}]",
                        f.name, f.file_id, f.size, f.sha256
                    ),
                    (_, Some(AttachmentEvidence::Unavailable { name }), _) => {
                        format!("[file {name}, expired on the server]")
                    }
                    (_, _, Some(c)) => format!("[{c}]"),
                    _ => String::new(),
                };
                format!(
                    "{} [{}] {}: {what}",
                    if e.seq == 0 { "REPORTED" } else { "context" },
                    ts(e.received_at)
                        .map(|t| t.to_iso8601())
                        .unwrap_or_default(),
                    e.sender.user
                )
            })
            .collect::<Vec<_>>()
            .join("\n");
        let incident_at = detail
            .evidence
            .iter()
            .find(|e| e.seq == 0)
            .map(|e| e.received_at)
            .unwrap_or(detail.summary.created_at);
        let events = self.store.events(&c.reported_user, 50).await?;
        let ip_capture_event = events
            .iter()
            .filter_map(|e| {
                Some(IpCaptureEvent {
                    ip_address: e.ip.parse::<IpAddr>().ok()?,
                    event_name: match e.event {
                        "registration" => EventName::Registration,
                        "login" => EventName::Login,
                        _ => EventName::Other,
                    },
                    date_time: u64::try_from(e.at).ok().and_then(|t| ts(t).ok()),
                    possible_proxy: None,
                    port: None,
                })
            })
            .collect();
        let device_id = detail
            .account
            .devices
            .iter()
            .map(|d| {
                Ok(DeviceIdEvent {
                    id_type: "Haven device id".into(),
                    id_value: d.device_id.clone(),
                    event_name: EventName::Registration,
                    date_time: Some(ts(d.created_at)?),
                })
            })
            .collect::<ServiceResult<Vec<_>>>()?;
        let victims = match (&c.reporter, c.reporter_is_minor) {
            (Some(r), true) => vec![Victim {
                esp_identifier: Some(r.as_str().into()),
                esp_service: Some("Haven".into()),
                screen_name: Some(r.as_str().into()),
                ..Victim::default()
            }],
            _ => Vec::new(),
        };
        let report = Report {
            incident_summary: IncidentSummary {
                incident_type,
                incident_date_time: ts(incident_at)?,
                incident_date_time_description: Some(
                    "server receive time of the reported message, bound by the provider's franking tag".into(),
                ),
                escalate_to_high_priority: None,
                report_annotations: if c.reason == ReportReason::Sextortion {
                    vec![ReportAnnotation::Sextortion]
                } else {
                    Vec::new()
                },
            },
            internet_details: vec![InternetDetails::ChatIm(ChatImIncident {
                chat_client: Some("Haven".into()),
                chat_room_name: c.group_id.as_ref().map(|g| g.to_hex()),
                content: (!transcript.is_empty()).then_some(transcript),
                additional_info: Some(format!(
                    "End-to-end encrypted conversation. Reported by a recipient ({}); every message above was verified by message franking: the content opens the sender's commitment and the provider's tag binds sender, conversation and time.",
                    c.reporter.as_ref().map_or("unknown", |u| u.as_str())
                )),
            })],
            reporter: Reporter {
                reporting_person: Person {
                    email: vec![Email::new(contact)],
                    ..Person::default()
                },
                ..Reporter::default()
            },
            person_or_user_reported: Some(PersonOrUserReported {
                esp_identifier: Some(c.reported_user.as_str().into()),
                esp_service: Some("Haven".into()),
                screen_name: Some(c.reported_user.as_str().into()),
                ip_capture_event,
                device_id,
                ..PersonOrUserReported::default()
            }),
            victims,
            additional_info: Some(format!("Haven case {}. Moderator's statement: {}", c.id, req.reason)),
        };
        let report = report
            .validate()
            .map_err(|e| ServiceError::BadRequest(format!("the report would be refused: {e}")))?;
        let pending =
            ReportId::new(PENDING_REPORT_ID).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let mut out_files = Vec::new();
        for (i, f) in files.iter().enumerate() {
            let mut details = vec![Detail {
                name: "SHA-256".into(),
                value: f.sha256.clone(),
                detail_type: DetailType::Hash,
            }];
            if let (Some(p), Some(q)) = (&f.pdq, f.pdq_quality) {
                details.push(Detail {
                    name: "PDQ".into(),
                    value: p.clone(),
                    detail_type: DetailType::Hash,
                });
                details.push(Detail {
                    name: "PDQ quality".into(),
                    value: q.to_string(),
                    detail_type: DetailType::Hash,
                });
            }
            let file_name = format!("{}-{}", f.file_id, sanitize(&f.name));
            let info = FileInfo {
                file_name: Some(file_name.clone()),
                original_file_name: Some(f.name.clone()),
                file_viewed_by_esp: true,
                exif_viewed_by_esp: Some(false),
                publicly_available: Some(false),
                file_relevance: Some(if i == 0 {
                    FileRelevance::Reported
                } else {
                    FileRelevance::SupplementalReported
                }),
                original_file_hash: vec![
                    FileHash {
                        hash_type: "MD5".into(),
                        value: f.md5.clone(),
                    },
                    FileHash {
                        hash_type: "SHA256".into(),
                        value: f.sha256.clone(),
                    },
                ],
                details,
                ..FileInfo::default()
            };
            let file_id = FileId::new(f.file_id.clone())
                .map_err(|e| ServiceError::Internal(e.to_string()))?;
            let details_xml = info
                .validate()
                .map_err(|e| ServiceError::BadRequest(format!("file {}: {e}", f.file_id)))?
                .with_ids(pending.clone(), file_id)
                .to_xml();
            out_files.push(m::EscalationFile {
                file_id: f.file_id.clone(),
                file_name,
                details_xml,
            });
        }
        let now = now_ms();
        let mut notices = Vec::new();
        if let (Some(reporter), CaseState::Open) = (&c.reporter, c.state) {
            notices.push((
                reporter.clone(),
                self.outcome_notice(&c.id, "action_taken", now)?,
            ));
        }
        let action = NewAction {
            id: random_hex::<12>(),
            case: c.id.clone(),
            action: ModAction::Escalate,
            reason: req.reason.clone(),
            moderator: who.user.clone(),
            now,
            until: None,
            case_state: Some(CaseState::Escalated),
            purge_after: None,
            notices,
            audit: AuditLine {
                actor: who.user.as_str().into(),
                action: "case.escalate".into(),
                case: Some(c.id.clone()),
                detail: format!("{}; {} files", incident_type.short_name(), out_files.len()),
                at: now,
            },
        };
        self.store
            .take_action(&action, &self.store_limits())
            .await?;
        if let Some(r) = &c.reporter {
            self.wake_user(r).await;
        }
        Ok(m::Escalation {
            case: c.id,
            report_xml: report.to_xml(),
            files: out_files,
        })
    }
}

/// A file name safe to write and upload: letters, digits, `.`, `-`, `_`; at most 100 bytes.
fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    let s = s.trim_start_matches('.').to_owned();
    if s.is_empty() {
        "file".into()
    } else {
        s
    }
}
