//! `make demo`, `make dev`, `make bench`: the whole shippy-rs cluster
//! natively, without Docker. Infrastructure on loopback ([`Infra`]), an SMTP
//! server that keeps what it receives (python3-aiosmtpd, in a maildir), the
//! four services and the api-gateway (JSON API and web UI) on spare ports.
//!
//! - `demo` ([`demo`]): start it, walk through a user's first shipment, show
//!   the welcome mail, stop; exit 0 only if every step did what it should.
//! - `dev` ([`dev`]): start it and keep it up until Ctrl-C.
//! - `bench` ([`bench`]): release builds of it, plus a bare echo server as the
//!   baseline and the Go peer (bench/go-peer, built by [`go_peer`]), driven by
//!   h2load in rounds (shippy-bench's `bench`); results in
//!   bench/results.{json,svg}.
//!
//! `SHIPPY_PROFILE=release` runs demo and dev on release builds (bench always
//! does); `SHIPPY_SKIP_BUILD` runs the binaries as they are. `STORE=postgres`
//! (the default) or `STORE=mongodb` chooses where vessel- and
//! consignment-service keep their data; users are always in PostgreSQL. With
//! mongodb, the MongoDB-compatible stand-in is started unless
//! `TEST_MONGODB_URL` names a server. State and logs live in
//! `$SHIPPY_INFRA_DIR` (default `.infra/cluster-<pid>`): kept after a failure
//! and after `dev`, deleted after a demo or bench that went well.
//!
//! [`up`] starts the cluster, [`processes`] supervises what it starts,
//! [`probe`] waits for it, [`http`] is the HTTP client the probes and the demo use.
//!
//! [`Infra`]: crate::infra::Infra

mod bench;
mod demo;
mod dev;
mod go_peer;
mod probe;
mod processes;
mod up;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::http;
use crate::infra::Infra;
use processes::Processes;

/// What the first argument asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Demo,
    Dev,
    Bench,
}

/// Where vessel- and consignment-service keep their data (`STORE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Store {
    Postgres,
    MongoDb,
}

impl Store {
    fn from_env() -> anyhow::Result<Self> {
        match std::env::var("STORE").unwrap_or_default().as_str() {
            "" | "postgres" => Ok(Self::Postgres),
            "mongodb" => Ok(Self::MongoDb),
            other => anyhow::bail!("STORE must be postgres or mongodb, not '{other}'"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::MongoDb => "mongodb",
        }
    }
}

const USAGE: &str = "\
usage: cargo dev demo|dev|bench
  demo   start the cluster, walk through a user's first shipment, show the
         welcome mail, stop; exit 0 only if every step did what it should
  dev    start the cluster and keep it up until Ctrl-C
  bench  release builds of it, plus a bare echo server as the baseline and
         the Go peer (bench/go-peer), driven by h2load in rounds
         (shippy-bench's `bench`); results in bench/results.{json,svg}";

/// Runs `demo`, `dev` or `bench`.
pub fn run(args: &[String]) -> anyhow::Result<ExitCode> {
    let command = match args.first().map(String::as_str) {
        Some("demo") => Command::Demo,
        Some("dev") => Command::Dev,
        Some("bench") => Command::Bench,
        _ => {
            eprintln!("{USAGE}");
            return Ok(ExitCode::from(2));
        }
    };
    let store = match Store::from_env() {
        Ok(store) => store,
        Err(error) => return Ok(failed(&error)),
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    if given_consul_without_token() {
        return runtime.block_on(again_with_own_consul());
    }
    runtime.block_on(session(command, store))
}

/// `==> what`, in bold: a step.
pub(crate) fn say(what: &str) {
    println!("\n\x1b[1m==> {what}\x1b[0m");
}

/// `FAILED: why`, in red on stderr; exit 1.
fn failed(error: &anyhow::Error) -> ExitCode {
    eprintln!("\n\x1b[31mFAILED: {error:#}\x1b[0m");
    ExitCode::FAILURE
}

/// A non-empty environment variable.
pub(crate) fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// A Consul agent given without its management token cannot hand out the
/// services' ACL tokens: then the cluster starts an agent of its own.
fn given_consul_without_token() -> bool {
    env_var("TEST_CONSUL_HTTP_ADDR").is_some() && env_var("TEST_CONSUL_MANAGEMENT_TOKEN").is_none()
}

/// The same command again, without `TEST_CONSUL_HTTP_ADDR` (this process's
/// own environment cannot be changed safely); signals are passed on to it.
async fn again_with_own_consul() -> anyhow::Result<ExitCode> {
    let mut signals = StopSignals::new()?;
    let mut child = tokio::process::Command::new(
        std::env::current_exe().context("cannot find shippy-dev's own binary")?,
    )
    .args(std::env::args_os().skip(1))
    .env_remove("TEST_CONSUL_HTTP_ADDR")
    .spawn()
    .context("cannot run shippy-dev again without TEST_CONSUL_HTTP_ADDR")?;
    loop {
        tokio::select! {
            status = child.wait() => {
                let code = status.context("waiting for shippy-dev")?.code().unwrap_or(1);
                return Ok(ExitCode::from(u8::try_from(code.clamp(0, 255)).unwrap_or(1)));
            }
            signal = signals.next() => {
                if let Some(pid) = child.id() {
                    crate::process::signal(pid, signal);
                }
            }
        }
    }
}

/// SIGINT (Ctrl-C) and SIGTERM, listened for from the start, so neither
/// kills shippy-dev before it has stopped what it started.
#[derive(Debug)]
pub(crate) struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
}

impl StopSignals {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("cannot listen for Ctrl-C")?,
            terminate: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
        })
    }

    /// The next one: `"INT"` or `"TERM"`.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "INT",
            _ = self.terminate.recv() => "TERM",
        }
    }
}

