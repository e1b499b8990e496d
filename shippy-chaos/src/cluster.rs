//! The cluster under test, natively: the five binaries (user-, vessel-,
//! consignment-, email-service, api-gateway), a NATS JetStream server and an
//! SMTP sink of its own, fresh databases on the PostgreSQL (and MongoDB)
//! server the infrastructure runs, and a fault-injecting proxy between each
//! service and what it depends on. Each process is a [`Proc`]
//! (`cluster/process.rs`).

mod process;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, bail};
use shippy_service::settings::SecretUrl;
use shippy_testkit::{ConsulAgent, SmtpServer};

use self::process::Ready;
pub use self::process::{Proc, binary, signal, spare_address};
use crate::proxy::FaultProxy;

/// Where vessel- and consignment-service keep their data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// The PostgreSQL server.
    Postgres,
    /// The MongoDB server (the DocumentDB stand-in here).
    MongoDb,
}

impl Store {
    /// `postgres` or `mongodb`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::MongoDb => "mongodb",
        }
    }
}

impl std::str::FromStr for Store {
    type Err = anyhow::Error;
    fn from_str(text: &str) -> anyhow::Result<Self> {
        match text {
            "postgres" | "postgresql" | "" => Ok(Self::Postgres),
            "mongodb" | "mongo" => Ok(Self::MongoDb),
            other => bail!("STORE must be postgres or mongodb, not {other:?}"),
        }
    }
}

/// The service binaries, in the order they start.
pub const SERVICES: [&str; 5] = [
    "user-service",
    "vessel-service",
    "consignment-service",
    "email-service",
    "api-gateway",
];

/// The password every chaos user has.
pub const PASSWORD: &str = "chaos horse battery staple";
/// The cluster's administrator (creates the vessels).
pub const ADMIN: &str = "admin@chaos.example";

/// The run's timing settings.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// vessel-service's `RESERVATION_TTL`.
    pub reservation_ttl: Duration,
    /// vessel-service's `RESERVATION_SWEEP_INTERVAL`.
    pub sweep_interval: Duration,
    /// consignment-service's `RECOVERY_INTERVAL`.
    pub recovery_interval: Duration,
    /// consignment-service's `RECOVERY_AFTER`.
    pub recovery_after: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            reservation_ttl: Duration::from_secs(8),
            sweep_interval: Duration::from_secs(1),
            recovery_interval: Duration::from_secs(1),
            recovery_after: Duration::from_secs(3),
        }
    }
}

/// A vessel the run starts with.
#[derive(Debug, Clone)]
pub struct VesselSpec {
    /// Containers it carries.
    pub capacity: i32,
    /// Weight it carries.
    pub max_weight: i32,
}

/// The fleet: small, so the fleet fills and some creates cannot fit.
pub const FLEET: [(i32, i32); 4] = [(60, 80_000), (100, 130_000), (150, 200_000), (200, 260_000)];

/// The whole cluster.
#[derive(Debug)]
pub struct Cluster {
    /// The store of vessels and consignments.
    pub store: Store,
    /// user-service's database (PostgreSQL), directly.
    pub users_db: SecretUrl,
    /// vessel-service's database, directly.
    pub vessels_db: SecretUrl,
    /// consignment-service's database, directly.
    pub consignments_db: SecretUrl,
    /// The proxies: `user-db`, `vessel-db`, `consignment-db`, `user-nats`,
    /// `email-nats`, `consignment-vessel`.
    pub proxies: Vec<FaultProxy>,
    /// The NATS JetStream server.
    pub nats: Proc,
    /// The SMTP sink.
    pub smtp: SmtpServer,
    /// The Consul agent the services register with and find each other
    /// through (ACLs on, a token each), when the run has one.
    pub consul: Option<ConsulAgent>,
    /// The services, in [`SERVICES`] order.
    pub services: Vec<Proc>,
    /// The run's timing settings.
    pub timing: Timing,
    /// Where logs and state go.
    pub dir: PathBuf,
}

fn pg_url(url: &SecretUrl) -> String {
    // The database notices a dead client even while its statement waits,
    // so a killed process leaves no statement holding locks.
    format!(
        "{}?options=-c%20client_connection_check_interval%3D100",
        url.expose()
    )
}

fn through(url: &SecretUrl, proxy: &FaultProxy, store: Store) -> anyhow::Result<String> {
    let proxied = shippy_testkit::with_socket_addr(url, proxy.address);
    Ok(match store {
        Store::Postgres => pg_url(&proxied),
        Store::MongoDb => {
            let mut parsed = url::Url::parse(proxied.expose())?;
            parsed
                .query_pairs_mut()
                .append_pair("directConnection", "true");
            parsed.to_string()
        }
    })
}

async fn fresh(store: Store, prefix: &str) -> SecretUrl {
    match store {
        Store::Postgres => shippy_testkit::fresh_postgres_database(prefix).await,
        Store::MongoDb => shippy_testkit::fresh_mongodb_database(prefix),
    }
}

