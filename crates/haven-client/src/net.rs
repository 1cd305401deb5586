//! The network side of the client: a typed HTTP/JSON client for `haven_proto::api` and the
//! WebSocket push stream. No MLS here; [`crate::client::Client`] ties this to the engine.

use std::time::Duration;

use futures_util::{FutureExt, SinkExt, StreamExt};
use haven_proto::api::{self, ApiError, ErrorCode};
use haven_proto::contacts as c;
use haven_proto::moderation as m;
use haven_proto::{BlobId, DeviceId, GroupId, UserName};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// Network errors, grouped by cause.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The server could not be reached.
    #[error("server unreachable at {url}: {detail}")]
    Unreachable {
        /// The server URL.
        url: String,
        /// What the transport said.
        detail: String,
    },
    /// The server refused the request with a JSON error.
    #[error("server refused ({status}): {error}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The error body.
        error: ApiError,
    },
    /// The server answered with something that is not the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The server's response was larger than the client accepts for this call; reading stopped
    /// at the cap (a hostile or broken server cannot make the client buffer without bound).
    #[error("response too large: more than {cap} bytes")]
    ResponseTooLarge {
        /// The cap, in bytes.
        cap: usize,
    },
}

/// Largest JSON response accepted for calls other than queue fetches.
pub const MAX_JSON_RESPONSE: usize = 4 << 20;
/// Largest key-directory proof answer read (base64 of `haven_kt::directory::MAX_PROOF_BYTES`
/// plus the envelope).
pub const MAX_PROOF_RESPONSE: usize = (haven_kt::directory::MAX_PROOF_BYTES / 3 + 1) * 4 + 4096;

/// Largest encoded queue entry a fetch may return per entry: an MLS message of at most
/// [`crate::engine::MAX_PAYLOAD`] bytes in base64 plus the entry's other fields.
const MAX_ENTRY_JSON: usize = crate::engine::MAX_PAYLOAD / 3 * 4 + (16 << 10);

/// Largest blob download accepted: the largest attachment the client sends, plus room for the
/// encryption overhead.
pub const MAX_BLOB_RESPONSE: usize = (25 << 20) + (64 << 10);

/// Largest WebSocket frame accepted from the server (one queue entry).
const MAX_WS_MESSAGE: usize = MAX_ENTRY_JSON;

impl NetError {
    /// The API error code, if the server sent one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            NetError::Api { error, .. } => Some(error.code),
            _ => None,
        }
    }
}

/// A typed client for one server.
#[derive(Clone)]
pub struct Api {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
}

impl Api {
    /// A client for `base` (e.g. `http://127.0.0.1:7878`).
    pub fn new(base: &str) -> Result<Self, NetError> {
        let base = base.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(NetError::Protocol(format!(
                "server URL must start with http:// or https://, got {base:?}"
            )));
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(4)
            // Below the server's default header-read timeout (15 s), which also closes kept-alive
            // connections: the client drops an idle connection before the server would.
            .pool_idle_timeout(Duration::from_secs(10));
        // A private CA for self-hosted TLS deployments (and the TLS test).
        if let Ok(path) = std::env::var("HAVEN_CA_FILE") {
            let pem = std::fs::read(&path)
                .map_err(|e| NetError::Protocol(format!("HAVEN_CA_FILE {path}: {e}")))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| NetError::Protocol(format!("HAVEN_CA_FILE {path}: {e}")))?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder
            .build()
            .map_err(|e| NetError::Protocol(e.to_string()))?;
        Ok(Api {
            base,
            http,
            token: None,
        })
    }

    /// The server URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sets the session token used for authenticated calls.
    pub fn set_token(&mut self, token: Option<String>) {
        self.token = token;
    }

