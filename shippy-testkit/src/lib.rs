//! What shippy-rs tests share.
//!
//! Tests talk to real infrastructure started on loopback by
//! `scripts/infra.sh up` (which `make test` runs): its URLs arrive in
//! `TEST_DATABASE_URL`, `TEST_NATS_URL`, `TEST_CONSUL_HTTP_ADDR` and
//! `TEST_MONGODB_URL`. Every test gets its own world from here:
//! [`fresh_postgres_database`] and [`fresh_mongodb_database`] name a
//! database no other test uses, so tests run in parallel and in any order.
//! Logs stay quiet unless `TEST_LOG=1`.
#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: a panic is a test failure.

pub mod calls;

use shippy_service::settings::SecretUrl;
use sqlx::{Connection, PgConnection};

/// Installs a log subscriber when `TEST_LOG` is set; otherwise logs are dropped.
pub fn init_test_logging() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info,sqlx=warn".to_owned()),
            )
            .with_test_writer()
            .try_init();
    }
}

/// The secret the services share in tests (`SERVICE_TOKEN`): vessel-service
/// takes reservations only with it.
pub const SERVICE_TOKEN: &str = "test-service-token-0123456789abcdef-0123456789abcdef";

/// How long vessel-service holds an unconfirmed reservation in tests: short,
/// so a test can see a dead saga's room come back, and long enough that a
/// create on a busy machine confirms in time.
pub const RESERVATION_TTL: std::time::Duration = std::time::Duration::from_secs(5);

/// The value of an infrastructure variable `scripts/infra.sh` exports.
///
/// Panics with what to do when it is missing, so a test run without the
/// infrastructure says why instead of failing somewhere deep.
pub fn infra_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run the tests with `make test`, or start the \
             infrastructure with `eval \"$(scripts/infra.sh up)\"` first"
        )
    })
}

/// The PostgreSQL server the tests use (a URL naming its `postgres` database).
pub fn postgres_admin_url() -> SecretUrl {
    infra_var("TEST_DATABASE_URL")
        .parse()
        .expect("TEST_DATABASE_URL is a valid URL")
}

/// Creates a database with a fresh name on the test PostgreSQL server and
/// returns its URL. Nothing else uses it; the throwaway server is deleted
/// with everything in it when the infrastructure stops.
pub async fn fresh_postgres_database(prefix: &str) -> SecretUrl {
    let admin = postgres_admin_url();
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    let mut connection = PgConnection::connect(admin.expose())
        .await
        .expect("connect to the test PostgreSQL server");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
        .execute(&mut connection)
        .await
        .expect("create a test database");
    admin.with_path(&format!("/{name}"))
}

/// The MongoDB server the tests use: `TEST_MONGODB_URL`, which
/// `scripts/infra.sh up mongodb` exports (here, the DocumentDB stand-in from
/// `shared/tools/documentdb`; anywhere else, any MongoDB).
///
/// MongoDB tests are marked ignored so a plain `cargo test` without a server
/// leaves them out visibly; `make test` includes them whenever the server
/// runs. A MongoDB test that *is* included without a server panics here,
/// saying what to set: it never passes having tested nothing.
pub fn mongodb_admin_url() -> SecretUrl {
    let url = std::env::var("TEST_MONGODB_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| {
            panic!(
                "TEST_MONGODB_URL is not set, so this MongoDB test cannot run: run \
                 `make test`, or `eval \"$(scripts/infra.sh up mongodb)\"` first, or set \
                 TEST_MONGODB_URL=mongodb://user:password@host:port/ to a MongoDB server"
            )
        });
    url.parse().expect("TEST_MONGODB_URL is a valid URL")
}

/// The URL of a database with a fresh name on the test MongoDB server
/// (MongoDB creates it on first write). The credentials keep authenticating
/// where the server's URL said: its path names the authentication database
/// (`admin` when it names none), so `authSource` is pinned to that before
/// the path changes.
pub fn fresh_mongodb_database(prefix: &str) -> SecretUrl {
    let admin = mongodb_admin_url();
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    let mut url = url::Url::parse(admin.expose()).expect("TEST_MONGODB_URL is a valid URL");
    let has_auth_source = url.query_pairs().any(|(key, _)| key == "authSource");
    if !url.username().is_empty() && !has_auth_source {
        let auth_database = match url.path().trim_start_matches('/') {
            "" => "admin".to_owned(),
            named => named.to_owned(),
        };
        url.query_pairs_mut()
            .append_pair("authSource", &auth_database);
    }
    url.set_path(&format!("/{name}"));
    url.as_str().parse().expect("still a valid URL")
}