impl Cluster {
    /// Starts everything under `dir` (logs in `dir/logs`) and waits until
    /// every service serves.
    pub async fn start(
        store: Store,
        timing: Timing,
        dir: &Path,
        with_consul: bool,
    ) -> anyhow::Result<Self> {
        let log_dir = dir.join("logs");
        std::fs::create_dir_all(&log_dir)?;
        let nats_address = spare_address()?;
        let mut nats = Proc::new(
            "nats",
            PathBuf::from("nats-server"),
            vec![
                "-a".into(),
                "127.0.0.1".into(),
                "-p".into(),
                nats_address.port().to_string(),
                "-js".into(),
                "-sd".into(),
                dir.join("nats").display().to_string(),
            ],
            Vec::new(),
            &log_dir,
            nats_address,
            Ready::Tcp,
        );
        nats.spawn()?;
        if nats.wait_ready(Duration::from_secs(20)).await.is_none() {
            bail!("nats-server did not start (is it installed? cargo dev infra up installs it)");
        }
        let smtp = SmtpServer::start().await;
        let consul = if with_consul {
            Some(ConsulAgent::start_with_acls().await)
        } else {
            None
        };

        let users_db = shippy_testkit::fresh_postgres_database("chaos_users").await;
        let vessels_db = fresh(store, "chaos_vessels").await;
        let consignments_db = fresh(store, "chaos_consignments").await;
        let pg = shippy_testkit::socket_addr_of(&users_db);
        let documents = shippy_testkit::socket_addr_of(&vessels_db);

        let mut addresses = Vec::new();
        for _ in SERVICES {
            addresses.push(spare_address()?);
        }
        let [user, vessel, consignment, email, gateway] = addresses[..] else {
            bail!("five addresses");
        };
        let proxies = vec![
            FaultProxy::start("user-db", pg).await?,
            FaultProxy::start("vessel-db", documents).await?,
            FaultProxy::start("consignment-db", documents).await?,
            FaultProxy::start("user-nats", nats_address).await?,
            FaultProxy::start("email-nats", nats_address).await?,
            FaultProxy::start("consignment-vessel", vessel).await?,
        ];
        let proxy = |name: &str| {
            proxies
                .iter()
                .find(|proxy| proxy.name == name)
                .map(|proxy| proxy.address)
                .context("proxy")
        };
        let key_file = dir.join("jwt-signing-key.pem");
        let secs = |duration: Duration| format!("{}ms", duration.as_millis());
        // Every service's settings, then its own.
        let with_common = |listen: SocketAddr, own: Vec<(String, String)>| {
            let mut env: Vec<(String, String)> = vec![
                ("LISTEN_ADDR".into(), listen.to_string()),
                ("METRICS_ADDR".into(), "127.0.0.1:0".into()),
                ("SERVICE_TOKEN".into(), shippy_testkit::SERVICE_TOKEN.into()),
                (
                    "RUST_LOG".into(),
                    std::env::var("CHAOS_LOG").unwrap_or_else(|_| "warn".into()),
                ),
                ("LOG_FORMAT".into(), "json".into()),
                ("USER_SERVICE_URL".into(), format!("http://{user}")),
            ];
            env.extend(own);
            env
        };
        let user_db_url = shippy_testkit::with_socket_addr(&users_db, proxy("user-db")?);
        let vessels_url = through(&vessels_db, &proxies[1], store)?;
        let consignments_url = through(&consignments_db, &proxies[2], store)?;
        let mut envs: Vec<Vec<(String, String)>> = vec![
            with_common(
                user,
                vec![
                    ("DATABASE_URL".into(), pg_url(&user_db_url)),
                    ("NATS_URL".into(), format!("nats://{}", proxy("user-nats")?)),
                    (
                        "JWT_SIGNING_KEY_FILE".into(),
                        key_file.display().to_string(),
                    ),
                    ("BCRYPT_COST".into(), "4".into()),
                    ("ADMIN_EMAILS".into(), ADMIN.into()),
                    ("LOGIN_MAX_FAILURES".into(), "1000000".into()),
                    ("LOGIN_MAX_FAILURES_PER_ADDRESS".into(), "1000000".into()),
                ],
            ),
            with_common(
                vessel,
                vec![
                    ("RESERVATION_TTL".into(), secs(timing.reservation_ttl)),
                    (
                        "RESERVATION_SWEEP_INTERVAL".into(),
                        secs(timing.sweep_interval),
                    ),
                    ("ACCOUNT_MAX_CONTAINERS".into(), "100000".into()),
                    ("ACCOUNT_MAX_WEIGHT".into(), "100000000".into()),
                    ("DATABASE_URL".into(), vessels_url),
                ],
            ),
            with_common(
                consignment,
                vec![
                    ("DATABASE_URL".into(), consignments_url),
                    (
                        "VESSEL_SERVICE_URL".into(),
                        format!("http://{}", proxy("consignment-vessel")?),
                    ),
                    ("RECOVERY_INTERVAL".into(), secs(timing.recovery_interval)),
                    ("RECOVERY_AFTER".into(), secs(timing.recovery_after)),
                ],
            ),
            with_common(
                email,
                vec![
                    (
                        "NATS_URL".into(),
                        format!("nats://{}", proxy("email-nats")?),
                    ),
                    ("SMTP_URL".into(), smtp.url()),
                ],
            ),
            with_common(
                gateway,
                vec![
                    ("VESSEL_SERVICE_URL".into(), format!("http://{vessel}")),
                    (
                        "CONSIGNMENT_SERVICE_URL".into(),
                        format!("http://{consignment}"),
                    ),
                    ("RATE_LIMIT_PER_SECOND".into(), "100000".into()),
                    ("RATE_LIMIT_BURST".into(), "100000".into()),
                    ("LOGIN_RATE_LIMIT_PER_SECOND".into(), "100000".into()),
                    ("LOGIN_RATE_LIMIT_BURST".into(), "100000".into()),
                ],
            ),
        ];

        if let Some(consul) = &consul {
            // Registered in Consul and found through it; vessel-service is
            // advertised at its proxy, so consignment-service still reaches
            // it through the link the nemesis cuts.
            for (name, env) in SERVICES.into_iter().zip(envs.iter_mut()) {
                env.push(("CONSUL_HTTP_ADDR".into(), consul.http_addr()));
                if let Some(token) = consul.token(name) {
                    env.push(("CONSUL_HTTP_TOKEN".into(), token.expose().to_owned()));
                }
                if name == "vessel-service" {
                    env.push((
                        "ADVERTISE_ADDR".into(),
                        proxy("consignment-vessel")?.to_string(),
                    ));
                }
            }
        }
        let mut services = Vec::new();
        for ((name, env), address) in SERVICES.into_iter().zip(envs).zip(addresses) {
            let ready = if name == "api-gateway" {
                Ready::Http
            } else {
                Ready::Grpc
            };
            let mut process = Proc::new(
                name,
                binary(name)?,
                Vec::new(),
                env,
                &log_dir,
                address,
                ready,
            );
            process.spawn()?;
            if process.wait_ready(Duration::from_secs(60)).await.is_none() {
                bail!(
                    "{name} did not become ready within 60 s (see {})",
                    log_dir.display()
                );
            }
            services.push(process);
        }
        Ok(Self {
            store,
            users_db,
            vessels_db,
            consignments_db,
            proxies,
            nats,
            smtp,
            consul,
            services,
            timing,
            dir: dir.to_owned(),
        })
    }

