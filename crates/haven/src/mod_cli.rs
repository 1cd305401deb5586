//! Reporting and moderation commands: `report`, `report-user`, `appeal` (any user) and
//! `mod queue|show|evidence|action|escalate|appeals|decide|signals` (moderators).
//!
//! A report discloses the reported message and up to 10 earlier messages of its conversation
//! exactly as this device stored them (`haven_client::client`'s moderation module); the server
//! verifies every one and refuses the whole report if one fails. `--dry-run --json` prints the
//! evidence bundle instead of sending it, and `--evidence FILE` sends a bundle from a file.
//! Files the commands write are created new: an existing path is never overwritten.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::LazyLock;

use anyhow::{bail, Context};
use clap::builder::PossibleValue;
use clap::ValueEnum;
use haven_client::{Client, MessageScope};
use haven_proto::moderation::{
    self as m, AttachmentEvidence, CaseDetail, CaseSummary, EvidenceBundle, ModAction, ReportReason,
};
use haven_proto::UserName;

/// A `--reason` value: the stable names of [`ReportReason::ALL`].
#[derive(Clone, Copy, Debug)]
pub struct Reason(pub ReportReason);

static REASONS: LazyLock<Vec<Reason>> =
    LazyLock::new(|| ReportReason::ALL.into_iter().map(Reason).collect());

impl ValueEnum for Reason {
    fn value_variants<'a>() -> &'a [Self] {
        &REASONS
    }
    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.0.as_str()))
    }
}

/// An `ACTION` of `haven mod action`: every [`ModAction`] but `escalate`
/// (`haven mod escalate`).
#[derive(Clone, Copy, Debug)]
pub struct Action(pub ModAction);

static ACTIONS: LazyLock<Vec<Action>> = LazyLock::new(|| {
    ModAction::ALL
        .into_iter()
        .filter(|a| *a != ModAction::Escalate)
        .map(Action)
        .collect()
});

impl ValueEnum for Action {
    fn value_variants<'a>() -> &'a [Self] {
        &ACTIONS
    }
    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.0.as_str()))
    }
}

/// How an appeal is decided.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Decision {
    /// The action stands.
    Uphold,
    /// The action is lifted.
    Reverse,
}

#[derive(clap::Args)]
pub struct ReportArgs {
    /// The reported message's id (from `haven sync` or `haven history`).
    #[arg(required_unless_present = "evidence", conflicts_with = "evidence")]
    pub message_id: Option<String>,
    /// Why.
    #[arg(long)]
    pub reason: Reason,
    /// How many earlier messages of the conversation go with it as context (at most 10).
    #[arg(long, default_value_t = 5, conflicts_with = "evidence")]
    pub context: usize,
    /// Your words for the moderator.
    #[arg(long)]
    pub note: Option<String>,
    /// Print the evidence bundle that would be sent (with --json: its JSON); send nothing.
    #[arg(long, conflicts_with = "evidence")]
    pub dry_run: bool,
    /// Send this evidence bundle (JSON, as `--dry-run --json` prints it) instead.
    #[arg(long, value_name = "FILE")]
    pub evidence: Option<PathBuf>,
    /// Only the message from this user (message ids are chosen by senders).
    #[arg(long, conflicts_with = "evidence")]
    pub from: Option<String>,
    /// Only the message in this conversation (USER, #GROUP or id:HEX).
    #[arg(long = "in", value_name = "CONVERSATION", conflicts_with = "evidence")]
    pub in_conversation: Option<String>,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
}

fn user(s: &str) -> anyhow::Result<UserName> {
    UserName::new(s).map_err(|e| anyhow::anyhow!("{s:?} is not a user name: {e}"))
}

/// Largest evidence file read (ten messages of the largest content, in base64, and then some).
const MAX_EVIDENCE_FILE: u64 = 4 << 20;

