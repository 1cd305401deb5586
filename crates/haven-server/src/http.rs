//! The HTTP layer: thin handlers that decode untrusted bytes into request types, call the
//! [`Service`], and map its errors to HTTP in one place ([`error_response`]).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{
    ConnectInfo, DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State,
};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use futures_util::StreamExt;
use haven_proto::api::{self, ApiError, ErrorCode};
use haven_proto::{BlobId, DeviceId, GroupId, UserName};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::blobs::BlobError;
use crate::client_addr::{client_addr, TrustedProxies};
use crate::service::{Authed, Service, ServiceError};
use crate::ws;

/// Shared state of the HTTP layer.
pub type AppState = Arc<Service>;

/// Maps a service error to its HTTP status and JSON body. The one place this happens.
pub fn error_response(e: ServiceError) -> Response {
    let (status, code) = match &e {
        ServiceError::BadRequest(_) => (StatusCode::BAD_REQUEST, ErrorCode::BadRequest),
        ServiceError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized),
        ServiceError::Forbidden(_) | ServiceError::Refused(_) => {
            (StatusCode::FORBIDDEN, ErrorCode::Forbidden)
        }
        ServiceError::NotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
        ServiceError::AlreadyExists(_) => (StatusCode::CONFLICT, ErrorCode::AlreadyExists),
        ServiceError::EpochConflict(_) => (StatusCode::CONFLICT, ErrorCode::EpochConflict),
        ServiceError::Limit(_) => (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::LimitExceeded),
        ServiceError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::PayloadTooLarge),
        ServiceError::RateLimited
        | ServiceError::TooManyRequests(_)
        | ServiceError::ContactLimit { .. } => {
            (StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited)
        }
        ServiceError::QueueShare { .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::QueueShareExhausted,
        ),
        ServiceError::Conflict(_) => (StatusCode::CONFLICT, ErrorCode::Conflict),
        ServiceError::Suspended(_) => (StatusCode::FORBIDDEN, ErrorCode::AccountSuspended),
        ServiceError::Internal(detail) => {
            tracing::error!(%detail, "internal error");
            (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal)
        }
    };
    let current_epoch = match &e {
        ServiceError::EpochConflict(c) => Some(*c),
        _ => None,
    };
    let recipient = match &e {
        ServiceError::QueueShare { recipient, .. } => Some(recipient.clone()),
        _ => None,
    };
    let retry_at = match &e {
        ServiceError::ContactLimit { retry_at, .. } => u64::try_from(*retry_at).ok(),
        _ => None,
    };
    let body = ApiError {
        code,
        message: e.to_string(),
        current_epoch,
        recipient,
        retry_at,
    };
    (status, axum::Json(body)).into_response()
}

/// A handler result.
pub struct Reply<T>(Result<T, ServiceError>);

impl<T: Serialize> IntoResponse for Reply<T> {
    fn into_response(self) -> Response {
        match self.0 {
            Ok(v) => axum::Json(v).into_response(),
            Err(e) => error_response(e),
        }
    }
}

impl<T> From<Result<T, ServiceError>> for Reply<T> {
    fn from(r: Result<T, ServiceError>) -> Self {
        Reply(r)
    }
}

/// A JSON body read with the server's size limit; every failure is a JSON error.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !is_json {
            return Err(error_response(ServiceError::BadRequest(
                "expected Content-Type: application/json".into(),
            )));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                error_response(ServiceError::TooLarge("request body too large".into()))
            } else {
                error_response(ServiceError::BadRequest(format!(
                    "could not read request body: {rejection}"
                )))
            }
        })?;
        serde_json::from_slice(&bytes).map(ApiJson).map_err(|e| {
            error_response(ServiceError::BadRequest(format!(
                "invalid JSON request: {e}"
            )))
        })
    }
}

/// Extracts the bearer token from `Authorization` or the WebSocket sub-protocol.
pub fn bearer(parts: &Parts) -> Option<String> {
    if let Some(v) = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        return v.strip_prefix("Bearer ").map(|t| t.trim().to_owned());
    }
    parts
        .headers
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .map(str::trim)
                .find_map(|p| p.strip_prefix("haven.bearer."))
        })
        .map(str::to_owned)
}

/// An authenticated device, as an extractor.
pub struct Device(pub Authed);

impl FromRequestParts<AppState> for Device {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(parts)
            .ok_or_else(|| error_response(ServiceError::Unauthorized("missing bearer token")))?;
        state
            .authenticate(&token)
            .await
            .map(Device)
            .map_err(error_response)
    }
}

/// A path segment parsed into a checked id; a bad one is a JSON 400.
pub struct Id<T>(pub T);

