//! `cargo dev infra up|env|down`: throwaway servers on loopback for tests,
//! the demo and development (was scripts/infra.sh), and [`Infra`], how every
//! other command starts them.
//!
//! PostgreSQL, NATS with JetStream and a Consul agent, each on a spare port;
//! the MongoDB stand-in when asked; and the SMTP server tests start themselves
//! (python3-aiosmtpd) installed. Missing programs come from Debian's packages
//! ([`crate::provision`]). A server the environment already names
//! (`TEST_DATABASE_URL`, `TEST_NATS_URL`, `TEST_CONSUL_HTTP_ADDR`,
//! `TEST_MONGODB_URL`) is reused, not started. The servers outlive `up`: what
//! `down` needs (pid files, data directories) stays in the state directory,
//! `$SHIPPY_INFRA_DIR` (default `.infra` in the repository), beside `env`,
//! the export lines `up` printed.

mod consul;
mod mongodb;
mod nats;
mod postgres;

use std::fmt::Display;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

const USAGE: &str = "\
Throwaway infrastructure on loopback for tests, the demo and development:
PostgreSQL, NATS with JetStream, and a Consul agent, each on a spare port;
a MongoDB-compatible server when asked; and the SMTP server tests start
themselves (python3-aiosmtpd) installed.

  cargo dev infra up [postgres] [nats] [consul] [mongodb]
                                   start them (default: the first three),
                                   print `export` lines to eval
  cargo dev infra env              print the export lines again
  cargo dev infra down             stop them and delete their data

Missing programs come from Debian's packages: PostgreSQL and nats-server with
apt-get; Consul 1.8.7 exists only in Debian's bullseye suite, so its package
is downloaded from that suite and only its binary is kept, in a cache.

No genuine MongoDB server installs on these machines: `mongodb` starts the
MongoDB-wire-compatible stand-in in shared/tools/documentdb beside the
repository (first use builds it, minutes), or $DOCUMENTDB_SH if set. It is
shared by everything on the machine: `down` stops it only if this `up`
started it. Without a stand-in it says so, and MongoDB tests are skipped.

A service already given in the environment is reused, not started:
TEST_DATABASE_URL (a PostgreSQL URL naming a database we may CREATE DATABASE
from), TEST_NATS_URL, TEST_CONSUL_HTTP_ADDR, TEST_MONGODB_URL (a MongoDB URL
whose user may create databases).

Consul runs with ACLs on (default deny); its management token is exported as
TEST_CONSUL_MANAGEMENT_TOKEN (passed through with a reused agent, if set).

State lives in $SHIPPY_INFRA_DIR (default: .infra in the repository); the
export lines are also written to $SHIPPY_INFRA_DIR/env.";

const SERVERS: [&str; 4] = ["postgres", "nats", "consul", "mongodb"];

