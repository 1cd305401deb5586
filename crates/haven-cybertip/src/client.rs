//! An async client for the CyberTipline Reporting API's documented flow.
//!
//! `POST /submit` (the `report` XML, `text/xml`) → `reportId`; `POST /upload` (multipart `id`,
//! `file`) → `fileId` and the file's MD5, which we compare with our own; `POST /fileinfo` (the
//! `fileDetails` XML); `POST /finish` (multipart `id`) → the report's `fileId`s; `POST /retract`
//! (multipart `id`) cancels an unfinished report. Every answer is a `reportResponse` (or, for
//! finish, a `reportDoneResponse`) whose `responseCode` is 0 on success; any other code becomes an
//! [`ApiError`] that keeps the code and its description.
//!
//! Credentials go in HTTP Basic auth. Redirects are not followed (they would carry credentials
//! elsewhere); answers are read up to a size limit; every request has a timeout. Plain `http` is
//! allowed only to a loopback host (the local test server).

use crate::ids::{FileId, IdError, ReportId};
use crate::report::{ValidFileDetails, ValidFileInfo, ValidReport};
use crate::response::{self, ApiResponse, Root};
use md5::{Digest, Md5};
use reqwest::multipart::{Form, Part};
use reqwest::Url;
use std::fmt;
use std::time::Duration;
use zeroize::Zeroizing;

/// NCMEC's production base URL.
pub const PRODUCTION_BASE_URL: &str = "https://report.cybertip.org/ispws";
/// NCMEC's test environment base URL.
pub const TEST_BASE_URL: &str = "https://exttest.cybertip.org/ispws";
/// Default bound on an answer's size. Answers are small acknowledgements.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 1 << 20;

/// Which NCMEC environment to talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    /// `https://report.cybertip.org/ispws`: real reports.
    Production,
    /// `https://exttest.cybertip.org/ispws`: NCMEC's test environment.
    Test,
}

impl Environment {
    /// The environment's base URL.
    pub fn base_url(self) -> &'static str {
        match self {
            Environment::Production => PRODUCTION_BASE_URL,
            Environment::Test => TEST_BASE_URL,
        }
    }
}

/// The username and password NCMEC issued. The password is zeroized on drop and never printed.
#[derive(Clone)]
pub struct Credentials {
    username: String,
    password: Zeroizing<String>,
}

impl Credentials {
    /// Wraps a username and password.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: Zeroizing::new(password.into()),
        }
    }

    /// The username.
    pub fn username(&self) -> &str {
        &self.username
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// How to reach the API.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Base URL (no trailing slash needed), e.g. [`PRODUCTION_BASE_URL`].
    pub base_url: String,
    /// Basic-auth credentials.
    pub credentials: Credentials,
    /// Whole-request timeout (uploads included).
    pub timeout: Duration,
    /// Connection timeout.
    pub connect_timeout: Duration,
    /// Largest answer read before giving up.
    pub max_response_bytes: usize,
}

impl ClientConfig {
    /// One of NCMEC's environments, with default timeouts (120 s per request, 15 s to connect).
    pub fn new(environment: Environment, credentials: Credentials) -> Self {
        Self::with_base_url(environment.base_url(), credentials)
    }

