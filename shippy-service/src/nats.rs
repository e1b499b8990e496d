//! NATS JetStream, as the services that publish and consume events use it.
//!
//! [`connect`] returns at once and connects (and reconnects) in the
//! background, so a service starts before its broker; [`user_events_stream`]
//! is the one definition of the stream that keeps `user.created` events, used
//! by the publisher and the consumer alike, whichever starts first.

use std::time::Duration;

use async_nats::{
    Client, ClientError, ConnectOptions, Event,
    jetstream::{self, Context, stream},
};

use crate::settings::SecretUrl;

/// How long a JetStream request (and a publish acknowledgement) may take.
pub const JETSTREAM_TIMEOUT: Duration = Duration::from_secs(3);

/// The NATS server a service uses when `NATS_URL` is not set.
pub const DEFAULT_URL: &str = "nats://127.0.0.1:4222";

/// `NATS_URL` is not an address the NATS client can use: a service's
/// start-up error.
#[derive(Debug, thiserror::Error)]
#[error("NATS_URL `{url}` is not a valid NATS address (expected nats://host:4222)")]
pub struct InvalidUrl {
    /// The URL given, its password redacted.
    pub url: String,
    /// What the client said.
    #[source]
    pub source: async_nats::ConnectError,
}

impl InvalidUrl {
    /// What a failed [`connect`] to `url` becomes: `.map_err(InvalidUrl::of(&url))`.
    pub fn of(url: &SecretUrl) -> impl FnOnce(async_nats::ConnectError) -> Self + '_ {
        move |source| Self {
            url: url.to_string(),
            source,
        }
    }
}

/// A client for `url`, named `name` in the server's connection list. It
/// connects in the background and retries forever; connection changes are
/// logged.
pub async fn connect(url: &str, name: &str) -> Result<Client, async_nats::ConnectError> {
    ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(2))
        .event_callback(|event| async move {
            match event {
                Event::Connected => tracing::info!("NATS connected"),
                Event::Disconnected => tracing::warn!("NATS disconnected"),
                Event::Closed => tracing::info!("NATS connection closed"),
                // One per failed (re)connect attempt.
                Event::ClientError(ClientError::Other(error)) => tracing::debug!(%error, "NATS"),
                other => tracing::warn!(event = %other, "NATS"),
            }
        })
        .connect(url)
        .await
}

/// Whether `client` is connected now.
pub fn is_connected(client: &Client) -> bool {
    client.connection_state() == async_nats::connection::State::Connected
}

/// A JetStream context over `client` with [`JETSTREAM_TIMEOUT`].
pub fn jetstream(client: Client) -> Context {
    let mut context = jetstream::new(client);
    context.set_timeout(JETSTREAM_TIMEOUT);
    context
}

/// The stream `name` that keeps events on `subject`, created if missing:
/// file storage, and a two-minute window in which a second message with the
/// same `Nats-Msg-Id` is dropped.
pub async fn user_events_stream(
    jetstream: &Context,
    name: &str,
    subject: &str,
) -> Result<stream::Stream, jetstream::context::CreateStreamError> {
    jetstream
        .get_or_create_stream(stream::Config {
            name: name.to_owned(),
            subjects: vec![subject.to_owned()],
            storage: stream::StorageType::File,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
}
