//! The Docker engine (the one that answers, else a dockerd started here) and
//! `docker compose` v2 (the one installed, else Debian trixie's plugin).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use super::{Run, print_tail, stdout_of, succeeds_within};
use crate::process::{is_executable, signal, spawn_logged};
use crate::provision;

const ENGINE_VERSION: &str = "engine {{.Server.Version}}";

/// Step 1: an engine that answers, started here if none does.
pub(super) fn ensure_engine(run: &mut Run) -> anyhow::Result<()> {
    if provision::have("docker") && engine_answers(run) {
        let version =
            stdout_of(run.docker(&["version", "--format", ENGINE_VERSION])).unwrap_or_default();
        run.ok(&format!("engine answers: {version}"));
        return Ok(());
    }
    start_dockerd(run)?;
    let version =
        stdout_of(run.docker(&["version", "--format", ENGINE_VERSION])).unwrap_or_default();
    let host = run
        .env_value("DOCKER_HOST")
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    run.ok(&format!("dockerd started: {version} at {host}"));
    Ok(())
}

fn engine_answers(run: &Run) -> bool {
    succeeds_within(
        run.docker(&["version", "--format", "{{.Server.Version}}"]),
        Duration::from_secs(20),
    )
}

/// dockerd from Debian's docker.io with its data root, socket and PID file
/// under the cache (reused when one already answers there).
fn start_dockerd(run: &mut Run) -> anyhow::Result<()> {
    let mut missing = Vec::new();
    if !provision::have("dockerd") || !provision::have("docker") {
        missing.push("docker.io");
    }
    if !provision::have("debootstrap") {
        missing.push("debootstrap");
    }
    if !missing.is_empty() {
        run.log(&format!("installing {} from Debian", missing.join(" ")));
        provision::apt(&missing)?;
    }
    let dir = run.cache.join("engine");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let socket = dir.join("docker.sock");
    let host = format!("unix://{}", socket.display());
    run.set_env("DOCKER_HOST", &host);
    if engine_answers(run) {
        run.log(&format!("reusing the engine at {host}"));
        return Ok(());
    }
    let pid_file = dir.join("dockerd.pid");
    if let Some(pid) = running_pid(&pid_file) {
        bail!(
            "a dockerd (pid {pid}) holds {} but does not answer",
            dir.display()
        );
    }
    let _ = std::fs::remove_file(&socket);
    let _ = std::fs::remove_file(&pid_file);
    let log = run.logs.join("dockerd.log");
    // Short exec-root: containerd's socket paths have a length limit. Its own
    // process group: a Ctrl-C at the terminal reaches this run, which then
    // stops dockerd itself after `down -v`.
    let mut dockerd = Command::new("dockerd");
    dockerd
        .arg("--data-root")
        .arg(dir.join("data"))
        .args(["--exec-root", "/run/shippy-dockerd", "--pidfile"])
        .arg(&pid_file)
        .args(["-H", &host]);
    let child = spawn_logged(&mut dockerd, &log).context("cannot start dockerd")?;
    run.dockerd = Some(child);
    for _ in 0..120 {
        if engine_answers(run) {
            return Ok(());
        }
        if let Some(child) = run.dockerd.as_mut()
            && matches!(child.try_wait(), Ok(Some(_)))
        {
            run.dockerd = None;
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    print_tail(&log, 20);
    bail!("dockerd did not answer on {host} (log: {})", log.display())
}

/// The PID in `pid_file`, if that process is alive.
fn running_pid(pid_file: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Path::new("/proc")
        .join(pid.to_string())
        .exists()
        .then_some(pid)
}

/// Stops the dockerd this run started, if it did (SIGTERM, up to 30 s).
pub(super) fn stop_dockerd(run: &mut Run) {
    let Some(mut child) = run.dockerd.take() else {
        return;
    };
    let pid = child.id();
    run.step(&format!(
        "stopping the dockerd this run started (pid {pid})"
    ));
    signal(pid, "TERM");
    for _ in 0..60 {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    run.log(&format!("dockerd {pid} did not stop within 30s"));
}

/// Step 2: `docker compose` v2, else the plugin from Debian trixie in the cache.
pub(super) fn ensure_compose(run: &mut Run) -> anyhow::Result<()> {
    if !compose_runs(run) {
        let config = run.cache.join("docker-config");
        let plugins = config.join("cli-plugins");
        run.set_env("DOCKER_CONFIG", &config);
        let plugin = plugins.join("docker-compose");
        if !is_executable(&plugin) {
            std::fs::create_dir_all(&plugins)
                .with_context(|| format!("cannot create {}", plugins.display()))?;
            let work =
                std::env::temp_dir().join(format!("shippy-compose-plugin-{}", std::process::id()));
            run.log("fetching docker-compose (v2) from Debian trixie");
            let fetched = provision::from_suite("trixie", &work, &["docker-compose"])
                .and_then(|unpacked| install_plugin(&unpacked, &plugin));
            let _ = std::fs::remove_dir_all(&work);
            fetched?;
        }
        if !compose_runs(run) {
            bail!("docker compose does not run from {}", plugins.display());
        }
    }
    let version = stdout_of(run.docker(&["compose", "version"])).unwrap_or_default();
    run.ok(&version);
    Ok(())
}

fn compose_runs(run: &Run) -> bool {
    run.docker(&["compose", "version"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn install_plugin(unpacked: &Path, plugin: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let from = unpacked.join("usr/libexec/docker/cli-plugins/docker-compose");
    std::fs::copy(&from, plugin)
        .with_context(|| format!("cannot copy {} to {}", from.display(), plugin.display()))?;
    std::fs::set_permissions(plugin, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot make {} executable", plugin.display()))
}
