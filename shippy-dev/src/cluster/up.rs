//! Starting the cluster, as every command does: build, infrastructure, a
//! Consul ACL token per service, the databases, the SMTP server, the four
//! services and the api-gateway, each waited for.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use sqlx::Connection as _;
use tokio::process::Command;

use super::{Session, Store, env_var, probe, say};
use crate::infra::Infra;
use crate::repo;

/// The services, in the order they start (the api-gateway last), each with
/// a Consul token of its own.
pub(crate) use shippy_testkit::CONSUL_SERVICES as SERVICES;

/// How a command wants the cluster.
#[derive(Debug)]
pub(crate) struct Options {
    /// `debug` or `release`: which builds run.
    pub(crate) profile: &'static str,
    /// user-service's `BCRYPT_COST`.
    pub(crate) bcrypt_cost: String,
    /// user-service's `ADMIN_EMAILS`.
    pub(crate) admin_emails: String,
    /// Variables every process started gets.
    pub(crate) env: Vec<(String, String)>,
    /// Whether each service's cold start is timed by `serving-clock`
    /// (into `run/NAME.cold-start`: `SERVING_MS LISTENING_MS`).
    pub(crate) cold_start_clock: bool,
}

/// Where one of [`SERVICES`] listens, on 127.0.0.1.
#[derive(Debug)]
struct Listening {
    name: &'static str,
    port: u16,
    metrics: u16,
}

/// A running cluster: where everything is.
#[derive(Debug)]
pub(crate) struct Cluster {
    /// Where the binaries are (`target/<profile>`).
    pub(crate) bin: PathBuf,
    pub(crate) store: Store,
    /// Where each of [`SERVICES`] listens, in that order.
    services: Vec<Listening>,
    /// The SMTP server's port.
    pub(crate) smtp: u16,
    /// The Consul agent's `host:port`.
    pub(crate) consul: String,
    /// The PostgreSQL server (a URL naming its `postgres` database).
    pub(crate) database_url: String,
    /// consignment-service's database.
    pub(crate) consignments_url: String,
    /// The services' shared secret.
    pub(crate) service_token: String,
    /// Where the SMTP server keeps what it receives.
    pub(crate) maildir: PathBuf,
    /// The CLIs' `SHIPPY_CONFIG_DIR`.
    pub(crate) config_dir: PathBuf,
}

impl Cluster {
    /// `http://127.0.0.1:PORT`.
    pub(crate) fn url(port: u16) -> String {
        format!("http://127.0.0.1:{port}")
    }

    /// Where `name` (one of [`SERVICES`]) listens: its port and its metrics
    /// port (0 and 0 for another name).
    fn ports_of(&self, name: &str) -> (u16, u16) {
        self.services
            .iter()
            .find(|service| service.name == name)
            .map_or((0, 0), |service| (service.port, service.metrics))
    }

    /// `name`'s port (one of [`SERVICES`]).
    pub(crate) fn port(&self, name: &str) -> u16 {
        self.ports_of(name).0
    }

    /// `name`'s URL (one of [`SERVICES`]).
    pub(crate) fn service_url(&self, name: &str) -> String {
        Self::url(self.port(name))
    }

    /// The api-gateway's URL.
    pub(crate) fn gateway_url(&self) -> String {
        self.service_url("api-gateway")
    }

    /// Where `name`'s Prometheus metrics are.
    pub(crate) fn metrics_url(&self, name: &str) -> String {
        let port = self.ports_of(name).1;
        format!("http://127.0.0.1:{port}/metrics")
    }

    /// What the CLIs (and the load generator) are run with.
    pub(crate) fn cli_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("USER_SERVICE_URL", self.service_url("user-service")),
            (
                "CONSIGNMENT_SERVICE_URL",
                self.service_url("consignment-service"),
            ),
            ("VESSEL_SERVICE_URL", self.service_url("vessel-service")),
            ("SHIPPY_CONFIG_DIR", self.config_dir.display().to_string()),
        ]
    }
}

/// `$CARGO_TARGET_DIR` (made absolute), else the repository's `target`.
pub(crate) fn target_dir() -> PathBuf {
    env_var("CARGO_TARGET_DIR")
        .map(|dir| std::path::absolute(&dir).unwrap_or_else(|_| PathBuf::from(dir)))
        .unwrap_or_else(|| repo().join("target"))
}

