//! A new user's check of vessel-service: the real binary, started as a user
//! would (`DATABASE_URL=postgres://… vessel-service`), probed by an
//! independent client (Python grpcio, scripts/smoke/grpc_probe.py) that
//! learns the API through reflection alone.
//!
//! Needs `TEST_DATABASE_URL`; the binary is `VESSEL_SERVICE_BIN`, else
//! `target/debug/vessel-service` (built if missing).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use super::services::{Databases, Service, database_url};
use super::{Checks, python};
use crate::repo;

const SERVICE: &str = "shippy.vessel.v1.VesselService";

/// Runs it.
pub async fn run() -> anyhow::Result<ExitCode> {
    if !python::imports("python3", "grpc, grpc_reflection, grpc_health")
        && !python::pip_install(
            "python3",
            &["grpcio", "grpcio-reflection", "grpcio-health-checking"],
            false,
        )
    {
        println!("not ok - install the Python gRPC client (grpcio) from PyPI");
        return Ok(ExitCode::FAILURE);
    }
    let binary = std::env::var_os("VESSEL_SERVICE_BIN")
        .map_or_else(|| super::bin_dir().join("vessel-service"), super::in_repo);
    if !binary.is_file() {
        super::cargo_build(&["vessel-service"], false)?;
    }
    let admin_url = super::required_var("TEST_DATABASE_URL")?;
    let name = format!("smoke_vessels_{}", std::process::id());
    let databases = Databases::create(&admin_url, std::slice::from_ref(&name)).await?;
    let result = smoke(&binary, &database_url(&admin_url, &name)?).await;
    databases.drop_all().await;
    result
}

async fn smoke(binary: &std::path::Path, database: &str) -> anyhow::Result<ExitCode> {
    // A password in the URL (the loopback server trusts any), to check it is never logged.
    let mut database = url::Url::parse(database)?;
    if database.password().is_none() && !database.username().is_empty() {
        let _ = database.set_password(Some("hunter2"));
    }
    let password = database.password().unwrap_or("hunter2").to_owned();
    let run = super::run_dir("vessel")?;
    let log = run.join("vessel-service.log");
    let started = Service::start(
        "vessel-service",
        binary,
        &[("DATABASE_URL", database.to_string())],
        "info",
        &log,
    )
    .await;
    let code = match started {
        Ok(service) => checks(service, &log, &password).await,
        Err(error) => {
            println!("not ok - {error:#}");
            Ok(ExitCode::FAILURE)
        }
    };
    let _ = std::fs::remove_dir_all(&run);
    code
}

async fn checks(
    mut service: Service,
    log: &std::path::Path,
    password: &str,
) -> anyhow::Result<ExitCode> {
    let address = service.address;
    for _ in 0..100 {
        if probe(address, &["health"]).await? == "SERVING" {
            break;
        }
        if service.exited()?.is_some() {
            let _ = service.stop();
            println!("not ok - vessel-service exited at start:");
            println!("{}", std::fs::read_to_string(log).unwrap_or_default());
            return Ok(ExitCode::FAILURE);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut checks = Checks::default();
    let mut check = async |name: &str, wanted: &str, args: &[&str]| -> anyhow::Result<()> {
        let actual = probe(address, args).await?;
        checks.check(
            actual.contains(wanted),
            name,
            &format!("wanted '{wanted}', got '{actual}'"),
        );
        Ok(())
    };
    let find = format!("{SERVICE}/FindAvailable");
    check("health answers SERVING", "SERVING", &["health"]).await?;
    check(
        "health of the named service",
        "SERVING",
        &["health", SERVICE],
    )
    .await?;
    check("reflection lists VesselService", SERVICE, &["list"]).await?;
    check(
        "FindAvailable picks the smallest seed vessel that fits",
        r#""id": "vessel002""#,
        &["call", &find, r#"{"capacity": 3, "maxWeight": 55000}"#],
    )
    .await?;
    check(
        "nothing fits: NOT_FOUND naming the spec",
        "ERROR NOT_FOUND no available vessel has capacity >= 3000",
        &["call", &find, r#"{"capacity": 3000, "maxWeight": 1}"#],
    )
    .await?;
    check(
        "capacity 0: INVALID_ARGUMENT",
        "ERROR INVALID_ARGUMENT capacity must be greater than 0",
        &["call", &find, r#"{"capacity": 0, "maxWeight": 1}"#],
    )
    .await?;
    // Creating vessels is for admins (a token from user-service, which this
    // smoke test does not run): an outsider without one is refused, and says how.
    check(
        "Create without a token: UNAUTHENTICATED, saying what to send",
        "ERROR UNAUTHENTICATED missing token: send `authorization: Bearer <token>`",
        &[
            "call",
            &format!("{SERVICE}/Create"),
            r#"{"name": "Smoke", "capacity": 1, "maxWeight": 1}"#,
        ],
    )
    .await?;
    check(
        "still serving after refused and bad input; nothing was created",
        r#""id": "vessel002""#,
        &["call", &find, r#"{"capacity": 1, "maxWeight": 1}"#],
    )
    .await?;

    let status = service.stop()?;
    let exit = {
        use std::os::unix::process::ExitStatusExt as _;
        status
            .code()
            .or_else(|| status.signal().map(|signal| 128 + signal))
            .unwrap_or(1)
    };
    checks.check(
        exit == 0,
        "SIGTERM: graceful shutdown, exit 0",
        &format!("wanted 'exit 0', got 'exit {exit}'"),
    );
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let leaks = text.lines().filter(|line| line.contains(password)).count();
    if leaks == 0 && text.contains("vessel store configured") {
        checks.ok("the log never shows the database password");
    } else {
        checks.not_ok(&format!(
            "the database password appears in {leaks} log lines"
        ));
    }
    if checks.failed() {
        println!("--- vessel-service log:\n{text}");
    }
    Ok(checks.exit_code())
}

/// `grpc_probe.py ADDRESS ARGS…`: what it printed (stdout and stderr), as
/// `$(…)` gives it (trailing newlines dropped).
async fn probe(address: SocketAddr, args: &[&str]) -> anyhow::Result<String> {
    use anyhow::Context as _;
    let output = tokio::process::Command::new("python3")
        .arg(repo().join("scripts/smoke/grpc_probe.py"))
        .arg(address.to_string())
        .args(args)
        .current_dir(repo())
        .output()
        .await
        .context("cannot run python3 scripts/smoke/grpc_probe.py")?;
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Ok(text.trim_end_matches('\n').to_owned())
}
