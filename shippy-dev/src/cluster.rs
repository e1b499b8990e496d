//! `make demo`, `make dev`, `make bench`: the whole cluster natively (was scripts/cluster.sh).

use std::process::ExitCode;

/// Runs it (for now, the old script).
pub fn run(args: &[String]) -> anyhow::Result<ExitCode> {
    crate::legacy::script("scripts/cluster.sh", &[&[], args].concat())
}
