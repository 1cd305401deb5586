//! A loopback HTTP server that behaves as the CyberTipline Reporting API's documentation says, so
//! the client (and Haven's server) can be tested without NCMEC.
//!
//! It checks what the real API checks, as far as the documentation shows: Basic auth on every
//! endpoint (otherwise `responseCode` 2000 with HTTP 401); the body of `/submit` and `/fileinfo`
//! is one well-formed XML document (otherwise 4110) with the right root, the required fields
//! (`incidentType` among the eight documented values, an ISO 8601 `incidentDateTime`, the
//! reporting person's `email`; `reportId` and `fileId` in file details) and the children of the
//! main sections in the order Haven's writer uses (otherwise 4100); uploads, file details, finish
//! and retract only for a report that exists (5001) and is not finished (5102); file details only
//! for a file uploaded to that report (5002); retract removes the report.
//!
//! State is kept in memory so tests can inspect what arrived; [`TestServer::inject`] makes the next
//! call to an endpoint fail in a chosen way. HTTP statuses other than 401 for 2000 follow the
//! unofficial Cybertipline-Tools table and are not confirmed by NCMEC's documentation.

use crate::client::{md5_hex, Endpoint, ResponseCode};
use crate::ids::{FileId, ReportId};
use crate::report::IncidentType;
use crate::response::{self, ApiResponse, Root};
use crate::timestamp::Timestamp;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

/// Largest request body the server reads (uploads included).
pub const MAX_BODY_BYTES: usize = 64 << 20;

/// One uploaded file as the server holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    /// The `fileId` it was given.
    pub file_id: FileId,
    /// The multipart file name, if one was sent.
    pub file_name: Option<String>,
    /// The bytes received.
    pub bytes: Vec<u8>,
    /// Their MD5, lowercase hex (what `/upload` answered).
    pub md5: String,
    /// The `fileDetails` XML received for it by `/fileinfo`, if any.
    pub details_xml: Option<String>,
}

/// One report as the server holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReport {
    /// The `reportId` it was given.
    pub report_id: ReportId,
    /// The `report` XML received by `/submit`.
    pub xml: String,
    /// Uploaded files, in order.
    pub files: Vec<StoredFile>,
    /// Whether `/finish` closed it.
    pub finished: bool,
}

/// A failure to produce on the next call to an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this code (and its HTTP status) without doing anything.
    Respond(ResponseCode),
    /// `/upload` only: store the file but answer with an MD5 that is not its own.
    WrongUploadHash,
    /// Answer 200 with a valid-looking document padded to this many bytes.
    OversizedResponse(usize),
}

#[derive(Default)]
struct ServerState {
    next_report: u64,
    next_file: u64,
    reports: BTreeMap<ReportId, StoredReport>,
    retracted: Vec<ReportId>,
    faults: HashMap<Endpoint, Fault>,
    calls: Vec<Endpoint>,
}

#[derive(Clone)]
struct App {
    state: Arc<Mutex<ServerState>>,
    expected_auth: Arc<String>,
}

fn lock(m: &Mutex<ServerState>) -> MutexGuard<'_, ServerState> {
    // A panicking test thread must not hide the state from the others.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The running server. Dropping it stops it.
pub struct TestServer {
    addr: SocketAddr,
    state: Arc<Mutex<ServerState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    /// Starts on 127.0.0.1 with an OS-chosen port, accepting only these credentials.
    pub async fn start(username: &str, password: &str) -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(ServerState {
            next_report: 4_564_654,
            ..ServerState::default()
        }));
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
        let app = App {
            state: state.clone(),
            expected_auth: Arc::new(format!("Basic {token}")),
        };
        let router = Router::new()
            .route("/status", get(status))
            .route("/submit", post(submit))
            .route("/upload", post(upload))
            .route("/fileinfo", post(fileinfo))
            .route("/finish", post(finish))
            .route("/retract", post(retract))
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(app);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Self { addr, state, task })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A report that is open or finished (not retracted).
    pub fn report(&self, id: &ReportId) -> Option<StoredReport> {
        lock(&self.state).reports.get(id).cloned()
    }

    /// Every open or finished report, by ID.
    pub fn reports(&self) -> Vec<StoredReport> {
        lock(&self.state).reports.values().cloned().collect()
    }

    /// IDs of retracted reports, in order.
    pub fn retracted(&self) -> Vec<ReportId> {
        lock(&self.state).retracted.clone()
    }

    /// Every authenticated call, in order.
    pub fn calls(&self) -> Vec<Endpoint> {
        lock(&self.state).calls.clone()
    }

    /// Makes the next authenticated call to `endpoint` fail as `fault` says.
    pub fn inject(&self, endpoint: Endpoint, fault: Fault) {
        lock(&self.state).faults.insert(endpoint, fault);
    }
}

