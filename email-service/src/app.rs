//! Putting email-service together: health on its gRPC port, the worker, and
//! health following the NATS connection.

use std::{net::SocketAddr, time::Duration};

use shippy_service::{
    Shutdown,
    base::{BindError, ServiceBase},
    nats,
    server::{GrpcServer, Health, ServerError},
};

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
    /// An address cannot be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
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
    base: ServiceBase,
    server: GrpcServer,
    health: Health,
    client: async_nats::Client,
    worker: Worker,
}

impl Application {
    /// Binds the health port, checks the mail settings and connects to NATS
    /// in the background.
    pub async fn build(settings: &Settings) -> Result<Self, StartError> {
        let base = ServiceBase::bind(
            "email-service",
            settings.listen_addr,
            settings.metrics_addr,
            &settings.discovery,
        )
        .await?;
        let metrics = base.metrics().clone();
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
            base,
            server,
            health,
            client,
            worker,
        })
    }

    /// The address the health server listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.base.local_addr()
    }

    /// The address `/metrics` is served on.
    pub fn metrics_addr(&self) -> std::io::Result<SocketAddr> {
        self.base.metrics_addr()
    }

    /// Mails until `shutdown` fires, then finishes the mail in flight.
    pub async fn run(self, shutdown: Shutdown) -> Result<(), ServerError> {
        let worker = tokio::spawn(self.worker.run(shutdown.clone()));
        let health = tokio::spawn(follow_nats(
            self.client.clone(),
            self.health,
            shutdown.clone(),
        ));
        let served = self
            .base
            .run(
                self.server,
                shutdown,
                vec![("email worker", worker), ("health", health)],
            )
            .await;
        if let Err(error) = self.client.drain().await {
            tracing::debug!(%error, "draining the NATS connection");
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
