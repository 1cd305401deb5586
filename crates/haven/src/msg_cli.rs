//! The messaging commands: `server`, `register`, `link`, `device`, `send`, `send-file`,
//! `get-file`, `group`, `accept`, `leave`, `sync`, `history`, `conversations`, `chat`.
//!
//! `sync`, `history` and `chat` show messages as the contact rules have them (`safety_cli` has
//! the commands): a message request's messages, and a restricted sender's, are marked
//! (`"request": true`, `[request]`) and shown as text only, their attachments neither listed
//! nor fetched (`get-file` refuses them); a blocked sender's are not shown. Safety notices print
//! with the actions they offer.
//!
//! Errors print one clear line on stderr and exit non-zero; a refused command changes nothing
//! locally or on the server (arguments and names are checked before anything is created).
//!
//! A conversation argument is `USER` (the direct chat `send USER` uses), `#GROUP` (its local
//! name) or `id:HEX` (a unique prefix of its id, as `haven conversations` prints it); a name
//! that matches several conversations is refused with the candidates listed
//! (`haven_client::address`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use haven_client::{
    Body, Client, ConversationState, Event, MessageScope, SafetyView, StoredMessage, Target,
};
use haven_proto::{GroupId, UserName};
use haven_server::{ServerConfig, ServerLimits};
use serde_json::json;
use tokio::io::AsyncBufReadExt;

/// Runs an async command on a fresh runtime.
pub fn run<F: std::future::Future<Output = anyhow::Result<ExitCode>>>(
    f: F,
) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(f)
}

/// `~/.haven`, or `./.haven` without a home directory.
pub fn default_home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".haven")
}

#[derive(clap::Args)]
pub struct ServerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7878")]
    pub listen: SocketAddr,
    /// Data directory (SQLite file and blob directory).
    #[arg(long, default_value = "./haven-data")]
    pub data: PathBuf,
    /// Database URL (postgres://…); default: SQLite in the data directory.
    #[arg(long)]
    pub database: Option<String>,
    /// TLS certificate chain (PEM).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Largest attachment in MiB.
    #[arg(long, default_value_t = 25)]
    pub max_attachment_mib: usize,
    /// Registration, link and login attempts allowed per client IP in a burst (refilled at one
    /// every two seconds).
    #[arg(long, default_value_t = 30)]
    pub auth_burst: u32,
    /// Authenticated writes (send, commit, upload, create group) allowed per account in a
    /// burst (refilled at 20 a second).
    #[arg(long, default_value_t = 300)]
    pub write_burst: u32,
    /// A reverse proxy (IP or CIDR, repeatable) whose X-Forwarded-For is believed for rate
    /// limits; without one the peer address is the client address.
    #[arg(long = "trusted-proxy", value_name = "CIDR")]
    pub trusted_proxies: Vec<String>,
    /// The evidence key file (reported content is sealed with it at rest); default
    /// DATA/evidence-key, created on first start. Every node of a deployment needs the same one.
    #[arg(long, value_name = "PATH")]
    pub evidence_key: Option<PathBuf>,
    /// The operator's reporting contact (e-mail), written as the reporter of CyberTipline
    /// reports that moderators escalate; escalation is refused without one.
    #[arg(long, value_name = "EMAIL")]
    pub report_contact: Option<String>,
    /// Most open connections (WebSockets included); lowered to fit the open-file limit.
    #[arg(long, default_value_t = 10_000)]
    pub max_connections: usize,
    /// Most open connections per client address (IPv6: per /64; trusted proxies exempt).
    #[arg(long, default_value_t = 256)]
    pub max_connections_per_address: usize,
    /// Seconds a connection may take to send a request head (also the keep-alive idle limit).
    #[arg(long, default_value_t = 15)]
    pub header_read_timeout_secs: u64,
    /// Seconds without a byte moving after which a connection is closed.
    #[arg(long, default_value_t = 60)]
    pub idle_timeout_secs: u64,
    /// Most concurrent WebSockets per device (a new one closes the oldest).
    #[arg(long, default_value_t = 4)]
    pub max_ws_per_device: usize,
    /// Most MiB of attachments one account may have stored at a time.
    #[arg(long, default_value_t = 1024)]
    pub blob_quota_mib: u64,
    /// Days an attachment is kept after its upload.
    #[arg(long, default_value_t = 30)]
    pub blob_ttl_days: u64,
    /// The contact policy's limits and the risk score's weights and thresholds, as JSON
    /// (missing fields take their defaults; `haven admin policy` prints what is in force).
    #[arg(long, value_name = "FILE")]
    pub safety_config: Option<PathBuf>,
    /// Milliseconds between key-directory publishes of uploaded device lists (a client that
    /// waits for its list also makes the server publish at once).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..))]
    pub kt_interval_ms: u64,
}