// -------------------------------------------------------------------------------------------
// Answers
// -------------------------------------------------------------------------------------------

fn http_status(code: i64) -> StatusCode {
    match code {
        0 => StatusCode::OK,
        2000 => StatusCode::UNAUTHORIZED,
        3000..=3999 => StatusCode::FORBIDDEN,
        4100 => StatusCode::UNPROCESSABLE_ENTITY,
        4000..=4999 => StatusCode::BAD_REQUEST,
        5001 | 5002 => StatusCode::NOT_FOUND,
        5101 | 5102 => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn describe(code: i64) -> &'static str {
    match code {
        0 => "Success",
        1000 => "Server error",
        2000 => "Authentication required",
        4000 => "Invalid request",
        4100 => "Validation failed",
        4110 => "Malformed XML submittal",
        4200 => "Malformed file submittal",
        5001 => "Report does not exist",
        5002 => "File does not exist",
        5101 => "Report already retracted",
        5102 => "Report already finished",
        _ => "Error",
    }
}

fn xml_reply(root: Root, r: &ApiResponse) -> Response {
    let status = http_status(r.code);
    (
        status,
        [(header::CONTENT_TYPE, "application/xml")],
        response::write(root, r),
    )
        .into_response()
}

fn error(code: i64, detail: &str, report_id: Option<&ReportId>) -> Response {
    let description = if detail.is_empty() {
        describe(code).to_owned()
    } else {
        format!("{}: {detail}", describe(code))
    };
    xml_reply(
        Root::ReportResponse,
        &ApiResponse {
            code,
            description: Some(description),
            report_id: report_id.map(|r| r.as_str().to_owned()),
            ..ApiResponse::default()
        },
    )
}

fn ok(report_id: &ReportId) -> ApiResponse {
    ApiResponse {
        code: 0,
        description: Some("Success".into()),
        report_id: Some(report_id.as_str().to_owned()),
        ..ApiResponse::default()
    }
}

/// Auth, call log and injected faults, common to every endpoint. `Err` is the answer to send.
fn admit(
    app: &App,
    headers: &HeaderMap,
    endpoint: Endpoint,
) -> Result<Option<Fault>, Box<Response>> {
    let authorized = headers
        .get(header::AUTHORIZATION)
        .is_some_and(|v| v.as_bytes() == app.expected_auth.as_bytes());
    if !authorized {
        let mut resp = error(2000, "", None);
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"ispws\""),
        );
        return Err(Box::new(resp));
    }
    let mut st = lock(&app.state);
    st.calls.push(endpoint);
    match st.faults.remove(&endpoint) {
        Some(Fault::Respond(code)) => Err(Box::new(error(code.code(), "injected", None))),
        Some(Fault::OversizedResponse(n)) => {
            let pad = "x".repeat(n);
            let body = format!("<reportResponse><responseCode>0</responseCode><responseDescription>{pad}</responseDescription></reportResponse>");
            let resp = (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/xml")],
                body,
            );
            Err(Box::new(resp.into_response()))
        }
        other => Ok(other),
    }
}

// -------------------------------------------------------------------------------------------
// Checks on received documents
// -------------------------------------------------------------------------------------------

type Refusal = (i64, String);

fn refuse(code: i64, detail: impl Into<String>) -> Refusal {
    (code, detail.into())
}

fn xml_body(headers: &HeaderMap, body: &Bytes) -> Result<String, Refusal> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if media != "text/xml" && media != "application/xml" {
        return Err(refuse(4000, "content type must be XML"));
    }
    String::from_utf8(body.to_vec()).map_err(|_| refuse(4110, "not UTF-8"))
}

