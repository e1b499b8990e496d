//! `cargo dev test` (what `make test` runs after lint): every test of the
//! workspace against throwaway infrastructure, then the smoke tests, and one
//! closing line summed over all of them (was scripts/test.sh).
//!
//! No genuine mongod installs on these machines: MongoDB tests run against
//! the DocumentDB stand-in [`Infra`] starts, or the server `TEST_MONGODB_URL`
//! names. They are marked ignored for a plain `cargo test`; here they are
//! included whenever a server runs, and reported as SKIPPED, loudly, only
//! when none could be had.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::ops::ControlFlow;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus};

use anyhow::Context;

use crate::infra::Infra;
use crate::repo;

/// Runs it; the exit code is cargo test's, or 1 if a smoke test failed.
pub fn run(_args: &[String]) -> anyhow::Result<ExitCode> {
    crate::infra::survive_interrupts();
    let repo = repo();
    let dir = std::env::var_os("SHIPPY_INFRA_DIR")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join(format!(".infra/test-{}", std::process::id())));
    let infra = Infra::up(&dir, &["postgres", "nats", "consul", "mongodb"])?;
    let target = std::env::var("CARGO_TARGET_DIR")
        .ok()
        .filter(|target| !target.is_empty())
        .unwrap_or_else(|| "target".into());
    let run = Run {
        infra: &infra,
        dir: &dir,
    };

    // The committed sqlx offline query data must match the queries and schema.
    let checked = crate::sqlx::prepare(&["--check".into()], infra.var("TEST_DATABASE_URL"))?;
    if checked != 0 {
        return Ok(exit_code(checked));
    }

    let mongodb = infra.var("TEST_MONGODB_URL");
    if let Some(url) = mongodb {
        let address = url.rsplit_once('@').map_or(url, |(_, address)| address);
        println!("MongoDB: the MongoDB tests run too (against {address})");
    }
    let cargo_test = |args: &[&str]| {
        let mut command = run.command("cargo");
        command.args(["test", "--workspace", "--locked"]).args(args);
        command.arg("--");
        if mongodb.is_some() {
            command.arg("--include-ignored");
        }
        command
    };
    let log = dir.join("cargo-test.log");
    let smoke_log = dir.join("cargo-test.log.smoke");
    let soak_log = dir.join("cargo-test.log.chaos");

    // Every test but the chaos soaks' (cargo builds them all).
    let mut rest = cargo_test(&["--no-fail-fast"]);
    rest.args(CHAOS_MODULES.iter().flat_map(|module| ["--skip", module]));
    let tested = tee(rest, &log, false)?;
    if interrupted(tested) {
        return Ok(ExitCode::from(130));
    }
    let mut status = tested.code().unwrap_or(1);

    // The chaos soaks (a cluster of their own under load and faults, about
    // four minutes, a third of the machine's two cores) run beside the smoke
    // tests instead of after them; their output follows at the end. Not
    // beside the other tests: those stop and start many services on spare
    // ports, and a port one of them frees must not become a soak's (or the
    // other way round).
    println!();
    println!(
        "chaos: the soaks run beside the smoke tests, their output in {}",
        soak_log.display()
    );
    let soaks = Beside::spawn(cargo_test(&["--test", CHAOS_TESTS]), &soak_log)?;

    let shippy_dev = own_binary()?;
    let mut browser = run.command_with(&shippy_dev, ["smoke", "browser"]);
    browser.env("BROWSER_OUT", format!("{target}/browser"));
    let mut openapi = run.command_with(&shippy_dev, ["smoke", "openapi"]);
    openapi.env("OPENAPI_OUT", format!("{target}/openapi"));
    let steps = [
        (
            // The binary as a new user runs it, probed by an independent gRPC client.
            "smoke: vessel-service with an independent client (Python grpcio + reflection)".into(),
            run.command_with(&shippy_dev, ["smoke", "vessel"]),
        ),
        (
            // The web UI in headless Chromium (Debian's package), through api-gateway.
            format!(
                "browser: the web UI in headless Chromium (Selenium), screenshots in {target}/browser"
            ),
            browser,
        ),
        (
            // The gateway's OpenAPI document against the gateway (Schemathesis, PyPI).
            format!(
                "openapi: Schemathesis fuzzes api-gateway against /api/openapi.json, \
                 report in {target}/openapi"
            ),
            openapi,
        ),
        (
            // No Docker engine here: check the compose file against the binaries instead.
            "compose: docker-compose.yml against the binaries' --help".into(),
            run.command_with(
                "python3",
                ["scripts/check_compose.py".into(), format!("{target}/debug")],
            ),
        ),
        (
            // No kubelet here either: render the Kubernetes manifests and check them.
            "kubernetes: deploy/kubernetes rendered, schema-validated and checked against \
             the binaries"
                .into(),
            run.command_with(
                &shippy_dev,
                ["k8s".into(), "check".into(), format!("{target}/debug")],
            ),
        ),
    ];
    for (title, command) in steps {
        println!();
        println!("{title}");
        if record(tee(command, &smoke_log, true), &mut status).is_break() {
            return Ok(ExitCode::from(130));
        }
    }

    println!();
    println!("chaos: the soaks (they ran beside the smoke tests above)");
    if record(soaks.wait(), &mut status).is_break() {
        return Ok(ExitCode::from(130));
    }
    let _ = std::io::stdout().write_all(&std::fs::read(&soak_log).unwrap_or_default());

    if mongodb.is_none() {
        println!();
        println!(
            "NOTE: no MongoDB server could be had, so the MongoDB tests were SKIPPED \
             (shown as ignored above)."
        );
        println!(
            "      Set TEST_MONGODB_URL=mongodb://user:password@host:port/ to run them \
             against a MongoDB server."
        );
    }

    // One closing line for the whole run, summed over every test binary.
    let mut text = String::new();
    for path in [&log, &soak_log, &smoke_log] {
        text.push_str(&String::from_utf8_lossy(
            &std::fs::read(path).unwrap_or_default(),
        ));
        text.push('\n');
    }
    let tally = Tally::of(&text);
    println!(
        "{} passed, {} failed, {} skipped",
        tally.passed, tally.failed, tally.skipped
    );
    Ok(exit_code(status))
}

