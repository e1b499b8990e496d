//! `make test`'s smoke tests (were scripts/smoke/*.sh): the binaries as a
//! user starts them, checked from outside by programs that are not ours.
//!
//! - [`vessel`]: vessel-service probed by an independent gRPC client
//!   (Python grpcio learning the API through reflection, `grpc_probe.py`);
//! - [`browser`]: the web UI in headless Chromium (Selenium, `browser.py`);
//! - [`openapi`]: the api-gateway fuzzed by Schemathesis against its own
//!   OpenAPI document.
//!
//! Each prints one `ok - …` / `not ok - …` line per check (what `make
//! test`'s closing summary counts) and exits non-zero if any failed; one that
//! cannot even be set up says why in a `not ok` line too. Where things are:
//! [`services`] starts the binaries and stops them whatever happens,
//! [`python`] installs what the Python programs need, [`http`] asks the
//! gateway.

pub(crate) mod python;

mod browser;
mod openapi;
mod services;
mod vessel;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::{http, repo};

/// Runs the smoke test `which` (vessel, browser or openapi).
pub fn run(which: &str) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(async {
        match which {
            "vessel" => vessel::run().await,
            "browser" => browser::run().await,
            "openapi" => openapi::run().await,
            other => bail!("no smoke test called {other:?}: vessel, browser or openapi"),
        }
    });
    match result {
        Ok(code) => Ok(code),
        // Counted by make test's summary like any failed check.
        Err(error) => {
            println!("not ok - {which}: {error:#}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The `ok - …` / `not ok - …` lines of one smoke test, and whether any failed.
#[derive(Debug, Default)]
pub(crate) struct Checks {
    failed: bool,
}

impl Checks {
    /// Prints `what` as passed if `ok`, else as failed with `detail`.
    pub fn check(&mut self, ok: bool, what: &str, detail: &str) -> bool {
        if ok {
            println!("ok - {what}");
        } else {
            println!("not ok - {what}: {detail}");
            self.failed = true;
        }
        ok
    }

    /// A line that passed.
    pub fn ok(&mut self, line: &str) {
        println!("ok - {line}");
    }

    /// A line that failed.
    pub fn not_ok(&mut self, line: &str) {
        println!("not ok - {line}");
        self.failed = true;
    }

    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Exit 1 if any check failed.
    pub fn exit_code(&self) -> ExitCode {
        if self.failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
    }
}

/// An environment variable that must be set (servers from `cargo dev infra up`).
fn required_var(name: &str) -> anyhow::Result<String> {
    std::env::var(name).map_err(|_| {
        anyhow::anyhow!(
            "{name} is not set: start the servers with `eval \"$(cargo dev infra up postgres nats)\"` \
             (or set it to your own server's URL)"
        )
    })
}

/// `path` from an environment variable, relative to the repository (where
/// the old scripts ran) unless absolute.
fn in_repo(path: impl AsRef<Path>) -> PathBuf {
    repo().join(path)
}

/// `path` as the old scripts showed it: relative to the repository (where
/// the programs they ran started) when inside it.
fn shown(path: &Path) -> &Path {
    path.strip_prefix(repo()).unwrap_or(path)
}

/// `${CARGO_TARGET_DIR:-target}`, in the repository.
fn target_dir() -> PathBuf {
    in_repo(std::env::var_os("CARGO_TARGET_DIR").unwrap_or_else(|| "target".into()))
}

/// Where the workspace's debug binaries are.
fn bin_dir() -> PathBuf {
    target_dir().join("debug")
}

/// Smoke test `test`'s scratch directory, created: `$TMPDIR/shippy-smoke-TEST-PID`.
fn run_dir(test: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("shippy-smoke-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// `$VAR`, else `target/<default>`: a smoke test's report directory.
fn out_dir(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var).map_or_else(|| target_dir().join(default), in_repo)
}

/// `cargo build --quiet [--locked] -p PACKAGE…` (its output on stderr).
fn cargo_build(packages: &[&str], locked: bool) -> anyhow::Result<()> {
    let mut command = crate::process::cargo();
    command.args(["build", "--quiet"]).current_dir(repo());
    if locked {
        command.arg("--locked");
    }
    for package in packages {
        command.args(["-p", package]);
    }
    let status = command
        .stdout(std::io::stderr())
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("cargo build -p {} failed ({status})", packages.join(" -p "));
    }
    Ok(())
}

/// `bytes` random bytes from the operating system, in hex.
fn random_hex(bytes: usize) -> anyhow::Result<String> {
    use rand::TryRngCore as _;
    let mut buffer = vec![0; bytes];
    rand::rngs::OsRng
        .try_fill_bytes(&mut buffer)
        .map_err(|error| anyhow::anyhow!("no randomness from the operating system: {error}"))?;
    Ok(buffer.iter().map(|byte| format!("{byte:02x}")).collect())
}
