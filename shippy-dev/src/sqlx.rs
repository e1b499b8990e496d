//! `cargo dev sqlx-prepare [--check]`: the committed sqlx offline query data (was scripts/sqlx-prepare.sh).

use std::process::ExitCode;

/// Runs it (for now, the old script).
pub fn run(args: &[String]) -> anyhow::Result<ExitCode> {
    crate::legacy::script("scripts/sqlx-prepare.sh", &[&[], args].concat())
}
