//! Small process and network helpers the servers share: spare ports, waiting
//! for a port, starting a server that outlives this process, stopping one by
//! the pid file it wrote.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, bail};

use super::State;

/// `N` distinct loopback ports free a moment ago (bound together, then let go).
pub(crate) fn spare_ports<const N: usize>() -> anyhow::Result<[u16; N]> {
    let mut ports = [0; N];
    let mut probes = Vec::with_capacity(N);
    for port in &mut ports {
        let probe = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .context("cannot bind a loopback port to find a spare one")?;
        *port = probe.local_addr().context("a bound port's address")?.port();
        probes.push(probe);
    }
    Ok(ports)
}

/// Waits up to `limit_secs` for something to listen on loopback `port`.
pub(crate) fn wait_for_port(
    state: &State,
    port: u16,
    what: &str,
    limit_secs: u64,
) -> anyhow::Result<()> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    for _ in 0..limit_secs * 10 {
        if TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!(
        "{what} did not open port {port} within {limit_secs}s (see its log in {})",
        state.dir().display()
    )
}

/// Starts `command` in a process group of its own (a Ctrl-C meant for us
/// does not reach it), its output to `log`, and leaves it running after this
/// process ends; a thread reaps it should it exit while we still run.
pub(crate) fn spawn_detached(mut command: Command, log: &Path) -> anyhow::Result<()> {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let child = command
        .stdin(Stdio::null())
        .stdout(output.try_clone().context("cannot share a log file")?)
        .stderr(output)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot run {program}"))?;
    std::thread::spawn(move || {
        let mut child = child;
        let _ = child.wait();
    });
    Ok(())
}

/// Runs `command` to its end, its stdout and stderr into `log`.
pub(crate) fn run_logged(mut command: Command, log: &Path) -> anyhow::Result<bool> {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let status = command
        .stdin(Stdio::null())
        .stdout(output.try_clone().context("cannot share a log file")?)
        .stderr(output)
        .status()
        .with_context(|| format!("cannot run {program}"))?;
    Ok(status.success())
}

/// Stops the process whose pid `state/<name>.pid` holds (TERM, up to 10 s,
/// then KILL) and removes the file.
pub(crate) fn stop_pid(state: &State, name: &str) {
    let pidfile = state.path(&format!("{name}.pid"));
    let Ok(text) = std::fs::read_to_string(&pidfile) else {
        return;
    };
    let pid = text.trim();
    if !pid.is_empty() && pid.bytes().all(|byte| byte.is_ascii_digit()) && kill(&[pid]) {
        for _ in 0..100 {
            if !kill(&["-0", pid]) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        kill(&["-9", pid]);
    }
    let _ = std::fs::remove_file(&pidfile);
    state.log(format_args!("{name} stopped"));
}

fn kill(args: &[&str]) -> bool {
    Command::new("kill")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
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

/// The last `lines` lines of the file at `path` (empty if unreadable).
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;
    use std::time::Duration;

    use super::*;

    #[test]
    fn spare_ports_are_distinct() {
        let ports: [u16; 5] = spare_ports().unwrap();
        let mut unique = ports.to_vec();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 5, "{ports:?}");
    }

    #[test]
    fn stop_pid_ends_the_process_its_pid_file_names_and_removes_the_file() {
        let dir = std::env::temp_dir().join(format!("shippy-dev-stop-pid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let state = State::new(dir.clone(), true);
        let mut sleeper = Command::new("sleep").arg("60").spawn().unwrap();
        std::fs::write(state.path("sleeper.pid"), sleeper.id().to_string()).unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || sender.send(sleeper.wait()));

        stop_pid(&state, "sleeper");

        let status = receiver
            .recv_timeout(Duration::from_secs(5))
            .expect("the process ended")
            .unwrap();
        assert_eq!(status.signal(), Some(15), "ended by TERM: {status:?}");
        assert!(!state.path("sleeper.pid").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn waiting_for_a_closed_port_fails_naming_the_port_and_the_logs() {
        let state = State::new(PathBuf::from("/tmp/state"), true);
        let [port] = spare_ports().unwrap();
        let error = wait_for_port(&state, port, "nats-server", 1).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("nats-server did not open port {port} within 1s (see its log in /tmp/state)")
        );
    }
}
