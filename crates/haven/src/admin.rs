//! `haven admin`: operator commands that work on a server's data directory directly (as
//! Mastodon's `tootctl` does), not through the API. Run them as the server's operating-system
//! account: the files they touch are readable by it alone.
//!
//! `haven admin --data DIR frank-key list` prints the franking keyring (ids, creation times,
//! which key is current and which verifies old tags; fingerprints, never keys);
//! `haven admin --data DIR frank-key rotate` adds a fresh current key. A running server keeps
//! tagging with the key it loaded until it is restarted; with several nodes, copy the new
//! `frank-keys` file to every node, then restart them (`haven_server::frank_keys`).
//!
//! `haven admin (--data DIR | --database URL) role grant|revoke USER moderator|admin` gives or
//! takes a role, and `haven admin … audit [--json] [--verify]` prints the moderation audit log
//! (and checks its hash chain). They work on the server's store directly, while it runs; each
//! role change is itself an audit entry (actor `admin-cli`).
//!
//! `haven admin … age USER --band B [--changes-on YYYY-MM-DD] [--verified]` corrects an
//! account's age band (an audit entry), and `haven admin … policy [--json]` prints the contact
//! rules and the limits, weights and thresholds the server runs with (as it recorded them at
//! start-up).
//!
//! `haven admin … bank create|import|list|enable|disable|remove|release|releases` keeps the
//! hash banks for known-image detection and builds the signed voucher-database releases
//! from them (`haven_server::psi`); every change is an audit entry.

use std::path::PathBuf;
use std::process::ExitCode;

use haven_server::frank_keys;
use haven_server::moderation::service::audit_entry;
use haven_server::moderation::store::verify_audit_chain;
use haven_server::moderation::{AuditLine, Role};
use haven_server::service::now_ms;

#[derive(clap::Args)]
pub struct AdminArgs {
    /// The server's data directory.
    #[arg(long, default_value = "./haven-data")]
    pub data: PathBuf,
    /// The server's database URL (postgres://…), when it is not SQLite in the data directory.
    #[arg(long)]
    pub database: Option<String>,
    #[command(subcommand)]
    pub command: AdminCmd,
}

#[derive(clap::Subcommand)]
pub enum AdminCmd {
    /// The franking keys (in DATA/frank-keys).
    #[command(subcommand)]
    FrankKey(FrankKeyCmd),
    /// Grant or revoke a role (moderator: reviews cases; admin: reads the audit log).
    #[command(subcommand)]
    Role(RoleCmd),
    /// The moderation audit log.
    Audit(AuditArgs),
    /// The CyberTipline Reporting API: submit an escalation a moderator wrote.
    #[command(subcommand)]
    Cybertip(CybertipCmd),
    /// Correct an account's age band (audited).
    Age(AgeArgs),
    /// The contact rules, limits, risk weights and thresholds in force.
    Policy(PolicyArgs),
    /// Hash banks for known-image detection, and the voucher database built from them.
    #[command(subcommand)]
    Bank(BankCmd),
}

