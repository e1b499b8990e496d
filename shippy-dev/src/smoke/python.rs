//! What the Python programs of the smoke tests and the Kubernetes check
//! need: packages from PyPI, installed with pip into `python3` when it lacks
//! them, or into a virtualenv cached outside the clone.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// Whether `python` can `import modules` (comma-separated, as Python writes it).
pub fn imports(python: impl AsRef<Path>, modules: &str) -> bool {
    Command::new(python.as_ref())
        .args(["-c", &format!("import {modules}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// `python -m pip install -q --disable-pip-version-check ARGS…`, its output
/// on stderr (or nowhere if `silent`); whether it succeeded.
pub fn pip_install(python: impl AsRef<Path>, args: &[&str], silent: bool) -> bool {
    let (stdout, stderr) = if silent {
        (Stdio::null(), Stdio::null())
    } else {
        (Stdio::from(std::io::stderr()), Stdio::inherit())
    };
    Command::new(python.as_ref())
        .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
        .args(args)
        .stdout(stdout)
        .stderr(stderr)
        .status()
        .is_ok_and(|status| status.success())
}

/// `python3 -m venv DIR` (its output on stderr); Debian's python3 makes
/// none without `python3-venv` (no ensurepip), installed then with apt.
pub fn make_venv(dir: &Path) -> anyhow::Result<()> {
    if venv(dir)? {
        return Ok(());
    }
    let _ = std::fs::remove_dir_all(dir);
    crate::provision::apt(&["python3-venv"])
        .context("install python3-venv (apt-get) for python3 -m venv")?;
    if !venv(dir)? {
        bail!("python3 -m venv {} failed", dir.display());
    }
    Ok(())
}

fn venv(dir: &Path) -> anyhow::Result<bool> {
    Ok(Command::new("python3")
        .args(["-m", "venv"])
        .arg(dir)
        .stdout(std::io::stderr())
        .status()
        .context("cannot run python3 (install Python 3)")?
        .success())
}

/// `python3 --version`, as it prints it (with its newline).
pub fn version() -> anyhow::Result<String> {
    let output = Command::new("python3")
        .arg("--version")
        .output()
        .context("cannot run python3 (install Python 3)")?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