/// Which database a store-backed service under test keeps its data in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// The test PostgreSQL server.
    Postgres,
    /// The test MongoDB server.
    MongoDb,
}

impl StoreKind {
    /// The URL of a fresh database of this kind, named `prefix_<uuid>`.
    pub async fn fresh_database(self, prefix: &str) -> SecretUrl {
        match self {
            Self::Postgres => fresh_postgres_database(prefix).await,
            Self::MongoDb => fresh_mongodb_database(prefix),
        }
    }
}

/// A TCP proxy on loopback that forwards to `upstream` once started: stands
/// in for a dependency that comes up late or goes away, while the real
/// server behind it does the work.
#[derive(Debug)]
pub struct LateProxy {
    address: std::net::SocketAddr,
    upstream: std::net::SocketAddr,
    /// Bound but not listening: the port is ours and connections to it are
    /// refused, as to a server that is not up yet.
    socket: Option<tokio::net::TcpSocket>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl LateProxy {
    /// Reserves a loopback port to forward to `upstream`, without listening
    /// yet (the port stays bound, so nothing else can take it meanwhile).
    pub fn reserve(upstream: std::net::SocketAddr) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
        socket
            .bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("bind a loopback port");
        let address = socket.local_addr().expect("local address");
        Self {
            address,
            upstream,
            socket: Some(socket),
            task: None,
        }
    }

    /// Where clients connect.
    pub fn address(&self) -> std::net::SocketAddr {
        self.address
    }

    /// Starts listening and forwarding.
    pub async fn start(&mut self) {
        let listener = match self.socket.take() {
            Some(socket) => socket.listen(1024).expect("listen on the reserved port"),
            None => tokio::net::TcpListener::bind(self.address)
                .await
                .expect("bind the proxy port again"),
        };
        let upstream = self.upstream;
        self.task = Some(tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        }));
    }
}

