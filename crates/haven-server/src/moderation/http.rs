//! The moderation endpoints (table in `haven_proto::moderation`): thin handlers over the
//! services in [`super::service`]. Every `/v1/mod/…` handler checks the moderator role and every
//! `/v1/admin/…` handler the admin role inside the service, before anything is read.

use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use haven_proto::api;
use haven_proto::moderation as m;
use serde::Deserialize;

use crate::http::{bearer, error_response, ApiJson, AppState, Device, Id, Reply};
use crate::service::ServiceError;

#[derive(Deserialize)]
struct Limit {
    limit: Option<u32>,
}

#[derive(Deserialize)]
struct AuditQuery {
    after: Option<i64>,
    limit: Option<u32>,
}

/// An optional session: a request without `Authorization` gets `None`; a bad token is refused.
struct MaybeDevice(Option<crate::service::Authed>);

impl FromRequestParts<AppState> for MaybeDevice {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match bearer(parts) {
            None => Ok(MaybeDevice(None)),
            Some(t) => state
                .authenticate(&t)
                .await
                .map(|a| MaybeDevice(Some(a)))
                .map_err(error_response),
        }
    }
}

async fn report(
    State(s): State<AppState>,
    Device(d): Device,
    ApiJson(req): ApiJson<m::ReportRequest>,
) -> Reply<m::ReportFiled> {
    s.file_report(&d, req).await.into()
}

async fn report_user(
    State(s): State<AppState>,
    Device(d): Device,
    ApiJson(req): ApiJson<m::UserReportRequest>,
) -> Reply<m::ReportFiled> {
    s.file_user_report(&d, req).await.into()
}

async fn appeal(
    State(s): State<AppState>,
    MaybeDevice(d): MaybeDevice,
    ApiJson(req): ApiJson<m::AppealRequest>,
) -> Reply<api::Accepted> {
    s.appeal(d.as_ref(), req).await.into()
}

async fn queue(
    State(s): State<AppState>,
    Device(d): Device,
    q: Result<Query<Limit>, axum::extract::rejection::QueryRejection>,
) -> Reply<m::CaseQueue> {
    let limit = match q {
        Ok(Query(l)) => l.limit.unwrap_or(100),
        Err(e) => return Reply::from(Err(ServiceError::BadRequest(format!("bad query: {e}")))),
    };
    s.mod_queue(&d, limit).await.into()
}

async fn case(
    State(s): State<AppState>,
    Device(d): Device,
    Id(id): Id<String>,
) -> Reply<m::CaseDetail> {
    s.mod_case(&d, &id).await.into()
}

async fn evidence_file(
    State(s): State<AppState>,
    Device(d): Device,
    p: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
) -> Response {
    let (case, file) = match p {
        Ok(Path(x)) => x,
        Err(e) => return error_response(ServiceError::BadRequest(format!("bad path: {e}"))),
    };
    match s.mod_evidence_file(&d, &case, &file).await {
        Ok(bytes) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/octet-stream")],
            bytes,
        )
            .into_response(),
        Err(e) => error_response(e),
    }
}

async fn action(
    State(s): State<AppState>,
    Device(d): Device,
    Id(id): Id<String>,
    ApiJson(req): ApiJson<m::ActionRequest>,
) -> Reply<m::ActionRecord> {
    s.mod_action(&d, &id, req).await.into()
}

async fn escalate(
    State(s): State<AppState>,
    Device(d): Device,
    Id(id): Id<String>,
    ApiJson(req): ApiJson<m::EscalateRequest>,
) -> Reply<m::Escalation> {
    s.mod_escalate(&d, &id, req).await.into()
}

async fn appeals(State(s): State<AppState>, Device(d): Device) -> Reply<m::AppealQueue> {
    s.mod_appeals(&d).await.into()
}

async fn decide(
    State(s): State<AppState>,
    Device(d): Device,
    Id(id): Id<String>,
    ApiJson(req): ApiJson<m::AppealDecision>,
) -> Reply<m::ActionRecord> {
    s.mod_decide_appeal(&d, &id, req).await.into()
}

async fn audit(
    State(s): State<AppState>,
    Device(d): Device,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Reply<m::AuditLog> {
    let (after, limit) = match q {
        Ok(Query(a)) => (a.after.unwrap_or(0), a.limit.unwrap_or(500)),
        Err(e) => return Reply::from(Err(ServiceError::BadRequest(format!("bad query: {e}")))),
    };
    s.admin_audit(&d, after, limit).await.into()
}

/// The moderation routes, merged into the server's router.
pub fn routes(max_report_body: usize) -> Router<AppState> {
    Router::new()
        .route(
            "/v1/reports",
            post(report).layer(DefaultBodyLimit::max(max_report_body)),
        )
        .route("/v1/reports/user", post(report_user))
        .route("/v1/appeals", post(appeal))
        .route("/v1/mod/queue", get(queue))
        .route("/v1/mod/cases/{case}", get(case))
        .route("/v1/mod/cases/{case}/files/{file}", get(evidence_file))
        .route("/v1/mod/cases/{case}/actions", post(action))
        .route("/v1/mod/cases/{case}/escalation", post(escalate))
        .route("/v1/mod/appeals", get(appeals))
        .route("/v1/mod/appeals/{action}", post(decide))
        .route("/v1/admin/audit", get(audit))
}