    /// Any base URL (the local test server's, say), with default timeouts.
    pub fn with_base_url(base_url: impl Into<String>, credentials: Credentials) -> Self {
        Self {
            base_url: base_url.into(),
            credentials,
            timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(15),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

/// A non-zero `responseCode`, as the documentation lists them (the list is not exhaustive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResponseCode {
    /// 1000 Server error.
    ServerError,
    /// 1100 Save failed.
    SaveFailed,
    /// 1110 Upload failed.
    UploadFailed,
    /// 1111 File upload failed.
    FileUploadFailed,
    /// 1210 Resource not found.
    ResourceNotFound,
    /// 1300 Update failed.
    UpdateFailed,
    /// 2000 Authentication required.
    AuthenticationRequired,
    /// 3000 Not authorized.
    NotAuthorized,
    /// 3100 Not authorized to make submissions.
    NotAuthorizedForSubmissions,
    /// 3300 Not authorized to make updates.
    NotAuthorizedForUpdates,
    /// 4000 Invalid request.
    InvalidRequest,
    /// 4100 Validation failed.
    ValidationFailed,
    /// 4110 Malformed XML submittal.
    MalformedXml,
    /// 4200 Malformed file submittal.
    MalformedFile,
    /// 5001 Report does not exist.
    ReportDoesNotExist,
    /// 5002 File does not exist.
    FileDoesNotExist,
    /// 5101 Report already retracted.
    ReportAlreadyRetracted,
    /// 5102 Report already finished.
    ReportAlreadyFinished,
    /// Any other non-zero code.
    Other(i64),
}

impl ResponseCode {
    const KNOWN: [(i64, ResponseCode); 18] = [
        (1000, Self::ServerError),
        (1100, Self::SaveFailed),
        (1110, Self::UploadFailed),
        (1111, Self::FileUploadFailed),
        (1210, Self::ResourceNotFound),
        (1300, Self::UpdateFailed),
        (2000, Self::AuthenticationRequired),
        (3000, Self::NotAuthorized),
        (3100, Self::NotAuthorizedForSubmissions),
        (3300, Self::NotAuthorizedForUpdates),
        (4000, Self::InvalidRequest),
        (4100, Self::ValidationFailed),
        (4110, Self::MalformedXml),
        (4200, Self::MalformedFile),
        (5001, Self::ReportDoesNotExist),
        (5002, Self::FileDoesNotExist),
        (5101, Self::ReportAlreadyRetracted),
        (5102, Self::ReportAlreadyFinished),
    ];

    /// The variant for a non-zero code (`0` is success and has none; it maps to `Other(0)`).
    pub fn from_code(code: i64) -> Self {
        Self::KNOWN
            .iter()
            .find(|(c, _)| *c == code)
            .map_or(Self::Other(code), |(_, v)| *v)
    }

    /// The number on the wire.
    pub fn code(self) -> i64 {
        match self {
            Self::Other(c) => c,
            known => Self::KNOWN
                .iter()
                .find(|(_, v)| *v == known)
                .map_or(-1, |(c, _)| *c),
        }
    }

    /// Whether repeating the same request later may succeed (NCMEC-side 1xxx failures). Others
    /// (credentials, our XML, the report's state) need a person or a code change.
    pub fn is_transient(self) -> bool {
        (1000..2000).contains(&self.code())
    }
}

impl fmt::Display for ResponseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code())
    }
}

/// Which endpoint a call went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `GET /status`
    Status,
    /// `POST /submit`
    Submit,
    /// `POST /upload`
    Upload,
    /// `POST /fileinfo`
    FileInfo,
    /// `POST /finish`
    Finish,
    /// `POST /retract`
    Retract,
}

impl Endpoint {
    /// The path under the base URL.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Status => "status",
            Endpoint::Submit => "submit",
            Endpoint::Upload => "upload",
            Endpoint::FileInfo => "fileinfo",
            Endpoint::Finish => "finish",
            Endpoint::Retract => "retract",
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}", self.path())
    }
}

/// The API answered with a non-zero `responseCode`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{endpoint} answered responseCode {code}: {description}")]
pub struct ApiError {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// The code.
    pub code: ResponseCode,
    /// `responseDescription` as sent (empty if absent).
    pub description: String,
    /// The HTTP status it came with.
    pub http_status: u16,
}

/// A call that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Caller misuse: the base URL is not an absolute https URL (or http to loopback).
    #[error("base URL must be https (or http to a loopback host): {0}")]
    BadBaseUrl(String),
    /// The API said no.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// Connection, TLS or timeout failure (nothing or only part of an answer arrived).
    #[error("{endpoint}: transport failure: {source}")]
    Transport {
        /// The endpoint.
        endpoint: Endpoint,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// A non-success HTTP status whose body is not a response document (a proxy's page, say).
    #[error("{endpoint}: HTTP {status} without a response document")]
    Http {
        /// The endpoint.
        endpoint: Endpoint,
        /// The status.
        status: u16,
    },
    /// The answer was larger than the configured limit.
    #[error("{endpoint}: answer larger than {limit} bytes")]
    ResponseTooLarge {
        /// The endpoint.
        endpoint: Endpoint,
        /// The limit.
        limit: usize,
    },
    /// The answer is not a response document we can read.
    #[error("{endpoint}: {reason}")]
    MalformedResponse {
        /// The endpoint.
        endpoint: Endpoint,
        /// What was wrong.
        reason: &'static str,
    },
    /// A success answer without an element it must carry.
    #[error("{endpoint}: success answer has no {element}")]
    MissingElement {
        /// The endpoint.
        endpoint: Endpoint,
        /// The element.
        element: &'static str,
    },
    /// An identifier in the answer failed its check.
    #[error("{endpoint}: {element} in the answer is not a valid identifier: {source}")]
    BadIdentifier {
        /// The endpoint.
        endpoint: Endpoint,
        /// The element.
        element: &'static str,
        /// Why.
        #[source]
        source: IdError,
    },
    /// The answer names a different report than the one we asked about.
    #[error("{endpoint}: answer is about report {returned}, not {expected}")]
    ReportIdMismatch {
        /// The endpoint.
        endpoint: Endpoint,
        /// Ours.
        expected: ReportId,
        /// Theirs.
        returned: String,
    },
    /// The upload receipt's MD5 differs from the MD5 of the bytes we sent.
    #[error("/upload: the API's MD5 {returned} differs from ours {sent}")]
    HashMismatch {
        /// MD5 of what we sent, lowercase hex.
        sent: String,
        /// What the API returned.
        returned: String,
    },
}

