//! The service binaries as a user starts them, for the smoke tests: each on
//! ports it binds itself (port 0, its address read from the line it logs
//! once it listens), its output in a log file, stopped with SIGTERM whatever
//! happens; [`Cluster`] is user-, vessel- and consignment-service and
//! api-gateway together, each on a fresh database ([`Databases`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use shippy_testkit::{STARTED_TARGET, started_address};
use sqlx::Connection as _;

use crate::process::{GRACE, tail, wait_or_kill};

/// One service binary running in its own process.
#[derive(Debug)]
pub struct Service {
    name: String,
    child: Option<Child>,
    pump: Option<std::thread::JoinHandle<()>>,
    log: PathBuf,
    /// Where it serves (gRPC, or the gateway's HTTP).
    pub address: SocketAddr,
    /// Where its `/metrics` are.
    pub metrics: SocketAddr,
}

impl Service {
    /// Starts `binary` (called `name`) with `env`, `LISTEN_ADDR` and
    /// `METRICS_ADDR` on port 0 and `RUST_LOG=rust_log`, its output in
    /// `log`; returns once it says where it listens (its health is the
    /// caller's to wait for).
    pub async fn start(
        name: &str,
        binary: &Path,
        env: &[(&str, String)],
        rust_log: &str,
        log: &Path,
    ) -> anyhow::Result<Service> {
        use std::io::{BufRead as _, Write as _};

        let mut file = std::fs::File::create(log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let stderr = file.try_clone().context("cannot share the log file")?;
        let mut child = Command::new(binary)
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env("METRICS_ADDR", "127.0.0.1:0")
            // Whatever the level, the line that says where it listens.
            .env("RUST_LOG", format!("{rust_log},{STARTED_TARGET}=info"))
            .envs(env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {} (build it: cargo build -p {name})",
                    binary.display()
                )
            })?;
        let stdout = child.stdout.take().context("no stdout to read")?;
        let (found, started) = mpsc::channel();
        let pump = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(address) = started_address(&line) {
                    let _ = found.send((address, started_metrics(&line)));
                }
                let _ = writeln!(file, "{line}");
            }
        });
        let mut service = Service {
            name: name.to_owned(),
            child: Some(child),
            pump: Some(pump),
            log: log.to_path_buf(),
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            metrics: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((address, metrics)) = started.try_recv() {
                service.address = address;
                service.metrics = metrics.unwrap_or(address);
                return Ok(service);
            }
            if let Some(status) = service.exited()? {
                service.join_pump();
                bail!(
                    "{name} exited at start ({status}):\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{name} did not say where it listens within 60 s; the end of its log:\n{}",
                    tail(log, 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Its process id (to stop and continue it with signals).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Where its output goes.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        match self.child.as_mut() {
            Some(child) => child
                .try_wait()
                .with_context(|| format!("cannot see whether {} runs", self.name)),
            None => Ok(None),
        }
    }

    /// Sends `signal` (TERM, CONT, …) if it still runs.
    pub fn signal(&self, signal: &str) {
        if let Some(pid) = self.pid() {
            crate::process::signal(pid, signal);
        }
    }

    /// SIGTERM (SIGCONT first, as a stopped process takes SIGTERM only once
    /// continued), then its exit status once it exited and its log is complete.
    pub fn stop(&mut self) -> anyhow::Result<ExitStatus> {
        self.signal("CONT");
        self.signal("TERM");
        self.wait()
    }

    /// Waits for it to exit (killed after [`GRACE`]), its log complete.
    fn wait(&mut self) -> anyhow::Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("{} was stopped already", self.name);
        };
        let status = wait_or_kill(&mut child, &self.name, GRACE)?;
        self.join_pump();
        Ok(status)
    }

    fn join_pump(&mut self) {
        if let Some(pump) = self.pump.take() {
            let _ = pump.join();
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop();
        }
    }
}

/// The metrics address in a service's "started" line (`metrics=…`, the
/// last field; colours or not).
fn started_metrics(line: &str) -> Option<SocketAddr> {
    let after = &line[line.rfind("metrics")? + "metrics".len()..];
    let mut plain = String::with_capacity(after.len());
    let mut chars = after.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // A colour code: ESC [ … m.
            let _ = chars.by_ref().find(|c| *c == 'm');
        } else {
            plain.push(c);
        }
    }
    let text: String = plain
        .trim_start_matches(['=', '"', ':', ' '])
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();
    text.parse().ok()
}

