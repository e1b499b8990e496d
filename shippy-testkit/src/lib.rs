//! What shippy-rs tests share.
//!
//! Tests talk to real infrastructure started on loopback by
//! `scripts/infra.sh up` (which `make test` runs): its URLs arrive in
//! `TEST_DATABASE_URL`, `TEST_NATS_URL` and `TEST_CONSUL_HTTP_ADDR`. Every
//! test gets its own world from here: [`fresh_postgres_database`] creates a
//! database under a new name, so tests run in parallel and in any order.
//! Logs stay quiet unless `TEST_LOG=1`.
#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: a panic is a test failure.

use shippy_service::settings::SecretUrl;
use sqlx::{Connection, PgConnection};

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

/// The value of an infrastructure variable `scripts/infra.sh` exports.
///
/// Panics with what to do when it is missing, so a test run without the
/// infrastructure says why instead of failing somewhere deep.
pub fn infra_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run the tests with `make test`, or start the \
             infrastructure with `eval \"$(scripts/infra.sh up)\"` first"
        )
    })
}

/// The PostgreSQL server the tests use (a URL naming its `postgres` database).
pub fn postgres_admin_url() -> SecretUrl {
    infra_var("TEST_DATABASE_URL")
        .parse()
        .expect("TEST_DATABASE_URL is a valid URL")
}

/// Creates a database with a fresh name on the test PostgreSQL server and
/// returns its URL. Nothing else uses it; the throwaway server is deleted
/// with everything in it when the infrastructure stops.
pub async fn fresh_postgres_database(prefix: &str) -> SecretUrl {
    let admin = postgres_admin_url();
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    let mut connection = PgConnection::connect(admin.expose())
        .await
        .expect("connect to the test PostgreSQL server");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
        .execute(&mut connection)
        .await
        .expect("create a test database");
    admin.with_path(&format!("/{name}"))
}

/// Whether a MongoDB server is given for the tests (`MONGODB_URL`). When it
/// is not, this prints that the MongoDB tests were skipped, so the run says
/// so plainly.
pub fn mongodb_url_or_say_skipped(test: &str) -> Option<String> {
    match std::env::var("MONGODB_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!(
                "SKIPPED {test}: MONGODB_URL is not set, so the MongoDB store was not tested"
            );
            None
        }
    }
}