impl Drop for LateProxy {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The loopback address and port a URL such as
/// `postgres://user@127.0.0.1:5432/db` points at.
pub fn socket_addr_of(url: &SecretUrl) -> std::net::SocketAddr {
    let url = url::Url::parse(url.expose()).expect("valid URL");
    let host = url.host_str().expect("URL has a host");
    let port = url.port().expect("URL has a port");
    format!("{host}:{port}")
        .parse()
        .expect("host is an IP address")
}

/// The same URL pointing at `address` instead.
pub fn with_socket_addr(url: &SecretUrl, address: std::net::SocketAddr) -> SecretUrl {
    let mut url = url::Url::parse(url.expose()).expect("valid URL");
    url.set_ip_host(address.ip()).expect("URL can have a host");
    url.set_port(Some(address.port()))
        .expect("URL can have a port");
    url.as_str().parse().expect("still a valid URL")
}

/// What `grpc.health.v1.Health/Check` answers for `service` ("" = the whole server).
pub async fn health_status(
    channel: tonic::transport::Channel,
    service: &str,
) -> tonic_health::pb::health_check_response::ServingStatus {
    try_health_status(channel, service)
        .await
        .expect("health check")
}

async fn try_health_status(
    channel: tonic::transport::Channel,
    service: &str,
) -> Result<tonic_health::pb::health_check_response::ServingStatus, tonic::Status> {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await?
        .into_inner();
    Ok(ServingStatus::try_from(response.status).expect("a known serving status"))
}

/// Waits (up to 30 s) until the server's overall health is `wanted`.
pub async fn wait_for_health(
    channel: &tonic::transport::Channel,
    wanted: tonic_health::pb::health_check_response::ServingStatus,
) {
    for _ in 0..300 {
        // Not listening yet counts as not there yet.
        if try_health_status(channel.clone(), "").await.ok() == Some(wanted) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("health never became {wanted:?}");
}

/// A nats-server of a test's own (JetStream on, loopback, spare port),
/// for tests that stop and restart the broker. Killed when dropped.
#[derive(Debug)]
pub struct NatsServer {
    port: u16,
    store: std::path::PathBuf,
    process: Option<std::process::Child>,
}

impl NatsServer {
    /// Starts one and waits until it accepts connections.
    pub async fn start() -> Self {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = probe.local_addr().expect("local address").port();
        drop(probe);
        let store = std::env::temp_dir().join(format!("shippy-nats-{}", uuid::Uuid::new_v4()));
        let mut server = Self {
            port,
            store,
            process: None,
        };
        server.restart().await;
        server
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops the server (its JetStream data stays for a restart).
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }

    /// Starts it again on the same port with the same data.
    pub async fn restart(&mut self) {
        self.stop();
        let process = std::process::Command::new("nats-server")
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.store)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start nats-server (scripts/infra.sh installs it)");
        self.process = Some(process);
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("nats-server did not start on port {}", self.port);
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// A real SMTP server of a test's own (Debian's `python3-aiosmtpd`, which
/// `scripts/infra.sh up` installs), storing what it receives in a maildir.
/// Killed when dropped.
#[derive(Debug)]
pub struct SmtpServer {
    port: u16,
    maildir: std::path::PathBuf,
    process: Option<std::process::Child>,
}

impl SmtpServer {
    /// A server on a spare loopback port, not started yet.
    pub fn reserve() -> Self {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = probe.local_addr().expect("local address").port();
        drop(probe);
        Self {
            port,
            maildir: std::env::temp_dir().join(format!("shippy-mail-{}", uuid::Uuid::new_v4())),
            process: None,
        }
    }

    /// A running server.
    pub async fn start() -> Self {
        let mut server = Self::reserve();
        server.restart().await;
        server
    }

    /// `smtp://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Starts (or restarts) it on its port; earlier mails stay.
    pub async fn restart(&mut self) {
        self.stop();
        let process = std::process::Command::new("/usr/bin/python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{}", self.port))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&self.maildir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start aiosmtpd (scripts/infra.sh installs python3-aiosmtpd)");
        self.process = Some(process);
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("aiosmtpd did not start on port {}", self.port);
    }

    /// Stops it.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }

    /// Every mail received so far, raw.
    pub fn mails(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.maildir.join("new")) else {
            return Vec::new();
        };
        let mut mails: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
            .collect();
        mails.sort();
        mails
    }

    /// Waits up to `wait` until at least `count` mails arrived; returns them all.
    pub async fn wait_for_mails(&self, count: usize, wait: std::time::Duration) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let mails = self.mails();
            if mails.len() >= count || tokio::time::Instant::now() > deadline {
                return mails;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.maildir);
    }
}

/// The services that get a Consul ACL token each (`scripts/consul-acl.sh`).
pub const CONSUL_SERVICES: [&str; 5] = [
    "user-service",
    "vessel-service",
    "consignment-service",
    "email-service",
    "api-gateway",
];

/// A Consul dev agent of a test's own, on spare loopback ports (the binary
/// `scripts/infra.sh` installed, in `TEST_CONSUL_BIN`). Killed when dropped.
///
/// [`ConsulAgent::start_with_acls`] runs it as `make dev` and compose do:
/// ACLs on, default deny, and a token per service made by
/// `scripts/consul-acl.sh` ([`ConsulAgent::token`]).
#[derive(Debug)]
pub struct ConsulAgent {
    ports: [u16; 5],
    process: Option<std::process::Child>,
    acl: Option<ConsulAcl>,
}

/// The tokens of an agent with ACLs: fresh UUIDs, the same across restarts.
#[derive(Debug)]
struct ConsulAcl {
    management: shippy_service::settings::Secret,
    services: Vec<(&'static str, shippy_service::settings::Secret)>,
}

impl ConsulAcl {
    fn new() -> Self {
        let uuid = || {
            uuid::Uuid::new_v4()
                .hyphenated()
                .to_string()
                .parse()
                .expect("a secret")
        };
        Self {
            management: uuid(),
            services: CONSUL_SERVICES.map(|name| (name, uuid())).into(),
        }
    }

