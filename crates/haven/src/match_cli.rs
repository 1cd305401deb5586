//! `haven match` and `haven hashlist` (owned by the PDQ matching work; stub until it lands).

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct MatchArgs {
    /// Image paths or 64-hex-digit hashes.
    pub inputs: Vec<String>,
}

#[derive(clap::Args)]
pub struct HashlistArgs {}

pub fn match_cmd(_args: MatchArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}

pub fn hashlist(_args: HashlistArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
