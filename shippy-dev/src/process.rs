//! The one way shippy-dev starts and stops programs: each with its output in
//! a log file of its own and in a process group of its own (a Ctrl-C at the
//! terminal reaches shippy-dev alone, which stops everything in order),
//! waited for until it is ready (a port open here; gRPC health, `/readyz` and
//! the "started" line in the commands that need them), failing at once with
//! the end of its log when it exits during start, and stopped with SIGTERM,
//! then SIGKILL after a grace period. [`start_detached`] is for infra's
//! servers, which outlive the command and are stopped later by their pid
//! file ([`stop_pid_file`]).

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How long a process may take to exit after SIGTERM before it is killed.
pub(crate) const GRACE: Duration = Duration::from_secs(30);

/// `N` distinct loopback ports free a moment ago (bound together, then let go).
pub(crate) fn spare_ports<const N: usize>() -> anyhow::Result<[u16; N]> {
    shippy_testkit::try_spare_ports().context("cannot bind a loopback port to find a spare one")
}

/// A new log file at `log` for a program's stdout and stderr.
pub(crate) fn log_output(log: &Path) -> anyhow::Result<(File, File)> {
    let stdout = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let stderr = stdout
        .try_clone()
        .with_context(|| format!("cannot reopen {}", log.display()))?;
    Ok((stdout, stderr))
}

/// Starts `command` with its output in `log`, in a process group of its own.
pub(crate) fn spawn_logged(command: &mut Command, log: &Path) -> anyhow::Result<Child> {
    let program = command.get_program().to_string_lossy().into_owned();
    let (stdout, stderr) = log_output(log)?;
    command
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot run {program}"))
}

/// Starts `command` (called `what`, its output in `log`, in a process group
/// of its own) and waits up to `limit_secs` for it to listen on loopback
/// `port`; then leaves it running after this process ends (a thread reaps
/// it should it exit while we still run). Fails at once, with the end of its
/// log, when it exits before.
pub(crate) fn start_detached(
    mut command: Command,
    log: &Path,
    what: &str,
    port: u16,
    limit_secs: u64,
) -> anyhow::Result<()> {
    let mut child = spawn_logged(&mut command, log)?;
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut opened = false;
    for _ in 0..limit_secs * 10 {
        if TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_ok() {
            opened = true;
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            bail!(
                "{what} exited during start ({status}) (log: {}):\n{}",
                log.display(),
                tail(log, 20)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    if !opened {
        bail!(
            "{what} did not open port {port} within {limit_secs}s (see its log in {})",
            log.parent().unwrap_or(log).display()
        );
    }
    Ok(())
}

/// Runs `command` to its end, its stdout and stderr into `log`.
pub(crate) fn run_logged(mut command: Command, log: &Path) -> anyhow::Result<bool> {
    let program = command.get_program().to_string_lossy().into_owned();
    let (stdout, stderr) = log_output(log)?;
    let status = command
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .status()
        .with_context(|| format!("cannot run {program}"))?;
    Ok(status.success())
}

/// Sends `SIGNAL` (`"TERM"`, `"CONT"`, `"0"` to ask whether it runs, …) to
/// process `pid`; whether it arrived.
pub(crate) fn signal(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Waits up to `grace` for `child` (called `name`) to exit, then kills it,
/// saying so on stderr.
pub(crate) fn wait_or_kill(
    child: &mut Child,
    name: &str,
    grace: Duration,
) -> std::io::Result<ExitStatus> {
    let deadline = Instant::now() + grace;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            eprintln!("{name} did not stop within {grace:?} of SIGTERM: killed");
            let _ = child.kill();
            return child.wait();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// [`wait_or_kill`] for a process started on tokio.
pub(crate) async fn wait_or_kill_async(
    child: &mut tokio::process::Child,
    name: &str,
    grace: Duration,
) -> std::io::Result<ExitStatus> {
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            eprintln!("{name} did not stop within {grace:?} of SIGTERM: killed");
            let _ = child.kill().await;
            child.wait().await
        }
    }
}

/// Stops the process whose pid `pidfile` holds (TERM, up to 10 s, then
/// KILL) and removes the file.
pub(crate) fn stop_pid_file(pidfile: &Path) {
    let Ok(text) = std::fs::read_to_string(pidfile) else {
        return;
    };
    if let Ok(pid) = text.trim().parse::<u32>()
        && signal(pid, "TERM")
    {
        for _ in 0..100 {
            if !signal(pid, "0") {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        signal(pid, "9");
    }
    let _ = std::fs::remove_file(pidfile);
}

/// Where `program` is on the PATH.
pub(crate) fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

pub(crate) fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
}

/// Whether this process runs as root.
pub(crate) fn is_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| {
        Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|output| output.stdout.trim_ascii() == b"0")
    })
}

/// `cargo` with the variables `cargo run` set for shippy-dev itself
/// (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, …) taken out.
pub(crate) fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    forget_cargo_run(&mut command);
    command
}

