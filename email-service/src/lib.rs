//! email-service: the welcome mail for every `user.created` event, none lost,
//! none twice.
//!
//! - [`worker`]: the durable JetStream consumer; acknowledges after the SMTP
//!   server accepted the mail, redelivers with backoff on SMTP failures,
//!   gives up (dead-mail stream, then terminate) what can never be mailed
//!   or was not mailed within `MAIL_MAX_AGE`.
//! - [`sent`]: which events were mailed, kept in a JetStream stream.
//! - [`dead`]: the events that can never be mailed, kept with the reason in
//!   a JetStream stream of their own.
//! - [`watchdog`]: health turns `NOT_SERVING` while events wait and none
//!   moves (mailed or given up) for `MAIL_STUCK_AFTER`.
//! - [`mail`]: the welcome mail (plain text and HTML) and the SMTP transport.
//! - [`app`]: [`app::Application`]: health on its gRPC port, `NOT_SERVING`
//!   while NATS is unreachable; `main` only loads settings and runs it.

pub mod app;
pub mod dead;
pub mod mail;
pub mod sent;
pub mod settings;
pub mod watchdog;
pub mod worker;
