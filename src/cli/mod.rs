//! Subcommands of the `ttrec` binary.

pub mod args;
pub mod data;
pub mod tt;
