//! `cargo dev infra up|env|down`: throwaway servers on loopback (was scripts/infra.sh).

use std::process::ExitCode;

/// Runs it (for now, the old script).
pub fn run(args: &[String]) -> anyhow::Result<ExitCode> {
    crate::legacy::script("scripts/infra.sh", &[&[], args].concat())
}