/// A file only its owner may read, holding `text`.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Builds the binaries unless `SHIPPY_SKIP_BUILD` is set.
async fn build(profile: &str, bin: &Path) -> anyhow::Result<()> {
    say(&format!("building ({profile})"));
    if env_var("SHIPPY_SKIP_BUILD").is_some() {
        println!(
            "    SHIPPY_SKIP_BUILD is set: running the binaries in {} as they are",
            bin.display()
        );
        return Ok(());
    }
    let mut cargo = Command::from(crate::process::cargo());
    cargo.args(["build", "--quiet"]);
    if profile == "release" {
        cargo.arg("--release");
    }
    let status = cargo
        .args(["--locked", "--bins"])
        .current_dir(repo())
        .kill_on_drop(true)
        .status()
        .await
        .context("cannot run cargo build")?;
    if !status.success() {
        bail!("cargo build failed ({status})");
    }
    Ok(())
}

/// What the infrastructure says `name` is (or the environment, for a
/// server it reused).
fn infra_var(infra: &Infra, name: &str) -> Option<String> {
    infra
        .var(name)
        .filter(|value| !value.is_empty())
        .map(str::to_owned)
        .or_else(|| env_var(name))
}

/// Consul runs with ACLs on (default deny): each service gets a token that
/// may register only its own name and read the catalog
/// (scripts/consul-acl.sh), in `run/NAME.consul-token`.
async fn make_consul_tokens(
    run: &Path,
    consul_bin: &str,
    consul: &str,
    management_token: &str,
) -> anyhow::Result<Vec<String>> {
    let mut acl = Command::new(repo().join("scripts/consul-acl.sh"));
    let mut tokens = Vec::new();
    for name in SERVICES {
        let token = uuid::Uuid::new_v4().to_string();
        write_private(&run.join(format!("{name}.consul-token")), &token)?;
        let variable = format!("{}_CONSUL_TOKEN", name.to_uppercase().replace('-', "_"));
        acl.env(variable, &token);
        tokens.push(token);
    }
    let log_path = run.join("consul-acl.log");
    let log = std::fs::File::create(&log_path)?;
    let status = acl
        .args(SERVICES)
        .env("CONSUL", consul_bin)
        .env("CONSUL_HTTP_ADDR", consul)
        .env("CONSUL_HTTP_TOKEN", management_token)
        .stderr(log)
        .kill_on_drop(true)
        .status()
        .await
        .context("cannot run scripts/consul-acl.sh")?;
    if !status.success() {
        eprintln!("{}", std::fs::read_to_string(&log_path).unwrap_or_default());
        bail!("could not make the services' Consul tokens");
    }
    let management = run.join("consul-management-token");
    write_private(&management, &format!("{management_token}\n"))?;
    println!(
        "    a Consul ACL token per service (Consul's management token: {})",
        management.display()
    );
    Ok(tokens)
}

/// `url` naming database `name` instead.
fn with_database(url: &str, name: &str) -> anyhow::Result<String> {
    let mut url = url::Url::parse(url).context("TEST_DATABASE_URL is not a URL")?;
    url.set_path(&format!("/{name}"));
    Ok(url.into())
}

/// Creates the databases users, vessels and consignments on the PostgreSQL server.
async fn create_databases(admin: &str) -> anyhow::Result<()> {
    let mut connection = sqlx::PgConnection::connect(admin)
        .await
        .context("cannot connect to PostgreSQL (TEST_DATABASE_URL)")?;
    for (name, sql) in [
        ("users", "CREATE DATABASE users"),
        ("vessels", "CREATE DATABASE vessels"),
        ("consignments", "CREATE DATABASE consignments"),
    ] {
        sqlx::raw_sql(sql)
            .execute(&mut connection)
            .await
            .with_context(|| format!("cannot create the database {name}"))?;
    }
    Ok(())
}

/// Seconds since the Unix epoch, with microseconds (serving-clock's `--since`).
fn epoch_now() -> String {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:06}", since.as_secs(), since.subsec_micros())
}

