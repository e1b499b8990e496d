//! Which events were mailed already, kept durably in a JetStream stream, so
//! a redelivered event sends no second mail, across restarts too.
//!
//! One message per mailed event, on subject `<prefix>.<event id>` (the last
//! one per subject is all that is kept), with the event id as `Nats-Msg-Id`.

use std::time::Duration;

use async_nats::{
    HeaderMap,
    header::NATS_MESSAGE_ID,
    jetstream::{
        Context,
        stream::{self, LastRawMessageErrorKind},
    },
};

/// How long the record of a mailed event is kept: far longer than any
/// redelivery takes.
const KEEP: Duration = Duration::from_secs(30 * 24 * 3600);

/// The record could not be read or written: what was being done, and the
/// driver's error.
#[derive(Debug, thiserror::Error)]
#[error("the sent-mail log: {doing}")]
pub struct SentLogError {
    doing: String,
    #[source]
    source: shippy_service::error::BoxError,
}

impl SentLogError {
    fn new(doing: impl Into<String>, source: impl Into<shippy_service::error::BoxError>) -> Self {
        Self {
            doing: doing.into(),
            source: source.into(),
        }
    }
}

/// The log of mailed events.
#[derive(Debug, Clone)]
pub struct SentLog {
    jetstream: Context,
    stream_name: String,
    prefix: String,
}

impl SentLog {
    /// The log in stream `stream_name`, on subjects `email.sent.<consumer>.*`.
    pub fn new(jetstream: Context, stream_name: &str, consumer: &str) -> Self {
        Self {
            jetstream,
            stream_name: stream_name.to_owned(),
            prefix: format!("email.sent.{consumer}"),
        }
    }

    /// Creates the stream if it is missing.
    pub async fn ensure(&self) -> Result<(), SentLogError> {
        record_stream(&self.jetstream, &self.stream_name, &self.prefix, KEEP)
            .await
            .map_err(|error| {
                SentLogError::new(format!("cannot create stream {}", self.stream_name), error)
            })
    }

    fn subject(&self, event_id: &str) -> String {
        format!("{}.{event_id}", self.prefix)
    }

    /// Whether the event was mailed already.
    pub async fn contains(&self, event_id: &str) -> Result<bool, SentLogError> {
        let stream = self
            .jetstream
            .get_stream_no_info(&self.stream_name)
            .await
            .map_err(|error| SentLogError::new("cannot open the stream", error))?;
        match stream
            .get_last_raw_message_by_subject(&self.subject(event_id))
            .await
        {
            Ok(_) => Ok(true),
            Err(error) if matches!(error.kind(), LastRawMessageErrorKind::NoMessageFound) => {
                Ok(false)
            }
            Err(error) => Err(SentLogError::new("cannot look the event up", error)),
        }
    }

    /// Records that the event was mailed.
    pub async fn record(&self, event_id: &str) -> Result<(), SentLogError> {
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, event_id);
        self.jetstream
            .publish_with_headers(self.subject(event_id), headers, Default::default())
            .await
            .map_err(|error| SentLogError::new("cannot record the event", error))?
            .await
            .map_err(|error| SentLogError::new("the record was not acknowledged", error))?;
        Ok(())
    }
}

/// The most records a stream of records keeps: the oldest go first past it,
/// so a flood of sign-ups cannot fill the broker's disk (a record is a few
/// hundred bytes).
const MAX_RECORDS: i64 = 1_000_000;

/// Makes sure the stream `name` keeps the last message of each subject
/// under `<prefix>.>` for `keep`, [`MAX_RECORDS`] at most: creates it, or,
/// when it exists without that subject (made for a consumer of another
/// name), adds the subject, so a record is never refused for want of a
/// stream.
pub(crate) async fn record_stream(
    jetstream: &Context,
    name: &str,
    prefix: &str,
    keep: Duration,
) -> Result<(), shippy_service::error::BoxError> {
    let subject = format!("{prefix}.>");
    let stream = jetstream
        .get_or_create_stream(stream::Config {
            name: name.to_owned(),
            subjects: vec![subject.clone()],
            storage: stream::StorageType::File,
            max_messages_per_subject: 1,
            max_messages: MAX_RECORDS,
            max_age: keep,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await?;
    let config = &stream.cached_info().config;
    if !config.subjects.contains(&subject) {
        tracing::info!(stream = %name, %subject, "adding this consumer's subject to the stream");
        let mut config = config.clone();
        config.subjects.push(subject);
        jetstream.update_stream(config).await?;
    }
    Ok(())
}