/// Fresh databases on the server of `TEST_DATABASE_URL`, dropped by
/// [`Databases::drop_all`].
#[derive(Debug)]
pub struct Databases {
    admin_url: String,
    names: Vec<String>,
}

impl Databases {
    /// Creates `names` at `admin_url`'s server.
    pub async fn create(admin_url: &str, names: &[String]) -> anyhow::Result<Databases> {
        let mut databases = Databases {
            admin_url: admin_url.to_owned(),
            names: Vec::new(),
        };
        let mut connection = sqlx::PgConnection::connect(admin_url)
            .await
            .context("cannot connect to the PostgreSQL server of TEST_DATABASE_URL")?;
        for name in names {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
                .execute(&mut connection)
                .await
                .with_context(|| format!("create database {name} at TEST_DATABASE_URL"))?;
            databases.names.push(name.clone());
        }
        let _ = connection.close().await;
        Ok(databases)
    }

    /// The URL of database `name` on the same server.
    pub fn url(&self, name: &str) -> anyhow::Result<String> {
        database_url(&self.admin_url, name)
    }

    /// Drops them all (whoever is still connected).
    pub async fn drop_all(self) {
        let Ok(mut connection) = sqlx::PgConnection::connect(&self.admin_url).await else {
            return;
        };
        for name in &self.names {
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#
            )))
            .execute(&mut connection)
            .await;
        }
        let _ = connection.close().await;
    }
}

/// `url` with its database (path) replaced by `name`.
pub fn database_url(url: &str, name: &str) -> anyhow::Result<String> {
    let mut url = url::Url::parse(url).context("TEST_DATABASE_URL is not a URL")?;
    url.set_path(&format!("/{name}"));
    Ok(url.into())
}

/// The gateway and the three services behind it, from their binaries, each
/// on a database of its own.
#[derive(Debug)]
pub struct Cluster {
    /// user-, vessel-, consignment-service, api-gateway, in that order.
    services: Vec<Service>,
}

