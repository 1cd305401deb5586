//! Safety commands: `contacts add|accept|decline|remove|list`, `requests [accept|decline]`,
//! `block`, `unblock`, `restrict`, `unrestrict`, `settings messages`, `me`.
//!
//! The server enforces who may reach whom and answers a refusal with a neutral message
//! ("bob only accepts messages from their contacts"), which is printed as it is. How a sync
//! shows messages under these rules (requests marked and text only, blocked senders hidden) is
//! `msg_cli`'s.

use std::path::PathBuf;
use std::process::ExitCode;

use haven_client::Client;
use haven_proto::contacts::{ContactList, MessageRequest, MessageSetting, RequestKind};
use haven_proto::UserName;
use serde_json::json;

use crate::msg_cli::{short, JsonFlag};

fn user(s: &str) -> anyhow::Result<UserName> {
    Ok(UserName::new(s)?)
}

#[derive(clap::Subcommand)]
pub enum ContactsCmd {
    /// Ask USER to connect (they accept with `haven contacts accept YOU`).
    Add {
        /// The account.
        user: String,
    },
    /// Accept USER's contact request.
    Accept {
        /// The account.
        user: String,
    },
    /// Decline USER's contact request.
    Decline {
        /// The account.
        user: String,
    },
    /// Remove USER from your contacts, or withdraw your request to them.
    Remove {
        /// The account.
        user: String,
    },
    /// Your contacts, pending contact requests, blocks and restricts.
    List(JsonFlag),
}

pub async fn contacts(home: PathBuf, cmd: ContactsCmd) -> anyhow::Result<ExitCode> {
    let named = match &cmd {
        ContactsCmd::Add { user: u }
        | ContactsCmd::Accept { user: u }
        | ContactsCmd::Decline { user: u }
        | ContactsCmd::Remove { user: u } => Some(user(u)?),
        ContactsCmd::List(_) => None,
    };
    let mut client = Client::open(&home).await?;
    match (cmd, named) {
        (ContactsCmd::Add { .. }, Some(u)) => {
            client.contact_request(&u).await?;
            println!("sent a contact request to {u}; once they accept, you are connected");
        }
        (ContactsCmd::Accept { .. }, Some(u)) => {
            client.contact_answer(&u, true).await?;
            println!("{u} is now one of your contacts");
        }
        (ContactsCmd::Decline { .. }, Some(u)) => {
            client.contact_answer(&u, false).await?;
            println!("declined {u}'s contact request");
        }
        (ContactsCmd::Remove { .. }, Some(u)) => {
            client.contact_remove(&u).await?;
            println!(
                "{u} is no longer one of your contacts (or your request to them is withdrawn)"
            );
        }
        (ContactsCmd::List(f), _) => {
            let list = client.contacts().await?;
            if f.json {
                println!("{}", serde_json::to_string(&list)?);
            } else {
                print_contacts(&list);
            }
        }
        // Every command but `list` names a user, parsed above.
        (_, None) => anyhow::bail!("a user name is missing"),
    }
    Ok(ExitCode::SUCCESS)
}

fn names(users: &[UserName]) -> String {
    if users.is_empty() {
        return "none".into();
    }
    users
        .iter()
        .map(UserName::as_str)
        .collect::<Vec<_>>()
        .join(" ")
}

fn print_contacts(list: &ContactList) {
    println!("contacts: {}", names(&list.contacts));
    for p in &list.incoming {
        println!(
            "contact request from {}: `haven contacts accept {}` or `haven contacts decline {}`",
            p.user, p.user, p.user
        );
    }
    for p in &list.outgoing {
        println!("your contact request to {} is pending", p.user);
    }
    println!("blocked: {}", names(&list.blocked));
    println!("restricted: {}", names(&list.restricted));
}

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RequestsArgs {
    #[command(subcommand)]
    pub cmd: Option<RequestsCmd>,
    /// One JSON object (the pending requests).
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Subcommand)]
pub enum RequestsCmd {
    /// Accept USER's message requests: their messages arrive normally from now on.
    Accept {
        /// The account.
        user: String,
    },
    /// Decline USER's message requests (a group request: you leave the group).
    Decline {
        /// The account.
        user: String,
    },
}

fn request_line(client: &Client, r: &MessageRequest) -> String {
    let id = short(&r.group_id);
    let answer = format!(
        "`haven requests accept {}` or `haven requests decline {}`",
        r.from, r.from
    );
    match r.kind {
        RequestKind::Direct => format!("message request from {} ({id}): {answer}", r.from),
        RequestKind::Group => format!(
            "group request from {} to {} ({id}), members {}: {answer}",
            r.from,
            client.label(&r.group_id),
            names(&r.members)
        ),
    }
}

