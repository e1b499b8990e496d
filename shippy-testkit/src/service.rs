//! A service binary of the workspace run as a process of its own
//! ([`ServiceProcess`]), and what its command line says when it starts,
//! shows its help or refuses its configuration.

use crate::health::wait_for_health;
use crate::settings::SERVICE_TOKEN;

/// The path of a workspace binary, built by `cargo test --workspace` (or
/// built here if missing). After changing a service, run the tests through
/// `make test` or `cargo test --workspace`, so its binary is current.
pub fn workspace_binary(name: &str) -> std::path::PathBuf {
    // Test binaries live in target/<profile>/deps; the binaries one level up.
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target directory");
    let path = dir.join(name);
    // `cargo test --workspace` (which `make test` runs) builds every binary
    // first. A test of one package alone may find another's binary missing:
    // built here then. (An out-of-date one is not rebuilt here: a nested
    // cargo build while cargo test runs can replace artifacts it is using.)
    if !path.exists() {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--bin", name, "-p", name])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build --bin {name} failed");
    }
    path
}

/// The tracing target of the line every service logs once it listens
/// (`shippy_service::service_main!`), with its `address`.
pub const STARTED_TARGET: &str = "shippy::started";

/// The address in a service's "started" log line (pretty or JSON, colours
/// or not), if this is that line.
pub fn started_address(line: &str) -> Option<std::net::SocketAddr> {
    started_field(line, "address")
}

/// The metrics address in a service's "started" log line (`metrics=…`), if
/// this is that line and it names one.
pub fn started_metrics(line: &str) -> Option<std::net::SocketAddr> {
    started_field(line, "metrics")
}