fn parse_doc(text: &str) -> Result<roxmltree::Document<'_>, Refusal> {
    let opts = roxmltree::ParsingOptions {
        allow_dtd: false,
        ..roxmltree::ParsingOptions::default()
    };
    roxmltree::Document::parse_with_options(text, opts).map_err(|_| refuse(4110, "not well-formed"))
}

fn elements<'a, 'i>(n: roxmltree::Node<'a, 'i>) -> impl Iterator<Item = roxmltree::Node<'a, 'i>> {
    n.children().filter(|c| c.is_element())
}

fn child<'a, 'i>(n: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    elements(n).find(|c| c.tag_name().name() == name)
}

fn text_of(n: roxmltree::Node<'_, '_>) -> String {
    n.text().unwrap_or("").trim().to_owned()
}

/// Children known, in order, with the singletons at most once (what an XSD sequence enforces).
fn check_sequence(n: roxmltree::Node<'_, '_>, order: &[(&str, bool)]) -> Result<(), Refusal> {
    let mut at = 0usize;
    let mut last: Option<&str> = None;
    for c in elements(n) {
        let name = c.tag_name().name();
        let pos = order.iter().position(|(o, _)| *o == name).ok_or_else(|| {
            refuse(
                4100,
                format!("unexpected element {name} in {}", n.tag_name().name()),
            )
        })?;
        if pos < at {
            return Err(refuse(
                4100,
                format!("{name} out of order in {}", n.tag_name().name()),
            ));
        }
        let repeatable = order.get(pos).is_some_and(|(_, r)| *r);
        if last == Some(name) && !repeatable {
            return Err(refuse(
                4100,
                format!("{name} repeated in {}", n.tag_name().name()),
            ));
        }
        at = pos;
        last = Some(name);
    }
    Ok(())
}

const REPORT_ORDER: &[(&str, bool)] = &[
    ("incidentSummary", false),
    ("internetDetails", true),
    ("lawEnforcement", false),
    ("reporter", false),
    ("personOrUserReported", false),
    ("intendedRecipient", true),
    ("victim", true),
    ("additionalInfo", false),
];
const SUMMARY_ORDER: &[(&str, bool)] = &[
    ("incidentType", false),
    ("escalateToHighPriority", false),
    ("reportAnnotations", false),
    ("incidentDateTime", false),
    ("incidentDateTimeDescription", false),
];
const REPORTER_ORDER: &[(&str, bool)] = &[
    ("reportingPerson", false),
    ("contactPerson", false),
    ("companyTemplate", false),
    ("termsOfService", false),
    ("legalURL", false),
];
const PERSON_ORDER: &[(&str, bool)] = &[
    ("firstName", false),
    ("lastName", false),
    ("phone", true),
    ("email", true),
    ("address", true),
    ("age", false),
    ("dateOfBirth", false),
];
const ACCOUNT_ORDER: &[(&str, bool)] = &[
    ("personOrUserReportedPerson", false),
    ("victimPerson", false),
    ("vehicleDescription", false),
    ("espIdentifier", false),
    ("espService", false),
    ("screenName", false),
    ("displayName", true),
    ("profileUrl", true),
    ("ipCaptureEvent", true),
    ("deviceId", true),
    ("thirdPartyUserReported", false),
    ("schoolName", false),
    ("priorCTReports", true),
    ("groupIdentifier", false),
    ("estimatedLocation", false),
    ("additionalInfo", false),
];
const IP_ORDER: &[(&str, bool)] = &[
    ("ipAddress", false),
    ("eventName", false),
    ("dateTime", false),
    ("possibleProxy", false),
    ("port", false),
];
const CHAT_ORDER: &[(&str, bool)] = &[
    ("chatClient", false),
    ("chatRoomName", false),
    ("content", false),
    ("additionalInfo", false),
];
const FILE_ORDER: &[(&str, bool)] = &[
    ("reportId", false),
    ("fileId", false),
    ("fileName", false),
    ("originalFileName", false),
    ("locationOfFile", false),
    ("fileViewedByEsp", false),
    ("exifViewedByEsp", false),
    ("publiclyAvailable", false),
    ("fileRelevance", false),
    ("fileAnnotations", false),
    ("industryClassification", false),
    ("originalFileHash", true),
    ("ipCaptureEvent", false),
    ("deviceId", true),
    ("details", true),
    ("additionalInfo", true),
];