/// Takes what `cargo run` set for shippy-dev out of what `command` inherits
/// (see [`without_run_variables`]).
pub(crate) fn forget_cargo_run(command: &mut Command) {
    without_run_variables(command, std::env::vars_os().map(|(name, _)| name));
}

/// Takes the package variables `cargo run` sets out of what `command`
/// inherits. Build scripts such as ring's rerun when one of them changes, so
/// a nested `cargo` that saw them would rebuild ring and all that depends on
/// it after every plain `cargo clippy` (and the other way round).
fn without_run_variables(command: &mut Command, names: impl Iterator<Item = std::ffi::OsString>) {
    const SET_BY_CARGO_RUN: [&str; 3] = [
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
    ];
    for name in names {
        let text = name.to_string_lossy();
        if text.starts_with("CARGO_PKG_")
            || text.starts_with("CARGO_MANIFEST_")
            || SET_BY_CARGO_RUN.contains(&text.as_ref())
        {
            command.env_remove(&name);
        }
    }
}

/// The last `lines` lines of the file at `path` (empty if unreadable).
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;
    use std::time::Duration;

    use super::*;

    fn scratch(what: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("shippy-dev-{what}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn nested_cargo_does_not_inherit_what_cargo_run_set() {
        let mut command = Command::new("cargo");
        let inherited = [
            "CARGO_MANIFEST_DIR",
            "CARGO_MANIFEST_PATH",
            "CARGO_PKG_NAME",
            "CARGO_PKG_VERSION_MAJOR",
            "CARGO_CRATE_NAME",
            "CARGO",
            "CARGO_HOME",
            "PATH",
        ];
        without_run_variables(&mut command, inherited.iter().map(std::ffi::OsString::from));
        let mut removed: Vec<_> = command
            .get_envs()
            .filter(|(_, value)| value.is_none())
            .map(|(name, _)| name.to_string_lossy().into_owned())
            .collect();
        removed.sort();
        assert_eq!(
            removed,
            [
                "CARGO_CRATE_NAME",
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_PKG_NAME",
                "CARGO_PKG_VERSION_MAJOR"
            ]
        );
    }

    #[test]
    fn spare_ports_are_distinct() {
        let ports: [u16; 5] = spare_ports().unwrap();
        let mut unique = ports.to_vec();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 5, "{ports:?}");
    }

    #[test]
    fn stop_pid_file_ends_the_process_its_pid_file_names_and_removes_the_file() {
        let dir = scratch("stop-pid");
        let pidfile = dir.join("sleeper.pid");
        let mut sleeper = Command::new("sleep").arg("60").spawn().unwrap();
        std::fs::write(&pidfile, sleeper.id().to_string()).unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || sender.send(sleeper.wait()));

        stop_pid_file(&pidfile);

        let status = receiver
            .recv_timeout(Duration::from_secs(5))
            .expect("the process ended")
            .unwrap();
        assert_eq!(status.signal(), Some(15), "ended by TERM: {status:?}");
        assert!(!pidfile.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// How `sh -c script`, started as "nats-server" on a spare port, fails
    /// [`start_detached`] within `limit_secs`: the error, the port and the
    /// log's directory (removed).
    fn start_failure(script: &str, limit_secs: u64) -> (String, u16, PathBuf) {
        let dir = scratch("start-detached");
        let [port] = spare_ports().unwrap();
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        let error = start_detached(
            command,
            &dir.join("nats.log"),
            "nats-server",
            port,
            limit_secs,
        )
        .unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        (error.to_string(), port, dir)
    }

    #[test]
    fn a_server_that_never_opens_its_port_fails_naming_the_port_and_the_logs() {
        let (error, port, dir) = start_failure("sleep 3", 1);
        assert_eq!(
            error,
            format!(
                "nats-server did not open port {port} within 1s (see its log in {})",
                dir.display()
            )
        );
    }

    #[test]
    fn a_server_that_exits_during_start_fails_at_once_with_its_log() {
        let started = Instant::now();
        let (error, _, _) = start_failure("echo 'cannot bind: Address already in use'; exit 3", 30);
        assert!(
            error.starts_with("nats-server exited during start (exit status: 3)")
                && error.ends_with("cannot bind: Address already in use"),
            "{error}"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn wait_or_kill_kills_a_process_that_ignores_sigterm() {
        let mut stubborn = Command::new("sh")
            .args(["-c", "trap '' TERM; sleep 60"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        signal(stubborn.id(), "TERM");
        let status = wait_or_kill(&mut stubborn, "stubborn", Duration::from_millis(300)).unwrap();
        assert_eq!(status.signal(), Some(9), "{status:?}");
    }
}
