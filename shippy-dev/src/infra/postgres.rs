//! A throwaway PostgreSQL: Debian's package, a data directory of its own
//! (in memory under /dev/shm when it has room), started with `pg_ctl`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use super::State;
use crate::process::{is_executable, is_root, run_logged, spare_ports, tail, which};

pub(crate) fn start(state: &State) -> anyhow::Result<()> {
    if let Some(url) = super::given("TEST_DATABASE_URL") {
        state.log("PostgreSQL: reusing TEST_DATABASE_URL");
        return state.export("TEST_DATABASE_URL", &url);
    }
    let bindir = match bindir() {
        Some(bindir) => bindir,
        None => {
            crate::provision::apt(&["postgresql"])?;
            bindir().context("PostgreSQL is not installed and could not be installed")?
        }
    };
    // The data directory lives under /dev/shm when it has room (a throwaway
    // database in memory: faster, and a full run's ~150 test databases never
    // touch the disk), else /tmp: the postgres user must reach it, whatever
    // the permissions on the repository's parent directories.
    let dir = match shm_has_room().then(|| temp_dir(Path::new("/dev/shm"))) {
        Some(Ok(dir)) => dir,
        _ => temp_dir(Path::new("/tmp"))?,
    };
    if is_root() {
        let chowned = Command::new("chown")
            .arg("postgres:")
            .arg(&dir)
            .status()
            .is_ok_and(|status| status.success());
        if !chowned {
            bail!("cannot hand {} to the postgres user", dir.display());
        }
    }
    state.write("postgres.dir", &dir.to_string_lossy())?;
    let [port] = spare_ports()?;
    let data = dir.join("data");
    let init_log = state.path("postgres-init.log");
    let mut initdb = as_postgres(&bindir.join("initdb"), &dir);
    initdb
        .arg("-D")
        .arg(&data)
        .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"]);
    if !run_logged(initdb, &init_log)? {
        bail!("initdb failed: {}", tail(&init_log, 5));
    }
    let server_log = dir.join("postgres.log");
    let options = format!(
        "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off -c synchronous_commit=off \
         -c full_page_writes=off -c max_connections=300",
        dir.display()
    );
    let mut pg_ctl = as_postgres(&bindir.join("pg_ctl"), &dir);
    pg_ctl
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(&server_log)
        .args(["-w", "-t", "60", "-o", &options, "start"]);
    if !run_logged(pg_ctl, &state.path("postgres-start.log"))? {
        bail!("PostgreSQL did not start: {}", tail(&server_log, 5));
    }
    state.write("postgres.bindir", &bindir.to_string_lossy())?;
    state.log(format_args!(
        "PostgreSQL listening on 127.0.0.1:{port} (log: {})",
        server_log.display()
    ));
    state.export(
        "TEST_DATABASE_URL",
        &format!("postgres://postgres@127.0.0.1:{port}/postgres"),
    )
}

pub(crate) fn stop(state: &State) {
    let Ok(dir) = std::fs::read_to_string(state.path("postgres.dir")) else {
        return;
    };
    let dir = PathBuf::from(dir.trim());
    let bindir = std::fs::read_to_string(state.path("postgres.bindir"))
        .ok()
        .map(|text| PathBuf::from(text.trim()))
        .or_else(bindir);
    if let Some(bindir) = bindir
        && dir.join("data").is_dir()
    {
        let _ = as_postgres(&bindir.join("pg_ctl"), &dir)
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(state.path("postgres.dir"));
    let _ = std::fs::remove_file(state.path("postgres.bindir"));
    state.log("PostgreSQL stopped");
}

/// The newest installed PostgreSQL's programs (`/usr/lib/postgresql/<v>/bin`),
/// else where `initdb` is on the PATH.
fn bindir() -> Option<PathBuf> {
    let mut versions: Vec<(Vec<u64>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|dir| is_executable(&dir.join("bin/initdb")))
        .map(|dir| {
            let version = dir
                .file_name()
                .and_then(|name| name.to_str())
                .unwrap_or_default()
                .split('.')
                .map(|part| part.parse().unwrap_or(0))
                .collect();
            (version, dir.join("bin"))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bindir)) => Some(bindir),
        None => which("initdb").and_then(|initdb| initdb.parent().map(Path::to_path_buf)),
    }
}

/// `program`, run as the postgres user when we are root (it refuses root).
fn as_postgres(program: &Path, dir: &Path) -> Command {
    let mut command = if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    };
    command.current_dir(dir);
    command
}

/// Whether /dev/shm is there with more than 4 GiB free.
fn shm_has_room() -> bool {
    let Ok(output) = Command::new("df").args(["-Pk", "/dev/shm"]).output() else {
        return false;
    };
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .nth(1)
        .and_then(|line| line.split_whitespace().nth(3))
        .and_then(|available| available.parse::<u64>().ok())
        .is_some_and(|kib| kib > 4_194_304)
}

/// A new directory `base/shippy-postgres.XXXXXX`, private (like `mktemp -d`).
fn temp_dir(base: &Path) -> anyhow::Result<PathBuf> {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let dir = base.join(format!("shippy-postgres.{}", &suffix[..6]));
    std::fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make {} private", dir.display()))?;
    Ok(dir)
}
