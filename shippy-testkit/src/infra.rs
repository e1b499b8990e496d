//! The infrastructure `cargo dev infra` started, and a database of a test's
//! own on it: [`fresh_postgres_database`], [`fresh_mongodb_database`], or
//! either through [`StoreKind`].

use shippy_service::settings::SecretUrl;
use sqlx::{Connection, PgConnection};

/// The value of an infrastructure variable `cargo dev infra` exports.
///
/// Panics with what to do when it is missing, so a test run without the
/// infrastructure says why instead of failing somewhere deep.
pub fn infra_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run the tests with `make test`, or start the \
             infrastructure with `eval \"$(cargo dev infra up)\"` first"
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

/// `DATABASE_URL` set to a [fresh PostgreSQL database](fresh_postgres_database)
/// named after `prefix`, as a service process's setting.
pub async fn fresh_database_setting(prefix: &str) -> (&'static str, String) {
    let url = fresh_postgres_database(prefix).await;
    ("DATABASE_URL", url.expose().to_owned())
}

/// The MongoDB server the tests use: `TEST_MONGODB_URL`, which
/// `cargo dev infra up mongodb` exports (here, the DocumentDB stand-in from
/// `shared/tools/documentdb`; anywhere else, any MongoDB).
///
/// MongoDB tests are marked ignored so a plain `cargo test` without a server
/// leaves them out visibly; `make test` includes them whenever the server
/// runs. A MongoDB test that *is* included without a server panics here,
/// saying what to set: it never passes having tested nothing.
pub fn mongodb_admin_url() -> SecretUrl {
    let url = std::env::var("TEST_MONGODB_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| {
            panic!(
                "TEST_MONGODB_URL is not set, so this MongoDB test cannot run: run \
                 `make test`, or `eval \"$(cargo dev infra up mongodb)\"` first, or set \
                 TEST_MONGODB_URL=mongodb://user:password@host:port/ to a MongoDB server"
            )
        });
    url.parse().expect("TEST_MONGODB_URL is a valid URL")
}

/// The URL of a database with a fresh name on the test MongoDB server
/// (MongoDB creates it on first write), as [`mongodb_database_url`] names it.
pub fn fresh_mongodb_database(prefix: &str) -> SecretUrl {
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    mongodb_database_url(mongodb_admin_url().expose(), &name)
        .expect("TEST_MONGODB_URL is a valid URL")
}

/// The URL of database `name` on the MongoDB server at `server`. The
/// credentials keep authenticating where the server's URL said: its path
/// names the authentication database (`admin` when it names none), so
/// `authSource` is pinned to that before the path changes.
pub fn mongodb_database_url(server: &str, name: &str) -> Result<SecretUrl, url::ParseError> {
    let mut url = url::Url::parse(server)?;
    let has_auth_source = url.query_pairs().any(|(key, _)| key == "authSource");
    if !url.username().is_empty() && !has_auth_source {
        let auth_database = match url.path().trim_start_matches('/') {
            "" => "admin".to_owned(),
            named => named.to_owned(),
        };
        url.query_pairs_mut()
            .append_pair("authSource", &auth_database);
    }
    url.set_path(&format!("/{name}"));
    url.as_str().parse()
}

/// Which database a store-backed service under test keeps its data in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// The test PostgreSQL server.
    Postgres,
    /// The test MongoDB server.
    MongoDb,
}

impl StoreKind {
    /// The URL of a fresh database of this kind, named `prefix_<uuid>`.
    pub async fn fresh_database(self, prefix: &str) -> SecretUrl {
        match self {
            Self::Postgres => fresh_postgres_database(prefix).await,
            Self::MongoDb => fresh_mongodb_database(prefix),
        }
    }
}