impl<T: std::str::FromStr, S: Send + Sync> FromRequestParts<S> for Id<T>
where
    T::Err: std::fmt::Display,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| error_response(ServiceError::BadRequest(format!("bad path: {e}"))))?;
        raw.parse::<T>()
            .map(Id)
            .map_err(|e| error_response(ServiceError::BadRequest(e.to_string())))
    }
}

/// The client address rate limits key on ([`crate::client_addr::client_addr`]): the peer, or
/// behind a trusted proxy the address the proxies report.
pub struct ClientAddr(pub std::net::IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>().copied()
        else {
            return Err(error_response(ServiceError::Internal(
                "no peer address on the connection".into(),
            )));
        };
        let none = TrustedProxies::default();
        let trusted = parts.extensions.get::<TrustedProxies>().unwrap_or(&none);
        let forwarded = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .map(|v| v.as_bytes());
        Ok(ClientAddr(client_addr(peer.ip(), forwarded, trusted)))
    }
}

async fn health() -> axum::Json<api::Health> {
    axum::Json(api::Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

async fn register(
    State(s): State<AppState>,
    ClientAddr(client): ClientAddr,
    ApiJson(req): ApiJson<api::RegisterRequest>,
) -> Reply<api::DeviceRegistered> {
    if let Err(e) = s.rate_limit(client).await {
        return Reply(Err(e));
    }
    let r = s.register(req).await;
    if let Ok(d) = &r {
        s.record_account_event(&d.device_id, "registration", client)
            .await;
    }
    r.into()
}

async fn challenge(
    State(s): State<AppState>,
    ClientAddr(client): ClientAddr,
    ApiJson(req): ApiJson<api::ChallengeRequest>,
) -> Reply<api::ChallengeResponse> {
    if let Err(e) = s.rate_limit(client).await {
        return Reply(Err(e));
    }
    s.challenge(req).await.into()
}

async fn login(
    State(s): State<AppState>,
    ClientAddr(client): ClientAddr,
    ApiJson(req): ApiJson<api::LoginRequest>,
) -> Reply<api::LoginResponse> {
    let device = req.device_id.clone();
    let r = s.login(req).await;
    if r.is_ok() {
        s.record_account_event(&device, "login", client).await;
    }
    r.into()
}

async fn link_code(
    State(s): State<AppState>,
    Device(d): Device,
    ApiJson(req): ApiJson<api::LinkCodeRequest>,
) -> Reply<api::LinkCodeResponse> {
    s.link_code(&d, req).await.into()
}

async fn remove_device(
    State(s): State<AppState>,
    Device(d): Device,
    Id(target): Id<DeviceId>,
    ApiJson(req): ApiJson<api::RemoveDeviceRequest>,
) -> Reply<api::Accepted> {
    s.remove_device(&d, &target, req).await.into()
}

async fn logout(
    State(s): State<AppState>,
    Device(d): Device,
    ApiJson(req): ApiJson<api::LogoutRequest>,
) -> Reply<api::Accepted> {
    s.logout(&d, req).await.into()
}

async fn link(
    State(s): State<AppState>,
    ClientAddr(client): ClientAddr,
    ApiJson(req): ApiJson<api::LinkRequest>,
) -> Reply<api::DeviceRegistered> {
    if let Err(e) = s.rate_limit(client).await {
        return Reply(Err(e));
    }
    let r = s.link(req).await;
    if let Ok(d) = &r {
        s.record_account_event(&d.device_id, "link", client).await;
    }
    r.into()
}

async fn user(
    State(s): State<AppState>,
    Device(_d): Device,
    Id(name): Id<UserName>,
) -> Reply<api::UserDevices> {
    s.user_devices(&name).await.into()
}

async fn upload_kps(
    State(s): State<AppState>,
    Device(d): Device,
    ApiJson(req): ApiJson<api::UploadKeyPackages>,
) -> Reply<api::KeyPackageCount> {
    s.upload_key_packages(&d, req).await.into()
}

async fn count_kps(State(s): State<AppState>, Device(d): Device) -> Reply<api::KeyPackageCount> {
    s.key_package_count(&d).await.into()
}

async fn claim_kps(
    State(s): State<AppState>,
    Device(d): Device,
    Id(name): Id<UserName>,
    ApiJson(req): ApiJson<api::ClaimRequest>,
) -> Reply<api::ClaimedKeyPackages> {
    s.claim_key_packages(&d, &name, req).await.into()
}

async fn create_group(
    State(s): State<AppState>,
    Device(d): Device,
    ApiJson(req): ApiJson<api::CreateGroup>,
) -> Reply<api::GroupState> {
    s.create_group(&d, req).await.into()
}

async fn group(
    State(s): State<AppState>,
    Device(d): Device,
    Id(g): Id<GroupId>,
) -> Reply<api::GroupState> {
    s.group(&d, &g).await.into()
}

async fn commit(
    State(s): State<AppState>,
    Device(d): Device,
    Id(g): Id<GroupId>,
    ApiJson(req): ApiJson<api::CommitRequest>,
) -> Reply<api::GroupState> {
    s.commit(&d, &g, req).await.into()
}

async fn proposal(
    State(s): State<AppState>,
    Device(d): Device,
    Id(g): Id<GroupId>,
    ApiJson(req): ApiJson<api::ProposalRequest>,
) -> Reply<api::Accepted> {
    s.proposal(&d, &g, req).await.into()
}

async fn send(
    State(s): State<AppState>,
    Device(d): Device,
    Id(g): Id<GroupId>,
    ApiJson(req): ApiJson<api::SendRequest>,
) -> Reply<api::SendResponse> {
    s.send(&d, &g, req).await.into()
}

#[derive(Deserialize)]
struct QueueQuery {
    #[serde(default)]
    after: i64,
    #[serde(default = "default_limit")]
    limit: u32,
}

fn default_limit() -> u32 {
    100
}

async fn queue(
    State(s): State<AppState>,
    Device(d): Device,
    q: Result<Query<QueueQuery>, axum::extract::rejection::QueryRejection>,
) -> Reply<api::QueueBatch> {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return Reply(Err(ServiceError::BadRequest(format!("bad query: {e}")))),
    };
    s.fetch(&d, q.after, q.limit)
        .await
        .map(|entries| api::QueueBatch { entries })
        .into()
}

async fn ack(
    State(s): State<AppState>,
    Device(d): Device,
    ApiJson(req): ApiJson<api::AckRequest>,
) -> Reply<api::Accepted> {
    s.ack(&d, &req.ids).await.into()
}

async fn put_blob(
    State(s): State<AppState>,
    Device(d): Device,
    req: Request,
) -> Reply<api::BlobStored> {
    let voucher = req
        .headers()
        .get(api::VOUCHER_HEADER)
        .map(|v| v.as_bytes().to_vec());
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let body: crate::blobs::ByteStream = Box::pin(
        req.into_body()
            .into_data_stream()
            .map(|r| r.map_err(|e| BlobError::Body(e.to_string()))),
    );
    s.put_blob(&d, body, declared, voucher.as_deref())
        .await
        .into()
}

async fn get_blob(State(s): State<AppState>, Device(d): Device, Id(id): Id<BlobId>) -> Response {
    match s.get_blob(&d, &id).await {
        Ok((len, reader)) => (
            [
                (CONTENT_TYPE, "application/octet-stream".to_owned()),
                (axum::http::header::CONTENT_LENGTH, len.to_string()),
            ],
            axum::body::Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
                reader,
                16 << 10,
            )),
        )
            .into_response(),
        Err(e) => error_response(e),
    }
}