fn check_date_time(n: roxmltree::Node<'_, '_>, what: &str) -> Result<(), Refusal> {
    if let Some(d) = child(n, "dateTime") {
        Timestamp::parse_rfc3339(&text_of(d))
            .map_err(|_| refuse(4100, format!("{what} dateTime is not ISO 8601")))?;
    }
    Ok(())
}

fn check_account(n: roxmltree::Node<'_, '_>) -> Result<(), Refusal> {
    check_sequence(n, ACCOUNT_ORDER)?;
    for p in elements(n).filter(|c| {
        matches!(
            c.tag_name().name(),
            "personOrUserReportedPerson" | "victimPerson"
        )
    }) {
        check_sequence(p, PERSON_ORDER)?;
    }
    for e in elements(n).filter(|c| c.tag_name().name() == "ipCaptureEvent") {
        check_sequence(e, IP_ORDER)?;
        let ip = child(e, "ipAddress").map(text_of).unwrap_or_default();
        ip.parse::<std::net::IpAddr>()
            .map_err(|_| refuse(4100, "ipCaptureEvent needs a valid ipAddress"))?;
        check_date_time(e, "ipCaptureEvent")?;
    }
    for d in elements(n).filter(|c| c.tag_name().name() == "deviceId") {
        if child(d, "idValue")
            .map(text_of)
            .unwrap_or_default()
            .is_empty()
        {
            return Err(refuse(4100, "deviceId needs idValue"));
        }
        check_date_time(d, "deviceId")?;
    }
    Ok(())
}

fn check_report(text: &str) -> Result<(), Refusal> {
    let doc = parse_doc(text)?;
    let root = doc.root_element();
    if root.tag_name().name() != "report" {
        return Err(refuse(4100, "root must be report"));
    }
    check_sequence(root, REPORT_ORDER)?;
    let summary = child(root, "incidentSummary")
        .ok_or_else(|| refuse(4100, "incidentSummary is required"))?;
    check_sequence(summary, SUMMARY_ORDER)?;
    let incident_type = child(summary, "incidentType")
        .map(text_of)
        .unwrap_or_default();
    if !IncidentType::ALL
        .iter()
        .any(|t| t.api_str() == incident_type)
    {
        return Err(refuse(
            4100,
            "incidentType is missing or not a documented value",
        ));
    }
    let when = child(summary, "incidentDateTime")
        .map(text_of)
        .unwrap_or_default();
    Timestamp::parse_rfc3339(&when)
        .map_err(|_| refuse(4100, "incidentDateTime is missing or not ISO 8601"))?;
    for d in elements(root).filter(|c| c.tag_name().name() == "internetDetails") {
        let incidents: Vec<_> = elements(d).collect();
        if incidents.len() != 1 {
            return Err(refuse(4100, "internetDetails holds exactly one incident"));
        }
        for i in incidents
            .iter()
            .filter(|i| i.tag_name().name() == "chatImIncident")
        {
            check_sequence(*i, CHAT_ORDER)?;
        }
    }
    let reporter = child(root, "reporter").ok_or_else(|| refuse(4100, "reporter is required"))?;
    check_sequence(reporter, REPORTER_ORDER)?;
    let person = child(reporter, "reportingPerson")
        .ok_or_else(|| refuse(4100, "reportingPerson is required"))?;
    check_sequence(person, PERSON_ORDER)?;
    if !elements(person).any(|c| c.tag_name().name() == "email" && !text_of(c).is_empty()) {
        return Err(refuse(4100, "reportingPerson email is required"));
    }
    for a in
        elements(root).filter(|c| matches!(c.tag_name().name(), "personOrUserReported" | "victim"))
    {
        check_account(a)?;
    }
    Ok(())
}

fn check_bool(n: roxmltree::Node<'_, '_>, name: &str) -> Result<(), Refusal> {
    match child(n, name).map(text_of).as_deref() {
        None | Some("true") | Some("false") => Ok(()),
        Some(_) => Err(refuse(4100, format!("{name} must be true or false"))),
    }
}

