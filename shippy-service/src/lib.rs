//! Plumbing every shippy-rs service shares, so each service's own code is
//! only its domain.
//!
//! - [`admission`]: who gets a request slot: budgets per client address, a
//!   slot only once a request's message has arrived, health never shed.
//! - [`base`]: what every service binds and runs beside its own work
//!   (gRPC and metrics listeners, Consul registration) and how it stops.
//! - [`breaker`]: a circuit breaker per dependency, so a dead one costs
//!   callers nothing but an immediate `UNAVAILABLE`.
//! - [`main_macro`]: `service_main!`, the whole `main` of a service binary.
//! - [`settings`]: command-line flags that also read the environment
//!   (`RUST_LOG`, `LOG_FORMAT`, …), and [`settings::SecretUrl`] for URLs that
//!   carry credentials.
//! - [`telemetry`]: the `tracing` subscriber (human-readable or JSON logs).
//! - [`shutdown`]: one cancellation signal, fired by SIGINT/SIGTERM, that every
//!   task of a service watches.
//! - [`server`]: a gRPC server that always serves `grpc.health.v1.Health` and
//!   server reflection next to the service's own RPCs.
//! - [`discovery`]: how a service finds the others: Consul, `dns:///` names
//!   re-resolved into balanced channels, or static addresses.
//! - [`error`]: the one error type handlers return, mapped to `tonic::Status`.
//! - [`healthcheck`]: `SERVICE healthcheck`, a container's probe of its own
//!   gRPC health without a network tool.
//! - [`metrics`]: the Prometheus registry and its `/metrics` endpoint.
//! - [`nats`]: connecting to NATS in the background; the user events stream.
//! - [`pagination`]: opaque page tokens over a (creation time, id) order.
//! - [`rpc_layer`]: a span (OpenTelemetry RPC conventions) and metrics per RPC.
//! - [`retry`]: backoff, computed one way, and waiting for a dependency.
//! - [`text`]: short escaped excerpts of outside input for messages and
//!   logs; refusing control characters.
//! - [`readiness`]: serving `NOT_SERVING` until a dependency is prepared,
//!   then keeping health in step with it.
//! - [`sweep`]: background work repeated on a clock while the store is
//!   ready (recovery, expiry).

pub mod admission;
pub mod base;
pub mod breaker;
pub mod discovery;
pub mod error;
pub mod healthcheck;
pub mod input;
pub mod main_macro;
pub mod messaging;
pub mod metrics;
pub mod nats;
pub mod pagination;
pub mod readiness;
pub mod retry;
pub mod rpc_layer;
pub mod server;
pub mod settings;
pub mod shutdown;
pub mod sweep;
pub mod telemetry;
pub mod text;

pub use error::ApiError;
/// The global allocator of every service binary ([`service_main!`]):
/// mimalloc, which under `make bench`'s load spent a fraction of the CPU
/// glibc's malloc did on the many small, short-lived allocations of an RPC.
pub use mimalloc::MiMalloc as Allocator;
pub use shutdown::Shutdown;
