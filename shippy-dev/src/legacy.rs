//! The shell scripts a subcommand still runs until it is written here in Rust.
//! (Goes away when the last one is ported.)

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

/// The repository's root: where this crate's manifest is, one up.
pub fn repo() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// Runs `path` (relative to the repository) with `args`, passing its exit code on.
pub fn script(path: &str, args: &[String]) -> anyhow::Result<ExitCode> {
    let status = std::process::Command::new(repo().join(path))
        .args(args)
        .current_dir(repo())
        .status()
        .with_context(|| format!("cannot run {path}"))?;
    Ok(ExitCode::from(
        status.code().unwrap_or(1).clamp(0, 255) as u8
    ))
}