/// shippy-chaos's test binary (`tests/chaos`): the soaks and the checker's
/// self-test.
const CHAOS_TESTS: &str = "chaos";
/// Its tests' modules, skipped by the run of all the other tests.
const CHAOS_MODULES: [&str; 2] = ["soak::", "self_test::"];

/// A command running beside the others, its output into a file, in a
/// process group of its own: stopped (SIGTERM) with all it started if it is
/// not waited for (the run ended early, or was interrupted: a Ctrl-C does
/// not reach another group).
struct Beside {
    child: std::process::Child,
    waited: bool,
}

impl Beside {
    fn spawn(mut command: Command, log: &Path) -> anyhow::Result<Self> {
        let child = crate::process::spawn_logged(&mut command, log)?;
        Ok(Self {
            child,
            waited: false,
        })
    }

    fn wait(mut self) -> anyhow::Result<ExitStatus> {
        self.waited = true;
        self.child.wait().context("cannot wait for the chaos soaks")
    }
}

impl Drop for Beside {
    fn drop(&mut self) {
        if !self.waited {
            let group = format!("-{}", self.child.id());
            let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
            let _ = self.child.wait();
        }
    }
}

/// What every step runs with: the repository as its directory, the
/// infrastructure's variables in its environment.
struct Run<'a> {
    infra: &'a Infra,
    dir: &'a Path,
}

impl Run<'_> {
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        crate::process::forget_cargo_run(&mut command);
        command
            .current_dir(repo())
            .env("SHIPPY_INFRA_DIR", self.dir)
            .envs(self.infra.vars().iter().map(|(name, value)| (name, value)));
        command
    }

    fn command_with<I: IntoIterator<Item: Into<OsString>>>(
        &self,
        program: impl AsRef<std::ffi::OsStr>,
        args: I,
    ) -> Command {
        let mut command = self.command(program);
        command.args(args.into_iter().map(Into::into));
        command
    }
}

/// Runs `command`, its stdout and stderr both to our stdout and to `log`
/// (appended to, or replaced): `command 2>&1 | tee [-a] log`.
pub(crate) fn tee(mut command: Command, log: &Path, append: bool) -> anyhow::Result<ExitStatus> {
    let program = command.get_program().to_string_lossy().into_owned();
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    let (mut reader, writer) = std::io::pipe().context("cannot make a pipe")?;
    command
        .stdout(writer.try_clone().context("cannot share a pipe")?)
        .stderr(writer);
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot run {program}"))?;
    drop(command);
    let mut stdout = std::io::stdout();
    let mut buffer = [0; 8192];
    loop {
        let read = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error).context("cannot read a command's output"),
        };
        let _ = stdout.write_all(&buffer[..read]);
        let _ = stdout.flush();
        file.write_all(&buffer[..read])
            .with_context(|| format!("cannot write {}", log.display()))?;
    }
    child
        .wait()
        .with_context(|| format!("cannot wait for {program}"))
}

/// This program's binary, for its own subcommands. Rebuilt while the run
/// went on (cargo replaces the file), Linux names the one running
/// `… (deleted)`: the new one at that path is meant then.
fn own_binary() -> anyhow::Result<PathBuf> {
    let path = std::env::current_exe().context("cannot find shippy-dev's own binary")?;
    Ok(
        match path
            .to_str()
            .and_then(|text| text.strip_suffix(" (deleted)"))
        {
            Some(rebuilt) => PathBuf::from(rebuilt),
            None => path,
        },
    )
}

