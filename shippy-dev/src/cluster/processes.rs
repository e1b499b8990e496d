//! The processes a cluster runs, started and stopped the one way
//! ([`crate::process`]): each with its output in a log of its own, in a
//! process group of its own, stopped with SIGTERM (then SIGKILL) at the end.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use anyhow::Context;
use tokio::process::{Child, Command};

use crate::process::{GRACE, log_output, signal, tail, wait_or_kill_async};

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
        let (stdout, stderr) = log_output(&self.log_path(name))?;
        command.stdout(stdout).stderr(stderr);
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
        tail(&self.log_path(name), lines)
    }

    /// SIGTERM to each, then waits for all (killing one that takes longer
    /// than [`GRACE`]).
    pub(crate) async fn stop_all(&mut self) {
        for (_, child) in &self.running {
            if let Some(pid) = child.id() {
                signal(pid, "TERM");
            }
        }
        for (name, child) in &mut self.running {
            let _ = wait_or_kill_async(child, name, GRACE).await;
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
