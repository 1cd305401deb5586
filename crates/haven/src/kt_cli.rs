//! `haven kt audit --server URL [--from EPOCH] [--root-key HEX] [--json]`: checks that the
//! server's key directory only ever grew, from EPOCH (default 0) to the newest epoch — every
//! root signed by the directory's key, every step covered by an append-only proof
//! (`haven_client::kt_audit`). Prints the chain; exits 1 naming the first epoch that fails.
//! Needs no account.

use std::process::ExitCode;

use haven_client::kt_audit::{audit, AuditError};

#[derive(clap::Subcommand)]
pub enum KtCmd {
    /// Verify the directory's append-only chain of signed roots.
    Audit(AuditArgs),
}

#[derive(clap::Args)]
pub struct AuditArgs {
    /// The server (http:// or https://).
    #[arg(long)]
    pub server: String,
    /// The first epoch to audit from.
    #[arg(long, default_value_t = 0)]
    pub from: u64,
    /// The directory key to expect (hex; as pinned by a client or published by the operator).
    #[arg(long, value_name = "HEX")]
    pub root_key: Option<String>,
    /// JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn kt(cmd: KtCmd) -> anyhow::Result<ExitCode> {
    let KtCmd::Audit(a) = cmd;
    let root_key = match &a.root_key {
        None => None,
        Some(h) => Some(
            hex::decode(h)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
                .ok_or_else(|| anyhow::anyhow!("--root-key: expected 64 hex digits"))?,
        ),
    };
    let json = a.json;
    let result = audit(&a.server, a.from, root_key, |e| {
        if !json {
            println!("epoch {:>8}  {}  ok", e.epoch, e.root);
        }
    })
    .await;
    match result {
        Ok(report) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "ok": true,
                        "root_key": report.root_key,
                        "epochs": report.epochs,
                    }))?
                );
            } else {
                println!(
                    "ok: {} epochs verified, directory key {}",
                    report.epochs.len(),
                    report.root_key
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let epoch = match &e {
                AuditError::Epoch { epoch, .. } => Some(*epoch),
                AuditError::Server(_) => None,
            };
            if json {
                println!(
                    "{}",
                    serde_json::json!({"ok": false, "epoch": epoch, "error": e.to_string()})
                );
            } else {
                eprintln!("audit failed: {e}");
            }
            Ok(ExitCode::from(1))
        }
    }
}