#[derive(clap::Subcommand)]
pub enum BankCmd {
    /// Create a bank (used for nothing until enabled).
    Create {
        /// `a-z 0-9 _ -`, 1–64.
        name: String,
        /// What it holds and where it comes from.
        #[arg(long)]
        description: String,
        /// Distinct sources that must have added an entry before it is used (Apple required
        /// two independent child-safety organisations).
        #[arg(long, default_value_t = 1)]
        min_sources: u32,
    },
    /// Add the hashes in FILE (PDQ: hex per line or CSV with a header, as `haven-pdq`
    /// reads lists; MD5/SHA-256: hex per line or the first CSV field).
    Import {
        /// The bank.
        name: String,
        /// The list file.
        file: PathBuf,
        /// What the file holds.
        #[arg(long, default_value = "pdq")]
        kind: String,
        /// Who supplied the list (entries count per distinct source).
        #[arg(long, default_value = "operator")]
        source: String,
    },
    /// Every bank: uses, entries, accepted, removed.
    List {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Use a bank (for vouchers, surfaces, or both).
    Enable {
        /// The bank.
        name: String,
        /// `vouchers` or `surfaces`; both when absent.
        #[arg(long = "for")]
        for_: Option<String>,
    },
    /// Stop using a bank (for vouchers, surfaces, or both) without deleting it.
    Disable {
        /// The bank.
        name: String,
        /// `vouchers` or `surfaces`; both when absent.
        #[arg(long = "for")]
        for_: Option<String>,
    },
    /// Take an entry out of use (a false positive found in review); the removal is recorded.
    Remove {
        /// The bank.
        name: String,
        /// The hash, in hex.
        hash: String,
        /// Its kind.
        #[arg(long, default_value = "pdq")]
        kind: String,
        /// Why (recorded with the removal and in the audit log).
        #[arg(long)]
        reason: String,
    },
    /// Build, sign and store the next voucher-database release from the entries the banks
    /// enabled for vouchers accept; clients fetch it on their next image upload.
    Release {
        /// Distinct matching images a device must send before any is revealed.
        #[arg(long, default_value_t = haven_server::psi::service::DEFAULT_THRESHOLD)]
        threshold: u16,
        /// Print the release as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The releases, newest first (number, root, entries, size).
    Releases {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
pub struct AgeArgs {
    /// The account.
    pub user: String,
    /// `under-13`, `13-15`, `16-17` or `adult`.
    #[arg(long)]
    pub band: String,
    /// The day the band next changes (`YYYY-MM-DD`); without it a minor band stays until
    /// corrected again.
    #[arg(long)]
    pub changes_on: Option<String>,
    /// The operator checked the age (otherwise it stays self-declared).
    #[arg(long)]
    pub verified: bool,
}

#[derive(clap::Args)]
pub struct PolicyArgs {
    /// One JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Subcommand)]
pub enum CybertipCmd {
    /// Submit the escalation in DIR (`report.xml`, `<file_id>.details.xml`, the evidence
    /// files, as `haven mod escalate --out DIR` wrote them): submit, upload and describe each
    /// file, finish; on any failure after submit, retract. Prints the report id.
    Submit {
        /// The escalation directory.
        dir: PathBuf,
        /// The API's base URL (production `https://report.cybertip.org/ispws`, test
        /// `https://exttest.cybertip.org/ispws`).
        #[arg(long)]
        url: String,
        /// The operator's API user name.
        #[arg(long)]
        username: String,
        /// A file holding the API password (never on the command line).
        #[arg(long)]
        password_file: PathBuf,
    },
}

#[derive(clap::Subcommand)]
pub enum RoleCmd {
    /// Give USER the role.
    Grant {
        /// The account.
        user: String,
        /// `moderator` or `admin`.
        role: String,
    },
    /// Take the role from USER.
    Revoke {
        /// The account.
        user: String,
        /// `moderator` or `admin`.
        role: String,
    },
}

#[derive(clap::Args)]
pub struct AuditArgs {
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
    /// Check the hash chain from the first entry; exit 1 at the first entry that breaks it.
    #[arg(long)]
    pub verify: bool,
    /// Only entries after this sequence number.
    #[arg(long, default_value_t = 0)]
    pub after: i64,
}

#[derive(clap::Subcommand)]
pub enum FrankKeyCmd {
    /// List the keys: id, created, flags, fingerprint.
    List,
    /// Add a fresh key and make it current (tags made under older keys still verify).
    Rotate,
}

async fn open(args: &AdminArgs) -> anyhow::Result<std::sync::Arc<dyn haven_server::store::Store>> {
    let target = match &args.database {
        Some(url) => url.clone(),
        None => {
            let db = args.data.join("haven.db");
            if !db.exists() {
                anyhow::bail!(
                    "no server database at {} (pass --data DIR or --database URL)",
                    db.display()
                );
            }
            db.to_string_lossy().into_owned()
        }
    };
    Ok(haven_server::store::open_store(&target).await?)
}

async fn roles(args: &AdminArgs, cmd: &RoleCmd) -> anyhow::Result<ExitCode> {
    let (grant, user, role) = match cmd {
        RoleCmd::Grant { user, role } => (true, user, role),
        RoleCmd::Revoke { user, role } => (false, user, role),
    };
    let user = haven_proto::UserName::new(user).map_err(|e| anyhow::anyhow!("{user:?}: {e}"))?;
    let role = Role::parse(role)
        .ok_or_else(|| anyhow::anyhow!("unknown role {role:?}: moderator or admin"))?;
    let store = open(args).await?;
    let line = AuditLine {
        actor: "admin-cli".into(),
        action: if grant { "role.grant" } else { "role.revoke" }.into(),
        case: None,
        detail: format!("{} {}", role.as_str(), user),
        at: now_ms(),
    };
    let changed = if grant {
        store
            .grant_role(&user, role, now_ms(), &line)
            .await
            .map_err(|e| match e {
                haven_server::store::StoreError::NotFound(_) => {
                    anyhow::anyhow!("no account named {user}")
                }
                e => e.into(),
            })?
    } else {
        store.revoke_role(&user, role, &line).await?
    };
    match (grant, changed) {
        (true, true) => println!("{user} is now {}", role.as_str()),
        (true, false) => println!("{user} already was {}", role.as_str()),
        (false, true) => println!("{user} is no longer {}", role.as_str()),
        (false, false) => println!("{user} was not {}", role.as_str()),
    }
    Ok(ExitCode::SUCCESS)
}

async fn audit(args: &AdminArgs, a: &AuditArgs) -> anyhow::Result<ExitCode> {
    let store = open(args).await?;
    let mut rows = Vec::new();
    let mut after = if a.verify { 0 } else { a.after };
    loop {
        let page = store.audit(after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        rows.extend(page);
    }
    if a.verify {
        if let Err(seq) = verify_audit_chain(&rows) {
            eprintln!("haven: the audit log's hash chain breaks at entry {seq}: it was altered outside Haven");
            return Ok(ExitCode::from(1));
        }
    }
    for r in rows.iter().filter(|r| r.seq > a.after) {
        let e = audit_entry(r);
        if a.json {
            println!("{}", serde_json::to_string(&e)?);
        } else {
            println!(
                "{} {} {} {} {}{}",
                e.seq,
                e.at,
                e.actor,
                e.action,
                e.case
                    .as_deref()
                    .map(|c| format!("case {c}: "))
                    .unwrap_or_default(),
                e.detail
            );
        }
    }
    if a.verify {
        eprintln!("audit log: {} entries, hash chain intact", rows.len());
    }
    Ok(ExitCode::SUCCESS)
}

/// One evidence file of an escalation directory: its details document and bytes.
struct EscalatedFile {
    file_id: String,
    file_name: String,
    details_xml: String,
    bytes: Vec<u8>,
}

fn read_escalation(dir: &std::path::Path) -> anyhow::Result<(String, Vec<EscalatedFile>)> {
    use anyhow::Context as _;
    let report = std::fs::read_to_string(dir.join("report.xml")).with_context(|| {
        format!(
            "{}: no report.xml (write it with `haven mod escalate --out`)",
            dir.display()
        )
    })?;
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(file_id) = name.strip_suffix(".details.xml") else {
            continue;
        };
        let details_xml = std::fs::read_to_string(&path)?;
        let doc = roxmltree::Document::parse(&details_xml)
            .with_context(|| format!("{}", path.display()))?;
        let file_name = doc
            .descendants()
            .find(|n| n.tag_name().name() == "fileName")
            .and_then(|n| n.text())
            .ok_or_else(|| anyhow::anyhow!("{}: no fileName", path.display()))?
            .to_owned();
        if file_name.contains('/') || file_name.starts_with('.') {
            anyhow::bail!(
                "{}: file name {file_name:?} is not a plain file name",
                path.display()
            );
        }
        let bytes = std::fs::read(dir.join(&file_name)).with_context(|| {
            format!("the evidence file {file_name} named by {}", path.display())
        })?;
        files.push(EscalatedFile {
            file_id: file_id.to_owned(),
            file_name,
            details_xml,
            bytes,
        });
    }
    files.sort_by(|a, b| a.file_id.cmp(&b.file_id));
    Ok((report, files))
}

async fn cybertip_submit(
    dir: &std::path::Path,
    url: &str,
    username: &str,
    password_file: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    use anyhow::Context as _;
    use haven_server::moderation::escalate::PENDING_REPORT_ID;
    let (report, files) = read_escalation(dir)?;
    let password = zeroize::Zeroizing::new(
        std::fs::read_to_string(password_file)
            .with_context(|| format!("{}", password_file.display()))?
            .trim_end_matches(['\r', '\n'])
            .to_owned(),
    );
    let client = haven_cybertip::Client::new(haven_cybertip::ClientConfig::with_base_url(
        url,
        haven_cybertip::Credentials::new(username, password.as_str()),
    ))?;
    let report_id = client.submit_xml(&report).await.context("submit")?;
    eprintln!("submitted: report {}", report_id.as_str());
    let rest = async {
        for f in &files {
            let receipt = client
                .upload(&report_id, &f.file_name, f.bytes.clone())
                .await
                .with_context(|| format!("upload {}", f.file_name))?;
            let details = f
                .details_xml
                .replacen(
                    &format!("<reportId>{PENDING_REPORT_ID}</reportId>"),
                    &format!("<reportId>{}</reportId>", report_id.as_str()),
                    1,
                )
                .replacen(
                    &format!("<fileId>{}</fileId>", f.file_id),
                    &format!("<fileId>{}</fileId>", receipt.file_id.as_str()),
                    1,
                );
            client
                .file_info_xml(&report_id, &details)
                .await
                .with_context(|| format!("fileinfo {}", f.file_name))?;
            eprintln!(
                "uploaded {} as file {}",
                f.file_name,
                receipt.file_id.as_str()
            );
        }
        client.finish(&report_id).await.context("finish")
    };
    match rest.await {
        Ok(ids) => {
            eprintln!("finished: {} file(s)", ids.len());
            println!("{}", report_id.as_str());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => match client.retract(&report_id).await {
            Ok(()) => Err(e.context(format!("report {} was retracted", report_id.as_str()))),
            Err(r) => Err(e.context(format!(
                "report {} could not be retracted either ({r}); retract it by hand",
                report_id.as_str()
            ))),
        },
    }
}

async fn age(args: &AdminArgs, a: &AgeArgs) -> anyhow::Result<ExitCode> {
    use haven_safety::{age, AgeBand, AgeRecord};
    let user =
        haven_proto::UserName::new(&a.user).map_err(|e| anyhow::anyhow!("{:?}: {e}", a.user))?;
    let band = AgeBand::parse(&a.band).ok_or_else(|| {
        anyhow::anyhow!("unknown band {:?}: under-13, 13-15, 16-17 or adult", a.band)
    })?;
    let changes_on = match &a.changes_on {
        Some(d) if band == AgeBand::Adult => {
            anyhow::bail!("an adult band does not change (drop --changes-on {d})")
        }
        Some(d) => {
            let day = age::parse_date(d).map_err(|e| anyhow::anyhow!("--changes-on: {e}"))?;
            if day <= age::utc_day(now_ms()) {
                anyhow::bail!("--changes-on must be after today");
            }
            Some(day)
        }
        None => None,
    };
    let record = AgeRecord::corrected(band, changes_on, a.verified);
    let stored = haven_server::contacts::service::stored(&record);
    let store = open(args).await?;
    let line = AuditLine {
        actor: "admin-cli".into(),
        action: "age.set".into(),
        case: None,
        detail: format!(
            "{user}: {} ({}){}",
            band.as_str(),
            record.source.as_str(),
            stored
                .changes_on
                .as_ref()
                .map(|d| format!(", changes on {d}"))
                .unwrap_or_default()
        ),
        at: now_ms(),
    };
    store
        .set_age(&user, &stored, &line)
        .await
        .map_err(|e| match e {
            haven_server::store::StoreError::NotFound(_) => {
                anyhow::anyhow!("no account named {user}")
            }
            e => e.into(),
        })?;
    println!("{}", line.detail);
    Ok(ExitCode::SUCCESS)
}

async fn policy(args: &AdminArgs, p: &PolicyArgs) -> anyhow::Result<ExitCode> {
    use haven_safety::policy::{PolicyConfig, POLICY_VERSION};
    let store = open(args).await?;
    let (version, config) = match store.policy().await? {
        Some((v, c)) => (
            v,
            PolicyConfig::from_json(&c).map_err(|e| anyhow::anyhow!("the recorded policy: {e}"))?,
        ),
        None => anyhow::bail!("the server has not recorded a policy yet (start it once)"),
    };
    if version != POLICY_VERSION {
        eprintln!(
            "the server recorded policy version {version}; this haven knows version {POLICY_VERSION} (rule texts below are this version's)"
        );
    }
    let view = haven_server::contacts::service::policy_view(&config)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if p.json {
        println!("{}", serde_json::to_string(&view)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("contact policy version {version}");
    for r in &view.rules {
        println!("  [{}] {}", r.id, r.text);
    }
    let l = &config.limits;
    println!(
        "new contacts per day: {} ({} toward minors); accounts younger than {} days get {}%; elevated accounts {} toward minors",
        l.per_day, l.per_day_to_minors, l.new_account_days, l.new_account_percent, l.elevated_per_day_to_minors
    );
    println!(
        "risk score: friction at {}, case at {} (a decided share needs {} answers)",
        config.risk.friction_threshold,
        config.risk.case_threshold,
        config.risk.min_decided_for_share
    );
    for (name, desc) in haven_safety::risk::SIGNALS {
        match config.risk.weights.get(*name) {
            Some(w) => println!(
                "  {name}: {} x clamp(value - {}, 0, {})  — {desc}",
                w.weight, w.free, w.cap
            ),
            None => println!("  {name}: off — {desc}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn entry_kind(kind: &str) -> anyhow::Result<haven_server::psi::EntryKind> {
    haven_server::psi::EntryKind::parse(kind)
        .ok_or_else(|| anyhow::anyhow!("unknown --kind {kind:?}: pdq, md5 or sha256"))
}

fn uses(for_: Option<&str>) -> anyhow::Result<Vec<haven_server::psi::BankUse>> {
    use haven_server::psi::BankUse;
    Ok(match for_ {
        None => vec![BankUse::Vouchers, BankUse::Surfaces],
        Some(u) => vec![BankUse::parse(u)
            .ok_or_else(|| anyhow::anyhow!("unknown --for {u:?}: vouchers or surfaces"))?],
    })
}

fn release_json(r: &haven_server::psi::store::ReleaseRow) -> serde_json::Value {
    serde_json::json!({
        "release": r.release,
        "db_id": hex::encode(r.db_id),
        "root": hex::encode(r.root),
        "entries": r.entries,
        "match_keys": r.match_keys,
        "banks": r.banks,
        "db_bytes": r.db_bytes,
        "created_at_ms": r.created_at,
    })
}

async fn bank(args: &AdminArgs, cmd: &BankCmd) -> anyhow::Result<ExitCode> {
    use haven_server::psi::service as psi;
    let store = open(args).await?;
    match cmd {
        BankCmd::Create {
            name,
            description,
            min_sources,
        } => {
            psi::create_bank(&*store, name, description, *min_sources).await?;
            println!("created bank {name} (used for nothing until `bank enable`)");
        }
        BankCmd::Import {
            name,
            file,
            kind,
            source,
        } => {
            let kind = entry_kind(kind)?;
            let f = std::fs::File::open(file)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let parsed = psi::parse_entries(kind, std::io::BufReader::new(f))?;
            for (line, why) in &parsed.invalid {
                eprintln!("{}:{line}: skipped: {why}", file.display());
            }
            if parsed.entries.is_empty() {
                anyhow::bail!(
                    "{} holds no {} hashes ({} invalid lines); nothing imported",
                    file.display(),
                    kind.as_str(),
                    parsed.invalid_count
                );
            }
            let new = psi::import(&*store, name, source, &parsed.entries).await?;
            println!(
                "{name}: {} {} hashes read, {new} new from source {source:?}, {} invalid lines skipped",
                parsed.entries.len(),
                kind.as_str(),
                parsed.invalid_count
            );
        }
        BankCmd::List { json } => {
            for b in psi::list(&*store).await? {
                if *json {
                    println!(
                        "{}",
                        serde_json::json!({
                            "name": b.name,
                            "description": b.description,
                            "min_sources": b.min_sources,
                            "vouchers": b.for_vouchers,
                            "surfaces": b.for_surfaces,
                            "entries": b.entries,
                            "accepted": b.accepted,
                            "removed": b.removed,
                            "created_at_ms": b.created_at,
                        })
                    );
                } else {
                    let mut used = Vec::new();
                    if b.for_vouchers {
                        used.push("vouchers");
                    }
                    if b.for_surfaces {
                        used.push("surfaces");
                    }
                    println!(
                        "{}  for: {}  entries {}  accepted {} (≥{} sources)  removed {}  — {}",
                        b.name,
                        if used.is_empty() {
                            "nothing".to_owned()
                        } else {
                            used.join(",")
                        },
                        b.entries,
                        b.accepted,
                        b.min_sources,
                        b.removed,
                        b.description
                    );
                }
            }
        }
        BankCmd::Enable { name, for_ } | BankCmd::Disable { name, for_ } => {
            let on = matches!(cmd, BankCmd::Enable { .. });
            for u in uses(for_.as_deref())? {
                let changed = psi::set_use(&*store, name, u, on).await?;
                println!(
                    "{name} {} for {}{}",
                    if on { "enabled" } else { "disabled" },
                    u.as_str(),
                    if changed { "" } else { " (already)" }
                );
            }
            eprintln!("the voucher database changes at the next `bank release`");
        }
        BankCmd::Remove {
            name,
            hash,
            kind,
            reason,
        } => {
            let kind = entry_kind(kind)?;
            if reason.trim().is_empty() {
                anyhow::bail!("--reason must say why the entry is removed");
            }
            let entry = haven_server::psi::store::NewEntry {
                kind,
                hash: psi::parse_hash(kind, &hash.to_ascii_lowercase())?,
            };
            if psi::remove(&*store, name, &entry, reason).await? {
                println!("removed {} {hash} from {name}", kind.as_str());
                eprintln!("the voucher database changes at the next `bank release`");
            } else {
                anyhow::bail!("{name} holds no {} entry {hash} in use", kind.as_str());
            }
        }
        BankCmd::Release { threshold, json } => {
            let ek = haven_server::moderation::vault::load_or_create(
                &haven_server::moderation::vault::default_path(&args.data),
                &*store,
            )
            .await?;
            let params = psi::ReleaseParams {
                threshold: *threshold,
                ..Default::default()
            };
            let done = psi::release(&*store, &ek, params).await?;
            if *json {
                println!("{}", release_json(&done.row));
            } else {
                let r = &done.row;
                println!(
                    "release {}: root {}  {} entries ({}), {} match keys, {} bytes, threshold {threshold}, built in {:.2} s",
                    r.release,
                    hex::encode(r.root),
                    r.entries,
                    if r.banks.is_empty() { "no banks" } else { &r.banks },
                    r.match_keys,
                    r.db_bytes,
                    done.build.as_secs_f64()
                );
            }
        }
        BankCmd::Releases { json } => {
            for r in store.releases(u32::MAX).await? {
                if *json {
                    println!("{}", release_json(&r));
                } else {
                    println!(
                        "release {}  root {}  entries {}  keys {}  bytes {}  banks {}",
                        r.release,
                        hex::encode(r.root),
                        r.entries,
                        r.match_keys,
                        r.db_bytes,
                        r.banks
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn main(args: AdminArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        AdminCmd::Bank(cmd) => return crate::msg_cli::run(bank(&args, cmd)),
        AdminCmd::Age(a) => return crate::msg_cli::run(age(&args, a)),
        AdminCmd::Policy(p) => return crate::msg_cli::run(policy(&args, p)),
        AdminCmd::Role(cmd) => return crate::msg_cli::run(roles(&args, cmd)),
        AdminCmd::Audit(a) => return crate::msg_cli::run(audit(&args, a)),
        AdminCmd::Cybertip(CybertipCmd::Submit {
            dir,
            url,
            username,
            password_file,
        }) => return crate::msg_cli::run(cybertip_submit(dir, url, username, password_file)),
        AdminCmd::FrankKey(FrankKeyCmd::List) => {
            let ring = frank_keys::list(&args.data)?;
            for (id, e) in ring.entries() {
                let mut flags = Vec::new();
                if id == ring.current_id() {
                    flags.push("current");
                }
                if Some(id) == ring.legacy_id() {
                    flags.push("legacy");
                }
                let fp = frank_keys::fingerprint(&e.key);
                println!(
                    "{id} created_at_ms={} fingerprint={} {}",
                    e.created_at_ms,
                    fp.iter()
                        .take(8)
                        .map(|b| format!("{b:02x}"))
                        .collect::<String>(),
                    flags.join(",")
                );
            }
        }
        AdminCmd::FrankKey(FrankKeyCmd::Rotate) => {
            let id = frank_keys::rotate(&args.data, u64::try_from(now_ms()).unwrap_or(0))?;
            println!("{id}");
            eprintln!(
                "franking key {id} is now current in {}; restart the server (every node, after copying the file) to use it",
                frank_keys::path(&args.data).display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
