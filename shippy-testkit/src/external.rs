//! Servers of a test's own: one [`ExternalServer`] supervises any program
//! (spawn with args and env, output to a log, ready by a check, killed and
//! reaped when dropped), and [`NatsServer`], [`SmtpServer`] and
//! [`ConsulAgent`] are that with the arguments each program needs.

mod consul;
mod nats;
mod smtp;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub use consul::{CONSUL_SERVICES, ConsulAgent};
pub use nats::NatsServer;
pub use smtp::SmtpServer;

/// How an [`ExternalServer`] shows it is ready: a check, tried every so often
/// until it passes or the time is up.
#[derive(Debug, Clone)]
pub struct Readiness {
    check: Check,
    every: Duration,
    within: Duration,
}

#[derive(Debug, Clone)]
enum Check {
    Listening,
    HttpBody {
        path: &'static str,
        ready: fn(&str) -> bool,
    },
}

impl Readiness {
    /// It accepts TCP connections on its address (tried every 50 ms, for 5 s).
    pub fn listening() -> Self {
        Self {
            check: Check::Listening,
            every: Duration::from_millis(50),
            within: Duration::from_secs(5),
        }
    }

    /// A plain `GET http://ADDRESS{path}` answers a body that `ready`
    /// accepts (tried every 100 ms, for 30 s).
    pub fn http_body(path: &'static str, ready: fn(&str) -> bool) -> Self {
        Self {
            check: Check::HttpBody { path, ready },
            every: Duration::from_millis(100),
            within: Duration::from_secs(30),
        }
    }

    /// The same check, given `within` in all.
    pub fn within(self, within: Duration) -> Self {
        Self { within, ..self }
    }

    async fn passes(&self, address: SocketAddr) -> bool {
        match &self.check {
            Check::Listening => tokio::net::TcpStream::connect(address).await.is_ok(),
            Check::HttpBody { path, ready } => {
                crate::net::http_get(&format!("http://{address}{path}"))
                    .await
                    .is_ok_and(|body| ready(&body))
            }
        }
    }

    fn describe(&self, address: SocketAddr) -> String {
        match &self.check {
            Check::Listening => format!("listening on {address}"),
            Check::HttpBody { path, .. } => format!("ready at http://{address}{path}"),
        }
    }
}

/// A program run as a server of a test's own, on loopback.
///
/// It gets a directory of its own ([`ExternalServer::dir`], for its data; the
/// program's stdout and stderr go to `server.log` there). [`start`] spawns
/// it and waits until [`Readiness`] passes; a program that exits or is not
/// ready in time fails the test with the end of its log. Dropped, it is
/// killed and reaped and its directory removed — unless the test is failing
/// (or `TEST_LOG` is set): then the directory stays, and stderr says where.
///
/// [`start`]: ExternalServer::start
#[derive(Debug)]
pub struct ExternalServer {
    name: String,
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    install_hint: String,
    readiness: Readiness,
    address: SocketAddr,
    dir: PathBuf,
    process: Option<Child>,
}

impl ExternalServer {
    /// `program` (called `name` in messages; its directory is
    /// `shippy-<name>-<uuid>` in the temporary directory) that will listen
    /// on `address`, not started yet. Ready once it listens, unless
    /// [`ExternalServer::ready_when`] says otherwise.
    pub fn new(name: &str, program: impl Into<OsString>, address: SocketAddr) -> Self {
        let dir = std::env::temp_dir().join(format!("shippy-{name}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("create the server's directory");
        Self {
            name: name.to_owned(),
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            install_hint: String::new(),
            readiness: Readiness::listening(),
            address,
            dir,
            process: None,
        }
    }

    /// One more argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// More arguments.
    pub fn args<I: IntoIterator<Item: Into<OsString>>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// An environment variable for it (it inherits the test's otherwise).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// How it shows it is ready.
    pub fn ready_when(mut self, readiness: Readiness) -> Self {
        self.readiness = readiness;
        self
    }

    /// What to do when the program cannot be started at all (where it comes
    /// from), said in that failure.
    pub fn install_hint(mut self, hint: &str) -> Self {
        hint.clone_into(&mut self.install_hint);
        self
    }

    /// Starts it and waits until it is ready.
    pub async fn start(mut self) -> Self {
        self.restart().await;
        self
    }

    /// Starts it (again, after [`ExternalServer::stop`] or not) with the same
    /// arguments, address and directory, and waits until it is ready.
    pub async fn restart(&mut self) {
        self.stop();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open the server's log");
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("share the log file"))
            .stderr(log);
        let process = command.spawn().unwrap_or_else(|error| {
            panic!(
                "start {} ({:?}): {error}. {}",
                self.name, self.program, self.install_hint
            )
        });
        self.process = Some(process);
        let attempts = self.readiness.within.as_millis() / self.readiness.every.as_millis().max(1);
        for _ in 0..attempts {
            if let Some(status) = self.process.as_mut().and_then(|p| p.try_wait().ok()?) {
                self.process = None;
                panic!(
                    "{} exited with {status} before it was ready{}",
                    self.name,
                    self.log_tail()
                );
            }
            if self.readiness.passes(self.address).await {
                return;
            }
            tokio::time::sleep(self.readiness.every).await;
        }
        panic!(
            "{} was not {} within {:?}{}",
            self.name,
            self.readiness.describe(self.address),
            self.readiness.within,
            self.log_tail()
        );
    }

    /// Kills it and waits until it is gone (its directory stays, for a restart).
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Its process id while it runs (to stop and continue it with signals).
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Child::id)
    }

    /// Its directory, for its data.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file its stdout and stderr go to (appended to on each start).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// The last lines of its log, for a failure message.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        format!("; the end of {}:\n{tail}", self.log_path().display())
    }
}

impl Drop for ExternalServer {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() || std::env::var_os("TEST_LOG").is_some() {
            eprintln!("{} kept its directory: {}", self.name, self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests;