    /// Whether a session token is set.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    fn unreachable(&self, e: reqwest::Error) -> NetError {
        NetError::Unreachable {
            url: self.base.clone(),
            detail: e.to_string(),
        }
    }

    /// Reads a whole response body, refusing (before reading further) once it passes `cap`.
    async fn read_capped(
        &self,
        mut resp: reqwest::Response,
        cap: usize,
    ) -> Result<Vec<u8>, NetError> {
        if resp
            .content_length()
            .is_some_and(|n| n > u64::try_from(cap).unwrap_or(u64::MAX))
        {
            return Err(NetError::ResponseTooLarge { cap });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.unreachable(e))? {
            if body.len().saturating_add(chunk.len()) > cap {
                return Err(NetError::ResponseTooLarge { cap });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    async fn finish<T: DeserializeOwned>(&self, resp: reqwest::Response) -> Result<T, NetError> {
        self.finish_capped(resp, MAX_JSON_RESPONSE).await
    }

    async fn finish_capped<T: DeserializeOwned>(
        &self,
        resp: reqwest::Response,
        cap: usize,
    ) -> Result<T, NetError> {
        let status = resp.status();
        let bytes = self.read_capped(resp, cap).await?;
        if status.is_success() {
            serde_json::from_slice(&bytes)
                .map_err(|e| NetError::Protocol(format!("bad reply: {e}")))
        } else {
            match serde_json::from_slice::<ApiError>(&bytes) {
                Ok(error) => Err(NetError::Api {
                    status: status.as_u16(),
                    error,
                }),
                Err(_) => Err(NetError::Protocol(format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(bytes.get(..200).unwrap_or(&bytes))
                ))),
            }
        }
    }

    fn authed(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => rb.header(AUTHORIZATION, format!("Bearer {t}")),
            None => rb,
        }
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, NetError> {
        let resp = self
            .authed(self.http.get(format!("{}{path}", self.base)))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        self.finish(resp).await
    }

    /// A GET whose endpoint an older server does not have: `None` when it answers 404 (with
    /// or without a JSON body).
    async fn get_if_served<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>, NetError> {
        match self.get(path).await {
            Ok(v) => Ok(Some(v)),
            Err(NetError::Api { status: 404, .. }) => Ok(None),
            Err(NetError::Protocol(p)) if p.starts_with("HTTP 404") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A body-less PUT, POST or DELETE answered with `Accepted` (or any JSON, or nothing).
    async fn call(&self, method: reqwest::Method, path: &str) -> Result<(), NetError> {
        let resp = self
            .authed(self.http.request(method, format!("{}{path}", self.base)))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = resp.status();
        if status.is_success() {
            // The reply's content is not needed; reading it (capped) frees the connection.
            self.read_capped(resp, MAX_JSON_RESPONSE).await?;
            Ok(())
        } else {
            self.finish::<serde_json::Value>(resp).await.map(|_| ())
        }
    }

    /// A PUT or POST of JSON whose reply's content is not needed.
    async fn send_json<B: Serialize>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &B,
    ) -> Result<(), NetError> {
        let body = serde_json::to_vec(body).map_err(|e| NetError::Protocol(e.to_string()))?;
        let resp = self
            .authed(self.http.request(method, format!("{}{path}", self.base)))
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if resp.status().is_success() {
            self.read_capped(resp, MAX_JSON_RESPONSE).await?;
            Ok(())
        } else {
            self.finish::<serde_json::Value>(resp).await.map(|_| ())
        }
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, NetError> {
        self.request_json(reqwest::Method::POST, path, body).await
    }

    async fn request_json<B: Serialize, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &B,
    ) -> Result<T, NetError> {
        let body = serde_json::to_vec(body).map_err(|e| NetError::Protocol(e.to_string()))?;
        let resp = self
            .authed(self.http.request(method, format!("{}{path}", self.base)))
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        self.finish(resp).await
    }

    /// `GET /v1/health`.
    pub async fn health(&self) -> Result<api::Health, NetError> {
        self.get("/v1/health").await
    }

    /// `POST /v1/register`.
    pub async fn register(
        &self,
        req: &api::RegisterRequest,
    ) -> Result<api::DeviceRegistered, NetError> {
        self.post("/v1/register", req).await
    }

    /// `POST /v1/login/challenge`.
    pub async fn challenge(
        &self,
        req: &api::ChallengeRequest,
    ) -> Result<api::ChallengeResponse, NetError> {
        self.post("/v1/login/challenge", req).await
    }

    /// `POST /v1/login`.
    pub async fn login(&self, req: &api::LoginRequest) -> Result<api::LoginResponse, NetError> {
        self.post("/v1/login", req).await
    }

    /// `POST /v1/devices/link-code`.
    pub async fn link_code(
        &self,
        req: &api::LinkCodeRequest,
    ) -> Result<api::LinkCodeResponse, NetError> {
        self.post("/v1/devices/link-code", req).await
    }

    /// `POST /v1/devices/{id}/remove`.
    pub async fn remove_device(
        &self,
        device: &DeviceId,
        req: &api::RemoveDeviceRequest,
    ) -> Result<api::Accepted, NetError> {
        self.post(&format!("/v1/devices/{device}/remove"), req)
            .await
    }

    /// `POST /v1/logout`.
    pub async fn logout(&self, req: &api::LogoutRequest) -> Result<api::Accepted, NetError> {
        self.post("/v1/logout", req).await
    }

    /// `POST /v1/link`.
    pub async fn link(&self, req: &api::LinkRequest) -> Result<api::DeviceRegistered, NetError> {
        self.post("/v1/link", req).await
    }

    /// `GET /v1/users/{name}`.
    pub async fn user(&self, user: &UserName) -> Result<api::UserDevices, NetError> {
        self.get(&format!("/v1/users/{user}")).await
    }

    /// `PUT /v1/devices/list`.
    pub async fn put_device_list(
        &self,
        req: &api::PutDeviceList,
    ) -> Result<api::DeviceListStored, NetError> {
        self.request_json(reqwest::Method::PUT, "/v1/devices/list", req)
            .await
    }

    /// `GET /v1/users/{name}/device-lists?after=N`.
    pub async fn device_lists(
        &self,
        user: &UserName,
        after: u64,
    ) -> Result<api::DeviceLists, NetError> {
        self.get(&format!("/v1/users/{user}/device-lists?after={after}"))
            .await
    }

    /// `GET /v1/kt/epoch`.
    pub async fn kt_epoch(&self) -> Result<api::KtEpoch, NetError> {
        self.get("/v1/kt/epoch").await
    }

    /// `POST /v1/kt/publish`: publish the queued device lists now.
    pub async fn kt_publish(&self) -> Result<api::KtEpoch, NetError> {
        self.post("/v1/kt/publish", &serde_json::json!({})).await
    }

    /// `GET /v1/kt/lookup/{name}`.
    pub async fn kt_lookup(&self, user: &UserName) -> Result<api::KtProof, NetError> {
        self.get_large(&format!("/v1/kt/lookup/{user}")).await
    }

    /// `GET /v1/kt/history/{name}`.
    pub async fn kt_history(&self, user: &UserName) -> Result<api::KtProof, NetError> {
        self.get_large(&format!("/v1/kt/history/{user}")).await
    }

    /// `GET /v1/kt/audit?from=A&to=B`.
    pub async fn kt_audit(&self, from: u64, to: u64) -> Result<api::KtAudit, NetError> {
        self.get_large(&format!("/v1/kt/audit?from={from}&to={to}"))
            .await
    }

    /// A GET whose answer may be a large proof (up to [`MAX_PROOF_RESPONSE`]).
    async fn get_large<T: DeserializeOwned>(&self, path: &str) -> Result<T, NetError> {
        let resp = self
            .authed(self.http.get(format!("{}{path}", self.base)))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        self.finish_capped(resp, MAX_PROOF_RESPONSE).await
    }

    /// `POST /v1/key-packages`.
    pub async fn upload_key_packages(
        &self,
        req: &api::UploadKeyPackages,
    ) -> Result<api::KeyPackageCount, NetError> {
        self.post("/v1/key-packages", req).await
    }

    /// `GET /v1/key-packages`.
    pub async fn key_package_count(&self) -> Result<api::KeyPackageCount, NetError> {
        self.get("/v1/key-packages").await
    }

    /// `POST /v1/users/{name}/key-packages/claim`: one key package per device of `user`, to
    /// add them to `group`.
    pub async fn claim_key_packages(
        &self,
        user: &UserName,
        group: &GroupId,
    ) -> Result<api::ClaimedKeyPackages, NetError> {
        self.post(
            &format!("/v1/users/{user}/key-packages/claim"),
            &api::ClaimRequest {
                group_id: group.clone(),
            },
        )
        .await
    }

    /// `POST /v1/groups`, with the group's signed GroupInfo at epoch 0; `direct_with` names the
    /// other account of a 1:1 conversation (the server applies the first-message rules to it).
    pub async fn create_group(
        &self,
        group: &GroupId,
        group_info: Vec<u8>,
        direct_with: Option<&UserName>,
    ) -> Result<api::GroupState, NetError> {
        self.post(
            "/v1/groups",
            &api::CreateGroup {
                group_id: group.clone(),
                group_info,
                direct_with: direct_with.cloned(),
            },
        )
        .await
    }

    /// `GET /v1/groups/{id}`.
    pub async fn group(&self, group: &GroupId) -> Result<api::GroupState, NetError> {
        self.get(&format!("/v1/groups/{group}")).await
    }

    /// `POST /v1/groups/{id}/commits`.
    pub async fn commit(
        &self,
        group: &GroupId,
        req: &api::CommitRequest,
    ) -> Result<api::GroupState, NetError> {
        self.post(&format!("/v1/groups/{group}/commits"), req).await
    }

    /// `POST /v1/groups/{id}/proposals`.
    pub async fn proposal(
        &self,
        group: &GroupId,
        req: &api::ProposalRequest,
    ) -> Result<api::Accepted, NetError> {
        self.post(&format!("/v1/groups/{group}/proposals"), req)
            .await
    }

    /// `POST /v1/groups/{id}/messages`.
    pub async fn send(
        &self,
        group: &GroupId,
        message: Vec<u8>,
    ) -> Result<api::SendResponse, NetError> {
        self.post(
            &format!("/v1/groups/{group}/messages"),
            &api::SendRequest { message },
        )
        .await
    }

    /// `GET /v1/queue`.
    pub async fn fetch(&self, after: i64, limit: u32) -> Result<Vec<api::QueueEntry>, NetError> {
        let resp = self
            .authed(self.http.get(format!(
                "{}/v1/queue?after={after}&limit={limit}",
                self.base
            )))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let cap = MAX_ENTRY_JSON
            .saturating_mul(limit.max(1) as usize)
            .max(MAX_JSON_RESPONSE);
        let batch: api::QueueBatch = self.finish_capped(resp, cap).await?;
        Ok(batch.entries)
    }

    /// `POST /v1/queue/ack`.
    pub async fn ack(&self, ids: &[i64]) -> Result<api::Accepted, NetError> {
        self.post("/v1/queue/ack", &api::AckRequest { ids: ids.to_vec() })
            .await
    }

    /// `PUT /v1/blobs`.
    pub async fn put_blob(&self, bytes: Vec<u8>) -> Result<api::BlobStored, NetError> {
        let resp = self
            .authed(self.http.put(format!("{}/v1/blobs", self.base)))
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(bytes)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        self.finish(resp).await
    }

    /// `GET /v1/blobs/{id}`.
    pub async fn get_blob(&self, id: &BlobId) -> Result<Vec<u8>, NetError> {
        let resp = self
            .authed(self.http.get(format!("{}/v1/blobs/{id}", self.base)))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if resp.status().is_success() {
            self.read_capped(resp, MAX_BLOB_RESPONSE).await
        } else {
            self.finish::<()>(resp).await.map(|_| Vec::new())
        }
    }

    /// `POST /v1/reports`.
    pub async fn report(&self, req: &m::ReportRequest) -> Result<m::ReportFiled, NetError> {
        self.post("/v1/reports", req).await
    }

    /// `POST /v1/reports/user`.
    pub async fn report_user(
        &self,
        req: &m::UserReportRequest,
    ) -> Result<m::ReportFiled, NetError> {
        self.post("/v1/reports/user", req).await
    }

    /// `POST /v1/appeals` (with the session if one is set, else the request's device proof).
    pub async fn appeal(&self, req: &m::AppealRequest) -> Result<api::Accepted, NetError> {
        self.post("/v1/appeals", req).await
    }

    /// `GET /v1/mod/queue`.
    pub async fn mod_queue(&self, limit: u32) -> Result<m::CaseQueue, NetError> {
        self.get(&format!("/v1/mod/queue?limit={limit}")).await
    }

    /// `GET /v1/mod/cases/{case}`.
    pub async fn mod_case(&self, case: &str) -> Result<m::CaseDetail, NetError> {
        self.get(&format!("/v1/mod/cases/{}", path_segment(case)?))
            .await
    }

    /// `GET /v1/mod/cases/{case}/files/{file}`: the evidence file's bytes.
    pub async fn mod_evidence_file(&self, case: &str, file: &str) -> Result<Vec<u8>, NetError> {
        let url = format!(
            "{}/v1/mod/cases/{}/files/{}",
            self.base,
            path_segment(case)?,
            path_segment(file)?
        );
        let resp = self
            .authed(self.http.get(url))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if resp.status().is_success() {
            self.read_capped(resp, MAX_BLOB_RESPONSE).await
        } else {
            self.finish::<()>(resp).await.map(|_| Vec::new())
        }
    }

    /// `POST /v1/mod/cases/{case}/actions`.
    pub async fn mod_action(
        &self,
        case: &str,
        req: &m::ActionRequest,
    ) -> Result<m::ActionRecord, NetError> {
        self.post(
            &format!("/v1/mod/cases/{}/actions", path_segment(case)?),
            req,
        )
        .await
    }

    /// `POST /v1/mod/cases/{case}/escalation`.
    pub async fn mod_escalate(
        &self,
        case: &str,
        req: &m::EscalateRequest,
    ) -> Result<m::Escalation, NetError> {
        self.post(
            &format!("/v1/mod/cases/{}/escalation", path_segment(case)?),
            req,
        )
        .await
    }

    /// `GET /v1/mod/appeals`.
    pub async fn mod_appeals(&self) -> Result<m::AppealQueue, NetError> {
        self.get("/v1/mod/appeals").await
    }

    /// `POST /v1/mod/appeals/{action}`.
    pub async fn mod_decide_appeal(
        &self,
        action: &str,
        req: &m::AppealDecision,
    ) -> Result<m::ActionRecord, NetError> {
        self.post(&format!("/v1/mod/appeals/{}", path_segment(action)?), req)
            .await
    }

    /// `POST /v1/contacts/requests`: ask `user` to connect.
    pub async fn contact_request(&self, user: &UserName) -> Result<(), NetError> {
        let body = c::ContactRequestBody { user: user.clone() };
        self.send_json(reqwest::Method::POST, "/v1/contacts/requests", &body)
            .await
    }

    /// `POST /v1/contacts/{user}/accept` or `/decline`.
    pub async fn contact_answer(&self, user: &UserName, accept: bool) -> Result<(), NetError> {
        let verb = if accept { "accept" } else { "decline" };
        self.call(
            reqwest::Method::POST,
            &format!("/v1/contacts/{user}/{verb}"),
        )
        .await
    }

    /// `DELETE /v1/contacts/{user}`: remove a connection or withdraw a request.
    pub async fn contact_remove(&self, user: &UserName) -> Result<(), NetError> {
        self.call(reqwest::Method::DELETE, &format!("/v1/contacts/{user}"))
            .await
    }

    /// `GET /v1/contacts`; `None` from a server without the endpoint.
    pub async fn contacts(&self) -> Result<Option<c::ContactList>, NetError> {
        self.get_if_served("/v1/contacts").await
    }

    /// `PUT` or `DELETE /v1/blocks/{user}`.
    pub async fn set_blocked(&self, user: &UserName, on: bool) -> Result<(), NetError> {
        self.call(on_off(on), &format!("/v1/blocks/{user}")).await
    }

    /// `PUT` or `DELETE /v1/restricts/{user}`.
    pub async fn set_restricted(&self, user: &UserName, on: bool) -> Result<(), NetError> {
        self.call(on_off(on), &format!("/v1/restricts/{user}"))
            .await
    }

    /// `GET /v1/requests`; `None` from a server without the endpoint.
    pub async fn message_requests(&self) -> Result<Option<c::MessageRequests>, NetError> {
        self.get_if_served("/v1/requests").await
    }

    /// `POST /v1/requests/{user}/accept` or `/decline`.
    pub async fn request_answer(&self, user: &UserName, accept: bool) -> Result<(), NetError> {
        let verb = if accept { "accept" } else { "decline" };
        self.call(
            reqwest::Method::POST,
            &format!("/v1/requests/{user}/{verb}"),
        )
        .await
    }

    /// `PUT /v1/settings/messages`.
    pub async fn set_message_setting(&self, messages: c::MessageSetting) -> Result<(), NetError> {
        let body = c::MessageSettingBody { messages };
        self.send_json(reqwest::Method::PUT, "/v1/settings/messages", &body)
            .await
    }

    /// `GET /v1/me`.
    pub async fn me(&self) -> Result<c::Me, NetError> {
        self.get("/v1/me").await
    }

    /// `GET /v1/mod/signals/{user}` (moderators).
    pub async fn mod_signals(&self, user: &UserName) -> Result<c::RiskReport, NetError> {
        self.get(&format!("/v1/mod/signals/{user}")).await
    }

    /// `GET /v1/admin/audit`.
    pub async fn admin_audit(&self, after: i64, limit: u32) -> Result<m::AuditLog, NetError> {
        self.get(&format!("/v1/admin/audit?after={after}&limit={limit}"))
            .await
    }

    /// Opens the WebSocket push stream.
    pub async fn push_stream(&self) -> Result<PushStream, NetError> {
        let url = format!("{}/v1/ws", self.base.replacen("http", "ws", 1));
        let mut req = url
            .as_str()
            .into_client_request()
            .map_err(|e| NetError::Protocol(e.to_string()))?;
        if let Some(t) = &self.token {
            let v = format!("Bearer {t}")
                .parse()
                .map_err(|_| NetError::Protocol("bad token".into()))?;
            req.headers_mut().insert(AUTHORIZATION, v);
        }
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(MAX_WS_MESSAGE))
            .max_frame_size(Some(MAX_WS_MESSAGE));
        let (ws, _) = tokio_tungstenite::connect_async_with_config(req, Some(config), false)
            .await
            .map_err(|e| NetError::Unreachable {
                url: url.clone(),
                detail: e.to_string(),
            })?;
        Ok(PushStream { ws })
    }
}

fn on_off(on: bool) -> reqwest::Method {
    if on {
        reqwest::Method::PUT
    } else {
        reqwest::Method::DELETE
    }
}

/// A case, file or action id as one URL path segment: ids are short ASCII tokens, so anything
/// else is refused here rather than escaped into another path.
fn path_segment(id: &str) -> Result<&str, NetError> {
    if id.is_empty()
        || id.len() > 128
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(NetError::Protocol(format!(
            "{id:?} is not an id (letters, digits, '-' and '_')"
        )));
    }
    Ok(id)
}