fn read_bundle(path: &Path) -> anyhow::Result<EvidenceBundle> {
    let meta = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
    if meta.len() > MAX_EVIDENCE_FILE {
        bail!(
            "{}: larger than {} MiB; not an evidence bundle",
            path.display(),
            MAX_EVIDENCE_FILE >> 20
        );
    }
    let bytes = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
    serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: not an evidence bundle", path.display()))
}

pub async fn report(home: PathBuf, args: ReportArgs) -> anyhow::Result<ExitCode> {
    let reason = args.reason.0;
    // A bundle file is read (and refused if it is not one) before anything else.
    let bundle = args.evidence.as_deref().map(read_bundle).transpose()?;
    let from = args.from.as_deref().map(user).transpose()?;
    let mut client = Client::open(&home).await?;
    let bundle = match (bundle, &args.message_id) {
        (Some(b), _) => b,
        (None, Some(id)) => {
            client.sync().await?;
            let conversation = args
                .in_conversation
                .as_deref()
                .map(|c| client.resolve(c))
                .transpose()?;
            let scope = MessageScope { conversation, from };
            client.report_bundle(id, &scope, args.context)?
        }
        (None, None) => bail!("name the message to report, or --evidence FILE"),
    };
    if args.dry_run {
        if args.json {
            println!("{}", serde_json::to_string_pretty(&bundle)?);
        } else {
            println!(
                "would report message {} with {} context message(s) (nothing sent; --json prints the bundle)",
                content_id(&bundle.reported.content),
                bundle.context.len()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let filed = client.report(bundle, reason, args.note.as_deref()).await?;
    if args.json {
        println!("{}", serde_json::to_string(&filed)?);
    } else {
        println!(
            "reported: case {} ({} message(s) verified, {} file(s) kept)",
            filed.case, filed.verified_messages, filed.files
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The message id a content carries, for display.
fn content_id(content: &[u8]) -> String {
    haven_client::content::Content::decode(content)
        .map(|c| c.id.to_string())
        .unwrap_or_else(|_| "?".into())
}

#[derive(clap::Args)]
pub struct ReportUserArgs {
    /// The account.
    pub user: String,
    /// Why.
    #[arg(long)]
    pub reason: Reason,
    /// Your words for the moderator.
    #[arg(long)]
    pub note: Option<String>,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
}

pub async fn report_user(home: PathBuf, args: ReportUserArgs) -> anyhow::Result<ExitCode> {
    let who = user(&args.user)?;
    let mut client = Client::open(&home).await?;
    let filed = client
        .report_user(&who, args.reason.0, args.note.as_deref())
        .await?;
    if args.json {
        println!("{}", serde_json::to_string(&filed)?);
    } else {
        println!("reported {who}: case {}", filed.case);
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct AppealArgs {
    /// The case (from the notice).
    pub case: String,
    /// Your words.
    pub text: String,
}

pub async fn appeal(home: PathBuf, args: AppealArgs) -> anyhow::Result<ExitCode> {
    // A suspended account cannot log in: the client proves the device instead.
    let mut client = Client::open_without_login(&home)?;
    client.appeal(&args.case, &args.text).await?;
    println!(
        "appeal filed for case {}; a moderator other than the one who acted decides it",
        args.case
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Subcommand)]
pub enum ModCmd {
    /// Open cases, most urgent first.
    Queue {
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// JSON output (the queue object).
        #[arg(long)]
        json: bool,
    },
    /// A case: the verified evidence, the reported account's metadata and the actions.
    Show {
        /// The case id.
        case: String,
        /// JSON output (the case object).
        #[arg(long)]
        json: bool,
    },
    /// Write an evidence file of a case to PATH (never overwrites).
    Evidence {
        /// The case id.
        case: String,
        /// The file id (`mod show` lists them).
        file_id: String,
        /// Where to write it (must not exist).
        path: PathBuf,
    },
    /// Act on a case; the affected user gets the statement of reasons.
    Action {
        /// The case id.
        case: String,
        /// What to do.
        action: Action,
        /// The statement of reasons.
        #[arg(long)]
        reason: String,
        /// For restrict (required) and suspend (absent: until lifted).
        #[arg(long)]
        days: Option<u32>,
    },
    /// Build the clearing house's report of a case into DIR (report.xml, file details,
    /// evidence files). Nothing is sent anywhere.
    Escalate {
        /// The case id.
        case: String,
        /// An empty or new directory.
        #[arg(long)]
        out: PathBuf,
        /// The CyberTipline incident type (default: from the case's reason).
        #[arg(long)]
        incident_type: Option<String>,
        /// Your statement.
        #[arg(long)]
        reason: String,
    },
    /// Open appeals (not those of your own actions).
    Appeals {
        /// JSON output (the appeals object).
        #[arg(long)]
        json: bool,
    },
    /// An account's metadata risk signals: the score, its level, each signal's part and the
    /// contact time line of the last seven days (no message content).
    Signals {
        /// The account.
        user: String,
        /// JSON output (the risk report object).
        #[arg(long)]
        json: bool,
    },
    /// Decide an appeal.
    Decide {
        /// The appealed action's id.
        action_id: String,
        /// uphold or reverse.
        decision: Decision,
        /// The statement of reasons.
        #[arg(long)]
        reason: String,
    },
}

pub async fn moderate(home: PathBuf, cmd: ModCmd) -> anyhow::Result<ExitCode> {
    // Paths are checked before the server is asked anything.
    match &cmd {
        ModCmd::Evidence { path, .. } if path.exists() => {
            bail!("{} exists; give a new path", path.display())
        }
        ModCmd::Escalate { out, .. } => check_out_dir(out)?,
        _ => {}
    }
    let mut client = Client::open(&home).await?;
    match cmd {
        ModCmd::Queue { limit, json } => {
            let q = client.mod_queue(limit).await?;
            if json {
                println!("{}", serde_json::to_string(&q)?);
            } else {
                println!("{} open case(s)", q.open);
                for c in &q.cases {
                    println!("{}", summary_line(c));
                }
            }
        }
        ModCmd::Show { case, json } => {
            let d = client.mod_case(&case).await?;
            if json {
                println!("{}", serde_json::to_string(&d)?);
            } else {
                print_case(&d);
            }
        }
        ModCmd::Evidence {
            case,
            file_id,
            path,
        } => {
            let bytes = client.mod_evidence_file(&case, &file_id).await?;
            write_new(&path, &bytes)?;
            println!("wrote {} bytes to {}", bytes.len(), path.display());
        }
        ModCmd::Action {
            case,
            action,
            reason,
            days,
        } => {
            let r = client
                .mod_action(
                    &case,
                    &m::ActionRequest {
                        action: action.0,
                        reason,
                        days,
                    },
                )
                .await?;
            println!("{}", action_line(&r));
        }
        ModCmd::Escalate {
            case,
            out,
            incident_type,
            reason,
        } => {
            let e = client
                .mod_escalate(
                    &case,
                    &m::EscalateRequest {
                        incident_type,
                        reason,
                    },
                )
                .await?;
            let mut files = Vec::new();
            for f in &e.files {
                files.push(client.mod_evidence_file(&case, &f.file_id).await?);
            }
            write_escalation(&out, &e, &files)?;
            println!(
                "case {} escalated: {} written ({} evidence file(s)); nothing was sent",
                e.case,
                out.display(),
                e.files.len()
            );
        }
        ModCmd::Appeals { json } => {
            let a = client.mod_appeals().await?;
            if json {
                println!("{}", serde_json::to_string(&a)?);
            } else {
                println!("{} open appeal(s)", a.appeals.len());
                for r in &a.appeals {
                    println!("{}", action_line(r));
                    if let Some(ap) = &r.appeal {
                        println!("  appeal filed {}: {}", time(ap.filed_at), ap.text);
                    }
                }
            }
        }
        ModCmd::Signals { user, json } => {
            let user = UserName::new(&user)?;
            let r = client.mod_signals(&user).await?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                print_signals(&r);
            }
        }
        ModCmd::Decide {
            action_id,
            decision,
            reason,
        } => {
            let outcome = match decision {
                Decision::Uphold => m::AppealOutcome::Upheld,
                Decision::Reverse => m::AppealOutcome::Reversed,
            };
            let r = client
                .mod_decide_appeal(&action_id, &m::AppealDecision { outcome, reason })
                .await?;
            println!(
                "appeal of {} {} decided: {}",
                r.action.as_str(),
                r.id,
                match outcome {
                    m::AppealOutcome::Upheld => "upheld",
                    m::AppealOutcome::Reversed => "reversed",
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `haven mod signals USER` for people.
fn print_signals(r: &haven_proto::contacts::RiskReport) {
    println!(
        "{}: age {} ({}), risk score {:.1}, level {} (friction at {:.1}, case at {:.1})",
        r.user,
        r.age_band.as_str(),
        r.age_source.as_str(),
        r.score,
        r.level,
        r.friction_threshold,
        r.case_threshold
    );
    if r.contributions.is_empty() {
        println!("no signal contributes");
    } else {
        println!("signals:");
        for c in &r.contributions {
            println!(
                "  {:<28} value {:>8.2}  points {:>6.1}  {}",
                c.signal, c.value, c.points, c.description
            );
        }
    }
    if r.timeline.is_empty() {
        println!("no contact events in the last seven days");
    } else {
        println!("time line (last seven days, oldest first):");
        for e in &r.timeline {
            println!(
                "  {} {} {} ({}) {} -> {}",
                time(e.at),
                e.kind,
                e.target,
                e.target_band.as_str(),
                e.decision,
                e.outcome
            );
        }
    }
}

/// `DIR` for `mod escalate`: new, or an empty directory.
fn check_out_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "{} is not empty; give a new or empty directory",
                    dir.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("{}", dir.display())),
    }
}

/// Whether `name` is one plain file name (no directory part, not `.` or `..`, not hidden).
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && Path::new(name).file_name().and_then(|n| n.to_str()) == Some(name)
        && !name.contains(['/', '\\', '\0'])
}

/// Writes the escalation: `report.xml`, `<file_id>.details.xml` per file and the evidence
/// bytes as `<file_name>` (as `<file_id>-<file_name>` when the name is not a plain file name
/// or collides with another).
fn write_escalation(dir: &Path, e: &m::Escalation, files: &[Vec<u8>]) -> anyhow::Result<()> {
    check_out_dir(dir)?;
    std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    let mut taken = std::collections::HashSet::new();
    taken.insert("report.xml".to_owned());
    let mut plan = Vec::new();
    for (f, bytes) in e.files.iter().zip(files) {
        if !plain_name(&f.file_id) {
            bail!("the server named an evidence file {:?}", f.file_id);
        }
        let details = format!("{}.details.xml", f.file_id);
        if !taken.insert(details.clone()) {
            bail!("the server listed evidence file {} twice", f.file_id);
        }
        let mut name = f.file_name.clone();
        if !plain_name(&name) || taken.contains(&name) {
            let clean: String = f
                .file_name
                .chars()
                .map(|c| {
                    if c.is_alphanumeric() || c == '.' || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            name = format!("{}-{}", f.file_id, clean.trim_start_matches('.'));
        }
        if !taken.insert(name.clone()) {
            bail!("two evidence files would be written as {name}");
        }
        plan.push((details, f.details_xml.as_bytes(), name, bytes.as_slice()));
    }
    write_new(&dir.join("report.xml"), e.report_xml.as_bytes())?;
    for (details, xml, name, bytes) in plan {
        write_new(&dir.join(details), xml)?;
        write_new(&dir.join(name), bytes)?;
    }
    Ok(())
}

/// Creates `path` (refusing an existing one) and writes `bytes`.
fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("{}", path.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("{}", path.display()))
}

/// A time in ms since the Unix epoch as `YYYY-MM-DD hh:mm:ss UTC`.
pub fn time(ms: u64) -> String {
    if ms == u64::MAX {
        return "further notice".into();
    }
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!(
        "{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn summary_line(c: &CaseSummary) -> String {
    format!(
        "{} p{} {} {} ({}) against {}{}{} filed {}{}",
        c.case,
        c.priority,
        c.state.as_str(),
        c.reason.as_str(),
        c.source.as_str(),
        c.reported_user,
        c.reporter
            .as_ref()
            .map(|r| format!(" by {r}"))
            .unwrap_or_default(),
        if c.reporter_is_minor { " (minor)" } else { "" },
        time(c.created_at),
        c.held_until
            .map(|t| format!(", held until {}", time(t)))
            .unwrap_or_default()
    )
}

fn action_line(r: &m::ActionRecord) -> String {
    let appeal = match &r.appeal {
        None => String::new(),
        Some(a) => match a.outcome {
            None => " [appealed, undecided]".into(),
            Some(m::AppealOutcome::Upheld) => " [appeal upheld]".into(),
            Some(m::AppealOutcome::Reversed) => " [appeal reversed]".into(),
        },
    };
    format!(
        "action {} {} against {} by {} at {}{}: {}{}",
        r.id,
        r.action.as_str(),
        r.user,
        r.moderator,
        time(r.created_at),
        r.until
            .map(|t| format!(" until {}", time(t)))
            .unwrap_or_default(),
        r.reason,
        appeal
    )
}

fn print_case(d: &CaseDetail) {
    println!("case {}", summary_line(&d.summary));
    if let Some(n) = &d.note {
        println!("note: {n}");
    }
    if let Some(g) = &d.group_id {
        println!("conversation: {}", g.to_hex());
    }
    if d.evidence_purged {
        println!("evidence: purged (dismissed and past retention)");
    } else if d.evidence.is_empty() {
        println!("evidence: none (an account report)");
    }
    for e in &d.evidence {
        let what = if let Some(t) = &e.text {
            format!("text: {t}")
        } else if let Some(a) = &e.attachment {
            match a {
                AttachmentEvidence::Kept(f) => format!(
                    "file {} ({}): {} bytes, sha256 {}, md5 {}{}",
                    f.name,
                    f.file_id,
                    f.size,
                    f.sha256,
                    f.md5,
                    match (&f.pdq, f.pdq_quality) {
                        (Some(p), Some(q)) => format!(", pdq {p} (quality {q})"),
                        (Some(p), None) => format!(", pdq {p}"),
                        _ => String::new(),
                    }
                ),
                AttachmentEvidence::Unavailable { name } => {
                    format!("file {name}: unavailable (expired on the server)")
                }
            }
        } else if let Some(c) = &e.control {
            format!("control: {c}")
        } else {
            "(no content)".into()
        };
        println!(
            "  #{} {} verified: {} from {}/{} at {} (id {}): {}",
            e.seq,
            e.role,
            e.verified,
            e.sender.user,
            e.sender.device_id,
            time(e.received_at),
            e.message_id,
            what
        );
    }
    let a = &d.account;
    println!(
        "account {}: registered {}, {} device(s){}{}{}",
        a.user,
        time(a.created_at),
        a.devices.len(),
        a.status
            .suspended_until
            .map(|t| format!(", suspended until {}", time(t)))
            .unwrap_or_default(),
        a.status
            .restricted_until
            .map(|t| format!(", restricted until {}", time(t)))
            .unwrap_or_default(),
        if a.status.banned { ", banned" } else { "" }
    );
    for dev in &a.devices {
        println!(
            "  device {} {} registered {}{}",
            dev.device_id,
            dev.name,
            time(dev.created_at),
            dev.revoked_at
                .map(|t| format!(", removed {}", time(t)))
                .unwrap_or_default()
        );
    }
    println!("  earlier cases: {}", a.cases.len());
    for c in &a.cases {
        println!("    {}", summary_line(c));
    }
    println!("  actions against the account: {}", a.actions.len());
    for r in &a.actions {
        println!("    {}", action_line(r));
    }
    println!("actions on this case: {}", d.actions.len());
    for r in &d.actions {
        println!("  {}", action_line(r));
    }
}
