//! Subcommands of the `ttrec` binary.

pub mod data;
pub mod tt;
