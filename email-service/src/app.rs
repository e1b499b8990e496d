//! Putting email-service together: health on its gRPC port, the worker, and
//! health following the NATS connection.

use std::{net::SocketAddr, time::Duration};

use shippy_service::{
    Shutdown,
    discovery::Discovery,
    metrics::Metrics,
    nats,
    server::{GrpcServer, Health, ServerError},
};
use tokio::net::TcpListener;

use crate::{
    mail::{ConfigError, Mailer, Template},
    sent::SentLog,
    settings::Settings,
    worker::Worker,
};

/// How often health looks at the NATS connection.
const HEALTH_INTERVAL: Duration = Duration::from_millis(500);

/// email-service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listen address cannot be bound.
    #[error("cannot listen on {address}")]
    Bind {
        /// The address asked for.
        address: SocketAddr,
        /// Why not.
        #[source]
        source: std::io::Error,
    },
    /// `NATS_URL` is not usable.
    #[error("NATS_URL `{url}` is not a valid NATS address (expected nats://host:4222)")]
    NatsUrl {
        /// The URL given.
        url: String,
        /// What the client said.
        #[source]
        source: async_nats::ConnectError,
    },
    /// The mail settings cannot work.
    #[error(transparent)]
    Mail(#[from] ConfigError),
}

/// email-service, bound and ready to run.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    metrics_listener: TcpListener,
    metrics: Metrics,
    discovery: Discovery,
    server: GrpcServer,
    health: Health,
    client: async_nats::Client,
    worker: Worker,
}

impl Application {
    /// Binds the health port, checks the mail settings and connects to NATS
    /// in the background.
    pub async fn build(settings: &Settings) -> Result<Self, StartError> {
        let listener = TcpListener::bind(settings.listen_addr)
            .await
            .map_err(|source| StartError::Bind {
                address: settings.listen_addr,
                source,
            })?;
        let metrics_listener =
            TcpListener::bind(settings.metrics_addr)
                .await
                .map_err(|source| StartError::Bind {
                    address: settings.metrics_addr,
                    source,
                })?;
        let metrics = Metrics::new();
        let mailer = Mailer::new(settings.smtp_url.as_ref())?;
        let template = Template::new(&settings.mail_from, &settings.mail_subject)?;
        let client = nats::connect(&settings.nats_url, "email-service")
            .await
            .map_err(|source| StartError::NatsUrl {
                url: settings.nats_url.clone(),
                source,
            })?;
        let jetstream = nats::jetstream(client.clone());
        let worker = Worker {
            sent: SentLog::new(jetstream.clone(), &settings.sent_stream, &settings.consumer),
            jetstream,
            stream: settings.events_stream.clone(),
            subject: settings.user_created_subject.clone(),
            consumer: settings.consumer.clone(),
            mailer,
            template,
            mails_sent: metrics.counter("emails_sent", "Welcome mails the SMTP server accepted"),
            mail_failures: metrics.counter(
                "email_failures",
                "Attempts to mail that failed (the event comes back later)",
            ),
        };
        let server = GrpcServer::new(shippy_proto::FILE_DESCRIPTOR_SET, metrics.clone());
        let health = server.health();
        health.set(&[], false).await;
        Ok(Self {
            listener,
            metrics_listener,
            metrics,
            discovery: Discovery::new(&settings.discovery),
            server,
            health,
            client,
            worker,
        })
    }

    /// The address the health server listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The address `/metrics` is served on.
    pub fn metrics_addr(&self) -> std::io::Result<SocketAddr> {
        self.metrics_listener.local_addr()
    }

    /// Mails until `shutdown` fires, then finishes the mail in flight.
    pub async fn run(self, shutdown: Shutdown) -> Result<(), ServerError> {
        let metrics_server = tokio::spawn(
            self.metrics
                .clone()
                .serve(self.metrics_listener, shutdown.clone()),
        );
        let registration = match self.listener.local_addr() {
            Ok(address) => self
                .discovery
                .register("email-service", address, shutdown.clone()),
            Err(_) => None,
        };
        let worker = tokio::spawn(self.worker.run(shutdown.clone()));
        let health = tokio::spawn(follow_nats(
            self.client.clone(),
            self.health,
            shutdown.clone(),
        ));
        let served = self.server.serve(self.listener, shutdown.clone()).await;
        shutdown.trigger();
        for (name, task) in [("email worker", worker), ("health", health)] {
            if let Err(error) = task.await {
                tracing::error!(%error, "{name} task failed");
            }
        }
        if let Err(error) = self.client.drain().await {
            tracing::debug!(%error, "draining the NATS connection");
        }
        if let Some(registration) = registration
            && let Err(error) = registration.await
        {
            tracing::error!(%error, "Consul registration task failed");
        }
        match metrics_server.await {
            Ok(Err(error)) => tracing::warn!(%error, "metrics server failed"),
            Err(error) => tracing::error!(%error, "metrics server task failed"),
            Ok(Ok(())) => {}
        }
        served
    }
}

/// Health answers `SERVING` while NATS is connected, `NOT_SERVING` otherwise.
async fn follow_nats(client: async_nats::Client, health: Health, shutdown: Shutdown) {
    let mut serving = false;
    loop {
        let connected = nats::is_connected(&client);
        if connected != serving {
            serving = connected;
            health.set(&[], serving).await;
        }
        tokio::select! {
            () = shutdown.wait() => break,
            () = tokio::time::sleep(HEALTH_INTERVAL) => {}
        }
    }
}
