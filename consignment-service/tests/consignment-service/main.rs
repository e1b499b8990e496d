//! consignment-service's integration tests (the cluster they start is `shippy_harness::Cluster`).
//! One test binary for the crate (one link, one process), its suites as modules.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod binary;
mod discovery;
mod e2e;
mod idempotency;
mod quota;
mod saga;
mod sizes;
mod store_contract;
mod tracing;
