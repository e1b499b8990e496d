//! A Consul dev agent of a test's own, with or without ACLs.

use shippy_service::settings::Secret;

use super::{ExternalServer, Readiness};
use crate::infra::infra_var;

/// The services that get a Consul ACL token each (`scripts/consul-acl.sh`),
/// in the order `cargo dev demo`/`dev` starts them: the api-gateway last.
pub const CONSUL_SERVICES: [&str; 5] = [
    "user-service",
    "vessel-service",
    "consignment-service",
    "email-service",
    "api-gateway",
];

/// A Consul dev agent of a test's own, on spare loopback ports (the binary
/// `cargo dev infra` installed, in `TEST_CONSUL_BIN`). Killed when dropped.
///
/// [`ConsulAgent::start_with_acls`] runs it as `make dev` and compose do:
/// ACLs on, default deny, and a token per service made by
/// `scripts/consul-acl.sh` ([`ConsulAgent::token`]).
#[derive(Debug)]
pub struct ConsulAgent {
    server: ExternalServer,
    acl: Option<ConsulAcl>,
}

/// The tokens of an agent with ACLs: fresh UUIDs, the same across restarts.
#[derive(Debug)]
struct ConsulAcl {
    management: Secret,
    services: Vec<(&'static str, Secret)>,
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

/// Ready once `/v1/status/leader` names a leader (`""` until one is elected).
fn has_leader(body: &str) -> bool {
    body.trim().trim_matches('"').len() > 1
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
        let mut agent = Self::reserve_with(Some(ConsulAcl::new()));
        agent.restart().await;
        agent
    }

    /// An agent on spare ports, not started yet.
    pub fn reserve() -> Self {
        Self::reserve_with(None)
    }

    fn reserve_with(acl: Option<ConsulAcl>) -> Self {
        let ports = crate::net::spare_ports::<5>();
        let [http, dns, serf_lan, serf_wan, server] = ports.map(|port| port.to_string());
        let mut server = ExternalServer::new(
            "consul",
            infra_var("TEST_CONSUL_BIN"),
            ([127, 0, 0, 1], ports[0]).into(),
        )
        .args([
            "agent",
            "-dev",
            "-bind",
            "127.0.0.1",
            "-client",
            "127.0.0.1",
        ])
        .args(["-http-port", &http, "-dns-port", &dns, "-grpc-port", "-1"])
        .args(["-serf-lan-port", &serf_lan, "-serf-wan-port", &serf_wan])
        .args(["-server-port", &server])
        .ready_when(Readiness::http_body("/v1/status/leader", has_leader))
        .install_hint("cargo dev infra up installs it and exports TEST_CONSUL_BIN");
        if let Some(acl) = &acl {
            server = server.args(["-hcl", &acl.hcl()]);
        }
        Self { server, acl }
    }

    /// `127.0.0.1:PORT`, as `CONSUL_HTTP_ADDR` takes it.
    pub fn http_addr(&self) -> String {
        self.server.address().to_string()
    }

    /// The token `service` (one of [`CONSUL_SERVICES`]) gets as
    /// `CONSUL_HTTP_TOKEN`; `None` for an agent without ACLs.
    pub fn token(&self, service: &str) -> Option<Secret> {
        let acl = self.acl.as_ref()?;
        let (_, secret) = acl
            .services
            .iter()
            .find(|(name, _)| *name == service)
            .unwrap_or_else(|| panic!("{service} is not one of {CONSUL_SERVICES:?}"));
        Some(secret.clone())
    }

    /// The management token; `None` for an agent without ACLs.
    pub fn management_token(&self) -> Option<Secret> {
        self.acl.as_ref().map(|acl| acl.management.clone())
    }

    /// Stops the agent (a dev agent forgets everything).
    pub fn stop(&mut self) {
        self.server.stop();
    }

    /// Its process id while it runs (to stop and continue it with signals).
    pub fn pid(&self) -> Option<u32> {
        self.server.pid()
    }

    /// Starts it again on the same ports (with ACLs: with the same tokens).
    pub async fn restart(&mut self) {
        self.server.restart().await;
        if let Some(acl) = &self.acl {
            acl.create_tokens(self.http_addr()).await;
        }
    }

    /// The server it is (its log, its process).
    pub fn server(&self) -> &ExternalServer {
        &self.server
    }
}