async fn not_found() -> Response {
    error_response(ServiceError::NotFound("route"))
}

/// The router.
pub fn router(state: AppState) -> Router {
    let json_limit = state.limits().max_json_body;
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/register", post(register))
        .route("/v1/login/challenge", post(challenge))
        .route("/v1/login", post(login))
        .route("/v1/devices/link-code", post(link_code))
        .route("/v1/devices/{id}/remove", post(remove_device))
        .route("/v1/logout", post(logout))
        .route("/v1/link", post(link))
        .route("/v1/users/{name}", get(user))
        .route("/v1/users/{name}/key-packages/claim", post(claim_kps))
        .route("/v1/key-packages", post(upload_kps).get(count_kps))
        .route("/v1/groups", post(create_group))
        .route("/v1/groups/{id}", get(group))
        .route("/v1/groups/{id}/commits", post(commit))
        .route("/v1/groups/{id}/proposals", post(proposal))
        .route("/v1/groups/{id}/messages", post(send))
        .route("/v1/queue", get(queue))
        .route("/v1/queue/ack", post(ack))
        .route("/v1/ws", get(ws::handler))
        .route("/v1/blobs/{id}", get(get_blob))
        // The upload streams; its size cap is enforced while streaming (`Service::put_blob`).
        .route("/v1/blobs", put(put_blob))
        .merge(crate::contacts::http::routes())
        .merge(crate::device_lists::http::routes())
        .merge(crate::kt::http::routes())
        .merge(crate::psi::http::routes())
        .merge(crate::moderation::http::routes(
            state.limits().max_report_body,
        ))
        .fallback(not_found)
        .layer(axum::Extension(Arc::new(ws::Sockets::default())))
        .layer(DefaultBodyLimit::max(json_limit))
        .with_state(state)
}
