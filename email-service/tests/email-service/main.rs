//! email-service's integration tests.
//! One test binary for the crate (one link, one process), its suites as modules.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod binary;
mod mail;
mod refusals;
mod tracing;