/// A step's outcome into the run's `status` (1 if it failed or could not
/// be run, which is reported); [`ControlFlow::Break`] if a Ctrl-C ended it,
/// and with it the whole run.
fn record(outcome: anyhow::Result<ExitStatus>, status: &mut i32) -> ControlFlow<()> {
    match outcome {
        Ok(ended) if interrupted(ended) => return ControlFlow::Break(()),
        Ok(ended) if ended.success() => {}
        Ok(_) => *status = 1,
        Err(error) => {
            eprintln!("shippy-dev: {error:#}");
            *status = 1;
        }
    }
    ControlFlow::Continue(())
}

/// Whether a step ended by a Ctrl-C (the whole run stops then, cleaning up).
fn interrupted(status: ExitStatus) -> bool {
    status.signal() == Some(2) || status.code() == Some(130)
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(code.clamp(0, 255) as u8)
}

/// The closing line's figures: `test result:` lines (N passed; N failed;
/// N ignored) and the smoke tests' `ok - ` / `not ok - ` lines.
#[derive(Debug, Default, PartialEq)]
struct Tally {
    passed: u64,
    failed: u64,
    skipped: u64,
}

impl Tally {
    fn of(text: &str) -> Tally {
        let mut tally = Tally::default();
        for line in text.lines() {
            if line.starts_with("test result:") {
                let fields: Vec<&str> = line.split_whitespace().collect();
                for pair in fields.windows(2) {
                    let count = leading_number(pair[0]);
                    if pair[1].starts_with("passed") {
                        tally.passed += count;
                    }
                    if pair[1].starts_with("failed") {
                        tally.failed += count;
                    }
                    if pair[1].starts_with("ignored") {
                        tally.skipped += count;
                    }
                }
            }
            if line.starts_with("ok - ") {
                tally.passed += 1;
            }
            if line.starts_with("not ok - ") {
                tally.failed += 1;
            }
        }
        tally
    }
}

/// A field's value as awk reads it as a number: its leading digits, else 0.
fn leading_number(field: &str) -> u64 {
    let digits = field.bytes().take_while(u8::is_ascii_digit).count();
    field[..digits].parse().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steps_outcome_counts_in_the_runs_status() {
        let exited = |code: i32| Ok(ExitStatus::from_raw(code << 8));
        let mut status = 0;
        assert!(record(exited(0), &mut status).is_continue());
        assert_eq!(status, 0, "a step that passed changes nothing");
        assert!(record(exited(2), &mut status).is_continue());
        assert_eq!(status, 1, "a failed step fails the run");
        let mut status = 0;
        assert!(record(Err(anyhow::anyhow!("cannot run it")), &mut status).is_continue());
        assert_eq!(status, 1, "a step that could not run fails the run");
        assert!(
            record(exited(130), &mut status).is_break(),
            "a Ctrl-C ends it"
        );
    }

    #[test]
    fn a_command_beside_answers_its_status_and_output() {
        let dir = std::env::temp_dir().join(format!("beside-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("out.log");
        let mut command = Command::new("sh");
        command.args(["-c", "echo soaked; exit 3"]);
        let status = Beside::spawn(command, &log).unwrap().wait().unwrap();
        assert_eq!(status.code(), Some(3));
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "soaked\n");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_command_beside_not_waited_for_is_stopped_with_what_it_started() {
        let dir = std::env::temp_dir().join(format!("beside-drop-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pid_file = dir.join("grandchild.pid");
        let mut command = Command::new("sh");
        // A grandchild, as cargo test's test binary is cargo's.
        command
            .arg("-c")
            .arg(format!("sleep 60 & echo $! > {}; wait", pid_file.display()));
        let beside = Beside::spawn(command, &dir.join("out.log")).unwrap();
        let started = std::time::Instant::now();
        let grandchild = loop {
            if let Some(pid) = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|text| text.trim().parse::<u32>().ok())
            {
                break pid;
            }
            assert!(
                started.elapsed().as_secs() < 10,
                "the grandchild never started"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        drop(beside);
        let alive = || crate::process::signal(grandchild, "0");
        let stopped = std::time::Instant::now();
        while alive() && stopped.elapsed().as_secs() < 5 {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(!alive(), "the grandchild {grandchild} outlived the run");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_tally_sums_test_results_and_smoke_lines_as_the_old_awk_did() {
        let text = "\
running 3 tests
test result: ok. 12 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 0.1s
test result: FAILED. 3 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1s
ok - vessel-service answers
not ok - the browser saw the list
  ok - indented lines do not count
";
        assert_eq!(
            Tally::of(text),
            Tally {
                passed: 16,
                failed: 2,
                skipped: 2
            }
        );
    }
}
