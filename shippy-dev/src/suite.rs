//! `make test`: every test against throwaway infrastructure, then the smoke tests (was scripts/test.sh).

use std::process::ExitCode;

/// Runs it (for now, the old script).
pub fn run(args: &[String]) -> anyhow::Result<ExitCode> {
    crate::legacy::script("scripts/test.sh", &[&[], args].concat())
}
