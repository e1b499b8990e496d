//! user-service's integration tests (except `no_secrets_in_logs`, which installs a process-wide log capture and so keeps a binary of its own).
//! One test binary for the crate (one link, one process), its suites as modules.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod admission;
mod api;
mod binary;
mod events;
mod keys;
mod listing;