/// The WebSocket push stream of queue entries.
pub struct PushStream {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl PushStream {
    /// The next queue entry; `None` when the server closed the stream.
    pub async fn next(&mut self) -> Result<Option<api::QueueEntry>, NetError> {
        while let Some(msg) = self.ws.next().await {
            match msg.map_err(|e| NetError::Protocol(e.to_string()))? {
                Message::Text(t) => {
                    return serde_json::from_str(t.as_str())
                        .map(Some)
                        .map_err(|e| NetError::Protocol(format!("bad queue entry: {e}")));
                }
                Message::Close(_) => return Ok(None),
                _ => {}
            }
        }
        Ok(None)
    }

    /// The next entry, then every further entry that arrives within `linger` of it (at most
    /// `max` in all): what a client processes in one local transaction and acknowledges in one
    /// frame. Empty when the server closed the stream.
    ///
    /// With a zero `linger` it takes only what has already arrived, and is cancel-safe (after its
    /// one await it completes at once), so it may sit in a `select!`. A non-zero `linger` trades
    /// that much latency for larger batches under load: one commit and one `fsync` for more
    /// entries. It is not cancel-safe.
    pub async fn next_batch(
        &mut self,
        max: usize,
        linger: Duration,
    ) -> Result<Vec<api::QueueEntry>, NetError> {
        let mut batch = Vec::new();
        let Some(first) = self.next().await? else {
            return Ok(batch);
        };
        batch.push(first);
        if !linger.is_zero() {
            let deadline = tokio::time::Instant::now() + linger;
            while batch.len() < max {
                match tokio::time::timeout_at(deadline, self.next()).await {
                    Ok(Ok(Some(e))) => batch.push(e),
                    Ok(Ok(None)) | Err(_) => return Ok(batch),
                    Ok(Err(e)) => return Err(e),
                }
            }
        }
        while batch.len() < max {
            // `next` only consumes a frame it returns (or a control frame), so dropping the
            // future when it would wait loses nothing.
            match self.next().now_or_never() {
                Some(Ok(Some(e))) => batch.push(e),
                Some(Ok(None)) | None => break,
                Some(Err(e)) => return Err(e),
            }
        }
        Ok(batch)
    }

