//! `ttrec data ...`: inspect Criteo files, write synthetic ones.

use clap::Subcommand;

/// `ttrec data` subcommands.
#[derive(Debug, Subcommand)]
pub enum DataCommand {}

/// Runs a `ttrec data` subcommand.
pub fn run(cmd: DataCommand) -> anyhow::Result<()> {
    match cmd {}
}
