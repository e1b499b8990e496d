//! Putting email-service together: health on its gRPC port, the worker, the
//! stuck-consumer watchdog, and health following the NATS connection and
//! the watchdog.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use shippy_service::{
    Shutdown,
    base::{ServiceBase, Task},
    nats,
    server::{GrpcServer, Health, ServerError},
};

use crate::{
    dead::DeadLetters,
    mail::{ConfigError, Mailer, Template},
    sent::SentLog,
    settings::Settings,
    watchdog::{Progress, Watchdog},
    worker::Worker,
};

/// How often health looks at the NATS connection.
const HEALTH_INTERVAL: Duration = Duration::from_millis(500);

/// Why email-service could not start; its own reason: the mail settings
/// cannot work.
pub type StartError = shippy_service::base::StartError<ConfigError>;

/// email-service stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The gRPC server failed.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// The worker stopped before it was told to: nothing would be mailed.
    #[error("the email worker stopped unexpectedly; restart the service")]
    WorkerStopped,
}

/// email-service, bound and ready to run.
#[derive(Debug)]
pub struct Application {
    base: ServiceBase,
    server: GrpcServer,
    client: async_nats::Client,
    worker: Worker,
    watchdog: Watchdog,
}

impl Application {
    /// Binds the health port, checks the mail settings and connects to NATS
    /// in the background.
    pub async fn build(settings: &Settings) -> Result<Self, StartError> {
        let base = settings.serve.bind("email-service").await?;
        let metrics = base.metrics().clone();
        let mailer = Mailer::new(settings.smtp_url.as_ref()).map_err(StartError::service)?;
        let template = Template::new(&settings.mail_from, &settings.mail_subject)
            .map_err(StartError::service)?;
        let client = nats::connect(settings.nats_url.expose(), "email-service")
            .await
            .map_err(nats::InvalidUrl::of(&settings.nats_url))?;
        let jetstream = nats::jetstream(client.clone());
        let progress = Progress::new();
        let watchdog = Watchdog {
            jetstream: jetstream.clone(),
            stream: settings.events_stream.clone(),
            consumer: settings.consumer.clone(),
            progress: progress.clone(),
            stuck_after: settings.mail_stuck_after.into(),
            stuck: Arc::new(AtomicBool::new(false)),
            stuck_gauge: metrics.gauge(
                "email_consumer_stuck",
                "1 while events wait and none was mailed or given up for MAIL_STUCK_AFTER",
            ),
            backlog_gauge: metrics.gauge(
                "email_backlog",
                "user.created events not yet delivered plus delivered and not yet settled",
            ),
        };
        let worker = Worker {
            sent: SentLog::new(jetstream.clone(), &settings.sent_stream, &settings.consumer),
            dead: DeadLetters::new(jetstream.clone(), &settings.dead_stream, &settings.consumer),
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
            dead_letters: metrics.counter(
                "email_dead_letters",
                "Events given up (refused for good, an address that cannot be mailed, malformed, \
                 or past MAIL_MAX_AGE) and kept in the dead-mail stream",
            ),
            max_age: settings.mail_max_age.into(),
            progress,
        };
        let server = GrpcServer::new(shippy_proto::FILE_DESCRIPTOR_SET, metrics.clone());
        server.health().set(&[], false).await;
        Ok(Self {
            base,
            server,
            client,
            worker,
            watchdog,
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
    ///
    /// Should the worker stop on its own (a bug), health turns
    /// `NOT_SERVING`, the service stops and this returns
    /// [`RunError::WorkerStopped`], so the process ends non-zero and is
    /// restarted rather than looking healthy while nothing is mailed.
    pub async fn run(self, shutdown: Shutdown) -> Result<(), RunError> {
        let alive = Arc::new(AtomicBool::new(true));
        let worker = tokio::spawn(self.worker.run(shutdown.clone()));
        let supervisor = tokio::spawn(supervise(
            worker,
            alive.clone(),
            self.server.health(),
            shutdown.clone(),
        ));
        let stuck = self.watchdog.stuck.clone();
        let watchdog = tokio::spawn(self.watchdog.run(shutdown.clone()));
        let health = tokio::spawn(follow_nats(
            self.client.clone(),
            self.server.health(),
            alive,
            stuck,
            shutdown.clone(),
        ));
        let died = Arc::new(AtomicBool::new(false));
        let supervisor: Task = ("email worker", {
            let died = died.clone();
            tokio::spawn(async move {
                if supervisor.await.unwrap_or(true) {
                    died.store(true, Ordering::SeqCst);
                }
            })
        });
        let served = self
            .base
            .run(
                self.server,
                shutdown,
                vec![supervisor, ("health", health), ("watchdog", watchdog)],
            )
            .await;
        if let Err(error) = self.client.drain().await {
            tracing::debug!(%error, "draining the NATS connection");
        }
        served?;
        if died.load(Ordering::SeqCst) {
            return Err(RunError::WorkerStopped);
        }
        Ok(())
    }
}

/// Waits for the worker; if it ends before `shutdown` fired (returned or
/// panicked), marks it dead, answers `NOT_SERVING` and stops the service.
/// Returns whether it died.
async fn supervise(
    worker: tokio::task::JoinHandle<()>,
    alive: Arc<AtomicBool>,
    health: Health,
    shutdown: Shutdown,
) -> bool {
    let ended = worker.await;
    if shutdown.is_triggered() && ended.is_ok() {
        return false;
    }
    alive.store(false, Ordering::SeqCst);
    health.set(&[], false).await;
    match ended {
        Err(error) => tracing::error!(%error, "the email worker died; stopping the service"),
        Ok(()) => tracing::error!("the email worker stopped on its own; stopping the service"),
    }
    shutdown.trigger();
    true
}

/// Health answers `SERVING` while NATS is connected, the worker runs and
/// mail is not stuck, `NOT_SERVING` otherwise.
async fn follow_nats(
    client: async_nats::Client,
    health: Health,
    alive: Arc<AtomicBool>,
    stuck: Arc<AtomicBool>,
    shutdown: Shutdown,
) {
    let mut serving = false;
    loop {
        let up = nats::is_connected(&client)
            && alive.load(Ordering::SeqCst)
            && !stuck.load(Ordering::SeqCst);
        if up != serving {
            serving = up;
            health.set(&[], serving).await;
        }
        tokio::select! {
            () = shutdown.wait() => break,
            () = tokio::time::sleep(HEALTH_INTERVAL) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use shippy_service::{
        discovery::{CallTimeouts, static_channel},
        metrics::Metrics,
    };
    use shippy_testkit::health_status;
    use tonic_health::pb::health_check_response::ServingStatus;

    use super::*;

    #[tokio::test]
    async fn a_dead_worker_turns_health_not_serving_and_stops_the_service() {
        let server = GrpcServer::new(shippy_proto::FILE_DESCRIPTOR_SET, Metrics::new());
        let health = server.health();
        health.set(&[], true).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let serving = Shutdown::new();
        tokio::spawn(server.serve(listener, serving.clone()));
        let channel =
            static_channel(&format!("http://{address}"), CallTimeouts::default()).unwrap();
        assert_eq!(
            health_status(channel.clone(), "").await,
            ServingStatus::Serving
        );

        let service = Shutdown::new();
        let alive = Arc::new(AtomicBool::new(true));
        let worker = tokio::spawn(async { panic!("a bug in the worker") });
        let died = supervise(worker, alive.clone(), health, service.clone()).await;
        assert!(died);
        assert!(!alive.load(Ordering::SeqCst));
        assert!(service.is_triggered(), "the service stops, to be restarted");
        assert_eq!(health_status(channel, "").await, ServingStatus::NotServing);
        serving.trigger();
    }

    #[tokio::test]
    async fn a_worker_stopped_by_shutdown_is_not_a_death() {
        let server = GrpcServer::new(shippy_proto::FILE_DESCRIPTOR_SET, Metrics::new());
        let service = Shutdown::new();
        service.trigger();
        let worker = tokio::spawn(async {});
        let alive = Arc::new(AtomicBool::new(true));
        assert!(!supervise(worker, alive.clone(), server.health(), service).await);
        assert!(alive.load(Ordering::SeqCst));
    }
}
