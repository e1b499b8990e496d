//! shippy-chaos's tests, one binary: the short seeded soaks `make test`
//! runs (PostgreSQL; the MongoDB stand-in when a server runs) and the
//! checker's self-test. Each runs a whole cluster, so they take turns
//! ([`common::one_at_a_time`]) instead of sharing the machine's two cores.
#![allow(clippy::expect_used, clippy::unwrap_used)] // a panic is a test failure.
mod common;
mod self_test;
mod soak;
