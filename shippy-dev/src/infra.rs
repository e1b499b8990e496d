//! `cargo dev infra up|env|down`: throwaway servers on loopback (was
//! scripts/infra.sh), and [`Infra`], how every other command starts them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

/// Runs it (for now, the old script).
pub fn run(args: &[String]) -> anyhow::Result<ExitCode> {
    crate::legacy::script("scripts/infra.sh", args)
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
        let output = std::process::Command::new(crate::legacy::repo().join("scripts/infra.sh"))
            .arg("up")
            .args(servers)
            .env("SHIPPY_INFRA_DIR", dir)
            .stderr(std::process::Stdio::inherit())
            .output()
            .context("cannot run scripts/infra.sh")?;
        let infra = Infra {
            dir: dir.to_path_buf(),
            vars: String::from_utf8_lossy(&output.stdout)
                .lines()
                .filter_map(parse_export)
                .collect(),
        };
        if !output.status.success() {
            bail!("the infrastructure did not start ({})", output.status);
        }
        Ok(infra)
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
        let _ = std::process::Command::new(crate::legacy::repo().join("scripts/infra.sh"))
            .arg("down")
            .env("SHIPPY_INFRA_DIR", &self.dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
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