/// Runs `cargo dev infra …`: the export lines on stdout, everything else on
/// stderr as `infra: …`.
pub fn run(args: &[String]) -> anyhow::Result<ExitCode> {
    let state = State::new(state_dir(), false);
    let result = match args.split_first() {
        Some((command, servers)) if command == "up" => {
            let servers: Vec<&str> = servers.iter().map(String::as_str).collect();
            up(&state, &servers).map(|env| print!("{env}"))
        }
        Some((command, _)) if command == "env" => match std::fs::read_to_string(state.env()) {
            Ok(env) => {
                print!("{env}");
                Ok(())
            }
            Err(_) => Err(anyhow::anyhow!("not up: run 'cargo dev infra up'")),
        },
        Some((command, _)) if command == "down" => {
            down(&state);
            Ok(())
        }
        _ => {
            println!("{USAGE}");
            return Ok(ExitCode::from(2));
        }
    };
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(error) => {
            state.log(format_args!("error: {error:#}"));
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `$SHIPPY_INFRA_DIR`, else `.infra` in the repository.
fn state_dir() -> PathBuf {
    std::env::var_os("SHIPPY_INFRA_DIR")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::repo().join(".infra"))
}

/// Starts `servers` (default: postgres, nats, consul) and returns the export
/// lines. Already up (its `env` exists): says so and returns those lines.
/// A start that fails stops what it started.
fn up(state: &State, servers: &[&str]) -> anyhow::Result<String> {
    let servers = if servers.is_empty() {
        &SERVERS[..3]
    } else {
        servers
    };
    if let Ok(env) = std::fs::read_to_string(state.env()) {
        state.log(format_args!(
            "already up ({} exists); run 'cargo dev infra down' first",
            state.env().display()
        ));
        return Ok(env);
    }
    if let Some(unknown) = servers.iter().find(|server| !SERVERS.contains(server)) {
        bail!("unknown service '{unknown}' (postgres, nats, consul or mongodb)");
    }
    std::fs::create_dir_all(state.dir())
        .with_context(|| format!("cannot create {}", state.dir().display()))?;
    state.write("env", "")?;
    let started = servers
        .iter()
        .try_for_each(|server| match *server {
            "postgres" => postgres::start(state),
            "nats" => nats::start(state),
            "consul" => consul::start(state),
            _ => mongodb::start(state),
        })
        .and_then(|()| ensure_aiosmtpd())
        .and_then(|()| {
            std::fs::read_to_string(state.env())
                .with_context(|| format!("cannot read {}", state.env().display()))
        });
    if started.is_err() {
        state.log("start failed; stopping what started");
        down(&State::new(state.dir().to_path_buf(), true));
    }
    started
}

/// Stops everything `up` started (the MongoDB stand-in only if it started
/// it) and deletes their data and the `env` file.
fn down(state: &State) {
    mongodb::stop(state);
    consul::stop(state);
    nats::stop(state);
    postgres::stop(state);
    let _ = std::fs::remove_file(state.env());
}

/// Tests start SMTP servers of their own with Debian's python3-aiosmtpd.
fn ensure_aiosmtpd() -> anyhow::Result<()> {
    let present = std::process::Command::new("/usr/bin/python3")
        .args(["-c", "import aiosmtpd"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if present {
        Ok(())
    } else {
        crate::provision::apt(&["python3-aiosmtpd"])
    }
}

/// The value of `name` in the environment, if set and not empty: a server
/// the user brings.
fn given(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// The state directory: the `env` file, pid files, logs, data.
#[derive(Debug)]
struct State {
    dir: PathBuf,
    quiet: bool,
}

impl State {
    fn new(dir: PathBuf, quiet: bool) -> Self {
        State { dir, quiet }
    }

    fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn env(&self) -> PathBuf {
        self.path("env")
    }

    /// `infra: <message>` on stderr (nothing when quiet).
    fn log(&self, message: impl Display) {
        if !self.quiet {
            eprintln!("infra: {message}");
        }
    }

    /// Writes `text` as the file `name` in the state directory.
    fn write(&self, name: &str, text: &str) -> anyhow::Result<()> {
        let path = self.path(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    }

    /// Appends `export NAME='value'` to the `env` file.
    fn export(&self, name: &str, value: &str) -> anyhow::Result<()> {
        let path = self.env();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut env| writeln!(env, "export {name}='{value}'"))
            .with_context(|| format!("cannot write {}", path.display()))
    }
}

/// Servers started for one command, stopped (and their data deleted) when
/// dropped. A server the environment already names (`TEST_DATABASE_URL`, …)
/// is reused, not started.
#[derive(Debug)]
pub struct Infra {
    dir: PathBuf,
    vars: Vec<(String, String)>,
}

impl Infra {
    /// Starts `servers` (of postgres, nats, consul, mongodb) with their state in `dir`.
    pub fn up(dir: &Path, servers: &[&str]) -> anyhow::Result<Infra> {
        let env = up(&State::new(dir.to_path_buf(), false), servers)
            .context("the infrastructure did not start")?;
        Ok(Infra {
            dir: dir.to_path_buf(),
            vars: env.lines().filter_map(parse_export).collect(),
        })
    }

    /// The variables that name the servers (`TEST_DATABASE_URL`, …), for the
    /// environment of what runs against them.
    pub fn vars(&self) -> &[(String, String)] {
        &self.vars
    }

    /// One of [`Infra::vars`].
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

impl Drop for Infra {
    fn drop(&mut self) {
        down(&State::new(self.dir.clone(), true));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Lets a Ctrl-C stop what this process runs (the terminal sends it to the
/// whole process group) while this process itself carries on, so the
/// command stops there and [`Infra`]'s `Drop` stops the servers (as the old
/// scripts' `trap cleanup EXIT` did). Commands that hold an [`Infra`] while
/// running others call it first.
pub fn survive_interrupts() {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
    else {
        return;
    };
    let _entered = runtime.enter();
    // Once a handler is registered, SIGINT no longer ends the process, even
    // after the `Signal` is dropped.
    let _ = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt());
}

/// `export NAME='value'` → (NAME, value).
fn parse_export(line: &str) -> Option<(String, String)> {
    let (name, value) = line.strip_prefix("export ")?.split_once('=')?;
    let value = value
        .strip_prefix('\'')
        .and_then(|value| value.strip_suffix('\''))
        .unwrap_or(value);
    Some((name.to_owned(), value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_export_line_parses_to_its_name_and_value() {
        assert_eq!(
            parse_export("export TEST_NATS_URL='nats://127.0.0.1:4222'"),
            Some(("TEST_NATS_URL".into(), "nats://127.0.0.1:4222".into()))
        );
        assert_eq!(parse_export("infra: NATS listening"), None);
    }

    fn temp_state(name: &str) -> State {
        let dir = std::env::temp_dir().join(format!("shippy-dev-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        State::new(dir, true)
    }

    #[test]
    fn up_when_already_up_prints_the_same_lines_and_starts_nothing() {
        let state = temp_state("already-up");
        std::fs::create_dir_all(state.dir()).unwrap();
        let lines = "export TEST_NATS_URL='nats://127.0.0.1:1'\n";
        std::fs::write(state.env(), lines).unwrap();

        assert_eq!(up(&state, &["nats"]).unwrap(), lines);
        assert!(!state.path("nats.pid").exists());
        std::fs::remove_dir_all(state.dir()).unwrap();
    }

    #[test]
    fn an_unknown_server_is_refused_before_anything_starts() {
        let state = temp_state("unknown");
        let error = up(&state, &["postgres", "redis"]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown service 'redis' (postgres, nats, consul or mongodb)"
        );
        assert!(!state.dir().exists());
    }
}
