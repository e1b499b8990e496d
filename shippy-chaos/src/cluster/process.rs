//! One process of the cluster: started, killed, paused and restarted on
//! the same address, each incarnation logging to a file of its own, and
//! seen to be up by the check that fits it.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, bail};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// How a process is seen to be up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ready {
    /// gRPC health SERVING.
    Grpc,
    /// HTTP `GET /readyz` answers 200.
    Http,
    /// It accepts TCP connections.
    Tcp,
}

/// A process the cluster runs, restartable on the same address.
#[derive(Debug)]
pub struct Proc {
    /// Its name (`consignment-service`, `nats`).
    pub name: String,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log_dir: PathBuf,
    incarnation: u32,
    child: Option<std::process::Child>,
    /// Where it listens.
    pub address: SocketAddr,
    ready: Ready,
}

impl Proc {
    pub(super) fn new(
        name: &str,
        program: PathBuf,
        args: Vec<String>,
        env: Vec<(String, String)>,
        log_dir: &Path,
        address: SocketAddr,
        ready: Ready,
    ) -> Self {
        Self {
            name: name.to_owned(),
            program,
            args,
            env,
            log_dir: log_dir.to_owned(),
            incarnation: 0,
            child: None,
            address,
            ready,
        }
    }

    /// Starts it (a new incarnation, logging to `<name>.<n>.log`).
    pub fn spawn(&mut self) -> anyhow::Result<()> {
        self.incarnation += 1;
        let log_path = self
            .log_dir
            .join(format!("{}.{}.log", self.name, self.incarnation));
        std::fs::File::create(&log_path)
            .with_context(|| format!("create {}", log_path.display()))?;
        // Appending: every write lands at the end, whoever else writes.
        let log = std::fs::File::options().append(true).open(&log_path)?;
        let child = std::process::Command::new(&self.program)
            .args(&self.args)
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {}", self.program.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Its process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    /// `kill -9`, and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `SIGSTOP` (`true`) or `SIGCONT` (`false`).
    pub fn pause(&self, stop: bool) {
        if let Some(pid) = self.pid() {
            signal(pid, if stop { "-STOP" } else { "-CONT" });
        }
    }

    /// Whether it answers as up, now (within a second).
    pub async fn is_ready(&self) -> bool {
        let address = self.address;
        let check = async move {
            match self.ready {
                Ready::Tcp => tokio::net::TcpStream::connect(address).await.is_ok(),
                Ready::Grpc => {
                    let Ok(endpoint) =
                        tonic::transport::Endpoint::from_shared(format!("http://{address}"))
                    else {
                        return false;
                    };
                    let Ok(channel) = endpoint.connect().await else {
                        return false;
                    };
                    HealthClient::new(channel)
                        .check(HealthCheckRequest {
                            service: String::new(),
                        })
                        .await
                        .is_ok_and(|answer| answer.get_ref().status() == ServingStatus::Serving)
                }
                Ready::Http => crate::http::get_status(address, "/readyz").await == Some(200),
            }
        };
        tokio::time::timeout(Duration::from_secs(1), check)
            .await
            .unwrap_or(false)
    }

    /// Waits until it is up, up to `wait`; how long it took, if it came up.
    pub async fn wait_ready(&self, wait: Duration) -> Option<Duration> {
        let started = tokio::time::Instant::now();
        while started.elapsed() < wait {
            if self.is_ready().await {
                return Some(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    /// Every log file it has written.
    pub fn logs(&self) -> Vec<PathBuf> {
        (1..=self.incarnation)
            .map(|n| self.log_dir.join(format!("{}.{n}.log", self.name)))
            .collect()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            signal(pid, "-CONT");
        }
        self.kill();
    }
}

/// Sends a signal with kill(1) (the workspace forbids `unsafe`).
pub fn signal(pid: u32, signal: &str) {
    let _ = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status();
}

/// A loopback address nothing listens on now.
pub fn spare_address() -> anyhow::Result<SocketAddr> {
    let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(probe.local_addr()?)
}

/// Where the workspace's binaries are: beside this one (or one level up
/// from a test binary in `deps`).
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().context("binary directory")?.to_owned();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} is missing: build the services first (`cargo build --bins`)",
            path.display()
        );
    }
    Ok(path)
}
