//! `make test`'s smoke tests: vessel-service to an independent gRPC client,
//! the web UI in headless Chromium, the OpenAPI document fuzzed by
//! Schemathesis (were scripts/smoke/*.sh).

use std::process::ExitCode;

use anyhow::bail;

/// Runs the smoke test `which` (for now, its old script).
pub fn run(which: &str) -> anyhow::Result<ExitCode> {
    match which {
        "vessel" | "browser" | "openapi" => {
            crate::legacy::script(&format!("scripts/smoke/{which}.sh"), &[])
        }
        other => bail!("no smoke test called {other:?}: vessel, browser or openapi"),
    }
}
