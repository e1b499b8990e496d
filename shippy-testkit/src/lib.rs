//! What shippy-rs tests share.
//!
//! Tests talk to real infrastructure started on loopback by
//! `cargo dev infra up` (which `make test` runs): its URLs arrive in
//! `TEST_DATABASE_URL`, `TEST_NATS_URL`, `TEST_CONSUL_HTTP_ADDR` and
//! `TEST_MONGODB_URL`. Every test gets its own world from here:
//! [`fresh_postgres_database`] and [`fresh_mongodb_database`] name a
//! database no other test uses, so tests run in parallel and in any order.
//! Logs stay quiet unless `TEST_LOG=1`.
//!
//! Where things are:
//!
//! - [`infra`]: the infrastructure's URLs and a fresh database on it
//!   ([`StoreKind`] picks PostgreSQL or MongoDB).
//! - [`external`]: servers of a test's own. [`ExternalServer`] runs any
//!   program until dropped (output in a log, ready by a check);
//!   [`NatsServer`], [`SmtpServer`] and [`ConsulAgent`] are built on it.
//! - [`service`]: a workspace binary as a process ([`ServiceProcess`]), and
//!   what its command line prints.
//! - [`settings`]: values every service under test is given alike.
//! - [`health`]: the gRPC health protocol.
//! - [`net`]: loopback plumbing — [`LateProxy`], [`ClosedPort`], spare
//!   ports, URL ↔ address, a plain HTTP GET.
//! - [`otlp`]: an OTLP trace receiver in the test process, and a traced
//!   caller's span ([`CallerSpan`]).
//! - [`running`]: a server started in-process ([`Running`]).
//! - [`calls`]: calls an attacker makes.
//! - [`mongo_plan`]: which indexes a MongoDB query would use.
//! - [`contract`]: [`store_contract!`], one suite run against every store;
//!   [`on_each_store!`], scenarios run as tests on each store.
//!
//! Everything public is also named at the crate root, as tests import it.
#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: a panic is a test failure.

pub mod calls;
pub mod contract;
pub mod external;
pub mod health;
pub mod infra;
pub mod mongo_plan;
pub mod net;
pub mod otlp;
pub mod running;
pub mod service;
pub mod settings;
pub mod wait;

pub use external::{
    CONSUL_SERVICES, ConsulAgent, ExternalServer, NatsServer, Readiness, SmtpServer,
};
pub use health::{health_status, wait_for_health};
pub use infra::{
    StoreKind, fresh_database_setting, fresh_mongodb_database, fresh_postgres_database, infra_var,
    mongodb_admin_url, postgres_admin_url,
};
pub use mongo_plan::{MongoQueryPlan, mongodb_query_plan};
pub use net::{
    ClosedPort, LateProxy, http_get, socket_addr_of, spare_ports, try_spare_ports, with_socket_addr,
};
pub use otlp::{CallerSpan, OtlpReceiver, ReceivedSpan, find_span};
pub use running::Running;
pub use service::{
    STARTED_TARGET, ServiceProcess, assert_failed_in_one_line, assert_help, assert_mentions,
    assert_ran, assert_start_fails, help_text, start_failure, started_address, stderr, stdout,
    workspace_binary,
};
pub use settings::{RESERVATION_TTL, SERVICE_TOKEN};
pub use wait::wait_until_equal;

/// Installs a log subscriber when `TEST_LOG` is set; otherwise logs are dropped.
pub fn init_test_logging() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info,sqlx=warn".to_owned()),
            )
            .with_test_writer()
            .try_init();
    }
}