/// Returns the `reportId` and `fileId` the details are for.
fn check_file_details(text: &str) -> Result<(String, String), Refusal> {
    let doc = parse_doc(text)?;
    let root = doc.root_element();
    if root.tag_name().name() != "fileDetails" {
        return Err(refuse(4100, "root must be fileDetails"));
    }
    check_sequence(root, FILE_ORDER)?;
    let report_id = child(root, "reportId").map(text_of).unwrap_or_default();
    let file_id = child(root, "fileId").map(text_of).unwrap_or_default();
    if report_id.is_empty() || file_id.is_empty() {
        return Err(refuse(4100, "reportId and fileId are required"));
    }
    for b in ["fileViewedByEsp", "exifViewedByEsp", "publiclyAvailable"] {
        check_bool(root, b)?;
    }
    if let Some(r) = child(root, "fileRelevance").map(text_of) {
        if r != "Reported" && r != "Supplemental Reported" {
            return Err(refuse(
                4100,
                "fileRelevance must be Reported or Supplemental Reported",
            ));
        }
    }
    for h in elements(root).filter(|c| c.tag_name().name() == "originalFileHash") {
        if h.attribute("hashType").is_none_or(str::is_empty) || text_of(h).is_empty() {
            return Err(refuse(4100, "originalFileHash needs hashType and a value"));
        }
    }
    for d in elements(root).filter(|c| c.tag_name().name() == "details") {
        if !matches!(d.attribute("type"), None | Some("EXIF") | Some("HASH")) {
            return Err(refuse(4100, "details type must be EXIF or HASH"));
        }
        for p in elements(d) {
            if p.tag_name().name() != "nameValuePair"
                || child(p, "name").is_none()
                || child(p, "value").is_none()
            {
                return Err(refuse(
                    4100,
                    "details holds nameValuePair elements with name and value",
                ));
            }
        }
    }
    Ok((report_id, file_id))
}

/// An open report, or the code the API gives for why it is not.
fn open_report<'s>(st: &'s mut ServerState, id: &str) -> Result<&'s mut StoredReport, Refusal> {
    let rid = ReportId::new(id).map_err(|_| refuse(5001, ""))?;
    if st.retracted.contains(&rid) {
        return Err(refuse(5101, ""));
    }
    let report = st.reports.get_mut(&rid).ok_or_else(|| refuse(5001, ""))?;
    if report.finished {
        return Err(refuse(5102, ""));
    }
    Ok(report)
}

struct FormField {
    name: String,
    file_name: Option<String>,
    bytes: Bytes,
}

async fn form_fields(req: Request) -> Result<Vec<FormField>, Refusal> {
    let mut mp = Multipart::from_request(req, &())
        .await
        .map_err(|_| refuse(4000, "expected multipart/form-data"))?;
    let mut fields = Vec::new();
    loop {
        match mp.next_field().await {
            Ok(Some(f)) => {
                let name = f.name().unwrap_or("").to_owned();
                let file_name = f.file_name().map(str::to_owned);
                let bytes = f
                    .bytes()
                    .await
                    .map_err(|_| refuse(4200, "unreadable multipart field"))?;
                fields.push(FormField {
                    name,
                    file_name,
                    bytes,
                });
            }
            Ok(None) => return Ok(fields),
            Err(_) => return Err(refuse(4200, "malformed multipart body")),
        }
    }
}

fn form_id(fields: &[FormField]) -> Result<String, Refusal> {
    let id = fields
        .iter()
        .find(|f| f.name == "id")
        .ok_or_else(|| refuse(4000, "id is required"))?;
    std::str::from_utf8(&id.bytes)
        .map(|s| s.trim().to_owned())
        .map_err(|_| refuse(4000, "id is not text"))
}

fn refused((code, detail): Refusal) -> Response {
    error(code, &detail, None)
}

// -------------------------------------------------------------------------------------------
// Endpoints
// -------------------------------------------------------------------------------------------

async fn status(State(app): State<App>, headers: HeaderMap) -> Response {
    if let Err(r) = admit(&app, &headers, Endpoint::Status) {
        return *r;
    }
    let r = ApiResponse {
        code: 0,
        description: Some("Remote User : test".into()),
        ..ApiResponse::default()
    };
    xml_reply(Root::ReportResponse, &r)
}

