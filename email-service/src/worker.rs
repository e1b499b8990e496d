//! The consumer: one welcome mail per `user.created` event.
//!
//! A durable JetStream pull consumer delivers each event until it is
//! acknowledged. The worker acknowledges only after the SMTP server accepted
//! the mail (or the event was mailed before); an SMTP failure is a negative
//! acknowledgement with a growing delay, so the event comes back later and
//! is never dropped; a malformed event is terminated, so it does not come
//! back forever and does not block the ones behind it.

use std::{collections::HashMap, panic::AssertUnwindSafe, time::Duration};

use async_nats::jetstream::{
    AckKind, Context, Message,
    consumer::{AckPolicy, PullConsumer, pull},
};
use futures::{FutureExt, StreamExt};
use prometheus_client::metrics::counter::Counter;
use prost::Message as _;
use shippy_proto::events::v1::UserCreated;
use shippy_service::{
    Shutdown,
    error::chain,
    nats,
    retry::{self, Backoff},
    telemetry::propagation,
    text,
};
use tracing::Instrument;

use crate::{
    mail::{MailError, Mailer, Template},
    sent::{SentLog, SentLogError},
};

/// How long a delivered event may stay unacknowledged before redelivery
/// (also how long an event delivered to a worker that stopped before it
/// handled it waits to come back).
pub const ACK_WAIT: Duration = Duration::from_secs(30);
/// How long one pull request stays open on the server. Short, so a stopped
/// worker's last request soon stops taking events it will never handle.
const PULL_EXPIRES: Duration = Duration::from_secs(5);
/// The longest delay before an event whose mail failed comes back.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

/// What the worker consumes and where it sends.
#[derive(Debug, Clone)]
pub struct Worker {
    /// JetStream.
    pub jetstream: Context,
    /// The stream of user events.
    pub stream: String,
    /// The subject of `user.created`.
    pub subject: String,
    /// The durable consumer's name.
    pub consumer: String,
    /// Where mails go.
    pub mailer: Mailer,
    /// What mails say.
    pub template: Template,
    /// Which events were mailed.
    pub sent: SentLog,
    /// Mails the SMTP server accepted.
    pub mails_sent: Counter,
    /// Attempts that failed (each comes back later).
    pub mail_failures: Counter,
}

/// The stream or consumer could not be set up: which, and why.
#[derive(Debug, thiserror::Error)]
#[error("{what}")]
struct SetupError {
    what: String,
    #[source]
    source: shippy_service::error::BoxError,
}

impl SetupError {
    fn new(what: impl Into<String>, source: impl Into<shippy_service::error::BoxError>) -> Self {
        Self {
            what: what.into(),
            source: source.into(),
        }
    }
}