/// What one smoke test sets on each of the [`Cluster`]'s programs (besides
/// where the others are, their databases and a shared service token).
#[derive(Debug, Default)]
pub struct ClusterEnv {
    pub rust_log: &'static str,
    pub user: Vec<(&'static str, String)>,
    pub vessel: Vec<(&'static str, String)>,
    pub consignment: Vec<(&'static str, String)>,
    pub gateway: Vec<(&'static str, String)>,
}

impl Cluster {
    /// Starts them from `bin` on the databases at `database_urls` (users,
    /// vessels, consignments), logs in `run`, one after the other, each
    /// pointed at those before.
    pub async fn start(
        bin: &Path,
        run: &Path,
        database_urls: [String; 3],
        env: ClusterEnv,
    ) -> anyhow::Result<Cluster> {
        let token = super::random_hex(32)?;
        let mut cluster = Cluster {
            services: Vec::new(),
        };
        let [users, vessels, consignments] = database_urls;
        let user = start(
            "user-service",
            bin,
            run,
            env.rust_log,
            [("DATABASE_URL", users)].into_iter(),
            env.user,
        )
        .await?;
        let user_url = format!("http://{}", user.address);
        cluster.services.push(user);
        let vessel = start(
            "vessel-service",
            bin,
            run,
            env.rust_log,
            [
                ("DATABASE_URL", vessels),
                ("USER_SERVICE_URL", user_url.clone()),
                ("SERVICE_TOKEN", token.clone()),
            ]
            .into_iter(),
            env.vessel,
        )
        .await?;
        let vessel_url = format!("http://{}", vessel.address);
        cluster.services.push(vessel);
        let consignment = start(
            "consignment-service",
            bin,
            run,
            env.rust_log,
            [
                ("DATABASE_URL", consignments),
                ("USER_SERVICE_URL", user_url.clone()),
                ("VESSEL_SERVICE_URL", vessel_url.clone()),
                ("SERVICE_TOKEN", token),
            ]
            .into_iter(),
            env.consignment,
        )
        .await?;
        let consignment_url = format!("http://{}", consignment.address);
        cluster.services.push(consignment);
        let gateway = start(
            "api-gateway",
            bin,
            run,
            env.rust_log,
            [
                ("USER_SERVICE_URL", user_url),
                ("VESSEL_SERVICE_URL", vessel_url),
                ("CONSIGNMENT_SERVICE_URL", consignment_url),
            ]
            .into_iter(),
            env.gateway,
        )
        .await?;
        cluster.services.push(gateway);
        Ok(cluster)
    }

    /// The gateway's URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        self.services
            .last()
            .map(|gateway| format!("http://{}", gateway.address))
            .unwrap_or_default()
    }

    /// `GET /readyz` of the gateway until it answers 2xx, at most `tries`
    /// times 100 ms apart; the last answer (a 503 saying why, or none).
    pub async fn ready(&self, tries: u32) -> super::http::Answer {
        let url = format!("{}/readyz", self.url());
        let mut last = None;
        for _ in 0..tries {
            match super::http::get(&url, &[]).await {
                Ok(answer) if answer.is_success() => return answer,
                Ok(answer) => last = Some(answer),
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        last.unwrap_or(super::http::Answer {
            status: http::StatusCode::SERVICE_UNAVAILABLE,
            body: format!("no answer at {url}"),
        })
    }

    /// The gateway's metrics address.
    pub fn gateway_metrics(&self) -> Option<SocketAddr> {
        self.services.last().map(|gateway| gateway.metrics)
    }

    /// consignment-service's process id.
    pub fn consignment_pid(&self) -> Option<u32> {
        self.services.get(2).and_then(Service::pid)
    }

    /// Each log's last `lines` lines, under a `==> path <==` heading (as `tail`).
    pub fn log_tails(&self, lines: usize) -> String {
        self.services
            .iter()
            .map(|service| {
                format!(
                    "==> {} <==\n{}\n",
                    service.log().display(),
                    tail(service.log(), lines)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Stops them all: SIGTERM to each at once, then waits for each.
    pub fn stop(&mut self) {
        for service in &self.services {
            service.signal("CONT");
            service.signal("TERM");
        }
        for mut service in self.services.drain(..) {
            let _ = service.wait();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts `name` from `bin` with `wiring` and then `extra` in its
/// environment, its log in `run/NAME.log`.
async fn start(
    name: &str,
    bin: &Path,
    run: &Path,
    rust_log: &str,
    wiring: impl Iterator<Item = (&'static str, String)>,
    extra: Vec<(&'static str, String)>,
) -> anyhow::Result<Service> {
    let env: Vec<_> = wiring.chain(extra).collect();
    Service::start(
        name,
        &bin.join(name),
        &env,
        rust_log,
        &run.join(format!("{name}.log")),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metrics_address_is_read_from_the_started_line() {
        let line = "2026-01-01T00:00:00Z  INFO shippy::started: api-gateway started \
                    address=127.0.0.1:4000 metrics=127.0.0.1:4001";
        assert_eq!(started_address(line), Some(([127, 0, 0, 1], 4000).into()));
        assert_eq!(started_metrics(line), Some(([127, 0, 0, 1], 4001).into()));
        let coloured = "\u{1b}[2mshippy::started\u{1b}[0m\u{1b}[2m:\u{1b}[0m api-gateway started \
                        \u{1b}[3maddress\u{1b}[0m\u{1b}[2m=\u{1b}[0m127.0.0.1:4000 \
                        \u{1b}[3mmetrics\u{1b}[0m\u{1b}[2m=\u{1b}[0m127.0.0.1:4001";
        assert_eq!(
            started_address(coloured),
            Some(([127, 0, 0, 1], 4000).into())
        );
        assert_eq!(
            started_metrics(coloured),
            Some(([127, 0, 0, 1], 4001).into())
        );
        let json = r#"{"fields":{"message":"api-gateway started","address":"127.0.0.1:4000","metrics":"127.0.0.1:4001"}}"#;
        assert_eq!(started_metrics(json), Some(([127, 0, 0, 1], 4001).into()));
    }

    #[test]
    fn a_database_url_names_the_new_database() {
        assert_eq!(
            database_url("postgres://postgres@127.0.0.1:5432/postgres", "smoke_1").ok(),
            Some("postgres://postgres@127.0.0.1:5432/smoke_1".to_owned())
        );
    }
}
