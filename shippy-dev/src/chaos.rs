//! `make chaos`: the cluster under seeded faults, then the checker (was shippy-chaos/chaos.sh).

use std::process::ExitCode;

/// Runs it (for now, the old script).
pub fn run(args: &[String]) -> anyhow::Result<ExitCode> {
    crate::legacy::script("shippy-chaos/chaos.sh", &[&[], args].concat())
}