impl ClientError {
    /// The API's code, if the API answered with one.
    pub fn response_code(&self) -> Option<ResponseCode> {
        match self {
            ClientError::Api(e) => Some(e.code),
            _ => None,
        }
    }
}

/// The receipt of one upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadReceipt {
    /// The `fileId` assigned.
    pub file_id: FileId,
    /// The MD5 the API computed, lowercase hex; equal to ours (checked).
    pub md5: String,
}

/// A report that was submitted and finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmittedReport {
    /// The `reportId`.
    pub report_id: ReportId,
    /// The `fileId`s, in upload order.
    pub file_ids: Vec<FileId>,
    /// The `fileId`s the finish answer listed, as the API sent them.
    pub finished_file_ids: Vec<FileId>,
}

/// The step of [`Client::submit_report`] that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// `/submit`: no report was opened (as far as we know), so none was retracted.
    Submit,
    /// `/upload` of the file at this index.
    Upload(usize),
    /// `/fileinfo` of the file at this index.
    FileInfo(usize),
    /// `/finish`.
    Finish,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stage::Submit => f.write_str("/submit"),
            Stage::Upload(i) => write!(f, "/upload of file {i}"),
            Stage::FileInfo(i) => write!(f, "/fileinfo of file {i}"),
            Stage::Finish => f.write_str("/finish"),
        }
    }
}

/// What happened to the opened report after a failure.
#[derive(Debug)]
pub enum RetractOutcome {
    /// Failure at `/submit`: no report ID, nothing to retract. (After a transport failure at
    /// `/submit` the API may still have opened one; it deletes unfinished reports itself.)
    NotNeeded,
    /// The report was retracted.
    Retracted,
    /// Retract answered 5102: the report was finished after all (a finish whose answer was lost).
    /// The report stands; do not file it again.
    AlreadyFinished,
    /// Retracting failed; the report is left unfinished, and the API deletes it on its own schedule.
    Failed(Box<ClientError>),
}

impl fmt::Display for RetractOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RetractOutcome::NotNeeded => f.write_str("nothing to retract"),
            RetractOutcome::Retracted => f.write_str("the report was retracted"),
            RetractOutcome::AlreadyFinished => {
                f.write_str("the report had been finished; it stands")
            }
            RetractOutcome::Failed(e) => write!(f, "retracting failed: {e}"),
        }
    }
}

/// [`Client::submit_report`] failed.
#[derive(Debug, thiserror::Error)]
#[error("CyberTipline submission failed at {stage}: {source}; {retract}")]
pub struct SubmitError {
    /// Where.
    pub stage: Stage,
    /// The report that was opened, if any.
    pub report_id: Option<ReportId>,
    /// Why.
    pub source: ClientError,
    /// Whether the opened report was retracted.
    pub retract: RetractOutcome,
}

/// The client. Cheap to clone (the HTTP connection pool is shared).
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    credentials: Credentials,
    max_response_bytes: usize,
}

