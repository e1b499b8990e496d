//! `make compose-test`: `docker compose up` for real, as a user's first shipment.
//!
//! 1. a Docker engine: the one that answers (`DOCKER_HOST` or the default
//!    socket), else dockerd from Debian's docker.io, started here with its own
//!    data root, socket and PID file under the cache, and stopped again at the
//!    end ([`engine`]);
//! 2. `docker compose` v2: the one installed, else the plugin from Debian
//!    trixie's docker-compose package ([`engine`]);
//! 3. every image docker-compose.yml and the Dockerfile name: kept or pulled
//!    where a registry answers, else a stand-in from docker/standins/ (built
//!    from Debian packages, tagged with the upstream name; see its README)
//!    ([`images`]);
//! 4. the project image, built by `docker compose build` from the real
//!    Dockerfile; `docker compose up -d --wait` of the real compose file;
//! 5. Consul's ACLs: a registration as vessel-service with no token or with
//!    another service's is refused (403), every service is registered and
//!    passing with its own token;
//! 6. through compose: user-cli create and login, consignment-cli create and
//!    list; the welcome mail in the mail container; spans of every service in
//!    the tracing container; user-service restarted and the saved token still
//!    accepted; the api-gateway; consignment-cli cancel (its room back); the
//!    signing key rotated and the old one revoked on the jwt-keys volume (the
//!    saved token refused, a new login working) ([`shipment`]);
//!    `docker compose down -v`, whatever happened.
//!
//! Each step prints a line; the last is `compose-test: PASS (…)` or
//! `FAIL (…)`; the exit status is 0 only when every step passed.
//!
//! Environment:
//! - `SHIPPY_COMPOSE_CACHE`: cache outside the clone (default
//!   `/var/cache/shippy-rs/compose`): dockerd's data root (images, build
//!   cache), the compose plugin, the debootstrap rootfs, the DocumentDB chroot;
//! - `SHIPPY_DOCUMENTDB_DIR`: the DocumentDB tool mongo:7's stand-in is made
//!   from (default: `shared/tools/documentdb` in the nearest directory above
//!   the clone that has one);
//! - `SHIPPY_STANDINS=always`: build stand-ins without trying a registry first;
//! - `SHIPPY_PULL_TIMEOUT`: seconds one `docker pull` may take (default 60);
//! - `SHIPPY_BUILD_CACHE_KEEP`: the build cache kept after a build (default 8GB).

mod engine;
mod gateway;
mod images;
mod project;
mod shipment;

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};

/// The compose project name, so a user's own `shippy` project is not touched.
const PROJECT: &str = "shippy-compose-test";

/// Set when SIGINT or SIGTERM arrived: the run stops at the next step and cleans up.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// Set while cleaning up: a second signal then ends the process at once.
static FINISHING: AtomicBool = AtomicBool::new(false);

/// Runs it: every step, then `down -v` and the summary, whatever happened.
pub fn run(args: &[String]) -> anyhow::Result<ExitCode> {
    if let Some(extra) = args.first() {
        bail!("compose-test takes no arguments (got {extra:?})");
    }
    let cache = std::env::var_os("SHIPPY_COMPOSE_CACHE").map_or_else(
        || PathBuf::from("/var/cache/shippy-rs/compose"),
        PathBuf::from,
    );
    let logs = cache.join("logs");
    if std::fs::create_dir_all(&logs).is_err() {
        eprintln!("cannot create {}", cache.display());
        return Ok(ExitCode::FAILURE);
    }
    watch_signals()?;
    let mut run = Run::new(cache);
    if let Err(error) = run.steps() {
        run.fail(&error);
    }
    Ok(run.finish())
}

/// One run's state: what it counted, started, and must undo.
#[derive(Debug)]
struct Run {
    repo: PathBuf,
    cache: PathBuf,
    logs: PathBuf,
    standins: PathBuf,
    documentdb: PathBuf,
    started: Instant,
    passed: u32,
    failed: u32,
    /// Set once `up` may have created something `down -v` must remove.
    compose_up: bool,
    /// The dockerd this run started (stopped at the end).
    dockerd: Option<std::process::Child>,
    /// Exported to every command run (DOCKER_HOST, DOCKER_CONFIG, the ports, …).
    env: Vec<(String, OsString)>,
}

impl Run {
    fn new(cache: PathBuf) -> Run {
        let repo = crate::repo();
        Run {
            standins: repo.join("docker/standins"),
            documentdb: documentdb_dir(&repo),
            logs: cache.join("logs"),
            repo,
            cache,
            started: Instant::now(),
            passed: 0,
            failed: 0,
            compose_up: false,
            dockerd: None,
            env: Vec::new(),
        }
    }

    fn steps(&mut self) -> anyhow::Result<()> {
        self.step("a Docker engine");
        engine::ensure_engine(self)?;
        self.step("docker compose v2");
        engine::ensure_compose(self)?;
        self.step("images named by docker-compose.yml and the Dockerfile");
        images::ensure_images(self)?;
        self.step("the project image: docker compose build (the real Dockerfile)");
        project::build_project(self)?;
        shipment::walk(self)
    }

