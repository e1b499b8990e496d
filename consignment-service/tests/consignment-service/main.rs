//! consignment-service's integration tests; `cluster` is shared with consignment-cli's and api-gateway's tests (through `#[path]`).
//! One test binary for the crate (one link, one process), its suites as modules.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod binary;
mod cluster;
mod discovery;
mod e2e;
mod idempotency;
mod quota;
mod saga;
mod store_contract;
mod tracing;
