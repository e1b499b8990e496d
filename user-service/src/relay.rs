//! The outbox relay: publishes committed events to NATS JetStream.
//!
//! `Create` writes the user and its `user.created` event in one transaction;
//! this task reads pending events, publishes each with its event id as
//! `Nats-Msg-Id` (so the broker drops a copy sent twice), and marks it
//! published once JetStream acknowledged it. While NATS is unreachable,
//! events wait in the outbox and go out once it is back: none is lost.

use std::{sync::Arc, time::Duration};

use async_nats::{Client, HeaderMap, header::NATS_MESSAGE_ID, jetstream::Context};
use prometheus_client::metrics::gauge::Gauge;
use shippy_service::{Shutdown, error::chain, nats, readiness::Ready, telemetry::propagation};
use tokio::sync::Notify;
use tracing::Instrument;

use crate::store::{OutboxEvent, RelayError, UserStore};

/// How many events one round publishes at most.
const BATCH: i64 = 100;
/// How often the outbox is checked without being woken.
const POLL: Duration = Duration::from_secs(1);
/// The longest pause after failures.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A connection to NATS JetStream, made without waiting for the server.
#[derive(Debug, Clone)]
pub struct EventPublisher {
    client: Client,
    jetstream: Context,
    stream: String,
}

/// Publishing an event failed: what was being done, and the driver's error.
#[derive(Debug, thiserror::Error)]
#[error("{doing}")]
pub struct PublishError {
    doing: String,
    #[source]
    source: shippy_service::error::BoxError,
}

impl PublishError {
    fn new(doing: impl Into<String>, source: impl Into<shippy_service::error::BoxError>) -> Self {
        Self {
            doing: doing.into(),
            source: source.into(),
        }
    }
}

impl EventPublisher {
    /// A client for `url` that connects (and reconnects) in the background.
    pub async fn connect(url: &str, stream: &str) -> Result<Self, async_nats::ConnectError> {
        let client = nats::connect(url, "user-service").await?;
        Ok(Self {
            jetstream: nats::jetstream(client.clone()),
            client,
            stream: stream.to_owned(),
        })
    }

    /// Creates the stream that keeps `subject` if it is missing.
    pub async fn ensure_stream(&self, subject: &str) -> Result<(), PublishError> {
        nats::user_events_stream(&self.jetstream, &self.stream, subject)
            .await
            .map_err(|error| {
                PublishError::new(format!("cannot create stream {}", self.stream), error)
            })?;
        Ok(())
    }

    /// Publishes one event and waits for JetStream to store it. The publish
    /// is a span in the trace of the request that wrote the event, and its
    /// context travels in the message's headers.
    pub async fn publish(&self, event: OutboxEvent) -> Result<(), PublishError> {
        let span = shippy_service::messaging_span!(
            "user.created publish",
            "producer",
            "publish",
            event.subject,
            messaging.message.id = %event.id,
        );
        propagation::continue_trace_from_map(&span, &event.trace_context);
        self.publish_in_span(event).instrument(span).await
    }

    async fn publish_in_span(&self, event: OutboxEvent) -> Result<(), PublishError> {
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, event.id.to_string().as_str());
        for (key, value) in propagation::current_context_map() {
            headers.insert(key.as_str(), value.as_str());
        }
        let ack = self
            .jetstream
            .publish_with_headers(event.subject, headers, event.payload.into())
            .await
            .map_err(|error| PublishError::new("publish failed", error))?
            .await
            .map_err(|error| PublishError::new("JetStream did not acknowledge", error))?;
        tracing::debug!(event.id = %event.id, sequence = ack.sequence, duplicate = ack.duplicate, "event published");
        Ok(())
    }

    /// Whether the client is connected now.
    pub fn is_connected(&self) -> bool {
        nats::is_connected(&self.client)
    }
}

/// The relay task's state.
#[derive(Debug)]
pub struct Relay {
    store: UserStore,
    publisher: EventPublisher,
    subject: String,
    wake: Arc<Notify>,
    backlog: Gauge,
}

impl Relay {
    /// A relay from `store`'s outbox to `publisher`, woken early by `wake`;
    /// `backlog` follows how many events wait.
    pub fn new(
        store: UserStore,
        publisher: EventPublisher,
        subject: String,
        wake: Arc<Notify>,
        backlog: Gauge,
    ) -> Self {
        Self {
            store,
            publisher,
            subject,
            wake,
            backlog,
        }
    }

    /// Relays until `shutdown` fires; starts once the database is `ready`.
    /// An event being published when shutdown fires is finished first.
    pub async fn run(self, ready: Ready, shutdown: Shutdown) {
        let mut stream_ready = false;
        let mut failures: u32 = 0;
        loop {
            let pause = if failures == 0 {
                POLL
            } else {
                shippy_service::retry::Backoff {
                    min: Duration::from_millis(100),
                    max: MAX_BACKOFF,
                }
                .after(failures, true)
            };
            tokio::select! {
                () = shutdown.wait() => break,
                () = self.wake.notified(), if failures == 0 => {}
                () = tokio::time::sleep(pause) => {}
            }
            if !ready.is_ready() {
                continue;
            }
            if !stream_ready {
                match self.publisher.ensure_stream(&self.subject).await {
                    Ok(()) => stream_ready = true,
                    Err(error) => {
                        failures += 1;
                        tracing::warn!(%error, "event stream not ready; events wait in the outbox");
                        continue;
                    }
                }
            }
            let relayed = self.relay_all(&shutdown).await;
            if let Ok(pending) = self.store.pending_events().await {
                self.backlog.set(pending);
            }
            match relayed {
                Ok(0) => failures = 0,
                Ok(published) => {
                    failures = 0;
                    tracing::info!(published, "outbox relayed");
                }
                Err(error) => {
                    failures += 1;
                    tracing::warn!(error = %chain(&error), failures, "outbox relay failed; will retry");
                }
            }
        }
        tracing::info!("outbox relay stopped");
    }

    /// Publishes batches until the outbox is empty or shutdown fires.
    async fn relay_all(&self, shutdown: &Shutdown) -> Result<usize, RelayError<PublishError>> {
        let mut total = 0;
        loop {
            let published = self
                .store
                .relay_pending(BATCH, |event| self.publisher.publish(event))
                .await?;
            total += published;
            if published < BATCH as usize || shutdown.is_triggered() {
                return Ok(total);
            }
        }
    }
}