    fn seconds(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    fn log(&self, text: &str) {
        eprintln!("compose-test: {text}");
    }

    fn step(&self, what: &str) {
        eprintln!("\n== compose-test [{:>4}s] {what}", self.seconds());
    }

    fn ok(&mut self, what: &str) {
        self.passed += 1;
        eprintln!("ok - {what}");
    }

    fn fail(&mut self, error: &anyhow::Error) {
        if INTERRUPTED.load(Ordering::SeqCst) {
            self.log("FAILED: interrupted");
        } else {
            self.log(&format!("FAILED: {error:#}"));
        }
        self.failed += 1;
    }

    fn set_env(&mut self, name: &str, value: impl Into<OsString>) {
        self.env.retain(|(known, _)| known != name);
        self.env.push((name.to_owned(), value.into()));
    }

    fn env_value(&self, name: &str) -> Option<OsString> {
        self.env
            .iter()
            .find(|(known, _)| known == name)
            .map(|(_, value)| value.clone())
            .or_else(|| std::env::var_os(name))
    }

    /// `program` with this run's environment.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.envs(self.env.iter().map(|(name, value)| (name, value)));
        command
    }

    fn docker(&self, args: &[&str]) -> Command {
        let mut command = self.command("docker");
        command.args(args);
        command
    }

    /// `docker compose` on the repository's compose file, as this run's project.
    fn compose(&self, args: &[&str]) -> Command {
        let mut command = self.command("docker");
        command
            .arg("compose")
            .args(["-p", PROJECT, "--project-directory"])
            .arg(&self.repo)
            .arg("-f")
            .arg(self.repo.join("docker-compose.yml"))
            .args(args);
        command
    }

    /// The log file of `what`: its non-alphanumerics become dashes.
    fn log_file(&self, what: &str) -> PathBuf {
        let name: String = what
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        self.logs.join(format!("{name}.log"))
    }

    /// Runs `command` with its output in `what`'s log; on failure prints the
    /// log's tail and fails. Returns the log's path.
    fn run_logged(&self, what: &str, command: Command) -> anyhow::Result<PathBuf> {
        self.run_logged_with_input(what, command, None)
    }

    fn run_logged_with_input(
        &self,
        what: &str,
        mut command: Command,
        input: Option<&str>,
    ) -> anyhow::Result<PathBuf> {
        interrupted()?;
        let log = self.log_file(what);
        let succeeded = output_to(&mut command, &log, input, None)?;
        if !succeeded {
            print_tail(&log, 30);
            bail!("{what} (log: {})", log.display());
        }
        Ok(log)
    }