/// Parses `--trusted-proxy` values: CIDRs, or single addresses (as /32 or /128).
fn trusted_proxies(values: &[String]) -> anyhow::Result<Vec<ipnet::IpNet>> {
    values
        .iter()
        .map(|v| {
            v.parse::<ipnet::IpNet>()
                .or_else(|_| v.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| anyhow::anyhow!("--trusted-proxy {v:?}: not an IP address or CIDR"))
        })
        .collect()
}

pub async fn server(args: ServerArgs) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let limits = ServerLimits {
        max_blob: args.max_attachment_mib << 20,
        auth_burst: args.auth_burst,
        max_connections: args.max_connections,
        max_connections_per_address: args.max_connections_per_address,
        header_read_timeout: std::time::Duration::from_secs(args.header_read_timeout_secs),
        idle_timeout: std::time::Duration::from_secs(args.idle_timeout_secs),
        max_ws_per_device: args.max_ws_per_device,
        max_blob_bytes_per_account: args.blob_quota_mib << 20,
        blob_ttl: std::time::Duration::from_secs(args.blob_ttl_days.saturating_mul(24 * 3600)),
        write_burst: args.write_burst,
        report_contact: args.report_contact.clone(),
        ..ServerLimits::default()
    };
    let safety = match &args.safety_config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--safety-config {}", path.display()))?;
            haven_safety::policy::PolicyConfig::from_json(&text)
                .map_err(|e| anyhow::anyhow!("--safety-config {}: {e}", path.display()))?
        }
        None => haven_safety::policy::PolicyConfig::default(),
    };
    let config = ServerConfig {
        listen: args.listen,
        data_dir: args.data,
        database: args.database,
        tls: args.tls_cert.zip(args.tls_key),
        limits,
        trusted_proxies: trusted_proxies(&args.trusted_proxies)?,
        evidence_key: args.evidence_key,
        safety,
        kt_interval: std::time::Duration::from_millis(args.kt_interval_ms),
    };
    let tls = config.tls.is_some();
    let running = haven_server::start(config).await?;
    eprintln!("haven server listening on {}", running.url(tls));
    tokio::select! {
        r = running.wait() => { r?; }
        _ = tokio::signal::ctrl_c() => { eprintln!("shutting down"); }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct RegisterArgs {
    /// The user name (a-z, 0-9, '_', '.', '-'; starts with a letter).
    pub name: String,
    /// Server URL.
    #[arg(long, env = "HAVEN_SERVER")]
    pub server: String,
    /// A label for this device.
    #[arg(long, default_value = "cli")]
    pub device_name: String,
    /// Your date of birth, YYYY-MM-DD. The server keeps only the age band it implies (it
    /// decides who may contact you: minors are reachable only by their contacts); the date
    /// itself is neither stored on the server nor in this profile.
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub birth_date: String,
}

pub async fn register(home: PathBuf, args: RegisterArgs) -> anyhow::Result<ExitCode> {
    let user = UserName::new(&args.name)?;
    let client = Client::register(
        &home,
        &args.server,
        &user,
        &args.device_name,
        &args.birth_date,
    )
    .await?;
    println!(
        "registered {} (device {}) in {}",
        client.user(),
        client.device_id(),
        home.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct LinkArgs {
    /// The one-time code printed by `haven device link` on an existing device.
    pub code: String,
    /// Server URL.
    #[arg(long, env = "HAVEN_SERVER")]
    pub server: String,
    /// A label for this device.
    #[arg(long, default_value = "cli")]
    pub device_name: String,
}

pub async fn link(home: PathBuf, args: LinkArgs) -> anyhow::Result<ExitCode> {
    let client = Client::link(&home, &args.server, &args.code, &args.device_name).await?;
    println!(
        "linked device {} to {}; the device that made the code adds it to your conversations when it next syncs",
        client.device_id(),
        client.user()
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Subcommand)]
pub enum DeviceCmd {
    /// Print a one-time code for linking a new device (valid 10 minutes): the server's code and
    /// a secret only this device and the new one know; this device signs the new one in.
    Link,
    /// List this account's devices.
    List,
    /// Remove another device of this account (by id or unique name): it is logged out, can no
    /// longer log in, and is removed from your conversations. Signed by this device's key.
    Remove {
        /// The device id (from `haven device list`) or its name.
        device: String,
    },
}

#[derive(clap::Args)]
pub struct LogoutArgs {
    /// Revoke every session of every device of the account, not just this device's.
    #[arg(long)]
    pub all: bool,
}

pub async fn logout(home: PathBuf, args: LogoutArgs) -> anyhow::Result<ExitCode> {
    let mut client = Client::open(&home).await?;
    let n = client.logout(args.all).await?;
    if args.all {
        println!("revoked {n} sessions of {}", client.user());
    } else {
        println!("logged out this device of {}", client.user());
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn device(home: PathBuf, cmd: DeviceCmd) -> anyhow::Result<ExitCode> {
    let mut client = Client::open(&home).await?;
    match cmd {
        DeviceCmd::Link => {
            let code = client.link_code().await?;
            println!("{}", code.code);
            eprintln!(
                "on the new device run: haven link {} --server {}",
                code.code,
                client.api().base()
            );
        }
        DeviceCmd::Remove { device } => {
            let removed = client.remove_device(&device).await?;
            println!("removed device {removed} from {}", client.user());
        }
        DeviceCmd::List => {
            let me = client.user().clone();
            for d in client.api().user(&me).await?.devices {
                let this = if &d.device_id == client.device_id() {
                    " (this device)"
                } else {
                    ""
                };
                println!("{} {}{}", d.device_id, d.name, this);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct SendArgs {
    /// A user name (1:1 conversation), #GROUP or id:HEX.
    pub to: String,
    /// The text.
    pub text: String,
}

pub async fn send(home: PathBuf, args: SendArgs) -> anyhow::Result<ExitCode> {
    let to = Target::parse(&args.to)?;
    let mut client = Client::open(&home).await?;
    client.sync().await?;
    let m = client.send_text(&to, &args.text).await?;
    println!("{}", m.id);
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct SendFileArgs {
    /// A user name, #GROUP or id:HEX.
    pub to: String,
    /// The file.
    pub path: PathBuf,
}

pub async fn send_file(home: PathBuf, args: SendFileArgs) -> anyhow::Result<ExitCode> {
    let to = Target::parse(&args.to)?;
    let mut client = Client::open(&home).await?;
    client.sync().await?;
    let m = client.send_file(&to, &args.path).await?;
    println!("{}", m.id);
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct GetFileArgs {
    /// The message id (from `haven sync` or `haven history`).
    pub message_id: String,
    /// Where to write the decrypted file.
    pub path: PathBuf,
    /// Only the message from this user (message ids are chosen by senders).
    #[arg(long)]
    pub from: Option<String>,
    /// Only the message in this conversation (USER, #GROUP or id:HEX).
    #[arg(long = "in", value_name = "CONVERSATION")]
    pub in_conversation: Option<String>,
}

pub async fn get_file(home: PathBuf, args: GetFileArgs) -> anyhow::Result<ExitCode> {
    let from = args.from.as_deref().map(user).transpose()?;
    let mut client = Client::open(&home).await?;
    client.sync().await?;
    let conversation = args
        .in_conversation
        .as_deref()
        .map(|c| client.resolve(c))
        .transpose()?;
    let scope = MessageScope { conversation, from };
    // An attachment is not fetched from a message request, nor from an account blocked.
    let id = haven_client::MessageId::new(&args.message_id)
        .map_err(|e| anyhow::anyhow!("bad message id: {e}"))?;
    let msg = client.find_message(&id, &scope)?;
    let view = client.safety_view().await?;
    if view.is_blocked(&msg.from) {
        anyhow::bail!(
            "message {id} is from {}, whom you blocked; `haven unblock {}` first",
            msg.from,
            msg.from
        );
    }
    if view.is_request_message(&msg.group, &msg.from) {
        anyhow::bail!(
            "message {id} is a message request: attachments are shown once you accept it (`haven requests accept {}`{})",
            msg.from,
            if view.is_restricted(&msg.from) {
                format!(", `haven unrestrict {}`", msg.from)
            } else {
                String::new()
            }
        );
    }
    let n = client
        .get_file(&args.message_id, &scope, &args.path)
        .await?;
    println!("wrote {} bytes to {}", n, args.path.display());
    Ok(ExitCode::SUCCESS)
}

/// A group argument: `#GROUP`, a bare group name, or `id:HEX`.
#[derive(clap::Subcommand)]
pub enum GroupCmd {
    /// Create a group.
    Create {
        /// The group's name.
        group: String,
        /// Members, comma-separated.
        #[arg(long, value_delimiter = ',')]
        members: Vec<String>,
    },
    /// Add a user (all of their devices).
    Add {
        /// The group.
        group: String,
        /// The user.
        user: String,
    },
    /// Remove a user (all of their devices).
    Remove {
        /// The group.
        group: String,
        /// The user.
        user: String,
    },
    /// Leave a group (declines it if it is an invitation).
    Leave {
        /// The group.
        group: String,
    },
    /// List a group's members.
    Members {
        /// The group.
        group: String,
    },
}

fn user(s: &str) -> anyhow::Result<UserName> {
    UserName::new(s.trim()).with_context(|| format!("{s:?} is not a valid user name"))
}

pub async fn group(home: PathBuf, cmd: GroupCmd) -> anyhow::Result<ExitCode> {
    // Check arguments before touching anything.
    let parsed: Vec<UserName> = match &cmd {
        GroupCmd::Create { members, .. } => members
            .iter()
            .filter(|m| !m.trim().is_empty())
            .map(|m| user(m))
            .collect::<anyhow::Result<_>>()?,
        GroupCmd::Add { user: u, .. } | GroupCmd::Remove { user: u, .. } => vec![user(u)?],
        _ => Vec::new(),
    };
    let mut client = Client::open(&home).await?;
    client.sync().await?;
    match cmd {
        GroupCmd::Create { group, .. } => {
            let name = group.trim_start_matches('#');
            client.create_group(name, &parsed).await?;
            println!("created #{name}");
        }
        GroupCmd::Add { group, .. } => {
            for u in &parsed {
                client.add_member(&group, u).await?;
                let g = client.resolve_group_for_reading(&group)?;
                println!("added {u} to {}", client.label(&g));
            }
        }
        GroupCmd::Remove { group, .. } => {
            for u in &parsed {
                client.remove_member(&group, u).await?;
                let g = client.resolve_group_for_reading(&group)?;
                println!("removed {u} from {}", client.label(&g));
            }
        }
        GroupCmd::Leave { group } => {
            let g = client.leave_group(&group).await?;
            println!("left {}", client.label(&g));
        }
        GroupCmd::Members { group } => {
            let g = client.resolve_group_for_reading(&group)?;
            for (u, d) in client.engine().members(&g)? {
                println!("{u} {d}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct ConversationArg {
    /// USER, #GROUP or id:HEX.
    pub conversation: String,
}

/// `haven accept`: joins an invitation (a conversation we were re-added to after leaving it),
/// or accepts a direct chat the other user opened.
pub async fn accept(home: PathBuf, args: ConversationArg) -> anyhow::Result<ExitCode> {
    let mut client = Client::open(&home).await?;
    client.sync().await?;
    let (g, changed) = client.accept_conversation(&args.conversation).await?;
    let label = client.label(&g);
    if changed {
        println!("accepted {label} ({})", short(&g));
    } else {
        println!("{label} ({}) was already accepted", short(&g));
    }
    Ok(ExitCode::SUCCESS)
}

/// `haven leave`: leaves a conversation of any kind; declines an invitation.
pub async fn leave(home: PathBuf, args: ConversationArg) -> anyhow::Result<ExitCode> {
    let mut client = Client::open(&home).await?;
    client.sync().await?;
    let g = client.leave(&args.conversation).await?;
    println!("left {} ({})", client.label(&g), short(&g));
    Ok(ExitCode::SUCCESS)
}

/// `id:` and the first digits of a group id, for messages (`haven conversations` prints the
/// form that is unique in the profile).
pub fn short(g: &GroupId) -> String {
    format!(
        "{}{}",
        haven_client::address::ID_FORM,
        g.to_hex()
            .get(..haven_client::address::SHORT_ID_DIGITS)
            .unwrap_or("?")
    )
}

#[derive(clap::Args)]
pub struct JsonFlag {
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args)]
pub struct SyncArgs {
    /// If nothing is waiting, wait up to this many seconds for a message.
    #[arg(long, default_value_t = 0)]
    pub wait: u64,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

/// How a conversation's messages are marked: from an invitation (not accepted; see
/// `ConversationState::Invited`) or none.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// A conversation the user is in (or was).
    Plain,
    /// An invitation not accepted yet: its messages are stored and shown, marked.
    Invitation,
}

fn mark_of(client: &Client, g: &GroupId) -> Mark {
    match client.engine().conversation(g) {
        Ok(Some(c)) if c.state == ConversationState::Invited => Mark::Invitation,
        _ => Mark::Plain,
    }
}

/// One message as a JSON object.
pub fn message_json_marked(conversation: &str, m: &StoredMessage, mark: Mark) -> serde_json::Value {
    let (text, attachment, group_name) = match &m.body {
        Body::Text(t) => (json!(t), None, None),
        Body::Attachment(a) => (
            serde_json::Value::Null,
            Some(json!({"name": a.name, "size": a.size, "blob_id": a.blob_id.as_str()})),
            None,
        ),
        Body::GroupName(n) => (serde_json::Value::Null, None, Some(json!(n))),
    };
    let mut v = serde_json::Map::new();
    v.insert("id".into(), json!(m.id.as_str()));
    v.insert("conversation".into(), json!(conversation));
    v.insert("conversation_id".into(), json!(m.group.to_hex()));
    if mark == Mark::Invitation {
        v.insert("invitation".into(), json!(true));
    }
    v.insert("from".into(), json!(m.from.as_str()));
    v.insert("from_device".into(), json!(m.from_device.as_str()));
    v.insert("sent_at".into(), json!(m.sent_at));
    v.insert("received_at".into(), json!(m.received_at));
    v.insert("text".into(), text);
    if let Some(a) = attachment {
        v.insert("attachment".into(), a);
    }
    if let Some(n) = group_name {
        v.insert("group_name".into(), n);
    }
    serde_json::Value::Object(v)
}

/// One message as a line of text.
pub fn message_line_marked(conversation: &str, m: &StoredMessage, mark: Mark) -> String {
    let what = match &m.body {
        Body::Text(t) => t.clone(),
        Body::Attachment(a) => format!(
            "[file {} ({} bytes) — haven get-file {} PATH]",
            a.name, a.size, m.id
        ),
        Body::GroupName(n) => format!("[group named #{}]", n.escape_debug()),
    };
    match mark {
        Mark::Plain => format!("[{conversation}] {}: {what}", m.from),
        Mark::Invitation => format!(
            "[{conversation} (invitation {})] {}: {what}",
            short(&m.group),
            m.from
        ),
    }
}

/// One line for a notice from the operator. The JSON object has a `notice` key (its kind).
fn print_notice(n: &haven_proto::moderation::Notice, as_json: bool) {
    use haven_proto::moderation::NoticeKind;
    if as_json {
        let kind = match n.kind {
            NoticeKind::Action => "action",
            NoticeKind::ReportOutcome => "report_outcome",
            NoticeKind::AppealDecision => "appeal_decision",
            NoticeKind::Safety => {
                println!(
                    "{}",
                    json!({"notice": "safety", "about": n.about.as_ref().map(UserName::as_str),
                           "text": n.text, "case": n.case,
                           "actions": ["block", "restrict", "report"], "at": n.at})
                );
                return;
            }
        };
        println!(
            "{}",
            json!({"notice": kind, "case": n.case, "action": n.action.map(|a| a.as_str()),
                   "action_id": n.action_id, "reason": n.reason, "until": n.until,
                   "outcome": n.outcome, "at": n.at})
        );
        return;
    }
    let until = n
        .until
        .map(|t| format!(" until {t} (ms since the Unix epoch)"))
        .unwrap_or_default();
    match n.kind {
        NoticeKind::Action => println!(
            "! notice from the operator: {}{until} (case {}): {}. Appeal once with `haven appeal {} TEXT`",
            match n.action.map(|a| a.as_str()) {
                Some("warn") => "a warning",
                Some("restrict") => "your account is restricted (no new conversations, members or contact requests)",
                Some("suspend") => "your account is suspended",
                Some("ban") => "your account is banned",
                Some(other) => other,
                None => "an action",
            },
            n.case,
            n.reason.as_deref().unwrap_or(""),
            n.case
        ),
        NoticeKind::ReportOutcome => println!(
            "! your report (case {}) was reviewed: {}",
            n.case,
            match n.outcome.as_deref() {
                Some("action_taken") => "action was taken",
                Some("no_violation") => "no violation was found",
                _ => "decided",
            }
        ),
        NoticeKind::AppealDecision => println!(
            "! your appeal (case {}) was decided: {}: {}",
            n.case,
            n.outcome.as_deref().unwrap_or("decided"),
            n.reason.as_deref().unwrap_or("")
        ),
        NoticeKind::Safety => {
            let text = n.text.as_deref().unwrap_or("");
            match &n.about {
                Some(u) => println!(
                    "! safety notice about {u}: {text}  (haven block {u} | haven restrict {u} | haven report-user {u} --reason REASON)"
                ),
                None => println!("! safety notice: {text}"),
            }
        }
    }
}

/// A message shown as a message request (its conversation has a pending request, or its
/// sender is restricted): marked, and text only — an attachment is neither shown nor fetched.
fn request_json(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(o) = v.as_object_mut() {
        o.insert("request".into(), json!(true));
        if o.remove("attachment").is_some() {
            o.insert("attachment_withheld".into(), json!(true));
        }
    }
    v
}

fn request_line(conversation: &str, m: &StoredMessage, mark: Mark) -> String {
    match &m.body {
        Body::Attachment(_) => format!(
            "[request] [{conversation}] {}: [a file, shown once you accept: haven requests accept {}]",
            m.from, m.from
        ),
        _ => format!("[request] {}", message_line_marked(conversation, m, mark)),
    }
}

fn print_event(client: &Client, view: &SafetyView, e: &Event, as_json: bool) {
    match e {
        Event::Notice(n) => print_notice(n, as_json),
        Event::Message {
            message,
            conversation,
        } => {
            // Blocked: not shown (the server no longer delivers their 1:1 messages; in a group
            // both are in, their messages are stored but hidden).
            if view.is_blocked(&message.from) {
                return;
            }
            let mark = mark_of(client, &message.group);
            let request = view.is_request_message(&message.group, &message.from);
            match (as_json, request) {
                (true, false) => println!("{}", message_json_marked(conversation, message, mark)),
                (true, true) => println!(
                    "{}",
                    request_json(message_json_marked(conversation, message, mark))
                ),
                (false, false) => println!("{}", message_line_marked(conversation, message, mark)),
                (false, true) => println!("{}", request_line(conversation, message, mark)),
            }
        }
        Event::Joined {
            conversation,
            conversation_id,
            by,
            request,
        } => {
            let pending = view.request_for(conversation_id);
            if as_json {
                let mut v = json!({"event": "joined", "conversation": conversation,
                       "conversation_id": conversation_id.to_hex(),
                       "by": by.as_ref().map(|u| u.as_str()), "accepted": !request});
                if let (Some(r), Some(o)) = (pending, v.as_object_mut()) {
                    o.insert("request".into(), json!(true));
                    o.insert("request_kind".into(), json!(r.kind.as_str()));
                    o.insert(
                        "members".into(),
                        json!(r.members.iter().map(UserName::as_str).collect::<Vec<_>>()),
                    );
                }
                println!("{v}");
            } else if let Some(r) = pending {
                let id = short(conversation_id);
                let answer = format!(
                    "`haven requests accept {}` or `haven requests decline {}`",
                    r.from, r.from
                );
                match r.kind {
                    haven_proto::contacts::RequestKind::Direct => println!(
                        "* message request: {} wants to message you ({id}): {answer}",
                        r.from
                    ),
                    haven_proto::contacts::RequestKind::Group => println!(
                        "* group request: {} added you to {conversation} ({id}), members {}: {answer}",
                        r.from,
                        r.members
                            .iter()
                            .map(UserName::as_str)
                            .collect::<Vec<_>>()
                            .join(" ")
                    ),
                }
            } else if *request {
                println!(
                    "* {conversation} opened a conversation with you ({}); replying accepts it",
                    short(conversation_id)
                );
            } else {
                match by {
                    Some(by) => println!(
                        "* {by} added you to {conversation} ({})",
                        short(conversation_id)
                    ),
                    None => println!("* you joined {conversation} ({})", short(conversation_id)),
                }
            }
        }
        Event::Invited {
            conversation,
            conversation_id,
            by,
        } => {
            let by = by.as_ref().map(|u| u.as_str());
            if as_json {
                println!(
                    "{}",
                    json!({"event": "invited", "conversation": conversation,
                           "conversation_id": conversation_id.to_hex(), "by": by})
                );
            } else {
                let id = short(conversation_id);
                println!(
                    "* {} re-added you to {conversation} ({id}), which you had left: `haven accept {id}` to rejoin, `haven leave {id}` to decline",
                    by.unwrap_or("someone")
                );
            }
        }
        Event::Renamed {
            conversation,
            conversation_id,
            by,
            requested,
            previous,
            stored,
        } => {
            if as_json {
                println!(
                    "{}",
                    json!({"event": "renamed", "conversation": conversation,
                           "conversation_id": conversation_id.to_hex(), "by": by.as_str(),
                           "previous": previous, "requested": requested, "stored": stored})
                );
            } else {
                let id = short(conversation_id);
                let was = match previous {
                    Some(p) if !p.is_empty() => format!("#{p}"),
                    Some(_) => id.clone(),
                    None => format!("your direct chat {id}"),
                };
                let asked = requested.escape_debug();
                match stored {
                    Some(s) if s == requested => println!("* {by} renamed {was} to #{s} ({id})"),
                    Some(s) => println!(
                        "* {by} renamed {was} to \"{asked}\"; shown as #{s} ({id}) because that name is taken or not allowed"
                    ),
                    None => println!(
                        "* {by} tried to rename {was} to \"{asked}\" ({id}); ignored: a direct chat keeps its peer's name"
                    ),
                }
            }
        }
        Event::Membership {
            conversation,
            added,
            removed,
            self_removed,
        } => {
            if as_json {
                println!(
                    "{}",
                    json!({"event": "membership", "conversation": conversation,
                           "added": added.iter().map(|u| u.as_str()).collect::<Vec<_>>(),
                           "removed": removed.iter().map(|u| u.as_str()).collect::<Vec<_>>(),
                           "self_removed": self_removed})
                );
            } else if *self_removed {
                println!("* you were removed from {conversation}");
            } else {
                for u in added {
                    println!("* {u} joined {conversation}");
                }
                for u in removed {
                    println!("* {u} left {conversation}");
                }
            }
        }
        Event::Dropped { queue_id, reason } => {
            eprintln!("haven: dropped queue entry {queue_id}: {reason}");
        }
    }
}

/// Prints what happened: membership events as they came, then every incoming message not shown
/// before — whichever command stored it — and records that they were shown.
fn show(
    client: &mut Client,
    view: &SafetyView,
    events: &[Event],
    as_json: bool,
) -> anyhow::Result<()> {
    for e in events
        .iter()
        .filter(|e| !matches!(e, Event::Message { .. }))
    {
        print_event(client, view, e, as_json);
    }
    let (messages, cursor) = client.unseen()?;
    for (conversation, message) in messages {
        print_event(
            client,
            view,
            &Event::Message {
                message,
                conversation,
            },
            as_json,
        );
    }
    client.mark_seen(cursor)?;
    Ok(())
}

pub async fn sync(home: PathBuf, args: SyncArgs) -> anyhow::Result<ExitCode> {
    let mut client = Client::open(&home).await?;
    let events = client.sync_wait(Duration::from_secs(args.wait)).await?;
    // Once per sync: what is a request, who is blocked or restricted.
    let view = client.safety_view().await?;
    show(&mut client, &view, &events, args.json)?;
    for a in client.alarms(false)? {
        eprintln!("{} (haven keys)", crate::keys_cli::alarm_line(&a));
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct HistoryArgs {
    /// A user name (1:1), #GROUP or id:HEX.
    pub conversation: String,
    /// How many of the latest messages.
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

pub async fn history(home: PathBuf, args: HistoryArgs) -> anyhow::Result<ExitCode> {
    let mut client = Client::open(&home).await?;
    let g = client.resolve(&args.conversation)?;
    let label = client.label(&g);
    let mark = mark_of(&client, &g);
    // As sync shows them: blocked senders hidden, requests marked and text only.
    let view = client.safety_view().await?;
    for m in client.engine().history(&g, args.limit)? {
        if matches!(m.body, Body::GroupName(_)) || view.is_blocked(&m.from) {
            continue;
        }
        let request = view.is_request_message(&m.group, &m.from);
        match (args.json, request) {
            (true, false) => println!("{}", message_json_marked(&label, &m, mark)),
            (true, true) => println!("{}", request_json(message_json_marked(&label, &m, mark))),
            (false, false) => println!("{}", message_line_marked(&label, &m, mark)),
            (false, true) => println!("{}", request_line(&label, &m, mark)),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `haven conversations`: one line per conversation, oldest first —
/// `id:SHORT LABEL (STATE[, not accepted][, added by USER]) members A B …`.
pub async fn conversations(home: PathBuf, args: JsonFlag) -> anyhow::Result<ExitCode> {
    let client = Client::open(&home).await?;
    for info in client.conversation_list()? {
        let c = &info.conversation;
        let state = c.state.as_str();
        let members: Option<Vec<&str>> = info
            .members
            .as_ref()
            .map(|m| m.iter().map(UserName::as_str).collect());
        let added_by = c.added_by.as_ref().map(UserName::as_str);
        if args.json {
            println!(
                "{}",
                json!({"conversation": info.label, "id": format!("id:{}", info.short_id),
                       "group_id": c.group_id.to_hex(), "state": state,
                       "kind": if c.peer().is_some() { "direct" } else { "group" },
                       "accepted": !c.is_request(), "added_by": added_by, "members": members})
            );
        } else {
            let mut notes = vec![state.to_owned()];
            if c.is_request() {
                notes.push("not accepted".into());
            }
            if let Some(by) = added_by {
                notes.push(format!("added by {by}"));
            }
            let members = members.map_or_else(|| "unknown".to_owned(), |m| m.join(" "));
            println!(
                "id:{} {} ({}) members {members}",
                info.short_id,
                info.label,
                notes.join(", ")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct ChatArgs {
    /// A user name (1:1), #GROUP or id:HEX.
    pub conversation: String,
}

pub async fn chat(home: PathBuf, args: ChatArgs) -> anyhow::Result<ExitCode> {
    let mut to = Target::parse(&args.conversation)?;
    let mut client = Client::open(&home).await?;
    let events = client.sync().await?;
    // Start from what was already shown: the recent history below covers it.
    let (_, cursor) = client.unseen()?;
    client.mark_seen(cursor)?;
    let mut view = client.safety_view().await?;
    for e in events
        .iter()
        .filter(|e| !matches!(e, Event::Message { .. }))
    {
        print_event(&client, &view, e, false);
    }
    // The session stays in one conversation: once it is known (now, or at the first send to a
    // user we have no chat with yet), lines go to its id, whatever is renamed meanwhile.
    let mut label = to.to_string();
    match client.resolve_target(&to) {
        Ok(c) => {
            let g = c.group_id;
            label = client.label(&g);
            let mark = mark_of(&client, &g);
            for m in client.engine().history(&g, 20)? {
                if matches!(m.body, Body::GroupName(_)) || view.is_blocked(&m.from) {
                    continue;
                }
                if view.is_request_message(&m.group, &m.from) {
                    println!("{}", request_line(&label, &m, mark));
                } else {
                    println!("{}", message_line_marked(&label, &m, mark));
                }
            }
            to = by_id(&g)?;
        }
        Err(e @ haven_client::ClientError::Ambiguous { .. }) => return Err(e.into()),
        Err(_) => {}
    }
    eprintln!("chatting in {label}; type a line and press enter to send, Ctrl-D to quit");
    let mut stream = client.push_stream().await?;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => match line? {
                None => break,
                Some(l) if l.trim().is_empty() => {}
                Some(l) => match client.send_text(&to, l.trim_end()).await {
                    Ok(m) => to = by_id(&m.group)?,
                    Err(e) => eprintln!("haven: not sent: {e}"),
                },
            },
            // Cancel-safe: after its one await (the first entry) `next_batch` completes at once.
            batch = stream.next_batch(haven_client::PUSH_BATCH, std::time::Duration::ZERO) => {
                let batch = batch?;
                if batch.is_empty() {
                    eprintln!("haven: server closed the connection");
                    break;
                }
                let events = client.on_pushed(&mut stream, &batch).await?;
                // Requests and blocks may have changed meanwhile.
                view = client.safety_view().await?;
                show(&mut client, &view, &events, false)?;
            },
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The exact `id:` target of a conversation.
fn by_id(g: &GroupId) -> anyhow::Result<Target> {
    Ok(Target::Id(
        haven_client::IdPrefix::parse(&g.to_hex()).map_err(anyhow::Error::msg)?,
    ))
}
