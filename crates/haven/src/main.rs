//! The `haven` command: a thin shell over `haven-client`, `haven-server` and `haven-pdq`.

mod admin;
mod bench;
mod demo;
mod keys_cli;
mod kt_cli;
mod match_cli;
mod mod_cli;
mod msg_cli;
mod pdq_cli;
mod safety_cli;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "haven",
    version,
    about = "Haven: end-to-end encrypted messaging whose child-safety systems keep working under encryption"
)]
struct Cli {
    /// Client profile directory (default: $HAVEN_HOME, else ~/.haven).
    #[arg(long, global = true, env = "HAVEN_HOME")]
    home: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a Haven server (embedded default: SQLite and blobs in ./haven-data).
    Server(msg_cli::ServerArgs),
    /// Register a new user with this device.
    Register(msg_cli::RegisterArgs),
    /// Link this new device to an existing account with a code from `haven device link`.
    Link(msg_cli::LinkArgs),
    /// Manage this account's devices.
    #[command(subcommand)]
    Device(msg_cli::DeviceCmd),
    /// Revoke this device's session on the server (--all: every session of the account).
    Logout(msg_cli::LogoutArgs),
    /// Signed device lists and key-transparency alarms (show USER, ack ID).
    Keys(keys_cli::KeysArgs),
    /// The server's key directory: `kt audit --server URL` checks it only ever grew.
    #[command(subcommand)]
    Kt(kt_cli::KtCmd),
    /// Operator commands on a server's data directory (franking keys).
    Admin(admin::AdminArgs),
    /// Send a text message to a user (1:1) or to #group.
    Send(msg_cli::SendArgs),
    /// Send a file (encrypted with a fresh key) to a user or #group.
    SendFile(msg_cli::SendFileArgs),
    /// Download and decrypt the attachment of a message.
    GetFile(msg_cli::GetFileArgs),
    /// Groups: create, add, remove, leave.
    #[command(subcommand)]
    Group(msg_cli::GroupCmd),
    /// Accept an invitation (re-added after leaving) or a direct chat someone opened.
    Accept(msg_cli::ConversationArg),
    /// Leave a conversation; declines an invitation.
    Leave(msg_cli::ConversationArg),
    /// Fetch, decrypt, store and print new messages.
    Sync(msg_cli::SyncArgs),
    /// Print a conversation's history.
    History(msg_cli::HistoryArgs),
    /// List conversations: id, label, state and members.
    Conversations(msg_cli::JsonFlag),
    /// Interactive session: incoming messages appear live, typed lines are sent.
    Chat(msg_cli::ChatArgs),
    /// Contacts: add (send a request), accept, decline, remove, list.
    #[command(subcommand)]
    Contacts(safety_cli::ContactsCmd),
    /// Message requests from people outside your contacts: list, accept, decline.
    Requests(safety_cli::RequestsArgs),
    /// Block an account: it cannot message you or add you, and its messages are hidden.
    Block(safety_cli::UserArg),
    /// Unblock an account.
    Unblock(safety_cli::UserArg),
    /// Restrict an account: its messages arrive as message requests, text only.
    Restrict(safety_cli::UserArg),
    /// Lift a restriction.
    Unrestrict(safety_cli::UserArg),
    /// Your settings (who may message you).
    #[command(subcommand)]
    Settings(safety_cli::SettingsCmd),
    /// Your account as the server applies the rules to it.
    Me(msg_cli::JsonFlag),
    /// Report a message (verified end to end by the server) with earlier messages as context.
    Report(mod_cli::ReportArgs),
    /// Report an account (no message evidence).
    ReportUser(mod_cli::ReportUserArgs),
    /// Appeal an action against your account (works while suspended).
    Appeal(mod_cli::AppealArgs),
    /// Moderators: the case queue, cases, evidence, actions, escalation and appeals.
    #[command(subcommand)]
    Mod(mod_cli::ModCmd),
    /// A narrated tour: an in-process server, three users, a group, messages and a file.
    Demo,
    /// Benchmarks against a real server on loopback.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
    /// Compute PDQ hashes of images (directories are walked).
    Hash(pdq_cli::HashArgs),
    /// Match images or hashes against a hash list or snapshot.
    Match(match_cli::MatchArgs),
    /// Build and inspect hash-list snapshots.
    Hashlist(match_cli::HashlistArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let home = cli.home.clone().unwrap_or_else(msg_cli::default_home);
    let result = match cli.command {
        Command::Hash(args) => pdq_cli::hash(args),
        Command::Match(args) => match_cli::match_cmd(args),
        Command::Hashlist(args) => match_cli::hashlist(args),
        Command::Server(args) => msg_cli::run(msg_cli::server(args)),
        Command::Register(args) => msg_cli::run(msg_cli::register(home, args)),
        Command::Link(args) => msg_cli::run(msg_cli::link(home, args)),
        Command::Device(cmd) => msg_cli::run(msg_cli::device(home, cmd)),
        Command::Logout(args) => msg_cli::run(msg_cli::logout(home, args)),
        Command::Keys(args) => msg_cli::run(keys_cli::keys(home, args)),
        Command::Admin(args) => admin::main(args),
        Command::Kt(cmd) => msg_cli::run(kt_cli::kt(cmd)),
        Command::Send(args) => msg_cli::run(msg_cli::send(home, args)),
        Command::SendFile(args) => msg_cli::run(msg_cli::send_file(home, args)),
        Command::GetFile(args) => msg_cli::run(msg_cli::get_file(home, args)),
        Command::Group(cmd) => msg_cli::run(msg_cli::group(home, cmd)),
        Command::Accept(args) => msg_cli::run(msg_cli::accept(home, args)),
        Command::Leave(args) => msg_cli::run(msg_cli::leave(home, args)),
        Command::Sync(args) => msg_cli::run(msg_cli::sync(home, args)),
        Command::History(args) => msg_cli::run(msg_cli::history(home, args)),
        Command::Conversations(args) => msg_cli::run(msg_cli::conversations(home, args)),
        Command::Chat(args) => msg_cli::run(msg_cli::chat(home, args)),
        Command::Contacts(cmd) => msg_cli::run(safety_cli::contacts(home, cmd)),
        Command::Requests(args) => msg_cli::run(safety_cli::requests(home, args)),
        Command::Block(a) => msg_cli::run(safety_cli::toggle(home, a, safety_cli::Toggle::Block)),
        Command::Unblock(a) => {
            msg_cli::run(safety_cli::toggle(home, a, safety_cli::Toggle::Unblock))
        }
        Command::Restrict(a) => {
            msg_cli::run(safety_cli::toggle(home, a, safety_cli::Toggle::Restrict))
        }
        Command::Unrestrict(a) => {
            msg_cli::run(safety_cli::toggle(home, a, safety_cli::Toggle::Unrestrict))
        }
        Command::Settings(cmd) => msg_cli::run(safety_cli::settings(home, cmd)),
        Command::Me(args) => msg_cli::run(safety_cli::me(home, args)),
        Command::Report(args) => msg_cli::run(mod_cli::report(home, args)),
        Command::ReportUser(args) => msg_cli::run(mod_cli::report_user(home, args)),
        Command::Appeal(args) => msg_cli::run(mod_cli::appeal(home, args)),
        Command::Mod(cmd) => msg_cli::run(mod_cli::moderate(home, cmd)),
        Command::Demo => msg_cli::run(demo::run()),
        Command::Bench(cmd) => bench::main(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("haven: error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