    /// The service named `name`.
    pub fn service(&self, name: &str) -> Option<&Proc> {
        self.services.iter().find(|service| service.name == name)
    }

    /// The service named `name`, to kill or restart.
    pub fn service_mut(&mut self, name: &str) -> Option<&mut Proc> {
        self.services
            .iter_mut()
            .find(|service| service.name == name)
    }

    /// The proxy named `name`.
    pub fn proxy(&self, name: &str) -> Option<&FaultProxy> {
        self.proxies.iter().find(|proxy| proxy.name == name)
    }

    /// Where a service listens.
    pub fn address(&self, name: &str) -> SocketAddr {
        self.service(name)
            .map(|service| service.address)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9)))
    }

    /// The ids of the PostgreSQL server processes serving our databases'
    /// connections (paused to stand in for a stalled database without
    /// touching anyone else's).
    pub async fn postgres_backends(&self) -> Vec<u32> {
        use sqlx::Connection as _;
        let mut names = vec![database_name(&self.users_db)];
        if self.store == Store::Postgres {
            names.push(database_name(&self.vessels_db));
            names.push(database_name(&self.consignments_db));
        }
        let admin = shippy_testkit::postgres_admin_url();
        let Ok(mut connection) = sqlx::PgConnection::connect(admin.expose()).await else {
            return Vec::new();
        };
        let pids: Vec<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE datname = ANY($1) \
             AND application_name <> $2 AND pid <> pg_backend_pid()",
        )
        .bind(names)
        .bind(crate::view::APPLICATION_NAME)
        .fetch_all(&mut connection)
        .await
        .unwrap_or_default();
        pids.into_iter()
            .filter_map(|pid| u32::try_from(pid).ok())
            .collect()
    }

    /// Every log file of every service.
    pub fn logs(&self) -> Vec<PathBuf> {
        self.services
            .iter()
            .chain(std::iter::once(&self.nats))
            .flat_map(Proc::logs)
            .collect()
    }
}

/// The database a URL names.
pub fn database_name(url: &SecretUrl) -> String {
    url::Url::parse(url.expose())
        .map(|url| url.path().trim_start_matches('/').to_owned())
        .unwrap_or_default()
}
