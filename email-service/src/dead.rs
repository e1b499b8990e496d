//! The events that can never be mailed, kept with the reason in a JetStream
//! stream of their own, so giving one up is never silent and an operator can
//! look at it (and publish it again once the cause is fixed).
//!
//! One message per given-up event, on subject `<prefix>.<event id>` (the
//! last one per subject is kept), its payload the event as it arrived, with
//! the event id as `Nats-Msg-Id` and headers saying why and where from.

use std::time::Duration;

use async_nats::{HeaderMap, header::NATS_MESSAGE_ID, jetstream::Context};
use bytes::Bytes;
use shippy_service::text;

/// How long a given-up event is kept: time enough to notice and act.
const KEEP: Duration = Duration::from_secs(30 * 24 * 3600);
/// The most characters of a reason a record keeps.
const REASON_CHARS: usize = 300;

/// Header: why the event was given up (escaped to printable ASCII, cut to
/// [`REASON_CHARS`] characters).
pub const REASON: &str = "Shippy-Dead-Reason";
/// Header: the subject the event arrived on.
pub const SUBJECT: &str = "Shippy-Dead-Subject";
/// Header: the event's sequence number in its stream.
pub const SEQUENCE: &str = "Shippy-Dead-Stream-Sequence";
/// Header: how many times it was delivered.
pub const DELIVERED: &str = "Shippy-Dead-Delivered";

/// The record could not be written: what was being done, and the driver's
/// error.
#[derive(Debug, thiserror::Error)]
#[error("the dead-mail stream: {doing}")]
pub struct DeadLetterError {
    doing: String,
    #[source]
    source: shippy_service::error::BoxError,
}

impl DeadLetterError {
    fn new(doing: impl Into<String>, source: impl Into<shippy_service::error::BoxError>) -> Self {
        Self {
            doing: doing.into(),
            source: source.into(),
        }
    }
}

/// A given-up event: what to keep of it.
#[derive(Debug, Clone)]
pub struct DeadLetter<'a> {
    /// The event id, or `seq-<sequence>` for an event without a usable one.
    pub id: &'a str,
    /// The event as it arrived.
    pub payload: Bytes,
    /// Why it was given up (outside text allowed: it is escaped here).
    pub reason: &'a str,
    /// The subject it arrived on.
    pub subject: &'a str,
    /// Its sequence in the events stream.
    pub stream_sequence: u64,
    /// How many times it was delivered.
    pub delivered: i64,
}

/// The stream of given-up events.
#[derive(Debug, Clone)]
pub struct DeadLetters {
    jetstream: Context,
    stream_name: String,
    prefix: String,
}

impl DeadLetters {
    /// The records in stream `stream_name`, on subjects `email.dead.<consumer>.*`.
    pub fn new(jetstream: Context, stream_name: &str, consumer: &str) -> Self {
        Self {
            jetstream,
            stream_name: stream_name.to_owned(),
            prefix: format!("email.dead.{consumer}"),
        }
    }

    /// The subject of the record for `id`.
    pub fn subject(&self, id: &str) -> String {
        format!("{}.{id}", self.prefix)
    }

    /// Creates the stream if it is missing (or adds this consumer's subject).
    pub async fn ensure(&self) -> Result<(), DeadLetterError> {
        crate::sent::record_stream(&self.jetstream, &self.stream_name, &self.prefix, KEEP)
            .await
            .map_err(|error| {
                DeadLetterError::new(format!("cannot create stream {}", self.stream_name), error)
            })
    }

    /// Keeps `letter`; returns once JetStream has stored it.
    pub async fn record(&self, letter: DeadLetter<'_>) -> Result<(), DeadLetterError> {
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, letter.id);
        headers.insert(REASON, header_text(letter.reason).as_str());
        headers.insert(SUBJECT, header_text(letter.subject).as_str());
        headers.insert(SEQUENCE, letter.stream_sequence.to_string().as_str());
        headers.insert(DELIVERED, letter.delivered.to_string().as_str());
        self.jetstream
            .publish_with_headers(self.subject(letter.id), headers, letter.payload)
            .await
            .map_err(|error| DeadLetterError::new("cannot record the event", error))?
            .await
            .map_err(|error| DeadLetterError::new("the record was not acknowledged", error))?;
        Ok(())
    }
}

/// `text` fit for a header value: cut to [`REASON_CHARS`] characters (`…`
/// when cut, written `\u{2026}`), every character outside printable ASCII
/// escaped, so neither a line break nor a byte a header cannot hold gets in.
pub fn header_text(text: &str) -> String {
    text::clipped(text, REASON_CHARS)
        .chars()
        .flat_map(char::escape_default)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_text_is_short_printable_ascii() {
        assert_eq!(header_text("plain reason"), "plain reason");
        let escaped = header_text("550 <ü@example.com>\r\nBcc: spy");
        assert_eq!(escaped, "550 <\\u{fc}@example.com>\\r\\nBcc: spy");
        let long = header_text(&"x".repeat(10_000));
        assert!(long.len() < REASON_CHARS + 20, "{}", long.len());
        assert!(long.ends_with("\\u{2026}"), "cut, and says so");
    }
}
