//! `cargo dev sqlx-prepare [--check]`: sqlx's offline query data
//! (user-service/.sqlx), regenerated — or checked to be current — against a
//! fresh database migrated from user-service/migrations (was
//! scripts/sqlx-prepare.sh).
//!
//! Needs `TEST_DATABASE_URL` (`cargo dev infra up postgres`) and sqlx-cli 0.9,
//! which it installs with cargo when missing.

use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context, bail};

use crate::repo;

/// Runs it against the server `TEST_DATABASE_URL` names.
pub fn run(args: &[String]) -> anyhow::Result<ExitCode> {
    let code = prepare(args, std::env::var("TEST_DATABASE_URL").ok().as_deref())?;
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

/// `cargo sqlx prepare args…` against a fresh database on the server
/// `database_url` names, dropped afterwards; its exit code.
pub fn prepare(args: &[String], database_url: Option<&str>) -> anyhow::Result<i32> {
    install_sqlx_cli()?;
    let Some(admin_url) = database_url.filter(|url| !url.is_empty()) else {
        bail!(
            "TEST_DATABASE_URL: start the infrastructure first: \
             eval \"$(cargo dev infra up postgres)\""
        );
    };
    let name = format!("sqlx_prepare_{}", std::process::id());
    psql(admin_url, &format!("CREATE DATABASE {name}"), true)?;
    let database = format!(
        "{}/{name}",
        admin_url
            .rsplit_once('/')
            .map_or(admin_url, |(server, _)| server)
    );
    let prepared = migrate_and_prepare(args, &database);
    let _ = psql(admin_url, &format!("DROP DATABASE IF EXISTS {name}"), false);
    prepared
}

fn migrate_and_prepare(args: &[String], database: &str) -> anyhow::Result<i32> {
    let migrated = Command::new("sqlx")
        .args(["migrate", "run", "--source", "user-service/migrations"])
        .args(["--database-url", database])
        .current_dir(repo())
        .stdout(Stdio::null())
        .status()
        .context("cannot run sqlx (sqlx-cli)")?;
    if !migrated.success() {
        bail!("sqlx migrate run failed ({migrated})");
    }
    let status = crate::process::cargo()
        .args(["sqlx", "prepare"])
        .args(args)
        .env("SQLX_OFFLINE", "false")
        .env("DATABASE_URL", database)
        .current_dir(repo().join("user-service"))
        .status()
        .context("cannot run cargo sqlx prepare")?;
    Ok(status.code().unwrap_or(1))
}

/// sqlx-cli 0.9, installed with cargo (once) unless `cargo sqlx` is it.
fn install_sqlx_cli() -> anyhow::Result<()> {
    let installed = crate::process::cargo()
        .args(["sqlx", "--version"])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).contains(" 0.9."));
    if installed {
        return Ok(());
    }
    eprintln!("installing sqlx-cli 0.9 (once)");
    let status = crate::process::cargo()
        .args([
            "install",
            "sqlx-cli",
            "--version",
            "0.9.0",
            "--no-default-features",
        ])
        .args(["--features", "postgres,rustls", "--quiet"])
        .status()
        .context("cannot run cargo install")?;
    if !status.success() {
        bail!("cargo install sqlx-cli failed ({status})");
    }
    Ok(())
}

/// `psql -q url -c sql`, its output discarded (its errors too unless `show_errors`).
fn psql(url: &str, sql: &str, show_errors: bool) -> anyhow::Result<()> {
    let status = Command::new("psql")
        .args(["-q", url, "-c", sql])
        .stdout(Stdio::null())
        .stderr(if show_errors {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .status()
        .context("cannot run psql (Debian's postgresql-client)")?;
    if !status.success() {
        bail!("psql: {sql} failed ({status})");
    }
    Ok(())
}