    /// Acknowledges entries over the socket.
    pub async fn ack(&mut self, ids: &[i64]) -> Result<(), NetError> {
        let frame = serde_json::to_string(&api::WsClientFrame::Ack { ids: ids.to_vec() })
            .map_err(|e| NetError::Protocol(e.to_string()))?;
        self.ws
            .send(Message::Text(frame.into()))
            .await
            .map_err(|e| NetError::Protocol(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server that answers every request with `status` and `body` (one request per
    /// connection).
    async fn canned(status: &'static str, body: &'static str) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let _ = sock.read(&mut buf).await;
                    let reply = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(reply.as_bytes()).await;
                });
            }
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn a_server_without_contacts_has_none() {
        for (status, body) in [
            ("404 Not Found", ""),
            (
                "404 Not Found",
                r#"{"code":"not_found","message":"no such route"}"#,
            ),
        ] {
            let api = Api::new(&canned(status, body).await).unwrap();
            assert_eq!(api.message_requests().await.unwrap(), None);
            assert_eq!(api.contacts().await.unwrap(), None);
            // Where the endpoint is the point of the command, 404 is an error.
            assert!(api.me().await.is_err());
        }
    }

    #[tokio::test]
    async fn other_failures_are_errors_and_refusals_keep_their_text() {
        let api = Api::new(
            &canned(
                "403 Forbidden",
                r#"{"code":"forbidden","message":"mia only accepts messages from their contacts"}"#,
            )
            .await,
        )
        .unwrap();
        let e = api.message_requests().await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::Forbidden));
        let e = api
            .contact_request(&UserName::new("mia").unwrap())
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .ends_with("mia only accepts messages from their contacts"),
            "{e}"
        );
        let api = Api::new(
            &canned(
                "429 Too Many Requests",
                r#"{"code":"rate_limited","message":"try again after 2026-12-03 10:00 UTC","retry_at":1796292000000}"#,
            )
            .await,
        )
        .unwrap();
        match api.contact_request(&UserName::new("bob").unwrap()).await {
            Err(NetError::Api { status: 429, error }) => {
                assert_eq!(error.retry_at, Some(1_796_292_000_000));
                assert!(error.message.contains("try again after"));
            }
            other => panic!("{other:?}"),
        }
    }
}
