//! The JSON API against the real services: user-, vessel- and
//! consignment-service in-process (`shippy_harness::Cluster`) and the
//! gateway in front of them, spoken to over HTTP.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    missing_debug_implementations
)]

mod breakers;
mod edge;
mod forwarding;
mod idempotency;
mod keys;
mod limits;
mod ops;
mod routes;
mod schema_limits;
mod service;
mod traces;

use std::net::SocketAddr;

use api_gateway::{app::Application, settings::Settings};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde_json::Value;
use shippy_service::Shutdown;

use shippy_harness::Cluster;
pub use shippy_harness::{ADMIN, PASSWORD};
use shippy_testkit::fresh_postgres_database;
use user_service::settings::Settings as UserSettings;

/// The three services on random ports, each with a fresh database.
pub struct Services {
    pub user_addr: SocketAddr,
    pub vessel_addr: SocketAddr,
    pub consignment_addr: SocketAddr,
    /// What stops services a test started by hand, when dropped.
    shutdowns: Vec<Shutdown>,
    /// The harness's cluster, when it started them (stopped when dropped).
    _cluster: Option<Cluster>,
}

impl Services {
    pub async fn start() -> Self {
        let cluster = Cluster::builder()
            .databases("gw")
            .settings(|users: &mut UserSettings| {
                users.jwt_signing_key_file = None;
                // The gateway names each browser to user-service with it.
                users.login.service_token = Some(shippy_testkit::SERVICE_TOKEN.parse().unwrap());
            })
            .start()
            .await;
        Self {
            user_addr: cluster.user_addr,
            vessel_addr: cluster.vessel_addr,
            consignment_addr: cluster.shipping_addr,
            shutdowns: Vec::new(),
            _cluster: Some(cluster),
        }
    }

    /// The gateway's settings for these services.
    pub fn settings(&self) -> Settings {
        settings_for(
            format!("http://{}", self.user_addr),
            format!("http://{}", self.consignment_addr),
            format!("http://{}", self.vessel_addr),
        )
    }
}

/// The gateway's test settings (the one place they are spelled out): these
/// services, ports of its own, generous rate limits, the service token.
pub fn settings_for(user: String, consignment: String, vessel: String) -> Settings {
    Settings {
        listen_addr: "127.0.0.1:0".parse().unwrap(),
        user_service_url: user,
        consignment_service_url: consignment,
        vessel_service_url: vessel,
        metrics_addr: "127.0.0.1:0".parse().unwrap(),
        discovery: Default::default(),
        http: Default::default(),
        rate_limits: generous_limits(),
        breakers: Default::default(),
        keys: Default::default(),
        forwarding: api_gateway::forwarding::Forwarding {
            service_token: Some(shippy_testkit::SERVICE_TOKEN.parse().unwrap()),
            trusted_proxies: Vec::new(),
        },
    }
}

/// A gateway whose consignment-service is a real process (so a test can
/// stop it with SIGSTOP: its port takes connections, nothing answers), its
/// calls timed out after `deadline`, its circuit opening after two failures
/// and refusing for `cool_down`.
pub async fn gateway_with_stoppable_consignments(
    database_prefix: &str,
    deadline: std::time::Duration,
    cool_down: std::time::Duration,
) -> (Gateway, shippy_testkit::ServiceProcess) {
    let services = Services::start().await;
    let consignments = shippy_testkit::ServiceProcess::start(
        "consignment-service",
        &[
            (
                "DATABASE_URL",
                fresh_postgres_database(database_prefix)
                    .await
                    .expose()
                    .to_owned(),
            ),
            (
                "VESSEL_SERVICE_URL",
                format!("http://{}", services.vessel_addr),
            ),
            ("USER_SERVICE_URL", format!("http://{}", services.user_addr)),
        ],
    )
    .await;
    let mut settings = services.settings();
    settings.consignment_service_url = consignments.url();
    settings.breakers.consignment_service_timeout = deadline.into();
    settings.breakers.failures = 2;
    settings.breakers.cool_down = cool_down.into();
    (Gateway::start_with(services, settings).await, consignments)
}

