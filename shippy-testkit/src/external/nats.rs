//! A nats-server of a test's own.

use super::ExternalServer;

/// A nats-server of a test's own (JetStream on, loopback, spare port),
/// for tests that stop and restart the broker. Killed when dropped.
#[derive(Debug)]
pub struct NatsServer {
    server: ExternalServer,
}

impl NatsServer {
    /// Starts one and waits until it accepts connections.
    pub async fn start() -> Self {
        let [port] = crate::net::spare_ports();
        let server =
            ExternalServer::new("nats-server", "nats-server", ([127, 0, 0, 1], port).into())
                .install_hint("cargo dev infra up installs it");
        let store = server.dir().join("jetstream-store");
        let server = server
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store)
            .start()
            .await;
        Self { server }
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.server.address())
    }

    /// Stops the server (its JetStream data stays for a restart).
    pub fn stop(&mut self) {
        self.server.stop();
    }

    /// Starts it again on the same port with the same data.
    pub async fn restart(&mut self) {
        self.server.restart().await;
    }

    /// The server it is (its log, its process).
    pub fn server(&self) -> &ExternalServer {
        &self.server
    }
}