    /// The agent's ACL configuration (Consul 1.8 names the management token `master`).
    fn hcl(&self) -> String {
        let management = self.management.expose();
        format!(
            "acl {{ enabled = true, default_policy = \"deny\", enable_token_persistence = true, \
             tokens {{ master = \"{management}\", agent = \"{management}\" }} }}"
        )
    }

    /// Runs `scripts/consul-acl.sh` against the agent at `http_addr`.
    async fn create_tokens(&self, http_addr: String) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/consul-acl.sh");
        let mut command = std::process::Command::new("sh");
        command
            .arg(script)
            .args(CONSUL_SERVICES)
            .env("CONSUL", infra_var("TEST_CONSUL_BIN"))
            .env("CONSUL_HTTP_ADDR", http_addr)
            .env("CONSUL_HTTP_TOKEN", self.management.expose());
        for (name, secret) in &self.services {
            let variable = format!("{}_CONSUL_TOKEN", name.to_uppercase().replace('-', "_"));
            command.env(variable, secret.expose());
        }
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .expect("wait task")
            .expect("run scripts/consul-acl.sh");
        assert!(
            output.status.success(),
            "scripts/consul-acl.sh failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl ConsulAgent {
    /// Starts one and waits until it has elected itself leader.
    pub async fn start() -> Self {
        let mut agent = Self::reserve();
        agent.restart().await;
        agent
    }

    /// Starts one with ACLs on (default deny) and a token per service in
    /// [`CONSUL_SERVICES`], as `make dev` and compose run it.
    pub async fn start_with_acls() -> Self {
        let mut agent = Self::reserve();
        agent.acl = Some(ConsulAcl::new());
        agent.restart().await;
        agent
    }

    /// An agent on spare ports, not started yet.
    pub fn reserve() -> Self {
        let mut ports = [0u16; 5];
        let probes: Vec<std::net::TcpListener> = (0..5)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port"))
            .collect();
        for (port, probe) in ports.iter_mut().zip(&probes) {
            *port = probe.local_addr().expect("local address").port();
        }
        drop(probes);
        Self {
            ports,
            process: None,
            acl: None,
        }
    }

    /// `127.0.0.1:PORT`, as `CONSUL_HTTP_ADDR` takes it.
    pub fn http_addr(&self) -> String {
        format!("127.0.0.1:{}", self.ports[0])
    }

    /// The token `service` (one of [`CONSUL_SERVICES`]) gets as
    /// `CONSUL_HTTP_TOKEN`; `None` for an agent without ACLs.
    pub fn token(&self, service: &str) -> Option<shippy_service::settings::Secret> {
        let acl = self.acl.as_ref()?;
        let (_, secret) = acl
            .services
            .iter()
            .find(|(name, _)| *name == service)
            .unwrap_or_else(|| panic!("{service} is not one of {CONSUL_SERVICES:?}"));
        Some(secret.clone())
    }

    /// The management token; `None` for an agent without ACLs.
    pub fn management_token(&self) -> Option<shippy_service::settings::Secret> {
        self.acl.as_ref().map(|acl| acl.management.clone())
    }

    /// Stops the agent (a dev agent forgets everything).
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }

    /// Its process id while it runs (to stop and continue it with signals).
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(std::process::Child::id)
    }

