//! `make compose-test`: docker compose for real (was scripts/compose-test.sh).

use std::process::ExitCode;

/// Runs it (for now, the old script).
pub fn run(args: &[String]) -> anyhow::Result<ExitCode> {
    crate::legacy::script("scripts/compose-test.sh", &[&[], args].concat())
}
