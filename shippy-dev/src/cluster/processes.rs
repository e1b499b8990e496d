//! The processes a cluster runs: each started with its output in a log of
//! its own, in a process group of its own (Ctrl-C reaches shippy-dev alone,
//! which stops everything in order), and stopped with SIGTERM at the end.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::Context;
use tokio::process::{Child, Command};

/// How long a process may take to exit after SIGTERM before it is killed.
const STOP_WITHIN: Duration = Duration::from_secs(30);

/// Sends `SIGNAL` (`"TERM"`, `"INT"`) to process `pid`.
pub(crate) fn signal(pid: u32, signal: &str) {
    let _ = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status();
}

/// Processes started so far, by name.
#[derive(Debug)]
pub(crate) struct Processes {
    run: PathBuf,
    running: Vec<(String, Child)>,
}

impl Processes {
    /// None yet; logs will go to `run/NAME.log`.
    pub(crate) fn new(run: &Path) -> Self {
        Self {
            run: run.to_path_buf(),
            running: Vec::new(),
        }
    }

    /// `run/NAME.log`.
    pub(crate) fn log_path(&self, name: &str) -> PathBuf {
        self.run.join(format!("{name}.log"))
    }

    /// Starts `command` as `name`, its stdout and stderr to `run/NAME.log`; its pid.
    pub(crate) fn start(&mut self, name: &str, mut command: Command) -> anyhow::Result<u32> {
        let path = self.log_path(name);
        let log = std::fs::File::create(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        command.stdout(log.try_clone()?).stderr(log);
        self.start_with_output(name, command)
    }

    /// Starts `command` as `name` with the output it was given; its pid.
    pub(crate) fn start_with_output(
        &mut self,
        name: &str,
        mut command: Command,
    ) -> anyhow::Result<u32> {
        let program = command
            .as_std()
            .get_program()
            .to_string_lossy()
            .into_owned();
        let child = command
            .stdin(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {name} ({program})"))?;
        let pid = child
            .id()
            .with_context(|| format!("{name} exited at once"))?;
        self.running.push((name.to_owned(), child));
        Ok(pid)
    }

    /// The pid of `name`, while it runs.
    pub(crate) fn pid(&self, name: &str) -> Option<u32> {
        self.child(name).and_then(|child| child.id())
    }

    /// How `name` exited, if it did.
    pub(crate) fn exited(&mut self, name: &str) -> Option<ExitStatus> {
        self.running
            .iter_mut()
            .find(|(running, _)| running == name)
            .and_then(|(_, child)| child.try_wait().ok().flatten())
    }

    /// Waits until `name` exits.
    pub(crate) async fn wait(&mut self, name: &str) -> anyhow::Result<ExitStatus> {
        let (_, child) = self
            .running
            .iter_mut()
            .find(|(running, _)| running == name)
            .with_context(|| format!("{name} was not started"))?;
        Ok(child.wait().await?)
    }

    /// The last `lines` lines of `name`'s log.
    pub(crate) fn log_tail(&self, name: &str, lines: usize) -> String {
        let log = std::fs::read_to_string(self.log_path(name)).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// SIGTERM to each, then waits for all (killing one that takes longer
    /// than [`STOP_WITHIN`]).
    pub(crate) async fn stop_all(&mut self) {
        for (_, child) in &self.running {
            if let Some(pid) = child.id() {
                signal(pid, "TERM");
            }
        }
        for (name, child) in &mut self.running {
            if tokio::time::timeout(STOP_WITHIN, child.wait())
                .await
                .is_err()
            {
                eprintln!("{name} did not stop within {STOP_WITHIN:?} of SIGTERM: killed");
                let _ = child.kill().await;
            }
        }
        self.running.clear();
    }

    fn child(&self, name: &str) -> Option<&Child> {
        self.running
            .iter()
            .find(|(running, _)| running == name)
            .map(|(_, child)| child)
    }
}

#[cfg(test)]
mod tests {
    use super::Processes;

    #[tokio::test]
    async fn stop_all_ends_every_process_it_started_with_sigterm() {
        let run = std::env::temp_dir().join(format!("shippy-dev-stop-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&run).unwrap_or_default();
        let mut processes = Processes::new(&run);
        let mut pids = Vec::new();
        for name in ["one", "two"] {
            let mut command = tokio::process::Command::new("sh");
            // Says which signal ended it, in its log.
            command.args([
                "-c",
                "trap 'echo TERM; exit 0' TERM; while :; do sleep 0.1; done",
            ]);
            pids.push(processes.start(name, command).unwrap_or_default());
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        processes.stop_all().await;
        for (pid, name) in pids.into_iter().zip(["one", "two"]) {
            let alive = std::process::Command::new("kill")
                .args(["-0", &pid.to_string()])
                .status()
                .is_ok_and(|status| status.success());
            assert!(!alive, "{name} ({pid}) still runs");
            assert_eq!(processes.log_tail(name, 1), "TERM");
        }
        let _ = std::fs::remove_dir_all(run);
    }
}