/// Starts and waits for the whole cluster.
pub(crate) async fn up(
    session: &mut Session,
    store: Store,
    options: &Options,
) -> anyhow::Result<Cluster> {
    let bin = target_dir().join(options.profile);
    build(options.profile, &bin).await?;

    std::fs::create_dir_all(&session.run)
        .with_context(|| format!("cannot create {}", session.run.display()))?;
    let servers: &[&str] = match store {
        Store::MongoDb => {
            say(
                "starting PostgreSQL, NATS (JetStream), Consul and MongoDB (the DocumentDB stand-in) on loopback",
            );
            &["postgres", "nats", "consul", "mongodb"]
        }
        Store::Postgres => {
            say("starting PostgreSQL, NATS (JetStream) and Consul on loopback");
            &["postgres", "nats", "consul"]
        }
    };
    let dir = session.base.join("infra");
    std::fs::create_dir_all(&dir)?;
    let infra = tokio::task::spawn_blocking(move || Infra::up(&dir, servers))
        .await
        .context("the infrastructure's start was cut short")??;
    let infra = session.infra.insert(infra);
    let var = |name: &str| {
        infra_var(infra, name).with_context(|| format!("the infrastructure did not give {name}"))
    };
    let database_url = var("TEST_DATABASE_URL")?;
    let nats_url = var("TEST_NATS_URL")?;
    let consul = var("TEST_CONSUL_HTTP_ADDR")?;
    let management_token = var("TEST_CONSUL_MANAGEMENT_TOKEN")?;
    let consul_bin = infra_var(infra, "TEST_CONSUL_BIN").unwrap_or_else(|| "consul".into());
    let mongodb_url = infra_var(infra, "TEST_MONGODB_URL");

    let run = session.run.clone();
    let tokens = make_consul_tokens(&run, &consul_bin, &consul, &management_token).await?;
    create_databases(&database_url).await?;
    let mut vessels_url = with_database(&database_url, "vessels")?;
    let mut consignments_url = with_database(&database_url, "consignments")?;
    if store == Store::MongoDb {
        let server = mongodb_url
            .context("STORE=mongodb, but no MongoDB server could be had (set TEST_MONGODB_URL)")?;
        // One fresh MongoDB database per cluster: the stand-in outlives it.
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let name = format!("shippy_{}_{secs}", std::process::id());
        vessels_url = shippy_testkit::infra::mongodb_database_url(&server, &name)
            .context("TEST_MONGODB_URL is not a URL")?
            .expose()
            .to_owned();
        consignments_url.clone_from(&vessels_url);
    }

    let [
        user,
        vessel,
        consignment,
        email,
        spare_gateway,
        smtp,
        m1,
        m2,
        m3,
        m4,
        m5,
    ] = shippy_testkit::spare_ports::<11>();
    let gateway = match env_var("SHIPPY_GATEWAY_PORT") {
        Some(port) => port
            .parse()
            .with_context(|| format!("SHIPPY_GATEWAY_PORT is not a port: {port:?}"))?,
        None => spare_gateway,
    };
    let services: Vec<Listening> = SERVICES
        .into_iter()
        .zip([user, vessel, consignment, email, gateway])
        .zip([m1, m2, m3, m4, m5])
        .map(|((name, port), metrics)| Listening {
            name,
            port,
            metrics,
        })
        .collect();

    say("starting an SMTP server that keeps what it receives");
    let maildir = run.join("maildir");
    start_smtp(session, smtp, &maildir).await?;

    say(&format!(
        "starting the services (vessels and consignments in {})",
        store.name()
    ));
    // The services' shared secret: vessel-service's reservations need it, and
    // with it the api-gateway names each browser's address to the services.
    // (Two random UUIDs: 244 random bits, as hex.)
    let service_token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let starter = Starter {
        bin: &bin,
        run: &run,
        consul: &consul,
        options,
    };
    let users_url = with_database(&database_url, "users")?;
    let key_file = run.join("jwt-signing-key.pem").display().to_string();
    let smtp_url = format!("smtp://127.0.0.1:{smtp}");
    for (service, token) in services.iter().zip(&tokens) {
        let env: Vec<(&str, &str)> = match service.name {
            // user-service creates its signing key in the file, once.
            "user-service" => vec![
                ("DATABASE_URL", &users_url),
                ("NATS_URL", &nats_url),
                ("BCRYPT_COST", &options.bcrypt_cost),
                ("ADMIN_EMAILS", &options.admin_emails),
                ("JWT_SIGNING_KEY_FILE", &key_file),
                ("SERVICE_TOKEN", &service_token),
            ],
            "vessel-service" => vec![
                ("DATABASE_URL", &vessels_url),
                ("SERVICE_TOKEN", &service_token),
            ],
            // consignment-service finds vessel- and user-service through Consul.
            "consignment-service" => vec![
                ("DATABASE_URL", &consignments_url),
                ("SERVICE_TOKEN", &service_token),
            ],
            "email-service" => vec![("NATS_URL", &nats_url), ("SMTP_URL", &smtp_url)],
            // api-gateway finds the three services through Consul too.
            _ => vec![("SERVICE_TOKEN", &service_token)],
        };
        starter.start(&mut session.processes, service, token, &env)?;
    }
    for service in services.iter().take(4) {
        probe::wait_serving(&mut session.processes, service.name, service.port).await?;
    }
    probe::wait_ready(&mut session.processes, "api-gateway", gateway).await?;
    probe::wait_registered(&consul, &management_token, &SERVICES).await?;

    Ok(Cluster {
        bin,
        store,
        services,
        smtp,
        consul,
        database_url,
        consignments_url,
        service_token,
        maildir,
        config_dir: run.join("config"),
    })
}