pub async fn requests(home: PathBuf, args: RequestsArgs) -> anyhow::Result<ExitCode> {
    let named = match &args.cmd {
        Some(RequestsCmd::Accept { user: u } | RequestsCmd::Decline { user: u }) => Some(user(u)?),
        None => None,
    };
    let mut client = Client::open(&home).await?;
    // The conversations the requests name are then known here (labels, local accept, leave).
    client.sync().await?;
    match (args.cmd, named) {
        (None, _) => {
            let list = client.message_requests().await?;
            if args.json {
                let requests: Vec<serde_json::Value> = list
                    .requests
                    .iter()
                    .map(|r| {
                        json!({"from": r.from.as_str(), "kind": r.kind.as_str(),
                               "conversation": client.label(&r.group_id),
                               "conversation_id": r.group_id.to_hex(),
                               "created_at": r.created_at,
                               "members": r.members.iter().map(UserName::as_str).collect::<Vec<_>>()})
                    })
                    .collect();
                println!("{}", json!({ "requests": requests }));
            } else if list.requests.is_empty() {
                println!("no message requests");
            } else {
                for r in &list.requests {
                    println!("{}", request_line(&client, r));
                }
            }
        }
        (Some(RequestsCmd::Accept { .. }), Some(u)) => {
            let a = client.accept_request(&u).await?;
            println!("accepted {u}'s message requests; their messages arrive normally now");
            for g in &a.accepted {
                println!("accepted {} ({})", client.label(g), short(g));
            }
        }
        (Some(RequestsCmd::Decline { .. }), Some(u)) => {
            let a = client.decline_request(&u).await?;
            println!("declined {u}'s message requests");
            for g in &a.left {
                println!("left {} ({})", client.label(g), short(g));
            }
        }
        (Some(_), None) => anyhow::bail!("a user name is missing"),
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct UserArg {
    /// The account.
    pub user: String,
}

/// What `block`, `unblock`, `restrict` and `unrestrict` do.
#[derive(Clone, Copy)]
pub enum Toggle {
    Block,
    Unblock,
    Restrict,
    Unrestrict,
}

pub async fn toggle(home: PathBuf, args: UserArg, what: Toggle) -> anyhow::Result<ExitCode> {
    let u = user(&args.user)?;
    let mut client = Client::open(&home).await?;
    match what {
        Toggle::Block => {
            client.set_blocked(&u, true).await?;
            println!("blocked {u}: they cannot message you or add you to groups, and their messages in groups you share are hidden");
        }
        Toggle::Unblock => {
            client.set_blocked(&u, false).await?;
            println!("unblocked {u}");
        }
        Toggle::Restrict => {
            client.set_restricted(&u, true).await?;
            println!("restricted {u}: their messages arrive as message requests (text only)");
        }
        Toggle::Unrestrict => {
            client.set_restricted(&u, false).await?;
            println!("unrestricted {u}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A message setting as the command line names it.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Setting {
    /// Only your contacts can start conversations with you.
    ContactsOnly,
    /// Others arrive as message requests (the default).
    Requests,
    /// Anyone can (blocks and rate limits still apply).
    Everyone,
}

#[derive(clap::Subcommand)]
pub enum SettingsCmd {
    /// Who may start conversations with you (minors: always `requests`).
    Messages {
        /// contacts-only, requests or everyone.
        setting: Setting,
    },
}

pub async fn settings(home: PathBuf, cmd: SettingsCmd) -> anyhow::Result<ExitCode> {
    let SettingsCmd::Messages { setting } = cmd;
    let s = match setting {
        Setting::ContactsOnly => MessageSetting::ContactsOnly,
        Setting::Requests => MessageSetting::Requests,
        Setting::Everyone => MessageSetting::Everyone,
    };
    let mut client = Client::open(&home).await?;
    client.set_message_setting(s).await?;
    let me = client.me().await?;
    if me.messages == s {
        println!("messages: {}", s.as_str());
    } else {
        println!(
            "messages: {} (asked for {}; for this account the server keeps {})",
            me.messages.as_str(),
            s.as_str(),
            me.messages.as_str()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn me(home: PathBuf, args: JsonFlag) -> anyhow::Result<ExitCode> {
    let mut client = Client::open(&home).await?;
    let me = client.me().await?;
    if args.json {
        println!("{}", serde_json::to_string(&me)?);
    } else {
        println!(
            "{}: age {} ({}), messages: {}",
            me.user,
            me.age_band.as_str(),
            me.age_source.as_str(),
            me.messages.as_str()
        );
    }
    Ok(ExitCode::SUCCESS)
}
