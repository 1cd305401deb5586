//! `haven hash` (owned by the PDQ hashing work; stub until it lands).

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct HashArgs {
    /// Image files or directories.
    pub paths: Vec<std::path::PathBuf>,
}

pub fn hash(_args: HashArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