/// An SMTP server (Debian's python3-aiosmtpd) keeping mails in `maildir`.
async fn start_smtp(session: &mut Session, port: u16, maildir: &Path) -> anyhow::Result<()> {
    let python = "/usr/bin/python3";
    let has_aiosmtpd = std::process::Command::new(python)
        .args(["-c", "import aiosmtpd"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !has_aiosmtpd {
        crate::provision::apt(&["python3-aiosmtpd"])?;
    }
    let mut smtp = Command::new(python);
    smtp.args(["-m", "aiosmtpd", "-n", "-l"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-c", "aiosmtpd.handlers.Mailbox"])
        .arg(maildir);
    session.processes.start("smtp", smtp)?;
    if !probe::wait_listening(port, Duration::from_secs(10)).await {
        eprintln!("{}", session.processes.log_tail("smtp", 5));
        bail!(
            "the SMTP server did not listen on 127.0.0.1:{port} (log: {})",
            session.processes.log_path("smtp").display()
        );
    }
    Ok(())
}

/// Starts the services alike.
#[derive(Debug)]
struct Starter<'a> {
    bin: &'a Path,
    run: &'a Path,
    consul: &'a str,
    options: &'a Options,
}

impl Starter<'_> {
    /// Starts `service` where it listens, with its Consul `token` and
    /// `env`; with the cold-start clock, `serving-clock` beside it.
    fn start(
        &self,
        processes: &mut super::processes::Processes,
        service: &Listening,
        token: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        let &Listening {
            name,
            port,
            metrics,
        } = service;
        let mut service = Command::new(self.bin.join(name));
        service
            .envs(self.options.env.iter().map(|(key, value)| (key, value)))
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("METRICS_ADDR", format!("127.0.0.1:{metrics}"))
            .env("CONSUL_HTTP_ADDR", self.consul)
            .env("CONSUL_HTTP_TOKEN", token)
            .envs(env.iter().copied());
        let since = epoch_now();
        processes.start(name, service)?;
        if !self.options.cold_start_clock {
            return Ok(());
        }
        // make bench: ms from spawn to first SERVING (the api-gateway's:
        // ready) and to listening, into NAME.cold-start.
        let probe = if name == "api-gateway" {
            "--readyz"
        } else {
            "--grpc"
        };
        let output = std::fs::File::create(self.run.join(format!("{name}.cold-start")))?;
        let errors = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.run.join("serving-clock.log"))?;
        let mut clock = Command::new(self.bin.join("serving-clock"));
        clock
            .args(["--since", &since, probe, &format!("127.0.0.1:{port}")])
            .stdout(output)
            .stderr(errors);
        processes.start_with_output(&clock_name(name), clock)?;
        Ok(())
    }
}

/// The name `name`'s serving-clock runs under.
pub(crate) fn clock_name(name: &str) -> String {
    format!("{name}.serving-clock")
}