    /// Starts it again on the same ports (with ACLs: with the same tokens).
    pub async fn restart(&mut self) {
        self.stop();
        let [http, dns, serf_lan, serf_wan, server] = self.ports.map(|port| port.to_string());
        let mut command = std::process::Command::new(infra_var("TEST_CONSUL_BIN"));
        command
            .args([
                "agent",
                "-dev",
                "-bind",
                "127.0.0.1",
                "-client",
                "127.0.0.1",
            ])
            .args(["-http-port", &http, "-dns-port", &dns, "-grpc-port", "-1"])
            .args([
                "-serf-lan-port",
                &serf_lan,
                "-serf-wan-port",
                &serf_wan,
                "-server-port",
                &server,
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if let Some(acl) = &self.acl {
            command.args(["-hcl", &acl.hcl()]);
        }
        self.process = Some(command.spawn().expect("start consul"));
        let leader = format!("http://127.0.0.1:{http}/v1/status/leader");
        let mut elected = false;
        for _ in 0..300 {
            if let Ok(body) = http_get(&leader).await
                && body.trim().trim_matches('"').len() > 1
            {
                elected = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(elected, "consul elected no leader on port {http}");
        if let Some(acl) = &self.acl {
            acl.create_tokens(self.http_addr()).await;
        }
    }
}

impl Drop for ConsulAgent {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A plain HTTP/1.0 GET on loopback, for test probes.
pub async fn http_get(url: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.trim_start_matches("http://");
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut stream = tokio::net::TcpStream::connect(authority).await?;
    stream
        .write_all(format!("GET /{path} HTTP/1.0\r\nHost: {authority}\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default())
}

/// An OTLP trace receiver in the test process (the OpenTelemetry collector's
/// gRPC trace service), keeping every span exported to it.
#[derive(Debug, Clone)]
pub struct OtlpReceiver {
    endpoint: String,
    spans: std::sync::Arc<std::sync::Mutex<Vec<ReceivedSpan>>>,
}

/// A span as an exporter sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    /// The exporting process's `service.name`.
    pub service: String,
    /// The span's name.
    pub name: String,
    /// 1 internal, 2 server, 3 client, 4 producer, 5 consumer.
    pub kind: i32,
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// 16 hex digits; empty for a root span.
    pub parent_span_id: String,
    /// String and integer attributes, as text.
    pub attributes: std::collections::HashMap<String, String>,
}

#[derive(Clone)]
struct Collector(std::sync::Arc<std::sync::Mutex<Vec<ReceivedSpan>>>);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn value_text(value: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    match value.and_then(|value| value.value.as_ref()) {
        Some(Value::StringValue(text)) => text.clone(),
        Some(Value::IntValue(number)) => number.to_string(),
        Some(Value::BoolValue(flag)) => flag.to_string(),
        Some(Value::DoubleValue(number)) => number.to_string(),
        _ => String::new(),
    }
}

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService
    for Collector
{
    async fn export(
        &self,
        request: tonic::Request<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
        >,
    ) -> Result<
        tonic::Response<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse,
        >,
        tonic::Status,
    > {
        let mut received = Vec::new();
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|resource| &resource.attributes)
                .find(|attribute| attribute.key == "service.name")
                .map(|attribute| value_text(attribute.value.as_ref()))
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    received.push(ReceivedSpan {
                        service: service.clone(),
                        name: span.name,
                        kind: span.kind,
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        attributes: span
                            .attributes
                            .iter()
                            .map(|attribute| {
                                (attribute.key.clone(), value_text(attribute.value.as_ref()))
                            })
                            .collect(),
                    });
                }
            }
        }
        self.0.lock().expect("spans").extend(received);
        Ok(tonic::Response::new(Default::default()))
    }
}

impl OtlpReceiver {
    /// Starts one on a loopback port.
    pub async fn start() -> Self {
        use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let spans = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(Collector(spans.clone())))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        Self { endpoint, spans }
    }

    /// What `OTEL_EXPORTER_OTLP_ENDPOINT` should be.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().expect("spans").clone()
    }