    /// Retries `probe` every second until it succeeds (its output in
    /// until.log), failing with `what` after `seconds`.
    fn until_ok(
        &self,
        seconds: u64,
        what: &str,
        mut probe: impl FnMut(&Run) -> (bool, String),
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let log = self.logs.join("until.log");
        loop {
            interrupted()?;
            let (succeeded, output) = probe(self);
            std::fs::write(&log, &output)
                .with_context(|| format!("cannot write {}", log.display()))?;
            if succeeded {
                return Ok(());
            }
            if Instant::now() >= deadline {
                print_tail(&log, 20);
                bail!("{what}");
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// `down -v` (with the containers' last lines after a failure), the
    /// dockerd this run started stopped, the summary; the exit code.
    fn finish(mut self) -> ExitCode {
        FINISHING.store(true, Ordering::SeqCst);
        if self.compose_up {
            self.step("docker compose down -v");
            if self.failed > 0 {
                let _ = self
                    .compose(&["ps", "-a"])
                    .stdout(std::io::stderr())
                    .status();
                let failure_log = self.logs.join("compose-failure.log");
                let _ = output_to(
                    &mut self.compose(&["logs", "--no-color", "--tail", "40"]),
                    &failure_log,
                    None,
                    None,
                );
                self.log(&format!(
                    "the containers' last log lines: {}",
                    failure_log.display()
                ));
                print_tail(&failure_log, 60);
            }
            let down_log = self.logs.join("down.log");
            let mut down = self.compose(&["--profile", "cli", "down", "-v", "--remove-orphans"]);
            if output_to(&mut down, &down_log, None, None).unwrap_or(false) {
                self.ok("docker compose down -v");
            } else {
                print_tail(&down_log, 20);
                self.log("FAILED: docker compose down -v");
                self.failed += 1;
            }
        }
        engine::stop_dockerd(&mut self);
        eprintln!("\ncompose-test took {}s", self.seconds());
        // Not the "N passed, N failed" form: make test's line stays the suite's count.
        if self.failed == 0 {
            println!("compose-test: PASS ({} steps ok)", self.passed);
            ExitCode::SUCCESS
        } else {
            println!(
                "compose-test: FAIL ({} step(s) failed, {} ok)",
                self.failed, self.passed
            );
            ExitCode::FAILURE
        }
    }
}

/// Fails once a signal asked the run to stop.
fn interrupted() -> anyhow::Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// SIGINT / SIGTERM: the run stops at its next step and still cleans up; a
/// second one while cleaning up ends it at once.
fn watch_signals() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the signal watcher")?;
    let (mut interrupt, mut terminate) = runtime
        .block_on(async {
            Ok::<_, std::io::Error>((
                signal(SignalKind::interrupt())?,
                signal(SignalKind::terminate())?,
            ))
        })
        .context("cannot watch for SIGINT and SIGTERM")?;
    std::thread::spawn(move || {
        runtime.block_on(async {
            loop {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
                if FINISHING.load(Ordering::SeqCst) {
                    std::process::exit(130);
                }
                INTERRUPTED.store(true, Ordering::SeqCst);
            }
        });
    });
    Ok(())
}

/// Runs `command` with stdout and stderr in `log` (and `input` on stdin),
/// killed after `limit`; whether it succeeded.
fn output_to(
    command: &mut Command,
    log: &Path,
    input: Option<&str>,
    limit: Option<Duration>,
) -> anyhow::Result<bool> {
    let file = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let err = file
        .try_clone()
        .with_context(|| format!("cannot reopen {}", log.display()))?;
    command.stdout(file).stderr(err).stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot run {:?}", command.get_program()))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        use std::io::Write as _;
        stdin
            .write_all(text.as_bytes())
            .context("cannot write to the command's stdin")?;
    }
    wait_within(&mut child, limit)
}

/// Waits for `child`, killing it after `limit`; whether it exited with 0.
fn wait_within(child: &mut std::process::Child, limit: Option<Duration>) -> anyhow::Result<bool> {
    let Some(limit) = limit else {
        return Ok(child.wait().context("cannot wait for a command")?.success());
    };
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().context("cannot wait for a command")? {
            return Ok(status.success());
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether `command` (output discarded) succeeds within `limit`.
fn succeeds_within(mut command: Command, limit: Duration) -> bool {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    match command.spawn() {
        Ok(mut child) => wait_within(&mut child, Some(limit)).unwrap_or(false),
        Err(_) => false,
    }
}

/// `command`'s standard output, trimmed, if it succeeded (stderr discarded).
fn stdout_of(command: Command) -> Option<String> {
    trimmed_stdout(command, Stdio::null())
}

/// `command`'s standard output, trimmed, if it succeeded; its stderr to `stderr`.
fn trimmed_stdout(mut command: Command, stderr: Stdio) -> Option<String> {
    let output = command.stdin(Stdio::null()).stderr(stderr).output().ok()?;
    output.status.success().then(|| {
        String::from_utf8_lossy(&output.stdout)
            .trim_end()
            .to_owned()
    })
}

/// The last `lines` lines of `file` on stderr.
fn print_tail(file: &Path, lines: usize) {
    eprint!("{}", tail(file, lines));
}

/// [`crate::process::tail`], ending in a newline unless empty.
fn tail(file: &Path, lines: usize) -> String {
    let mut last = crate::process::tail(file, lines);
    if !last.is_empty() {
        last.push('\n');
    }
    last
}

/// `file`'s text on stderr (as `cat FILE >&2`).
fn print_file(file: &Path) {
    eprint!(
        "{}",
        String::from_utf8_lossy(&std::fs::read(file).unwrap_or_default())
    );
}

fn read_text(file: &Path) -> anyhow::Result<String> {
    std::fs::read(file)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .map_err(|error| anyhow!("cannot read {}: {error}", file.display()))
}

/// The DocumentDB tool: `SHIPPY_DOCUMENTDB_DIR`, else `shared/tools/documentdb`
/// in the nearest directory above the clone that has one (named as the
/// clone's sibling when none has, for the message that it is missing).
fn documentdb_dir(repo: &Path) -> PathBuf {
    if let Some(dir) = std::env::var_os("SHIPPY_DOCUMENTDB_DIR") {
        return PathBuf::from(dir);
    }
    let tool = Path::new("shared").join("tools").join("documentdb");
    repo.ancestors()
        .skip(1)
        .map(|ancestor| ancestor.join(&tool))
        .find(|dir| dir.is_dir())
        .unwrap_or_else(|| repo.join("..").join(tool))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_files_are_named_as_the_script_named_them() {
        let run = Run::new(PathBuf::from("cache"));
        assert_eq!(
            run.log_file("docker build axllent/mailpit:v1.20"),
            Path::new("cache/logs/docker-build-axllent-mailpit-v1-20.log")
        );
        assert_eq!(
            run.log_file("api-gateway web UI"),
            Path::new("cache/logs/api-gateway-web-UI.log")
        );
    }

    #[test]
    fn the_documentdb_tool_is_found_above_the_clone() {
        let root = std::env::temp_dir().join(format!("shippy-dev-dd-{}", std::process::id()));
        let clone = root.join("a").join("clone");
        let tool = root.join("shared/tools/documentdb");
        std::fs::create_dir_all(&clone).unwrap();
        std::fs::create_dir_all(&tool).unwrap();
        if std::env::var_os("SHIPPY_DOCUMENTDB_DIR").is_none() {
            assert_eq!(documentdb_dir(&clone), tool);
        }
        std::fs::remove_dir_all(&root).unwrap();
    }
}
