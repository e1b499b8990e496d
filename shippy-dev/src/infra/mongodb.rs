//! The MongoDB stand-in: no genuine mongod installs on these machines, so
//! the MongoDB-wire-compatible DocumentDB stand-in beside the repository
//! (`../shared/tools/documentdb/documentdb.sh`, or `$DOCUMENTDB_SH`) is
//! started, shared by everything on the machine: `down` stops it only if
//! this `up` started it.

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use super::State;
use crate::process::{is_executable, tail};

pub(crate) fn start(state: &State) -> anyhow::Result<()> {
    if let Some(url) = super::given("TEST_MONGODB_URL") {
        state.log("MongoDB: reusing TEST_MONGODB_URL");
        return state.export("TEST_MONGODB_URL", &url);
    }
    let documentdb = script();
    if !is_executable(&documentdb) {
        state.log(format_args!(
            "MongoDB: no TEST_MONGODB_URL and no stand-in at {}:",
            documentdb.display()
        ));
        state.log("         MongoDB tests will be SKIPPED (set TEST_MONGODB_URL to run them)");
        return Ok(());
    }
    let running = Command::new(&documentdb)
        .arg("status")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if running {
        state.log("MongoDB: the DocumentDB stand-in is running already; reusing it");
    } else {
        state.log(format_args!(
            "MongoDB: starting the DocumentDB stand-in ({}; the first use builds it: minutes)",
            documentdb.display()
        ));
        state.write("documentdb.started", &documentdb.to_string_lossy())?;
    }
    let log = state.path("documentdb.log");
    let output = Command::new(&documentdb)
        .arg("up")
        .stdin(Stdio::null())
        .stderr(append(&log)?)
        .output()
        .with_context(|| format!("cannot run {}", documentdb.display()))?;
    if !output.status.success() {
        bail!("the DocumentDB stand-in did not start: {}", tail(&log, 5));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let Some(url) = stdout
        .lines()
        .filter_map(|line| line.strip_prefix("MONGODB_URL="))
        .find(|url| url.starts_with("mongodb://"))
    else {
        bail!(
            "the DocumentDB stand-in printed no MONGODB_URL line (see {})",
            log.display()
        );
    };
    let address = url.rsplit_once('@').map_or(url, |(_, address)| address);
    state.log(format_args!(
        "MongoDB (DocumentDB stand-in, not a genuine mongod) listening on {address}"
    ));
    state.export("TEST_MONGODB_URL", url)
}

pub(crate) fn stop(state: &State) {
    let started = state.path("documentdb.started");
    let Ok(documentdb) = std::fs::read_to_string(&started) else {
        return;
    };
    let log = state.path("documentdb.log");
    if let (Ok(stdout), Ok(stderr)) = (append(&log), append(&log)) {
        let _ = Command::new(documentdb.trim())
            .arg("down")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .status();
    }
    let _ = std::fs::remove_file(&started);
    state.log("MongoDB (DocumentDB stand-in) stopped");
}

/// `$DOCUMENTDB_SH`, else the stand-in beside the repository.
fn script() -> PathBuf {
    std::env::var_os("DOCUMENTDB_SH")
        .filter(|path| !path.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::repo().join("../shared/tools/documentdb/documentdb.sh"))
}

fn append(path: &std::path::Path) -> anyhow::Result<std::fs::File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))
}
