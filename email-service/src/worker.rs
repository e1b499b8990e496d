//! The consumer: one welcome mail per `user.created` event.
//!
//! A durable JetStream pull consumer delivers each event until it is
//! acknowledged. The worker acknowledges only after the SMTP server accepted
//! the mail (or the event was mailed before). A failure that may pass (the
//! SMTP server down or answering 4xx, NATS trouble) is a negative
//! acknowledgement with a growing delay, so the event comes back later; one
//! that cannot (a 5xx answer, an address the server or our rules cannot
//! take, a malformed event), or one that has not passed within
//! `MAIL_MAX_AGE`, gives the event up: it is kept with the reason in the
//! dead-mail stream ([`crate::dead`]), counted, logged once and terminated,
//! so it neither comes back forever nor holds up the events behind it.

use std::{
    collections::HashMap,
    panic::AssertUnwindSafe,
    time::{Duration, SystemTime},
};

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
    dead::{self, DeadLetter, DeadLetters},
    mail::{MailError, Mailer, Template},
    sent::{SentLog, SentLogError},
    watchdog::Progress,
};

/// How long a delivered event may stay unacknowledged before redelivery
/// (also how long an event delivered to a worker that stopped before it
/// handled it waits to come back).
pub const ACK_WAIT: Duration = Duration::from_secs(30);
/// How long one pull request stays open on the server. Short, so a stopped
/// worker's last request soon stops taking events it will never handle.
const PULL_EXPIRES: Duration = Duration::from_secs(5);
/// The longest delay before an event whose mail failed comes back. With
/// [`MAX_ACK_PENDING`] events waiting, their retries take at most
/// 10,000 / 300 s = 33 attempts a second, so new mail still gets its turn.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(300);
/// The first delay after the SMTP server answered "not now" (4xx) for this
/// mail: such answers (greylisting, a full mailbox, a rate limit) do not
/// pass in a second, and a flood of them retried every second would crowd
/// out new mail. When the server could not be reached at all, the first
/// retry comes after a second, so mail resumes soon after it is back.
const ANSWERED_RETRY_DELAY: Duration = Duration::from_secs(60);
/// How many delivered events may wait unacknowledged (in flight, or waiting
/// for a retry after a failure that may pass) before JetStream delivers no
/// more. Events that can never be mailed are given up at once and never
/// count here; the ones waiting for a retry leave after `MAIL_MAX_AGE` at
/// the latest. JetStream's default, 1,000, let 1,000 refused sign-ups hold
/// every later mail back (issue 23); 10,000 events waiting for a retry at
/// once is a mail system in trouble, which the stuck-consumer health reports.
pub const MAX_ACK_PENDING: i64 = 10_000;

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
    /// The events given up.
    pub dead: DeadLetters,
    /// Events given up.
    pub dead_letters: Counter,
    /// How long an event may keep failing for reasons that may pass.
    pub max_age: Duration,
    /// Marked each time an event is settled.
    pub progress: Progress,
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

impl Failure {
    /// Whether retrying cannot help.
    fn is_permanent(&self) -> bool {
        match self {
            Self::Malformed(_) => true,
            Self::Mail(error) => error.is_permanent(),
            Self::SentLog(_) => false,
        }
    }

    /// Whether the SMTP server answered (rather than not being reached).
    fn answered(&self) -> bool {
        matches!(self, Self::Mail(MailError::Smtp(error)) if error.status().is_some())
    }

    /// Whether the SMTP server answered "not now" for this recipient (4xx):
    /// it takes mail, this mailbox does not yet.
    fn not_now(&self) -> bool {
        matches!(self, Self::Mail(MailError::Smtp(error)) if error.is_transient())
    }
}

/// What the delivery metadata says about one delivery of an event.
#[derive(Debug, Clone, Copy)]
struct Delivery {
    /// How many times it was delivered, this one included.
    delivered: i64,
    /// Its sequence in the events stream.
    stream_sequence: u64,
    /// When it was published, in nanoseconds since the Unix epoch.
    published_ns: i128,
}

impl Delivery {
    fn of(message: &Message) -> Self {
        match message.info() {
            Ok(info) => Self {
                delivered: info.delivered,
                stream_sequence: info.stream_sequence,
                published_ns: info.published.unix_timestamp_nanos(),
            },
            // Not from a JetStream consumer: treat it as new.
            Err(_) => Self {
                delivered: 1,
                stream_sequence: 0,
                published_ns: now_ns(),
            },
        }
    }