/// Waits (at most `bound`) until listing consignments through `gateway`
/// answers 200 again, e.g. once a stopped consignment-service resumed and
/// a probe closed its circuit.
pub async fn wait_until_consignments_answer(
    gateway: &Gateway,
    token: &str,
    bound: std::time::Duration,
) {
    let resumed = std::time::Instant::now();
    loop {
        let answer = gateway.get("/api/v1/consignments", Some(token)).await;
        if answer.status == 200 {
            return;
        }
        assert!(
            resumed.elapsed() < bound,
            "still {} after {bound:?}: {}",
            answer.status,
            answer.text
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Sends signal `name` (`-STOP`, `-CONT`, …) to `process`.
pub fn signal(process: &shippy_testkit::ServiceProcess, name: &str) {
    let pid = process.pid().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args([name, &pid])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {name} {pid}");
}

/// Rate limits no test meets by accident (tests that fire many requests
/// from one address); `limits` sets its own.
pub fn generous_limits() -> api_gateway::limit::RateLimits {
    api_gateway::limit::RateLimits {
        per_second: 100_000,
        burst: 100_000,
        login_per_second: 100_000,
        login_burst: 100_000,
        ..Default::default()
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        for shutdown in &self.shutdowns {
            shutdown.trigger();
        }
    }
}

/// A gateway in front of the services, and an HTTP client for it.
pub struct Gateway {
    pub services: Services,
    pub address: SocketAddr,
    pub metrics: SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
    shutdown: Shutdown,
}

/// An answer: status, headers and the body as JSON (`Null` if it is not).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Answer {
    /// The error code of an error body.
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }

    /// The error message of an error body.
    pub fn message(&self) -> &str {
        self.json["error"]["message"].as_str().unwrap_or("")
    }

    /// The string `field` of each item of the JSON list `list`.
    pub fn each(&self, list: &str, field: &str) -> Vec<String> {
        let items = self.json[list].as_array();
        let items = items.unwrap_or_else(|| panic!("no list {list}: {}", self.text));
        let each = items
            .iter()
            .map(|item| item[field].as_str().unwrap().to_owned());
        each.collect()
    }

    /// Asserts an error answer: its status and its error code (the body
    /// shown if not).
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!((self.status, self.code()), (status, code), "{}", self.text);
    }

    /// [`Self::assert_error`] for the case `what`, which a failure names.
    #[track_caller]
    pub fn assert_error_for(&self, what: &str, status: u16, code: &str) {
        assert_eq!(
            (self.status, self.code()),
            (status, code),
            "{what}: {}",
            self.text
        );
    }
}

impl Gateway {
    /// Fresh services and a gateway in front of them.
    pub async fn start() -> Self {
        let services = Services::start().await;
        let settings = services.settings();
        Self::start_with(services, settings).await
    }

    /// A gateway with `settings` in front of `services`.
    pub async fn start_with(services: Services, settings: Settings) -> Self {
        let app = Application::build(&settings).await.expect("gateway builds");
        let address = app.local_addr().unwrap();
        let metrics = app.metrics_addr().unwrap();
        let shutdown = Shutdown::new();
        tokio::spawn(app.run(shutdown.clone()));
        Self {
            services,
            address,
            metrics,
            client: Client::builder(TokioExecutor::new()).build_http(),
            shutdown,
        }
    }

    /// Sends a request with a raw body.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Answer {
        let request = self.request(method, path, token, headers);
        send_on(&self.client, request, body).await
    }

    /// Posts JSON from the loopback address `source` (another client, as
    /// the gateway sees it).
    pub async fn post_from(&self, source: std::net::IpAddr, path: &str, body: &Value) -> Answer {
        let body = serde_json::to_vec(body).unwrap();
        let json = [("content-type", "application/json")];
        self.send_from(source, "POST", path, &json, Some(body))
            .await
    }

    /// Sends a request with `headers` from the loopback address `source`.
    pub async fn send_from(
        &self,
        source: std::net::IpAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Answer {
        let mut connector = HttpConnector::new();
        connector.set_local_address(Some(source));
        let client = Client::builder(TokioExecutor::new()).build(connector);
        send_on(&client, self.request(method, path, None, headers), body).await
    }

    /// A request to the gateway, with `token` as a bearer token if any.
    fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> http::request::Builder {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.address));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request
    }
}

/// Sends `request` with `body` on `client`: the answer.
async fn send_on(
    client: &Client<HttpConnector, Full<Bytes>>,
    request: http::request::Builder,
    body: Option<Vec<u8>>,
) -> Answer {
    let request = request
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .unwrap();
    let response = client.request(request).await.expect("HTTP answer");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        text,
        json,
    }
}

impl Gateway {
    /// GET.
    pub async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        self.send("GET", path, token, &[], None).await
    }

    /// POST of a JSON value.
    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Answer {
        self.send(
            "POST",
            path,
            token,
            &[("content-type", "application/json")],
            Some(serde_json::to_vec(&body).unwrap()),
        )
        .await
    }

    /// Signs up `email` through the API and logs in: (user id, token).
    pub async fn user(&self, email: &str) -> (String, String) {
        let created = self
            .post(
                "/api/v1/users",
                None,
                serde_json::json!({"name": "Someone", "email": email, "company": "ACME", "password": PASSWORD}),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.text);
        let id = created.json["user"]["id"].as_str().unwrap().to_owned();
        (id, self.login(email).await)
    }

    /// Logs in an existing account.
    pub async fn login(&self, email: &str) -> String {
        let login = self
            .post(
                "/api/v1/login",
                None,
                serde_json::json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(login.status, 200, "{}", login.text);
        login.json["token"].as_str().unwrap().to_owned()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// A bare HTTP/1.0 request to `address`: (status, body).
pub async fn raw_request(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let Ok(mut stream) = tokio::net::TcpStream::connect(address).await else {
        return (0, String::new());
    };
    let mut request = format!("{method} {path} HTTP/1.0\r\nhost: localhost\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text).await;
    let status = text
        .get(9..12)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}
