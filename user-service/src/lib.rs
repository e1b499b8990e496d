//! user-service: accounts, logins and session tokens.
//!
//! - [`domain`]: users, emails and passwords as validated types.
//! - [`password`]: bcrypt on threads of its own (idle priority), with a queue
//!   deadline and equal time for unknown emails.
//! - [`tokens`]: EdDSA JWT signing with a key ring swapped whole, `kid`s.
//! - [`keys`]: where the ring comes from (key file or Consul KV), followed
//!   live; `user-service keys …`, the operator's command.
//! - [`store`]: users and the outbox in PostgreSQL (sqlx, compile-time checked).
//! - [`relay`]: the outbox relay to NATS JetStream.
//! - [`api`]: the `shippy.user.v1.UserService` handlers.
//! - [`app`]: [`app::Application`]; `main` only loads settings and runs it.

pub mod api;
pub mod app;
pub mod domain;
pub mod keys;
pub mod password;
pub mod relay;
pub mod roles;
pub mod settings;
pub mod store;
pub mod throttle;
pub mod tokens;
