//! `shippy-dev`: the one way shippy-rs is started outside `cargo test`.
//!
//! The Makefile is the front door (`make test`, `make demo`, …); each of its
//! targets is a subcommand here (`cargo dev <command>`, an alias in
//! `.cargo/config.toml`). What must stay shell — installing Debian packages on
//! a fresh machine — is `scripts/provision.sh`, called through [`provision`].

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

mod chaos;
mod cluster;
mod compose;
mod http;
mod infra;
mod k8s;
mod process;
mod provision;
mod smoke;
mod sqlx;
mod suite;

/// The repository's root: where this crate's manifest is, one up.
pub fn repo() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

#[derive(Debug, Parser)]
#[command(name = "shippy-dev", about, version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Throwaway PostgreSQL, NATS, Consul (and the MongoDB stand-in) on loopback.
    Infra {
        /// up [postgres] [nats] [consul] [mongodb] | env | down
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Every test against throwaway infrastructure, then the smoke tests (`make test`).
    Test,
    /// Start the cluster natively, walk a user's first shipment, stop (`make demo`).
    Demo,
    /// The whole cluster natively on loopback until Ctrl-C (`make dev`).
    Dev,
    /// Release builds under h2load against an echo server and the Go peer (`make bench`).
    Bench,
    /// Mixed load and seeded random faults, then the checker (`make chaos`).
    Chaos,
    /// `docker compose up` for real, a first shipment through the CLIs, down (`make compose-test`).
    ComposeTest,
    /// The Kubernetes manifests: `check [BIN_DIR]`, `dev-key [--force]`, `kubectl`.
    K8s {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// One smoke test of `make test`: vessel, browser or openapi.
    Smoke { which: String },
    /// Regenerate (or `--check`) the committed sqlx offline query data.
    SqlxPrepare {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Infra { args } => infra::run(&args),
        Command::Test => suite::run(&[]),
        Command::Demo => cluster::run(&["demo".into()]),
        Command::Dev => cluster::run(&["dev".into()]),
        Command::Bench => cluster::run(&["bench".into()]),
        Command::Chaos => chaos::run(&[]),
        Command::ComposeTest => compose::run(&[]),
        Command::K8s { args } => k8s::run(&args),
        Command::Smoke { which } => smoke::run(&which),
        Command::SqlxPrepare { args } => sqlx::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("shippy-dev: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
