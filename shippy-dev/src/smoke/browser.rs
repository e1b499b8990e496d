//! The web UI in a real browser: user-, vessel- and consignment-service and
//! api-gateway started from their binaries (fresh databases), then headless
//! Chromium (Debian's chromium + chromium-driver) driven by Python Selenium
//! (scripts/smoke/browser.py): sign up, log in, ship a consignment with two
//! containers, see it listed with its vessel, see a bad input's error, log
//! out, an admin's fleet, and the admin's ops dashboard showing
//! consignment-service's circuit open while it is stopped (SIGSTOP) and
//! closed again after SIGCONT. Screenshots in `BROWSER_OUT` (default:
//! target/browser).
//!
//! Needs `TEST_DATABASE_URL` and `TEST_NATS_URL`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;

use super::services::{Cluster, ClusterEnv, Databases};
use super::{Checks, python};
use crate::repo;

const SERVICES: [&str; 4] = [
    "user-service",
    "vessel-service",
    "consignment-service",
    "api-gateway",
];

/// Runs it.
pub async fn run() -> anyhow::Result<ExitCode> {
    let mut checks = Checks::default();
    let missing = ["/usr/bin/chromium", "/usr/bin/chromedriver"]
        .iter()
        .any(|program| !Path::new(program).is_file());
    if missing && let Err(error) = crate::provision::apt(&["chromium", "chromium-driver"]) {
        eprintln!("{error:#}");
        checks.not_ok("browser: install chromium and chromium-driver (apt-get)");
        return Ok(checks.exit_code());
    }
    if !python::imports("python3", "selenium")
        && !python::pip_install("python3", &["selenium"], false)
    {
        checks.not_ok("browser: install Python selenium from PyPI");
        return Ok(checks.exit_code());
    }
    let bin = super::bin_dir();
    for name in SERVICES {
        if !bin.join(name).is_file() {
            super::cargo_build(&[name], true)?;
        }
    }
    let admin_url = super::required_var("TEST_DATABASE_URL")?;
    let nats_url = super::required_var("TEST_NATS_URL")?;
    let out = super::out_dir("BROWSER_OUT", "browser");
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let (databases, urls) = Databases::for_cluster("browser", &admin_url).await?;
    let run_dir = super::run_dir("browser")?;
    let result = smoke(&mut checks, &bin, &run_dir, &out, urls, nats_url).await;
    let _ = std::fs::remove_dir_all(&run_dir);
    databases.drop_all().await;
    result
}

async fn smoke(
    checks: &mut Checks,
    bin: &Path,
    run: &Path,
    out: &Path,
    urls: [String; 3],
    nats_url: String,
) -> anyhow::Result<ExitCode> {
    let pid = std::process::id();
    let admin = format!("admin-{pid}@example.com");
    let env = ClusterEnv {
        rust_log: "info",
        user: ClusterEnv::user_settings("browser", nats_url, &admin),
        // A short deadline for consignment-service, so the dashboard check
        // sees its circuit open within seconds of stopping it; a cool-down
        // long enough that the page (refreshing every 2 s) sees it open
        // before it half-opens.
        gateway: vec![
            ("CONSIGNMENT_SERVICE_TIMEOUT", "2s".into()),
            ("BREAKER_FAILURES", "2".into()),
            ("BREAKER_COOL_DOWN", "8s".into()),
        ],
        ..ClusterEnv::default()
    };
    let Some(cluster) = Cluster::start_ready(checks, "browser", bin, run, urls, env, 300).await
    else {
        return Ok(checks.exit_code());
    };
    let url = cluster.url();
    checks.ok(&format!(
        "browser: api-gateway is ready at {url} (services from their binaries)"
    ));
    let mut browser = tokio::process::Command::new("python3");
    browser
        .arg(repo().join("scripts/smoke/browser.py"))
        .arg(&url)
        .arg(out)
        .arg(&admin)
        .current_dir(repo());
    if let Some(pid) = cluster.consignment_pid() {
        browser.env("CONSIGNMENT_PID", pid.to_string());
    }
    let status = browser
        .status()
        .await
        .context("cannot run python3 scripts/smoke/browser.py")?;
    drop(cluster);
    eprintln!("browser: screenshots in {}", super::shown(out).display());
    Ok(ExitCode::from(
        u8::try_from(status.code().unwrap_or(1)).unwrap_or(1),
    ))
}