fn is_loopback(url: &Url) -> bool {
    match url.host_str() {
        Some(h) if h.eq_ignore_ascii_case("localhost") => true,
        Some(h) => h
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// Lowercase hex MD5 of `bytes`.
pub fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(Md5::digest(bytes))
}

impl Client {
    /// A client for `config`. Fails on a base URL that is not https (or http to loopback).
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        let mut base = Url::parse(&config.base_url)
            .map_err(|_| ClientError::BadBaseUrl(config.base_url.clone()))?;
        let loopback = is_loopback(&base);
        let scheme_ok = base.scheme() == "https" || (base.scheme() == "http" && loopback);
        if !scheme_ok
            || base.cannot_be_a_base()
            || base.query().is_some()
            || base.fragment().is_some()
        {
            return Err(ClientError::BadBaseUrl(config.base_url));
        }
        // Url::join replaces the last segment unless the path ends in '/'.
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .https_only(!loopback)
            .build()
            .map_err(|source| ClientError::Transport {
                endpoint: Endpoint::Status,
                source,
            })?;
        Ok(Self {
            http,
            base,
            credentials: config.credentials,
            max_response_bytes: config.max_response_bytes,
        })
    }

    fn url(&self, endpoint: Endpoint) -> Result<Url, ClientError> {
        self.base
            .join(endpoint.path())
            .map_err(|_| ClientError::BadBaseUrl(self.base.to_string()))
    }

    /// Sends a request and reads its answer: bounded, parsed, and a non-zero code made an error.
    async fn call(
        &self,
        endpoint: Endpoint,
        expect: Root,
        build: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<ApiResponse, ClientError> {
        let url = self.url(endpoint)?;
        let req = match endpoint {
            Endpoint::Status => self.http.get(url),
            _ => self.http.post(url),
        };
        let req = build(req).basic_auth(
            &self.credentials.username,
            Some(self.credentials.password.as_str()),
        );
        let resp = req
            .send()
            .await
            .map_err(|source| ClientError::Transport { endpoint, source })?;
        let status = resp.status();
        let body = self.read_bounded(endpoint, resp).await?;
        let parsed = response::parse(&body);
        let (root, r) = match parsed {
            Ok(p) => p,
            Err(_) if !status.is_success() => {
                return Err(ClientError::Http {
                    endpoint,
                    status: status.as_u16(),
                })
            }
            Err(reason) => return Err(ClientError::MalformedResponse { endpoint, reason }),
        };
        if r.code != 0 {
            return Err(ApiError {
                endpoint,
                code: ResponseCode::from_code(r.code),
                description: r.description.unwrap_or_default(),
                http_status: status.as_u16(),
            }
            .into());
        }
        if !status.is_success() {
            // responseCode 0 with an error status: believe neither.
            return Err(ClientError::Http {
                endpoint,
                status: status.as_u16(),
            });
        }
        if root != expect {
            return Err(ClientError::MalformedResponse {
                endpoint,
                reason: "unexpected response root element",
            });
        }
        Ok(r)
    }

    async fn read_bounded(
        &self,
        endpoint: Endpoint,
        mut resp: reqwest::Response,
    ) -> Result<Vec<u8>, ClientError> {
        let limit = self.max_response_bytes;
        if resp.content_length().is_some_and(|n| n > limit as u64) {
            return Err(ClientError::ResponseTooLarge { endpoint, limit });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|source| ClientError::Transport { endpoint, source })?
        {
            if body.len().saturating_add(chunk.len()) > limit {
                return Err(ClientError::ResponseTooLarge { endpoint, limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn check_report_id(
        endpoint: Endpoint,
        expected: &ReportId,
        r: &ApiResponse,
    ) -> Result<(), ClientError> {
        match r.report_id.as_deref() {
            Some(got) if got != expected.as_str() => Err(ClientError::ReportIdMismatch {
                endpoint,
                expected: expected.clone(),
                returned: got.to_owned(),
            }),
            _ => Ok(()),
        }
    }

    fn id_form(report_id: &ReportId) -> Form {
        Form::new().text("id", report_id.as_str().to_owned())
    }

    /// `GET /status`: checks that the credentials work; returns `responseDescription`.
    pub async fn status(&self) -> Result<String, ClientError> {
        let r = self
            .call(Endpoint::Status, Root::ReportResponse, |b| b)
            .await?;
        Ok(r.description.unwrap_or_default())
    }

    /// `POST /submit` of a validated report.
    pub async fn submit(&self, report: &ValidReport) -> Result<ReportId, ClientError> {
        self.submit_xml(&report.to_xml()).await
    }

    /// `POST /submit` of report XML produced earlier (e.g. read back from the directory the server
    /// wrote it to). The API validates it; this does not.
    pub async fn submit_xml(&self, xml: &str) -> Result<ReportId, ClientError> {
        let endpoint = Endpoint::Submit;
        let body = xml.to_owned();
        let r = self
            .call(endpoint, Root::ReportResponse, |b| {
                b.header(reqwest::header::CONTENT_TYPE, "text/xml; charset=utf-8")
                    .body(body)
            })
            .await?;
        let id = r.report_id.ok_or(ClientError::MissingElement {
            endpoint,
            element: "reportId",
        })?;
        ReportId::new(id).map_err(|source| ClientError::BadIdentifier {
            endpoint,
            element: "reportId",
            source,
        })
    }

    /// `POST /upload` of one file to an open report. Checks the returned MD5 against ours.
    pub async fn upload(
        &self,
        report_id: &ReportId,
        file_name: &str,
        bytes: Vec<u8>,
    ) -> Result<UploadReceipt, ClientError> {
        let endpoint = Endpoint::Upload;
        let sent = md5_hex(&bytes);
        let part = Part::bytes(bytes).file_name(file_name.to_owned());
        let form = Self::id_form(report_id).part("file", part);
        let r = self
            .call(endpoint, Root::ReportResponse, |b| b.multipart(form))
            .await?;
        Self::check_report_id(endpoint, report_id, &r)?;
        let file_id = r.file_id.ok_or(ClientError::MissingElement {
            endpoint,
            element: "fileId",
        })?;
        let file_id = FileId::new(file_id).map_err(|source| ClientError::BadIdentifier {
            endpoint,
            element: "fileId",
            source,
        })?;
        let returned = r.hash.ok_or(ClientError::MissingElement {
            endpoint,
            element: "hash",
        })?;
        if !returned.eq_ignore_ascii_case(&sent) {
            return Err(ClientError::HashMismatch { sent, returned });
        }
        Ok(UploadReceipt { file_id, md5: sent })
    }

    /// `POST /fileinfo` of a file's validated details.
    pub async fn file_info(&self, details: &ValidFileDetails) -> Result<(), ClientError> {
        self.file_info_xml(details.report_id(), &details.to_xml())
            .await
    }

    /// `POST /fileinfo` of file-details XML produced earlier, for the report it names.
    pub async fn file_info_xml(&self, report_id: &ReportId, xml: &str) -> Result<(), ClientError> {
        let endpoint = Endpoint::FileInfo;
        let body = xml.to_owned();
        let r = self
            .call(endpoint, Root::ReportResponse, |b| {
                b.header(reqwest::header::CONTENT_TYPE, "text/xml; charset=utf-8")
                    .body(body)
            })
            .await?;
        Self::check_report_id(endpoint, report_id, &r)
    }

    /// `POST /finish`: closes the report; returns the `fileId`s the API lists for it.
    pub async fn finish(&self, report_id: &ReportId) -> Result<Vec<FileId>, ClientError> {
        let endpoint = Endpoint::Finish;
        let form = Self::id_form(report_id);
        let r = self
            .call(endpoint, Root::ReportDoneResponse, |b| b.multipart(form))
            .await?;
        Self::check_report_id(endpoint, report_id, &r)?;
        r.file_ids
            .into_iter()
            .map(|f| {
                FileId::new(f).map_err(|source| ClientError::BadIdentifier {
                    endpoint,
                    element: "fileId",
                    source,
                })
            })
            .collect()
    }

    /// `POST /retract`: cancels an unfinished report.
    pub async fn retract(&self, report_id: &ReportId) -> Result<(), ClientError> {
        let endpoint = Endpoint::Retract;
        let form = Self::id_form(report_id);
        let r = self
            .call(endpoint, Root::ReportResponse, |b| b.multipart(form))
            .await?;
        Self::check_report_id(endpoint, report_id, &r)
    }

    /// The whole flow: submit → upload each file → fileinfo each → finish. On any failure after
    /// submit, retracts the report and says whether that worked. Everything was validated before
    /// this is called (the types say so), so nothing is opened only to be refused by our checks.
    ///
    /// Each file's multipart name is its `fileName`, or `file-<index>`.
    pub async fn submit_report(
        &self,
        report: &ValidReport,
        files: Vec<(ValidFileInfo, Vec<u8>)>,
    ) -> Result<SubmittedReport, SubmitError> {
        let report_id = self.submit(report).await.map_err(|source| SubmitError {
            stage: Stage::Submit,
            report_id: None,
            source,
            retract: RetractOutcome::NotNeeded,
        })?;
        match self.upload_and_finish(&report_id, files).await {
            Ok((file_ids, finished_file_ids)) => Ok(SubmittedReport {
                report_id,
                file_ids,
                finished_file_ids,
            }),
            Err((stage, source)) => {
                let retract = match self.retract(&report_id).await {
                    Ok(()) => RetractOutcome::Retracted,
                    Err(e) if e.response_code() == Some(ResponseCode::ReportAlreadyFinished) => {
                        RetractOutcome::AlreadyFinished
                    }
                    Err(e) => RetractOutcome::Failed(Box::new(e)),
                };
                Err(SubmitError {
                    stage,
                    report_id: Some(report_id),
                    source,
                    retract,
                })
            }
        }
    }

    async fn upload_and_finish(
        &self,
        report_id: &ReportId,
        files: Vec<(ValidFileInfo, Vec<u8>)>,
    ) -> Result<(Vec<FileId>, Vec<FileId>), (Stage, ClientError)> {
        let mut uploaded = Vec::with_capacity(files.len());
        for (i, (info, bytes)) in files.into_iter().enumerate() {
            let name = info
                .info()
                .file_name
                .clone()
                .unwrap_or_else(|| format!("file-{i}"));
            let receipt = self
                .upload(report_id, &name, bytes)
                .await
                .map_err(|e| (Stage::Upload(i), e))?;
            uploaded.push((info, receipt.file_id));
        }
        let mut file_ids = Vec::with_capacity(uploaded.len());
        for (i, (info, file_id)) in uploaded.into_iter().enumerate() {
            let details = info.with_ids(report_id.clone(), file_id.clone());
            self.file_info(&details)
                .await
                .map_err(|e| (Stage::FileInfo(i), e))?;
            file_ids.push(file_id);
        }
        let finished = self
            .finish(report_id)
            .await
            .map_err(|e| (Stage::Finish, e))?;
        Ok((file_ids, finished))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn creds() -> Credentials {
        Credentials::new("usr123", "pswd123")
    }

    #[test]
    fn base_urls_must_be_https_or_loopback() {
        assert!(Client::new(ClientConfig::new(Environment::Production, creds())).is_ok());
        assert!(Client::new(ClientConfig::new(Environment::Test, creds())).is_ok());
        assert!(Client::new(ClientConfig::with_base_url(
            "http://127.0.0.1:8080",
            creds()
        ))
        .is_ok());
        assert!(Client::new(ClientConfig::with_base_url(
            "http://[::1]:8080/ispws",
            creds()
        ))
        .is_ok());
        assert!(Client::new(ClientConfig::with_base_url("http://localhost:1", creds())).is_ok());
        for bad in [
            "http://report.cybertip.org/ispws",
            "ftp://127.0.0.1/",
            "not a url",
            "https://x/?q=1",
        ] {
            assert!(
                matches!(
                    Client::new(ClientConfig::with_base_url(bad, creds())),
                    Err(ClientError::BadBaseUrl(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn endpoints_join_under_the_base_path() {
        let c = Client::new(ClientConfig::new(Environment::Production, creds())).unwrap();
        assert_eq!(
            c.url(Endpoint::Submit).unwrap().as_str(),
            "https://report.cybertip.org/ispws/submit"
        );
        assert_eq!(
            c.url(Endpoint::FileInfo).unwrap().as_str(),
            "https://report.cybertip.org/ispws/fileinfo"
        );
    }

    #[test]
    fn response_codes_round_trip() {
        for (code, v) in ResponseCode::KNOWN {
            assert_eq!(ResponseCode::from_code(code), v);
            assert_eq!(v.code(), code);
        }
        assert_eq!(ResponseCode::from_code(4110), ResponseCode::MalformedXml);
        assert_eq!(ResponseCode::from_code(9999), ResponseCode::Other(9999));
        assert!(ResponseCode::ServerError.is_transient());
        assert!(!ResponseCode::ValidationFailed.is_transient());
    }

    #[test]
    fn credentials_never_print_the_password() {
        assert!(!format!("{:?}", creds()).contains("pswd123"));
    }

    #[test]
    fn md5_matches_rfc_1321_vectors() {
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_hex(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
    }
}