/// The socket address that follows `field` in a service's "started" line.
fn started_field(line: &str, field: &str) -> Option<std::net::SocketAddr> {
    // Drop ANSI colour codes: ESC [ … m.
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    if !plain.contains(STARTED_TARGET) {
        return None;
    }
    let after = &plain[plain.find(field)? + field.len()..];
    let start = after.find(|c: char| c.is_ascii_digit())?;
    let text: String = after[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();
    text.parse().ok()
}

/// A service binary running in its own process. Stopped with SIGTERM (a
/// graceful shutdown, which flushes its traces) by [`ServiceProcess::stop`],
/// killed when dropped.
#[derive(Debug)]
pub struct ServiceProcess {
    name: String,
    child: Option<std::process::Child>,
    /// Where its gRPC server listens.
    pub address: std::net::SocketAddr,
}

impl ServiceProcess {
    /// Starts binary `name` on loopback, with `env` (plus `LISTEN_ADDR` and
    /// `METRICS_ADDR` on port 0: the service binds its own ports, so two
    /// tests can never be handed the same one), once its health is SERVING.
    pub async fn start(name: &str, env: &[(&str, String)]) -> Self {
        Self::start_logging_to(name, env, None).await
    }

    /// [`ServiceProcess::start`], with its log (stdout) written to `log`.
    pub async fn start_logging_to(
        name: &str,
        env: &[(&str, String)],
        log: Option<&std::path::Path>,
    ) -> Self {
        use std::io::{BufRead, Write};

        let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
        let mut command = std::process::Command::new(workspace_binary(name));
        command
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env("METRICS_ADDR", "127.0.0.1:0")
            .env("SERVICE_TOKEN", SERVICE_TOKEN)
            .env("RUST_LOG", filter)
            .stdout(std::process::Stdio::piped());
        if std::env::var_os("TEST_LOG").is_none() {
            command.stderr(std::process::Stdio::null());
        }
        for (key, value) in env {
            command.env(key, value);
        }
        // Whatever the filter, the line that says where it listens.
        let filter = command
            .get_envs()
            .find(|(key, _)| *key == "RUST_LOG")
            .and_then(|(_, value)| value)
            .map(|value| value.to_string_lossy().into_owned())
            .unwrap_or_default();
        command.env("RUST_LOG", format!("{filter},{STARTED_TARGET}=info"));
        let mut child = command.spawn().expect("start the service");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut sink: Box<dyn Write + Send> = match log {
            Some(log) => Box::new(std::fs::File::create(log).expect("create the log file")),
            None if std::env::var_os("TEST_LOG").is_some() => Box::new(std::io::stdout()),
            None => Box::new(std::io::sink()),
        };
        let (found, address) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(address) = started_address(&line) {
                    let _ = found.send(address);
                }
                let _ = writeln!(sink, "{line}");
            }
        });
        // Owned before anything can fail, so a panic below kills the child.
        let mut process = Self {
            name: name.to_owned(),
            child: Some(child),
            address: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        process.address = tokio::task::spawn_blocking(move || {
            address.recv_timeout(std::time::Duration::from_secs(60))
        })
        .await
        .expect("wait task")
        .unwrap_or_else(|_| panic!("{name} never said where it listens (did it start?)"));
        let address = process.address;
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
            .expect("address")
            .connect_lazy();
        wait_for_health(
            &channel,
            tonic_health::pb::health_check_response::ServingStatus::Serving,
        )
        .await;
        process
    }

    /// `http://address`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Its process id (to stop and continue it with signals).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    /// SIGTERM, then waits for it to exit.
    pub async fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let name = self.name.clone();
            let status = tokio::task::spawn_blocking(move || child.wait())
                .await
                .expect("wait task")
                .expect("wait");
            assert!(status.success(), "{name} exited with {status}");
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What `binary --help` prints with `env` set (a secret there must not show).
pub fn help_text(binary: &str, env: &[(&str, &str)]) -> String {
    let mut command = std::process::Command::new(binary);
    command.arg("--help");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("run --help");
    assert!(output.status.success(), "{binary} --help failed");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Starts `binary` with `env` (on a spare port, logs off, nothing else
/// changed), expects it to refuse to start, and returns what it printed on
/// stderr: how a configuration error reaches an operator.
pub fn start_failure(binary: &str, env: &[(&str, &str)]) -> String {
    let mut command = std::process::Command::new(binary);
    command
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "off");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("run the binary");
    assert!(!output.status.success(), "{binary} started with {env:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Panics naming each of `wanted` that `text` lacks.
pub fn assert_mentions(text: &str, wanted: &[&str]) {
    let missing: Vec<_> = wanted.iter().filter(|word| !text.contains(*word)).collect();
    assert!(missing.is_empty(), "missing {missing:?} in:\n{text}");
}

/// `binary --help`, run with `secrets` set (each value holding the word
/// `hunter2`), lists every one of `wanted` and shows none of the secrets.
pub fn assert_help(binary: &str, secrets: &[(&str, &str)], wanted: &[&str]) {
    assert!(
        secrets.iter().all(|(_, value)| value.contains("hunter2")),
        "each secret holds hunter2: {secrets:?}"
    );
    let help = help_text(binary, secrets);
    assert_mentions(&help, wanted);
    assert!(!help.contains("hunter2"), "{help}");
}

/// `binary` refuses to start with `env`, saying each of `wanted` on stderr;
/// answers what it said.
pub fn assert_start_fails(binary: &str, env: &[(&str, &str)], wanted: &[&str]) -> String {
    let stderr = start_failure(binary, env);
    assert_mentions(&stderr, wanted);
    stderr
}

/// What a command printed on stdout, as text.
pub fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// What a command printed on stderr, as text.
pub fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A command (run with `args`) failed, saying why in one line of stderr
/// that mentions `expected`.
#[track_caller]
pub fn assert_failed_in_one_line(output: &std::process::Output, args: &[&str], expected: &str) {
    let message = stderr(output);
    assert!(!output.status.success(), "{args:?} succeeded");
    assert!(message.contains(expected), "{args:?}: {message}");
    assert_eq!(
        message.trim().lines().count(),
        1,
        "{args:?}: one line, got {message}"
    );
}

/// A command succeeded, its stdout mentioning each of `wanted`; answers
/// that stdout.
#[track_caller]
pub fn assert_ran(output: &std::process::Output, wanted: &[&str]) -> String {
    assert!(output.status.success(), "failed: {}", stderr(output));
    let printed = stdout(output);
    assert_mentions(&printed, wanted);
    printed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_addresses_are_read_from_the_started_line_in_every_format() {
        let address = Some(([127, 0, 0, 1], 4000).into());
        let metrics = Some(([127, 0, 0, 1], 4001).into());
        let pretty = "2026-01-01T00:00:00Z  INFO shippy::started: api-gateway started \
                      address=127.0.0.1:4000 metrics=127.0.0.1:4001";
        let coloured = "\u{1b}[2mshippy::started\u{1b}[0m\u{1b}[2m:\u{1b}[0m api-gateway started \
                        \u{1b}[3maddress\u{1b}[0m\u{1b}[2m=\u{1b}[0m127.0.0.1:4000 \
                        \u{1b}[3mmetrics\u{1b}[0m\u{1b}[2m=\u{1b}[0m127.0.0.1:4001";
        let json = r#"{"fields":{"message":"api-gateway started","address":"127.0.0.1:4000","metrics":"127.0.0.1:4001"},"target":"shippy::started"}"#;
        for line in [pretty, coloured, json] {
            assert_eq!(started_address(line), address, "{line}");
            assert_eq!(started_metrics(line), metrics, "{line}");
        }
        let other = "INFO shippy_service::server: listening address=127.0.0.1:4000";
        assert_eq!(started_address(other), None);
        assert_eq!(
            started_metrics("INFO shippy::started: user-service started address=127.0.0.1:1"),
            None
        );
    }
}
