//! `haven keys`: the signed device lists this device verified and its key-transparency alarms.
//!
//! - `haven keys [--all] [--json]`: this account's verified device list and the open alarms
//!   (with `--all`, acknowledged and resolved ones too).
//! - `haven keys show USER [--json]`: USER's device list, checked with the server now.
//! - `haven keys ack ID`: the user has looked at alarm ID; a conversation it marked can be
//!   written to again.
//!
//! `haven sync` prints open alarms too (on stderr), so they are seen without asking.

use std::path::PathBuf;
use std::process::ExitCode;

use haven_client::devices::Alarm;
use haven_client::Client;
use haven_kt::SignedDeviceList;
use haven_proto::UserName;
use serde_json::json;

use crate::msg_cli::short;

#[derive(clap::Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub cmd: Option<KeysCmd>,
    /// Include acknowledged and resolved alarms.
    #[arg(long)]
    pub all: bool,
    /// JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Subcommand)]
pub enum KeysCmd {
    /// A user's signed device list, checked with the server now.
    Show {
        /// The account.
        user: String,
        /// JSON.
        #[arg(long)]
        json: bool,
    },
    /// Acknowledge an alarm (you have looked at it).
    Ack {
        /// The alarm's id (from `haven keys`).
        id: i64,
    },
}

pub async fn keys(home: PathBuf, args: KeysArgs) -> anyhow::Result<ExitCode> {
    let mut client = Client::open(&home).await?;
    match args.cmd {
        Some(KeysCmd::Ack { id }) => {
            client.ack_alarm(id)?;
            println!("alarm {id} acknowledged");
        }
        Some(KeysCmd::Show { user, json }) => {
            let user = UserName::new(&user)?;
            let list = client.device_list(&user).await?;
            print_list(&client, &list, json);
        }
        None => {
            let me = client.user().clone();
            let list = client.device_list(&me).await?;
            let alarms = client.alarms(args.all)?;
            if args.json {
                println!(
                    "{}",
                    json!({
                        "list": list_json(&client, &list),
                        "alarms": alarms.iter().map(alarm_json).collect::<Vec<_>>(),
                    })
                );
            } else {
                print_list(&client, &list, false);
                if alarms.is_empty() {
                    println!("no alarms");
                }
                for a in &alarms {
                    println!("{}", alarm_line(a));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The key-directory root `l` was verified at: (epoch, root hex).
fn verified_at(client: &Client, l: &SignedDeviceList) -> Option<(u64, String)> {
    client
        .engine()
        .verified_list_root(&l.list.user)
        .ok()
        .flatten()
        .map(|(e, r)| (e, hex::encode(r)))
}

fn list_json(client: &Client, l: &SignedDeviceList) -> serde_json::Value {
    let at = verified_at(client, l);
    json!({
        "directory_epoch": at.as_ref().map(|a| a.0),
        "directory_root": at.as_ref().map(|a| a.1.clone()),
        "user": l.list.user.as_str(),
        "version": l.list.version,
        "hash": hex::encode(l.hash()),
        "signed_by": l.signer.as_str(),
        "devices": l.list.devices().iter().map(|d| json!({
            "device_id": d.device_id.as_str(),
            "mls_key": hex::encode(d.mls_key),
            "this_device": &d.device_id == client.device_id(),
        })).collect::<Vec<_>>(),
    })
}

fn print_list(client: &Client, l: &SignedDeviceList, json: bool) {
    if json {
        println!("{}", list_json(client, l));
        return;
    }
    println!(
        "{}: device list version {} (hash {}), signed by {}",
        l.list.user,
        l.list.version,
        hex::encode(l.hash().get(..8).unwrap_or_default()),
        l.signer
    );
    match verified_at(client, l) {
        Some((e, r)) => println!(
            "  checked against the directory at epoch {e} (root {})",
            r.get(..16).unwrap_or_default()
        ),
        None => println!("  not yet checked against the directory"),
    }
    for d in l.list.devices() {
        let this = if &d.device_id == client.device_id() {
            " (this device)"
        } else {
            ""
        };
        println!(
            "  {} key {}{this}",
            d.device_id,
            hex::encode(d.mls_key.get(..8).unwrap_or_default())
        );
    }
}

fn alarm_json(a: &Alarm) -> serde_json::Value {
    json!({
        "id": a.id,
        "kind": a.kind.as_str(),
        "user": a.user.as_str(),
        "device": a.device.as_ref().map(|d| d.as_str().to_owned()),
        "conversation": a.group.as_ref().map(short),
        "detail": a.detail,
        "raised_at": a.raised_at,
        "open": a.is_open(),
    })
}

/// One line per alarm: `alarm ID KIND: DETAIL`.
pub fn alarm_line(a: &Alarm) -> String {
    let state = match (a.acked_at, a.resolved_at) {
        (Some(_), _) => " (acknowledged)",
        (None, Some(_)) => " (resolved)",
        (None, None) => "",
    };
    format!("alarm {} {}{state}: {}", a.id, a.kind.as_str(), a.detail)
}