    /// The spans of one trace, waiting up to 10 s until `done` says they are all there.
    pub async fn trace(
        &self,
        trace_id: &str,
        done: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        let mut spans = Vec::new();
        for _ in 0..100 {
            spans = self
                .spans()
                .into_iter()
                .filter(|span| span.trace_id == trace_id)
                .collect();
            if done(&spans) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        spans
    }
}

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

/// A loopback port that refuses connections for as long as this lives: bound
/// but never listening, so nothing else can take it meanwhile (a port that is
/// merely probed and dropped could be handed to another test).
#[derive(Debug)]
pub struct ClosedPort {
    _socket: tokio::net::TcpSocket,
    /// The port, on 127.0.0.1.
    pub address: std::net::SocketAddr,
}

impl ClosedPort {
    /// Binds one.
    pub fn new() -> Self {
        let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
        socket
            .bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("bind a loopback port");
        let address = socket.local_addr().expect("local address");
        Self {
            _socket: socket,
            address,
        }
    }
}

impl Default for ClosedPort {
    fn default() -> Self {
        Self::new()
    }
}

/// The tracing target of the line every service logs once it listens
/// (`shippy_service::service_main!`), with its `address`.
pub const STARTED_TARGET: &str = "shippy::started";

/// The address in a service's "started" log line (pretty or JSON, colours
/// or not), if this is that line.
pub fn started_address(line: &str) -> Option<std::net::SocketAddr> {
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
    let after = &plain[plain.find("address")? + "address".len()..];
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

/// The contract test suite of a repository trait, run against every store:
/// `store_contract!(postgres: make_pg, mongodb: make_mongo, cases: [a, b])`
/// makes `postgres::a`, `mongodb::a`, … where each case is an
/// `async fn(impl Trait)` and each maker an `async fn() -> Store` of the
/// calling module.
///
/// The MongoDB cases are marked ignored (a plain `cargo test` without a
/// MongoDB server lists them as such); `make test` includes them whenever
/// `scripts/infra.sh` started a server, and an included case without one
/// fails, saying what to set ([`mongodb_admin_url`]).
#[macro_export]
macro_rules! store_contract {
    (postgres: $postgres:ident, mongodb: $mongodb:ident, cases: [$($case:ident),* $(,)?]) => {
        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::$postgres().await).await;
                }
            )*
        }
        mod mongodb {
            $(
                #[tokio::test]
                #[ignore = "MongoDB store: needs TEST_MONGODB_URL; make test includes it"]
                async fn $case() {
                    super::$case(super::$mongodb().await).await;
                }
            )*
        }
    };
}

/// How a MongoDB server plans a query: what its winning plan scans.
#[derive(Debug)]
pub struct MongoQueryPlan {
    /// The names of the indexes the winning plan scans (`IXSCAN` stages).
    pub index_scans: Vec<String>,
    /// Whether the winning plan reads the whole collection (`COLLSCAN`).
    pub collection_scan: bool,
    /// The server's whole `explain` answer, for failure messages.
    pub explain: mongodb::bson::Document,
}

/// Asks the MongoDB server at `url` (its database) how it would run
/// `find(filter).sort(sort).limit(limit)` on `collection` (`explain`, query
/// planner verbosity), without running it.
pub async fn mongodb_query_plan(
    url: &SecretUrl,
    collection: &str,
    filter: mongodb::bson::Document,
    sort: mongodb::bson::Document,
    limit: i64,
) -> MongoQueryPlan {
    use mongodb::bson::{Bson, doc};

    fn walk(value: &Bson, plan: &mut MongoQueryPlan) {
        match value {
            Bson::Document(document) => {
                match document.get_str("stage") {
                    Ok("IXSCAN") => plan
                        .index_scans
                        .push(document.get_str("indexName").unwrap_or("?").to_owned()),
                    Ok("COLLSCAN") => plan.collection_scan = true,
                    _ => {}
                }
                document.values().for_each(|value| walk(value, plan));
            }
            Bson::Array(values) => values.iter().for_each(|value| walk(value, plan)),
            _ => {}
        }
    }

    let client = mongodb::Client::with_uri_str(url.expose())
        .await
        .expect("a valid MongoDB URL");
    let database = client
        .default_database()
        .expect("the MongoDB URL names a database");
    let explain = database
        .run_command(doc! {
            "explain": {
                "find": collection,
                "filter": filter,
                "sort": sort,
                "limit": limit,
            },
            "verbosity": "queryPlanner",
        })
        .await
        .expect("explain");
    let winning = explain
        .get_document("queryPlanner")
        .ok()
        .and_then(|planner| planner.get("winningPlan"))
        .cloned()
        .unwrap_or_else(|| panic!("explain answered no queryPlanner.winningPlan: {explain}"));
    let mut plan = MongoQueryPlan {
        index_scans: Vec::new(),
        collection_scan: false,
        explain,
    };
    walk(&winning, &mut plan);
    plan
}