async fn submit(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = admit(&app, &headers, Endpoint::Submit) {
        return *r;
    }
    let xml = match xml_body(&headers, &body).and_then(|x| check_report(&x).map(|()| x)) {
        Ok(x) => x,
        Err(e) => return refused(e),
    };
    let mut st = lock(&app.state);
    let n = st.next_report;
    st.next_report += 1;
    let Ok(report_id) = ReportId::new(n.to_string()) else {
        return refused(refuse(1000, ""));
    };
    st.reports.insert(
        report_id.clone(),
        StoredReport {
            report_id: report_id.clone(),
            xml,
            files: Vec::new(),
            finished: false,
        },
    );
    xml_reply(Root::ReportResponse, &ok(&report_id))
}

async fn upload(State(app): State<App>, req: Request) -> Response {
    let fault = match admit(&app, req.headers(), Endpoint::Upload) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let fields = match form_fields(req).await {
        Ok(f) => f,
        Err(e) => return refused(e),
    };
    let id = match form_id(&fields) {
        Ok(id) => id,
        Err(e) => return refused(e),
    };
    let Some(file) = fields.into_iter().find(|f| f.name == "file") else {
        return refused(refuse(4000, "file is required"));
    };
    let mut st = lock(&app.state);
    let n = st.next_file;
    st.next_file += 1;
    let report = match open_report(&mut st, &id) {
        Ok(r) => r,
        Err(e) => return refused(e),
    };
    let Ok(file_id) = FileId::new(md5_hex(format!("file-{n}").as_bytes())) else {
        return refused(refuse(1000, ""));
    };
    let md5 = md5_hex(&file.bytes);
    let answered_hash = if fault == Some(Fault::WrongUploadHash) {
        md5_hex(b"not the file")
    } else {
        md5.clone()
    };
    report.files.push(StoredFile {
        file_id: file_id.clone(),
        file_name: file.file_name,
        bytes: file.bytes.to_vec(),
        md5,
        details_xml: None,
    });
    let mut r = ok(&report.report_id);
    r.file_id = Some(file_id.as_str().to_owned());
    r.hash = Some(answered_hash);
    xml_reply(Root::ReportResponse, &r)
}

async fn fileinfo(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = admit(&app, &headers, Endpoint::FileInfo) {
        return *r;
    }
    let checked =
        xml_body(&headers, &body).and_then(|x| check_file_details(&x).map(|ids| (x, ids)));
    let (xml, (report_id, file_id)) = match checked {
        Ok(v) => v,
        Err(e) => return refused(e),
    };
    let mut st = lock(&app.state);
    let report = match open_report(&mut st, &report_id) {
        Ok(r) => r,
        Err(e) => return refused(e),
    };
    let Some(file) = report
        .files
        .iter_mut()
        .find(|f| f.file_id.as_str() == file_id)
    else {
        return error(5002, "", Some(&report.report_id));
    };
    file.details_xml = Some(xml);
    xml_reply(Root::ReportResponse, &ok(&report.report_id))
}

async fn finish(State(app): State<App>, req: Request) -> Response {
    if let Err(r) = admit(&app, req.headers(), Endpoint::Finish) {
        return *r;
    }
    let id = match form_fields(req).await.and_then(|f| form_id(&f)) {
        Ok(id) => id,
        Err(e) => return refused(e),
    };
    let mut st = lock(&app.state);
    let report = match open_report(&mut st, &id) {
        Ok(r) => r,
        Err(e) => return refused(e),
    };
    report.finished = true;
    let mut r = ok(&report.report_id);
    r.description = None;
    r.file_ids = report
        .files
        .iter()
        .map(|f| f.file_id.as_str().to_owned())
        .collect();
    xml_reply(Root::ReportDoneResponse, &r)
}

async fn retract(State(app): State<App>, req: Request) -> Response {
    if let Err(r) = admit(&app, req.headers(), Endpoint::Retract) {
        return *r;
    }
    let id = match form_fields(req).await.and_then(|f| form_id(&f)) {
        Ok(id) => id,
        Err(e) => return refused(e),
    };
    let mut st = lock(&app.state);
    let report_id = match open_report(&mut st, &id) {
        Ok(r) => r.report_id.clone(),
        Err(e) => return refused(e),
    };
    st.reports.remove(&report_id);
    st.retracted.push(report_id.clone());
    xml_reply(Root::ReportResponse, &ok(&report_id))
}
