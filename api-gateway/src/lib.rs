//! api-gateway: the HTTP side of shippy.
//!
//! - [`api`]: the `/api/v1` handlers, each one gRPC call (or two) with the
//!   caller's token passed on; the services stay the authority.
//! - [`bearer`]: the caller's bearer token, an extractor: the one place
//!   `authorization` is read; 401 in the JSON error shape without one.
//! - [`json`]: the JSON bodies, with the protos' field names.
//! - [`error`]: gRPC code → HTTP status and the `{"error": …}` body, in one place.
//! - [`openapi`]: the OpenAPI 3 document, from the route table.
//! - [`observe`]: a span per request continuing the caller's W3C trace; RED metrics.
//! - [`ui`]: the web UI, embedded in the binary.
//! - [`ops`]: `/api/v1/ops`, the ops dashboard's figures (admins only):
//!   each upstream's health and circuit, each route's rates and p99.
//! - [`jwks`]: `/.well-known/jwks.json`, user-service's public keys as a JWK Set.
//! - [`forwarding`]: who the client is (through trusted proxies only), named
//!   to the services with their shared secret.
//! - [`limit`]: rate limits per client address (token buckets).
//! - [`upstream`]: a circuit breaker and a timeout per upstream service.
//! - [`serve`]: the HTTP server loop: connection cap, header, body and
//!   idle timeouts.
//! - [`app`]: [`app::Application`], which binds and serves; `main` only
//!   loads settings and runs it.

pub mod api;
pub mod app;
pub mod bearer;
pub mod error;
pub mod forwarding;
pub mod healthcheck;
pub mod json;
pub mod jwks;
pub mod limit;
pub mod observe;
pub mod openapi;
pub mod ops;
pub mod serve;
pub mod settings;
pub mod ui;
pub mod upstream;
