//! `haven admin`: operator commands that work on a server's data directory directly (as
//! Mastodon's `tootctl` does), not through the API. Run them as the server's operating-system
//! account: the files they touch are readable by it alone.
//!
//! `haven admin --data DIR frank-key list` prints the franking keyring (ids, creation times,
//! which key is current and which verifies old tags; fingerprints, never keys);
//! `haven admin --data DIR frank-key rotate` adds a fresh current key. A running server keeps
//! tagging with the key it loaded until it is restarted; with several nodes, copy the new
//! `frank-keys` file to every node, then restart them (`haven_server::frank_keys`).

use std::path::PathBuf;
use std::process::ExitCode;

use haven_server::frank_keys;

#[derive(clap::Args)]
pub struct AdminArgs {
    /// The server's data directory.
    #[arg(long, default_value = "./haven-data")]
    pub data: PathBuf,
    #[command(subcommand)]
    pub command: AdminCmd,
}

#[derive(clap::Subcommand)]
pub enum AdminCmd {
    /// The franking keys (in DATA/frank-keys).
    #[command(subcommand)]
    FrankKey(FrankKeyCmd),
}

#[derive(clap::Subcommand)]
pub enum FrankKeyCmd {
    /// List the keys: id, created, flags, fingerprint.
    List,
    /// Add a fresh key and make it current (tags made under older keys still verify).
    Rotate,
}

pub fn main(args: AdminArgs) -> anyhow::Result<ExitCode> {
    match args.command {
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
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            let id = frank_keys::rotate(&args.data, now)?;
            println!("{id}");
            eprintln!(
                "franking key {id} is now current in {}; restart the server (every node, after copying the file) to use it",
                frank_keys::path(&args.data).display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
