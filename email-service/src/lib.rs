//! email-service: the welcome mail for every `user.created` event, none lost,
//! none twice.
//!
//! - [`worker`]: the durable JetStream consumer; acknowledges after the SMTP
//!   server accepted the mail, redelivers with backoff on SMTP failures,
//!   terminates malformed events.
//! - [`sent`]: which events were mailed, kept in a JetStream stream.
//! - [`mail`]: the welcome mail (plain text and HTML) and the SMTP transport.
//! - [`app`]: [`app::Application`]: health on its gRPC port, `NOT_SERVING`
//!   while NATS is unreachable; `main` only loads settings and runs it.

pub mod app;
pub mod mail;
pub mod sent;
pub mod settings;
pub mod worker;
