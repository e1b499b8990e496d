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
use shippy_testkit::STARTED_TARGET;
use shippy_testkit::service::{started_address, started_metrics};
use sqlx::Connection as _;

use super::Checks;
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

    /// Smoke test `test`'s fresh databases for a [`Cluster`] at
    /// `admin_url`'s server (`TEST_users_PID`, `TEST_vessels_PID`,
    /// `TEST_consignments_PID`), and their URLs in that order.
    pub async fn for_cluster(
        test: &str,
        admin_url: &str,
    ) -> anyhow::Result<(Databases, [String; 3])> {
        let pid = std::process::id();
        let names = ["users", "vessels", "consignments"].map(|db| format!("{test}_{db}_{pid}"));
        let [users, vessels, consignments] =
            names.each_ref().map(|name| database_url(admin_url, name));
        let urls = [users?, vessels?, consignments?];
        Ok((Databases::create(admin_url, &names).await?, urls))
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

impl ClusterEnv {
    /// user-service's settings in smoke test `test`: NATS at `nats_url`,
    /// cheap password hashes, `admin` an admin, its events on a stream and
    /// subject of this run's own.
    pub fn user_settings(test: &str, nats_url: String, admin: &str) -> Vec<(&'static str, String)> {
        let pid = std::process::id();
        vec![
            ("NATS_URL", nats_url),
            ("BCRYPT_COST", "4".into()),
            ("ADMIN_EMAILS", admin.to_owned()),
            (
                "USER_EVENTS_STREAM",
                format!("{}_{pid}", test.to_uppercase()),
            ),
            ("USER_CREATED_SUBJECT", format!("{test}.{pid}.user.created")),
        ]
    }
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
        let rust_log = env.rust_log;
        // Each: its database, whether it gets the service token, its settings.
        let programs = [
            ("user-service", Some(users), false, env.user),
            ("vessel-service", Some(vessels), true, env.vessel),
            (
                "consignment-service",
                Some(consignments),
                true,
                env.consignment,
            ),
            ("api-gateway", None, false, env.gateway),
        ];
        // `NAME_URL` of each started so far, for those after it.
        let mut started: Vec<(&'static str, String)> = Vec::new();
        for (name, database, with_token, extra) in programs {
            let database = database.map(|url| ("DATABASE_URL", url));
            let shared = with_token.then(|| ("SERVICE_TOKEN", token.clone()));
            let settings: Vec<_> = database
                .into_iter()
                .chain(started.iter().cloned())
                .chain(shared)
                .chain(extra)
                .collect();
            let service = Service::start(
                name,
                &bin.join(name),
                &settings,
                rust_log,
                &run.join(format!("{name}.log")),
            )
            .await?;
            started.push((url_variable(name), format!("http://{}", service.address)));
            cluster.services.push(service);
        }
        Ok(cluster)
    }

    /// [`Cluster::start`], then [`Cluster::ready`] within `tries`: the
    /// cluster, ready; else `None` once smoke test `test` printed a `not ok`
    /// line saying which of the two failed (and, if it started, the end of
    /// each log on stderr).
    pub async fn start_ready(
        checks: &mut Checks,
        test: &str,
        bin: &Path,
        run: &Path,
        database_urls: [String; 3],
        env: ClusterEnv,
        tries: u32,
    ) -> Option<Cluster> {
        let cluster = match Cluster::start(bin, run, database_urls, env).await {
            Ok(cluster) => cluster,
            Err(error) => {
                checks.not_ok(&format!("{test}: the services started: {error:#}"));
                return None;
            }
        };
        let ready = cluster.ready(tries).await;
        if !ready.is_success() {
            checks.not_ok(&format!(
                "{test}: the gateway and services became ready: {}",
                ready.body
            ));
            eprintln!("{}", cluster.log_tails(5));
            return None;
        }
        Some(cluster)
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

/// The variable that tells the others where `name` is: `USER_SERVICE_URL`, …
fn url_variable(name: &str) -> &'static str {
    match name {
        "user-service" => "USER_SERVICE_URL",
        "vessel-service" => "VESSEL_SERVICE_URL",
        "consignment-service" => "CONSIGNMENT_SERVICE_URL",
        _ => "API_GATEWAY_URL",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_url_names_the_new_database() {
        assert_eq!(
            database_url("postgres://postgres@127.0.0.1:5432/postgres", "smoke_1").ok(),
            Some("postgres://postgres@127.0.0.1:5432/smoke_1".to_owned())
        );
    }
}