    /// How long ago the event was published.
    fn age(&self) -> Duration {
        u64::try_from(now_ns() - self.published_ns)
            .map(Duration::from_nanos)
            .unwrap_or_default()
    }
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|since| i128::try_from(since.as_nanos()).unwrap_or(i128::MAX))
        .unwrap_or_default()
}

/// Whether `id` can be an event id: short, and safe as a subject token.
fn valid_event_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The id a given-up event is kept under: its event id, or `seq-<sequence>`
/// when it has no usable one.
fn dead_letter_id(payload: &[u8], stream_sequence: u64) -> String {
    UserCreated::decode(payload)
        .ok()
        .map(|event| event.event_id)
        .filter(|id| valid_event_id(id))
        .unwrap_or_else(|| format!("seq-{stream_sequence}"))
}

/// The delay before the `delivered`-th delivery's retry: 1 s, 2 s, 4 s, …
/// up to five minutes; when the server `answered` (4xx), from a minute up,
/// each a random part longer, so a flood refused together is not retried
/// together.
fn retry_delay(delivered: i64, answered: bool) -> Duration {
    let min = if answered {
        ANSWERED_RETRY_DELAY
    } else {
        Duration::from_secs(1)
    };
    Backoff {
        min,
        max: MAX_RETRY_DELAY,
    }
    .after(u32::try_from(delivered).unwrap_or(0), answered)
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
        self.dead
            .ensure()
            .await
            .map_err(|error| SetupError::new("the dead-mail stream", error))?;
        let wanted = self.consumer_config();
        let mut consumer = stream
            .get_or_create_consumer(&self.consumer, wanted.clone())
            .await
            .map_err(|error| SetupError::new(format!("consumer {}", self.consumer), error))?;
        // A consumer made by an older version keeps its old settings (the
        // 1,000 ack-pending cap that let refused mail block the rest):
        // JetStream lets these be changed in place.
        let have = &consumer.cached_info().config;
        if have.max_ack_pending != wanted.max_ack_pending
            || have.ack_wait != wanted.ack_wait
            || have.max_deliver != wanted.max_deliver
        {
            tracing::info!(
                consumer = %self.consumer,
                max_ack_pending.old = have.max_ack_pending,
                max_ack_pending.new = wanted.max_ack_pending,
                ack_wait_s.old = have.ack_wait.as_secs(),
                max_deliver.old = have.max_deliver,
                "updating the consumer's settings"
            );
            consumer = stream.create_consumer(wanted).await.map_err(|error| {
                SetupError::new(format!("updating consumer {}", self.consumer), error)
            })?;
        }
        Ok(consumer)
    }

    /// The consumer's settings. `max_deliver` is unlimited on purpose:
    /// JetStream's own giving up would drop an event silently (an advisory
    /// at most); the worker gives up after `MAIL_MAX_AGE` instead, and keeps
    /// the event with the reason.
    fn consumer_config(&self) -> pull::Config {
        pull::Config {
            durable_name: Some(self.consumer.clone()),
            filter_subject: self.subject.clone(),
            ack_policy: AckPolicy::Explicit,
            ack_wait: ACK_WAIT,
            max_ack_pending: MAX_ACK_PENDING,
            max_deliver: -1,
            ..Default::default()
        }
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
        let span = shippy_service::messaging_span!(
            "user.created process",
            "consumer",
            "process",
            message.subject,
            messaging.consumer.group.name = %self.consumer,
            event.id = tracing::field::Empty,
            delivered = tracing::field::Empty,
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
        let delivery = Delivery::of(&message);
        tracing::Span::current().record("delivered", delivery.delivered);
        // Whatever an event holds, a panic handling it terminates that event
        // and the worker goes on with the next.
        let processed = AssertUnwindSafe(self.process(&message.payload))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| Err(Failure::Malformed("handling the event panicked".to_owned())));
        let acknowledgement = match processed {
            Ok(()) => AckKind::Ack,
            Err(failure) if failure.is_permanent() => {
                self.give_up(&message, delivery, &chain(&failure)).await
            }
            Err(failure) => {
                self.mail_failures.inc();
                if delivery.age() >= self.max_age {
                    let reason = format!(
                        "not mailed within MAIL_MAX_AGE ({}); the last attempt: {}",
                        humantime::format_duration(self.max_age),
                        chain(&failure)
                    );
                    self.give_up(&message, delivery, &reason).await
                } else {
                    self.progress.retried(failure.not_now());
                    let delay = retry_delay(delivery.delivered, failure.answered());
                    // The 1st, 2nd, 4th, 8th, … failure of an event is a
                    // warning; the others are debug: a few lines per event
                    // however long it fails.
                    let error = dead::header_text(&chain(&failure));
                    let retry_in_s = delay.as_secs();
                    let note = "welcome mail not sent; the event will come back";
                    if delivery.delivered.count_ones() == 1 {
                        tracing::warn!(%error, retry_in_s, "{note}");
                    } else {
                        tracing::debug!(%error, retry_in_s, "{note}");
                    }
                    AckKind::Nak(Some(delay))
                }
            }
        };
        let settled = !matches!(acknowledgement, AckKind::Nak(_));
        match message.ack_with(acknowledgement).await {
            Ok(()) if settled => self.progress.moved(),
            Ok(()) => {}
            // Unacknowledged, the event comes back after ACK_WAIT; the
            // sent-mail log keeps that from mailing twice.
            Err(error) => tracing::warn!(%error, "cannot acknowledge the event"),
        }
    }

    /// Keeps the event in the dead-mail stream with `reason`, counts it and
    /// logs it (once, escaped); terminates it once kept. Should it not be
    /// kept (NATS trouble), it comes back later instead, so giving up is
    /// never silent.
    async fn give_up(&self, message: &Message, delivery: Delivery, reason: &str) -> AckKind {
        let id = dead_letter_id(&message.payload, delivery.stream_sequence);
        let letter = DeadLetter {
            id: &id,
            payload: message.payload.clone(),
            reason,
            subject: &message.subject,
            stream_sequence: delivery.stream_sequence,
            delivered: delivery.delivered,
        };
        match self.dead.record(letter).await {
            Ok(()) => {
                self.dead_letters.inc();
                tracing::warn!(
                    dead.id = %id,
                    dead.subject = %self.dead.subject(&id),
                    reason = %dead::header_text(reason),
                    "welcome mail given up; the event is kept in the dead-mail stream"
                );
                AckKind::Term
            }
            Err(error) => {
                let delay = retry_delay(delivery.delivered, false);
                tracing::warn!(
                    error = %chain(&error),
                    retry_in_s = delay.as_secs(),
                    "cannot keep the given-up event in the dead-mail stream; it will come back"
                );
                AckKind::Nak(Some(delay))
            }
        }
    }

    async fn process(&self, payload: &[u8]) -> Result<(), Failure> {
        let event = UserCreated::decode(payload)
            .map_err(|error| Failure::Malformed(format!("not a UserCreated: {error}")))?;
        if !valid_event_id(&event.event_id) {
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
        let mail = self.template.welcome(&event)?;
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
    fn retries_back_off_up_to_five_minutes() {
        assert_eq!(retry_delay(1, false), Duration::from_secs(1));
        assert_eq!(retry_delay(2, false), Duration::from_secs(2));
        assert_eq!(retry_delay(4, false), Duration::from_secs(8));
        assert_eq!(retry_delay(100, false), MAX_RETRY_DELAY);
    }

    #[test]
    fn a_not_now_answer_is_retried_after_a_minute_or_more_spread_out() {
        let first: Vec<Duration> = (0..20).map(|_| retry_delay(1, true)).collect();
        assert!(
            first
                .iter()
                .all(|delay| (ANSWERED_RETRY_DELAY..=2 * ANSWERED_RETRY_DELAY).contains(delay)),
            "{first:?}"
        );
        assert!(first.iter().any(|delay| *delay != first[0]), "spread out");
        assert!(retry_delay(100, true) <= 2 * MAX_RETRY_DELAY);
    }

    #[test]
    fn retries_keep_their_load_well_under_what_one_worker_sends() {
        // Every waiting event retried at the longest delay: attempts a second.
        let per_second = MAX_ACK_PENDING as f64 / MAX_RETRY_DELAY.as_secs_f64();
        assert!(per_second < 50.0, "{per_second}");
    }

    #[test]
    fn a_given_up_event_is_kept_under_its_id_or_its_sequence() {
        let event = UserCreated {
            event_id: "abc-123".into(),
            ..Default::default()
        };
        assert_eq!(dead_letter_id(&event.encode_to_vec(), 7), "abc-123");
        let bad = UserCreated {
            event_id: "a.b>*".into(),
            ..Default::default()
        };
        assert_eq!(dead_letter_id(&bad.encode_to_vec(), 7), "seq-7");
        assert_eq!(dead_letter_id(b"\xff\xfe not protobuf", 9), "seq-9");
    }
}
