//! Builds the Go peer of `make bench` (a grpc-go ShippingService,
//! bench/go-peer/main.go), offline: Debian's Go packages in GOPATH mode, no
//! module proxy.
//!
//! The Go code generated from proto/ goes to a GOPATH of its own under
//! `$GO_PEER_CACHE` (default `$XDG_CACHE_HOME/shippy-go-peer`, else
//! `~/.cache/shippy-go-peer`), with Go's build cache beside it; nothing
//! generated is written into the repository.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use tokio::process::Command;

use super::env_var;
use crate::provision;
use crate::repo;

/// The Debian packages it is built with.
const PACKAGES: [&str; 7] = [
    "golang-go",
    "protobuf-compiler",
    "protoc-gen-go",
    "protoc-gen-go-grpc",
    "golang-google-grpc-dev",
    "golang-google-protobuf-dev",
    "golang-github-jackc-pgx-v4-dev",
];
/// Where Debian's Go library packages put their sources.
const SYSTEM_GOPATH: &str = "/usr/share/gocode";
/// The protos it serves and calls, each generated into `shippygen/NAME/v1`.
const PROTOS: [&str; 3] = ["consignment", "vessel", "user"];

fn cache() -> PathBuf {
    env_var("GO_PEER_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            env_var("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| env_var("HOME").map(|home| PathBuf::from(home).join(".cache")))
                .unwrap_or_else(std::env::temp_dir)
                .join("shippy-go-peer")
        })
}

/// Whether a program or a Go library package is missing.
fn missing() -> bool {
    ["go", "protoc", "protoc-gen-go", "protoc-gen-go-grpc"]
        .iter()
        .any(|program| !provision::have(program))
        || [
            "google.golang.org/grpc",
            "google.golang.org/protobuf",
            "github.com/jackc/pgx/v4/pgxpool",
        ]
        .iter()
        .any(|dir| !Path::new(SYSTEM_GOPATH).join("src").join(dir).is_dir())
}

/// Runs `command`, failing with `what` unless it succeeds.
async fn succeed(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = command
        .kill_on_drop(true)
        .status()
        .await
        .with_context(|| format!("cannot run {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// Builds it to `out`, installing what is missing first.
pub(crate) async fn build(out: &Path) -> anyhow::Result<()> {
    if missing() {
        eprintln!("installing {}", PACKAGES.join(" "));
        tokio::task::spawn_blocking(|| provision::apt(&PACKAGES)).await??;
    }
    let cache = cache();
    let gopath = cache.join("gopath");
    // Generated anew each time (it takes well under a second), so it always
    // matches proto/.
    let generated = gopath.join("src/shippygen");
    if generated.exists() {
        std::fs::remove_dir_all(&generated)
            .with_context(|| format!("cannot delete {}", generated.display()))?;
    }
    std::fs::create_dir_all(gopath.join("src"))?;
    std::fs::create_dir_all(cache.join("gocache"))?;

    let src = gopath.join("src");
    let mut protoc = Command::new("protoc");
    protoc
        .current_dir(repo().join("proto"))
        .args(["-I", ".", "-I", "/usr/include"])
        .arg(format!("--go_out={}", src.display()))
        .arg(format!("--go-grpc_out={}", src.display()));
    for name in PROTOS {
        let mapping = format!("Mshippy/{name}/v1/{name}.proto=shippygen/{name}/v1");
        protoc
            .arg(format!("--go_opt={mapping}"))
            .arg(format!("--go-grpc_opt={mapping}"));
    }
    for name in PROTOS {
        protoc.arg(format!("shippy/{name}/v1/{name}.proto"));
    }
    succeed(&mut protoc, "protoc (the Go peer's generated code)").await?;

    let mut go = Command::new("go");
    go.current_dir(repo().join("bench/go-peer"))
        .env("GOPATH", format!("{}:{SYSTEM_GOPATH}", gopath.display()))
        .env("GO111MODULE", "off")
        .env("GOFLAGS", "")
        .env("GOPROXY", "off")
        .env("GOCACHE", cache.join("gocache"))
        .args(["build", "-o"])
        .arg(out)
        .arg(".");
    succeed(&mut go, "go build (the Go peer)").await
}
