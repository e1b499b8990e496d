//! vessel-service's integration tests.
//! One test binary for the crate (one link, one process), its suites as modules.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod api;
mod batch_calls;
mod batches;
mod cli;
mod logs;
mod store_contract;
