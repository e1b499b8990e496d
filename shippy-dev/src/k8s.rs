//! `cargo dev k8s check|dev-key|kubectl`: the Kubernetes manifests (was scripts/k8s.sh).

use std::process::ExitCode;

/// Runs it (for now, the old script).
pub fn run(args: &[String]) -> anyhow::Result<ExitCode> {
    crate::legacy::script("scripts/k8s.sh", &[&[], args].concat())
}