/// Why an event was not mailed.
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// It can never be mailed: terminate it.
    #[error("malformed event: {0}")]
    Malformed(String),
    /// Mailing failed now; it may work later: redeliver it.
    #[error(transparent)]
    Mail(#[from] MailError),
    /// The sent-mail log could not be read: redeliver it.
    #[error(transparent)]
    SentLog(#[from] SentLogError),
}

/// The delay before the `delivered`-th delivery's retry: 1 s, 2 s, 4 s, … up to a minute.
fn retry_delay(delivered: i64) -> Duration {
    Backoff {
        min: Duration::from_secs(1),
        max: MAX_RETRY_DELAY,
    }
    .after(u32::try_from(delivered).unwrap_or(0), false)
}

impl Worker {
    async fn consumer(&self) -> Result<PullConsumer, SetupError> {
        let stream = nats::user_events_stream(&self.jetstream, &self.stream, &self.subject)
            .await
            .map_err(|error| SetupError::new(format!("stream {}", self.stream), error))?;
        self.sent
            .ensure()
            .await
            .map_err(|error| SetupError::new("the sent-mail log", error))?;
        let consumer = stream
            .get_or_create_consumer(
                &self.consumer,
                pull::Config {
                    durable_name: Some(self.consumer.clone()),
                    filter_subject: self.subject.clone(),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: ACK_WAIT,
                    ..Default::default()
                },
            )
            .await
            .map_err(|error| SetupError::new(format!("consumer {}", self.consumer), error))?;
        Ok(consumer)
    }

    /// Consumes until `shutdown` fires. A mail in flight when it fires is
    /// finished and acknowledged first.
    pub async fn run(self, shutdown: Shutdown) {
        let Some(consumer) = retry::until_ready(
            "the user events consumer",
            Backoff::default(),
            &shutdown,
            || self.consumer(),
        )
        .await
        else {
            return;
        };
        tracing::info!(consumer = %self.consumer, stream = %self.stream, "consuming user.created");
        while !shutdown.is_triggered() {
            let pull = consumer
                .stream()
                .max_messages_per_batch(1)
                .expires(PULL_EXPIRES)
                .heartbeat(PULL_EXPIRES / 2)
                .messages();
            let mut messages = match pull.await {
                Ok(messages) => messages,
                Err(error) => {
                    tracing::warn!(%error, "cannot pull events; retrying");
                    tokio::select! {
                        () = shutdown.wait() => break,
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            loop {
                let next = tokio::select! {
                    () = shutdown.wait() => break,
                    next = messages.next() => next,
                };
                match next {
                    Some(Ok(message)) => self.handle(message).await,
                    Some(Err(error)) => tracing::debug!(%error, "pulling events"),
                    None => break,
                }
            }
        }
        tracing::info!("email worker stopped");
    }

    /// Handles one delivery in a consumer span that continues the trace the
    /// message's headers carry (user creation -> publish -> this -> the mail).
    async fn handle(&self, message: Message) {
        let span = tracing::info_span!(
            "user.created process",
            otel.name = %format!("{} process", message.subject),
            otel.kind = "consumer",
            messaging.system = "nats",
            messaging.operation.type = "process",
            messaging.destination.name = %message.subject,
            messaging.consumer.group.name = %self.consumer,
            event.id = tracing::field::Empty,
            delivered = tracing::field::Empty,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        );
        let carrier: HashMap<String, String> = message
            .headers
            .iter()
            .flat_map(|headers| headers.iter())
            .filter_map(|(name, values)| {
                let value = values.first()?;
                Some((
                    name.to_string().to_ascii_lowercase(),
                    value.as_str().to_owned(),
                ))
            })
            .collect();
        propagation::continue_trace_from_map(&span, &carrier);
        self.handle_in_span(message).instrument(span).await;
    }

    async fn handle_in_span(&self, message: Message) {
        let delivered = message.info().map(|info| info.delivered).unwrap_or(1);
        tracing::Span::current().record("delivered", delivered);
        // Whatever an event holds, a panic handling it terminates that event
        // and the worker goes on with the next.
        let processed = AssertUnwindSafe(self.process(&message.payload))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| Err(Failure::Malformed("handling the event panicked".to_owned())));
        let acknowledgement = match processed {
            Ok(()) => AckKind::Ack,
            Err(Failure::Malformed(reason)) => {
                tracing::warn!(%reason, "malformed event dropped");
                AckKind::Term
            }
            Err(failure) => {
                self.mail_failures.inc();
                let delay = retry_delay(delivered);
                tracing::warn!(
                    error = %chain(&failure),
                    retry_in_s = delay.as_secs(),
                    "welcome mail not sent; the event will come back"
                );
                AckKind::Nak(Some(delay))
            }
        };
        if let Err(error) = message.ack_with(acknowledgement).await {
            // Unacknowledged, the event comes back after ACK_WAIT; the
            // sent-mail log keeps that from mailing twice.
            tracing::warn!(%error, "cannot acknowledge the event");
        }
    }

    async fn process(&self, payload: &[u8]) -> Result<(), Failure> {
        let event = UserCreated::decode(payload)
            .map_err(|error| Failure::Malformed(format!("not a UserCreated: {error}")))?;
        let valid_id = !event.event_id.is_empty()
            && event.event_id.len() <= 64
            && event
                .event_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid_id {
            return Err(Failure::Malformed(format!(
                "bad event id {}",
                text::excerpt(&event.event_id)
            )));
        }
        tracing::Span::current().record("event.id", &event.event_id);
        if self.sent.contains(&event.event_id).await? {
            tracing::info!("mailed before; not again");
            return Ok(());
        }
        let mail = self.template.welcome(&event).map_err(|error| match error {
            MailError::Invalid(reason) => Failure::Malformed(reason),
            other => Failure::Mail(other),
        })?;
        self.mailer.send(mail).await?;
        self.mails_sent.inc();
        tracing::info!("welcome mail sent");
        if let Err(error) = self.sent.record(&event.event_id).await {
            // The mail is out; acknowledging still keeps it from coming back.
            tracing::warn!(%error, "cannot record the mailed event");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mail_is_sent_or_given_up_well_before_the_event_comes_back() {
        // Past ACK_WAIT the event is redelivered: were the send still going,
        // a slow SMTP server would get the same mail twice.
        assert!(crate::mail::SEND_TIMEOUT < ACK_WAIT);
        assert!(crate::mail::SMTP_TIMEOUT <= crate::mail::SEND_TIMEOUT);
    }

    #[test]
    fn retries_back_off_up_to_a_minute() {
        assert_eq!(retry_delay(1), Duration::from_secs(1));
        assert_eq!(retry_delay(2), Duration::from_secs(2));
        assert_eq!(retry_delay(4), Duration::from_secs(8));
        assert_eq!(retry_delay(100), MAX_RETRY_DELAY);
    }
}