/// What one command started, stopped when it ends, however it ends.
#[derive(Debug)]
pub(crate) struct Session {
    /// `$SHIPPY_INFRA_DIR`: the infrastructure's state (`infra/`) and the run's (`run/`).
    pub(crate) base: PathBuf,
    /// Logs, pids' files, Consul tokens, the maildir, the CLIs' config.
    pub(crate) run: PathBuf,
    pub(crate) processes: Processes,
    pub(crate) infra: Option<Infra>,
    /// Whether `run/` stays once stopped (it does unless everything went well).
    pub(crate) keep_logs: bool,
}

impl Session {
    fn new() -> Self {
        let base = env_var("SHIPPY_INFRA_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                crate::repo()
                    .join(".infra")
                    .join(format!("cluster-{}", std::process::id()))
            });
        let run = base.join("run");
        Self {
            processes: Processes::new(&run),
            base,
            run,
            infra: None,
            keep_logs: true,
        }
    }

    /// Stops every process (SIGTERM, then waits), then the infrastructure;
    /// deletes the state unless the logs are kept.
    async fn stop(mut self) {
        self.processes.stop_all().await;
        if let Some(infra) = self.infra.take() {
            // Its drop stops the servers and deletes their data.
            let _ = tokio::task::spawn_blocking(move || drop(infra)).await;
        }
        if self.keep_logs {
            if self.run.is_dir() {
                eprintln!("logs kept in {}", self.run.display());
            }
        } else {
            let _ = std::fs::remove_dir_all(&self.base);
        }
    }
}

async fn session(command: Command, store: Store) -> anyhow::Result<ExitCode> {
    let mut signals = StopSignals::new()?;
    let mut session = Session::new();
    let outcome = tokio::select! {
        result = async {
            match command {
                Command::Demo => demo::run(&mut session, store).await,
                Command::Dev => dev::run(&mut session, store).await,
                Command::Bench => bench::run(&mut session, store).await,
            }
        } => Some(result),
        _ = signals.next() => None,
    };
    let code = match outcome {
        Some(Ok(())) => {
            session.keep_logs = command == Command::Dev;
            ExitCode::SUCCESS
        }
        Some(Err(error)) => failed(&error),
        None if command == Command::Dev => {
            println!("\nstopping");
            ExitCode::SUCCESS
        }
        None => {
            eprintln!("\ninterrupted: stopping");
            ExitCode::from(130)
        }
    };
    session.stop().await;
    Ok(code)
}
