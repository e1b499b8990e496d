//! What a fresh machine lacks, installed once: Debian packages through
//! `scripts/provision.sh` (the harness's one shell script), and where slow
//! set-up is cached outside the clone.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::repo;

/// Where slow set-up is cached, outside the clone, keyed by its inputs
/// (`$XDG_CACHE_HOME/shippy-rs`, else `~/.cache/shippy-rs`).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("shippy-rs")
}

/// Whether `program` is on the PATH.
pub fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// `apt-get install`s `packages` (the caller checked they are missing).
pub fn apt(packages: &[&str]) -> anyhow::Result<()> {
    provision(&[&["apt"], packages].concat())
}

/// Downloads `packages` from Debian `suite` into `dir` and unpacks them into
/// `dir/unpacked`, which it returns.
pub fn from_suite(suite: &str, dir: &Path, packages: &[&str]) -> anyhow::Result<PathBuf> {
    let dir_text = dir
        .to_str()
        .context("the cache directory's path is not UTF-8")?;
    provision(&[&["from-suite", suite, dir_text], packages].concat())?;
    Ok(dir.join("unpacked"))
}

fn provision(args: &[&str]) -> anyhow::Result<()> {
    let status = std::process::Command::new(repo().join("scripts/provision.sh"))
        .args(args)
        .status()
        .context("cannot run scripts/provision.sh")?;
    if !status.success() {
        bail!("scripts/provision.sh {} failed ({status})", args.join(" "));
    }
    Ok(())
}
