//! email-service's settings: flags that also read the environment.
//! A bare `long, env` takes both names from the field: `--metrics-addr`
//! and `METRICS_ADDR` for `metrics_addr`.

use shippy_service::{
    base::{Serve, ports},
    nats,
    settings::SecretUrl,
};

/// What email-service needs to run.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// The NATS server the events come from.
    #[arg(long, env, default_value = nats::DEFAULT_URL, hide_env_values = true)]
    pub nats_url: SecretUrl,

    /// The SMTP server mails go to, e.g. `smtp://127.0.0.1:2525`
    /// (`smtps://` for TLS, user and password in the URL). Unset: mails are
    /// logged instead of sent.
    #[arg(long, env, hide_env_values = true)]
    pub smtp_url: Option<SecretUrl>,

    /// The sender of welcome mails.
    #[arg(long, env, default_value = "Shippy <no-reply@shippy.example>")]
    pub mail_from: String,

    /// The subject of welcome mails.
    #[arg(long, env, default_value = "Welcome to Shippy")]
    pub mail_subject: String,

    /// The JetStream stream that keeps user events.
    #[arg(long, env = "USER_EVENTS_STREAM", default_value = "USERS")]
    pub events_stream: String,

    /// The subject of `user.created` events.
    #[arg(long, env, default_value = shippy_proto::events::USER_CREATED_SUBJECT)]
    pub user_created_subject: String,

    /// The durable consumer's name: instances with the same name share the work.
    #[arg(long, env = "EMAIL_CONSUMER", default_value = "email-service")]
    pub consumer: String,

    /// The JetStream stream that remembers which events were mailed.
    #[arg(long, env = "SENT_MAIL_STREAM", default_value = "EMAIL_SENT")]
    pub sent_stream: String,

    /// The JetStream stream that keeps the events that can never be mailed
    /// (refused for good by the SMTP server, an address it or we cannot
    /// take, a malformed event, or not mailed within `MAIL_MAX_AGE`), each
    /// with the reason.
    #[arg(long, env = "DEAD_MAIL_STREAM", default_value = "EMAIL_DEAD")]
    pub dead_stream: String,

    /// How long an event whose mail keeps failing for a reason that may
    /// pass (SMTP server down, a 4xx answer) is retried before it is given
    /// up and kept in the dead-mail stream.
    #[arg(long, env, default_value = "24h")]
    pub mail_max_age: humantime::Duration,

    /// Health turns `NOT_SERVING` when events are waiting and none has been
    /// mailed or given up for this long (the SMTP server refuses everything,
    /// say), and `SERVING` again once mail moves.
    #[arg(long, env, default_value = "5m")]
    pub mail_stuck_after: humantime::Duration,

    /// Where it listens, and how it finds its peers: the flags every
    /// service has.
    #[command(flatten)]
    pub serve: Serve<ports::Email>,
}
