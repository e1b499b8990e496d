//! `make chaos` (`cargo dev chaos`): the whole cluster natively on throwaway
//! infrastructure of its own (PostgreSQL, NATS, Consul; the MongoDB stand-in
//! with `STORE=mongodb`), mixed load and seeded random faults for
//! `CHAOS_DURATION` (default 5m), then the checker (was shippy-chaos/chaos.sh).
//! The history, the services' logs and the report (report.md, report.json,
//! throughput.svg) go to `CHAOS_OUT` (default
//! `target/chaos/<store>-<UTC time>`). Exits non-zero on any violation.
//!
//! ```text
//! make chaos                                  5 minutes on PostgreSQL, a random seed
//! make chaos CHAOS_SEED=42 CHAOS_DURATION=30m STORE=mongodb
//! ```

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::Context;

use crate::infra::Infra;
use crate::repo;

/// Runs it; the exit code is shippy-chaos's (2: no MongoDB server for `STORE=mongodb`).
pub fn run(_args: &[String]) -> anyhow::Result<ExitCode> {
    crate::infra::survive_interrupts();
    let repo = repo();
    let store = given("STORE").unwrap_or_else(|| "postgres".into());
    let dir = std::env::var_os("SHIPPY_INFRA_DIR")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join(format!(".infra/chaos-{}", std::process::id())));
    let mut servers = vec!["postgres", "nats", "consul"];
    if store == "mongodb" {
        servers.push("mongodb");
    }
    let infra = Infra::up(&dir, &servers)?;
    if store == "mongodb" && infra.var("TEST_MONGODB_URL").is_none() {
        eprintln!(
            "chaos: STORE=mongodb needs a MongoDB server, and none could be had (set TEST_MONGODB_URL)"
        );
        return Ok(ExitCode::from(2));
    }
    // The services register with a Consul agent of the run's own and find each
    // other through it (the nemesis kills and pauses it too); CHAOS_CONSUL=0: not.
    let consul = given("CHAOS_CONSUL").unwrap_or_else(|| "1".into());
    // PostgreSQL's backends are paused only on the server started just now.
    let pause_postgres = given("CHAOS_PAUSE_POSTGRES").unwrap_or_else(|| {
        if dir.join("postgres.dir").exists() {
            "1"
        } else {
            "0"
        }
        .into()
    });
    let environment = |command: &mut Command| {
        command
            .current_dir(&repo)
            .env("STORE", &store)
            .env("SHIPPY_INFRA_DIR", &dir)
            .envs(infra.vars().iter().map(|(name, value)| (name, value)))
            .env("CHAOS_CONSUL", &consul)
            .env("CHAOS_PAUSE_POSTGRES", &pause_postgres);
    };

    let mut build = crate::process::cargo();
    build.args([
        "build",
        "--locked",
        "-p",
        "shippy-chaos",
        "-p",
        "user-service",
    ]);
    build.args(["-p", "vessel-service", "-p", "consignment-service"]);
    build.args(["-p", "email-service", "-p", "api-gateway", "--bins"]);
    environment(&mut build);
    let built = build.status().context("cannot run cargo build")?;
    if !built.success() {
        return Ok(exit_code(built.code()));
    }

    let target = given("CARGO_TARGET_DIR").unwrap_or_else(|| "target".into());
    let out = given("CHAOS_OUT").unwrap_or_else(|| {
        let time = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        format!("{target}/chaos/{store}-{time}")
    });
    let mut chaos = Command::new(repo.join(&target).join("debug/shippy-chaos"));
    environment(&mut chaos);
    chaos.env("CHAOS_OUT", &out);
    let status = chaos
        .status()
        .with_context(|| format!("cannot run {target}/debug/shippy-chaos"))?;
    Ok(exit_code(status.code()))
}

/// The value of `name` in the environment, if set and not empty.
fn given(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// A child's exit code as ours (killed by a signal: 1).
fn exit_code(code: Option<i32>) -> ExitCode {
    ExitCode::from(code.unwrap_or(1).clamp(0, 255) as u8)
}
