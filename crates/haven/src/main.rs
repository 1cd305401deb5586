//! The `haven` command: a thin shell over `haven-client`, `haven-server` and `haven-pdq`.

mod match_cli;
mod pdq_cli;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "haven", version, about = "Haven: end-to-end encrypted messaging with child-safety systems that keep working under encryption")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compute PDQ hashes of images (directories are walked).
    Hash(pdq_cli::HashArgs),
    /// Match images or hashes against a hash list or snapshot.
    Match(match_cli::MatchArgs),
    /// Build and inspect hash-list snapshots.
    Hashlist(match_cli::HashlistArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Hash(args) => pdq_cli::hash(args),
        Command::Match(args) => match_cli::match_cmd(args),
        Command::Hashlist(args) => match_cli::hashlist(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("haven: error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
